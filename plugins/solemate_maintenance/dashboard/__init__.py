"""The maintenance dashboard inside the Airflow UI: a FastAPI app the api-server mounts (see
plugins/solemate_dashboard.py), reading the run reports from the reports bucket."""
