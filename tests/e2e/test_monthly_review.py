"""monthly_review end to end with dag.test: the month just ended, with a cost spike, a public bucket
and a console user without MFA; then the same month again, which asks Cost Explorer nothing and does
not mail the stakeholders twice."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta

import pytest

from sandbox import monthly as sandbox_monthly
from sandbox import moto_ce
from sandbox.monthly import last_monthly_run
from solemate_maintenance.notifiers.delivery import secret_forms
from tests.e2e.conftest import parsed_dag, sandbox_as_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG_ID = "monthly_review"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
# A manual run dated like the last scheduled one (the 3rd, 06:00) reviews the calendar month before it.
RUN_DATE = last_monthly_run(NOW)


def reviewed_month_start(run_date: datetime) -> datetime:
    """The calendar month before the run's: the month a run on the 3rd reviews."""
    first = run_date.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first - timedelta(days=1)).replace(day=1)
BROKEN = frozenset({"cost_spike", "public_bucket", "user_without_mfa"})


@pytest.fixture(scope="module")
def sandbox(airflow_db):
    with sandbox_as_environment(history_days=70) as world:
        yield world


@pytest.fixture(scope="module")
def dag():
    return parsed_dag(DAG_ID)


def report(sandbox, run_id):
    s3 = sandbox.client("s3")
    key = f"{sandbox.config.reports.prefix}/{DAG_ID}/{run_id}/report.json"
    return json.loads(s3.get_object(Bucket=sandbox.config.reports.bucket, Key=key)["Body"].read())


def summary_mails(sandbox):
    return [m for m in sandbox.smtp.messages() if m["to"] == sandbox.config.monthly_summary.recipients]


def seed_incidents(sandbox, month_start: datetime) -> None:
    """Two P2 incidents in the month reviewed: acknowledged after 10 and 20 min, resolved after 60 and 120."""
    from solemate_maintenance.findings import Severity
    from solemate_maintenance.incidents import Incident, IncidentRecord, IncidentStore

    record = IncidentRecord(environment=sandbox.config.environment)
    for n, (ack, fixed) in enumerate(((10, 60), (20, 120))):
        start = month_start + timedelta(days=3 + n, hours=2)
        record.incidents[f"i{n}"] = Incident(
            id=f"i{n}", key="kpi.error_rate|alb", check="kpi.error_rate", resource="alb", severity=Severity.P2,
            summary="5xx", started_at=start, last_bad_at=start, opened_at=start, opened_by="performance_watch",
            last_announced_at=start, acknowledged_by="alice", acknowledged_at=start + timedelta(minutes=ack),
            resolved_at=start + timedelta(minutes=fixed))
    IncidentStore.for_config(sandbox.config, aws_conn_id="aws_default",
                             region_name=sandbox.config.regions.primary).write(record, None)


def test_a_month_with_problems_then_the_same_month_again(sandbox, dag, capfd):
    sandbox.seed(NOW, BROKEN)
    seed_incidents(sandbox, reviewed_month_start(RUN_DATE))
    sandbox.slack.clear()
    calls = sum(moto_ce.LEDGER.calls.values())
    capfd.readouterr()
    first = dag.test(logical_date=RUN_DATE)
    printed = "".join(capfd.readouterr())
    reported = report(sandbox, first.run_id)
    assert str(first.state) == "failed"
    states = {ti.task_id: str(ti.state) for ti in first.get_task_instances()}
    assert states["security_audit"] == "failed" and states["stakeholder_summary"] == "success"
    assert states["thresholds_review"] == "success" and states["backup_strategy"] == "success"
    problems = {(f["check"], f["resource"]): f["severity"] for f in reported["findings"]
                if f["status"] in ("warning", "critical")}
    assert problems[("security.s3_public", sandbox_monthly.PUBLIC_BUCKET)] == "P2"
    assert problems[("security.iam_mfa", "bob")] == "P3"
    assert problems[("cost.spike", sandbox_monthly.SPIKED_SERVICE)] == "P3"
    cost = reported["measurements"]["cost_review"]
    assert cost["cost_explorer_calls"] == sum(moto_ce.LEDGER.calls.values()) - calls <= 5
    messages = [m["payload"] for m in sandbox.slack.messages()]
    [alert] = [m for m in messages if "monthly_review.security_audit failed" in m["text"]]
    assert sandbox_monthly.PUBLIC_BUCKET in json.dumps(alert)
    [digest] = [m for m in messages if m not in [alert]]
    assert "|Daily cost, " in json.dumps(digest)  # the cost chart, linked from Slack
    [mail] = summary_mails(sandbox)
    body = "".join(part.get_payload(decode=True).decode() for part in email.message_from_string(mail["data"]).walk()
                   if not part.is_multipart())
    assert "<h2>Security audit</h2>" in body and "<h2>Cost</h2>" in body and "Service levels (KPIs)" in body
    # MTTA and MTTR of the month's two P2 incidents: (10 + 20) / 2 and (60 + 120) / 2 minutes.
    assert "<tr><td>P2</td><td>2</td><td>2 acknowledged</td><td>15.0 min</td><td>2 resolved</td><td>90.0 min</td></tr>" \
        in body
    assert "<h2>Backup strategy</h2>" in body and "<h2>Monitoring thresholds</h2>" in body
    thresholds = reported["measurements"]["thresholds_review"]
    assert thresholds["alarms"] >= 1 and thresholds["tables"]["Alarms"]["rows"]
    strategy = reported["measurements"]["backup_strategy"]
    assert strategy["backup_jobs"] > 0 and set(strategy["vault_gb"]) == {sandbox.config.backups.backup_vault,
                                                                         sandbox.config.backups.dr_backup_vault}
    everything = printed + json.dumps(messages) + json.dumps(reported) + body
    for secret in sandbox.secrets():
        for form in secret_forms(secret):
            assert form not in everything, f"a form of a secret was printed, sent or written: {form[:4]}…"

    calls = sum(moto_ce.LEDGER.calls.values())
    again = dag.test(logical_date=RUN_DATE)
    second = report(sandbox, again.run_id)
    assert sum(moto_ce.LEDGER.calls.values()) == calls  # zero Cost Explorer requests for the same month
    assert second["measurements"]["cost_review"]["cost_explorer_calls"] == 0
    assert second["measurements"]["cost_review"]["total_usd"] == cost["total_usd"]
    assert len(summary_mails(sandbox)) == 1  # the stakeholders are not mailed the same summary twice
