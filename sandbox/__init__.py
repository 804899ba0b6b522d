"""The embedded sandbox: moto server, PostgreSQL, a Slack webhook sink and the health endpoint."""
