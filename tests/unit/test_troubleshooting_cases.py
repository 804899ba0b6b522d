"""Troubleshooting paths the sandbox cannot stage: Performance Insights has no local implementation
(moto has no `pi` service), so its answer comes from a stand-in client with the API's documented shape.
Everything else is proven against moto and the real PostgreSQL in test_diagnosis_and_escalation.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from solemate_maintenance.config import load_config
from solemate_maintenance.troubleshooting import Session, diagnose
from solemate_maintenance.window import TimeWindow

END = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


class StandInAws:
    """RDS with Performance Insights on, and PI's DescribeDimensionKeys answer (its documented shape)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, dict]] = []

    def describe_db_instances(self, **kwargs):
        self.asked.append(("describe_db_instances", kwargs))
        return {"DBInstances": [{"DBInstanceClass": "db.r6g.large", "MultiAZ": True, "DbiResourceId": "db-ABC123",
                                 "PerformanceInsightsEnabled": True,
                                 "ReadReplicaDBInstanceIdentifiers": ["production-postgres-replica"]}]}

    def describe_dimension_keys(self, **kwargs):
        self.asked.append(("describe_dimension_keys", kwargs))
        return {"Keys": [{"Dimensions": {"db.sql_tokenized.statement": "SELECT * FROM orders WHERE status = ?"},
                          "Total": 3.42}]}


def test_performance_insights_top_sql_by_load_is_named_when_it_is_on(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PLATFORM_DB", raising=False)
    aws = StandInAws()
    config = load_config()
    session = Session(client_factory=lambda service: aws, config=config,
                      window=TimeWindow(END - timedelta(hours=24), END))
    diagnosis = diagnose(session, "rds.cpu_utilization", config.resources.rds.instance_id)
    assert "top SQL by load (Performance Insights): 3.42 average active sessions: SELECT * FROM orders WHERE " \
           "status = ?" in diagnosis.lines
    assert "read replicas: production-postgres-replica" in diagnosis.lines[0]
    [(_, pi)] = [a for a in aws.asked if a[0] == "describe_dimension_keys"]
    # The service's resource id, by load, grouped by statement, over at most the last 3 hours of the window.
    assert pi["Identifier"] == "db-ABC123" and pi["Metric"] == "db.load.avg"
    assert pi["GroupBy"]["Group"] == "db.sql_tokenized" and pi["StartTime"] == END - timedelta(hours=3)
    # No platform_db here: that part is missing, and says so; the rest stands.
    assert diagnosis.missing.startswith("statements and connections (platform_db): ")
    assert diagnosis.calls == 2
