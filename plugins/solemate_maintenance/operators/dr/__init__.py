"""Disaster recovery: the non-destructive drill (one module per component of the guide's table) and
the gated failover runbook."""
