"""Daily housekeeping: log retention and archives, unused resources, configuration backup, security
events and open ingress."""
