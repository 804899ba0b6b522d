"""SoleMate maintenance: operators, hooks and notifiers behind the maintenance DAGs."""
