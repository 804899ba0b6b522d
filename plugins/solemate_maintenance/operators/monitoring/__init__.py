"""The maintenance DAGs' own monitoring: overnight alarms, the heartbeat metric and the maintenance dashboard."""
