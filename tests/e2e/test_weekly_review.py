"""weekly_review end to end: real Airflow (dag.test) against the sandbox: the embedded PostgreSQL as
the platform database, the sandbox's TLS endpoint as the public site, moto for ACM, ECR, ECS and
CloudWatch, the Slack sink for alerts. A healthy week, a broken one, and a backfilled past week."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from sandbox import review as sandbox_review
from sandbox.world import Sandbox
from solemate_maintenance.notifiers.delivery import secret_forms
from tests.e2e.conftest import parsed_dag, sandbox_as_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DAG_ID = "weekly_review"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
BROKEN = frozenset(sandbox_review.REVIEW_PROBLEMS) | {"stack_drift"}


@pytest.fixture(scope="module")
def sandbox(airflow_db):
    with sandbox_as_environment() as world:
        yield world


@pytest.fixture(scope="module")
def dag():
    return parsed_dag(DAG_ID)


class Outcome:
    def __init__(self, sandbox: Sandbox, dag_run, printed: str):
        self.state = str(dag_run.state)
        self.task_states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        self.messages = sandbox.slack.messages()
        self.printed = printed
        s3, bucket = sandbox.client("s3"), sandbox.config.reports.bucket
        key = f"{sandbox.config.reports.prefix}/{DAG_ID}/{dag_run.run_id}/report.json"
        self.report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        self.markdown = s3.get_object(Bucket=bucket, Key=key.replace(".json", ".md"))["Body"].read().decode()
        self.charts = {c["key"]: s3.get_object(Bucket=bucket, Key=c["key"])["Body"].read()
                       for c in self.report["measurements"].get("capacity_planning", {}).get("charts", [])}

    def problems(self) -> dict[str, str]:
        return {f"{f['check']}|{f['resource']}": f["severity"] for f in self.report["findings"]
                if f["status"] in ("warning", "critical")}

    def failure_alerts(self) -> list[dict]:
        return [m for m in self.messages if re.search(rf"{DAG_ID}\.\w+ failed", m["payload"]["text"])]


def run(sandbox: Sandbox, dag, capfd, logical_date: datetime, problems=frozenset()) -> Outcome:
    capfd.readouterr()
    sandbox.seed_days({logical_date: problems})
    sandbox.slack.clear()
    dag_run = dag.test(logical_date=logical_date)
    out, err = capfd.readouterr()
    return Outcome(sandbox, dag_run, out + err)


def test_healthy_week_reviews_everything_and_draws_the_charts(sandbox, dag, capfd):
    outcome = run(sandbox, dag, capfd, NOW - timedelta(hours=2))
    assert outcome.state == "success", (outcome.task_states, outcome.problems())
    # The embedded server has no pg_stat_statements: the one finding of a healthy week, with its fix.
    assert outcome.problems() == {"db.statements|production-postgres": "P3"}
    for task in ("database_maintenance", "certificates", "image_vulnerabilities", "capacity_planning"):
        assert f"## Measured by {task}" in outcome.markdown
    assert "| www.solemate.example via 127.0.0.1:" in outcome.markdown and "| yes |" in outcome.markdown
    assert len(outcome.charts) == 7
    for key, body in outcome.charts.items():
        image = Image.open(io.BytesIO(body))
        assert image.format == "PNG" and image.info["Series"] == "daily peak; trend; limit", key
    assert outcome.failure_alerts() == []


def test_broken_week_alerts_with_what_to_do_and_keeps_secrets_out(sandbox, dag, capfd):
    outcome = run(sandbox, dag, capfd, NOW - timedelta(hours=1), BROKEN)
    assert outcome.state == "failed"
    assert outcome.task_states["certificates"] == outcome.task_states["image_vulnerabilities"] == "failed"
    assert outcome.task_states["database_maintenance"] == outcome.task_states["capacity_planning"] == "success"
    problems = outcome.problems()
    assert {k: v for k, v in problems.items() if k.startswith("certificates.")} == {
        next(k for k in problems if k.startswith("certificates.acm|")): "P2",
        next(k for k in problems if k.startswith("certificates.endpoint|")): "P2"}
    assert problems["capacity.ecs_tasks|solemate-backend running tasks"] == "P3"
    assert problems["db.dead_tuples|production-postgres/public.cart_events"] == "P3"
    assert problems["db.unused_index|production-postgres/public.cart_events_session_key"] == "P4"
    # Drift detection was started, waited for (deferred) and read: the hand change, expected and actual.
    assert outcome.task_states["stack_drift"] == "success" and problems["drift.stack|solemate-platform"] == "P3"
    drifted = outcome.report["measurements"]["stack_drift"]["tables"]["Drifted resources"]["rows"]
    assert drifted == [["solemate-platform", "AssetsBucket (AWS::S3::Bucket)", "/VersioningConfiguration/Status",
                        "Enabled", "Suspended"]]
    assert any(k.startswith("vulnerabilities.critical|") and v == "P2" for k, v in problems.items())
    alerts = {m["payload"]["text"]: json.dumps(m["payload"]) for m in outcome.failure_alerts()}
    assert set(alerts) == {f"[P2] production: {DAG_ID}.{task} failed — {(NOW - timedelta(hours=1)):%Y-%m-%d %H:%M} UTC"
                           for task in ("certificates", "image_vulnerabilities")}
    vulnerable = next(text for title, text in alerts.items() if "image_vulnerabilities" in title)
    assert sandbox_review.CRITICAL_CVE in vulnerable and "sha256:" in vulnerable and "Rebuild the image" in vulnerable
    expiring = next(text for title, text in alerts.items() if "certificates" in title)
    assert f"expires in {sandbox_review.EXPIRING_DAYS} days" in expiring and "Open ACM in the region named" in expiring
    # The payloads, not the sink's request paths (the webhook URL is the sink's own address).
    everything = (outcome.printed + json.dumps([m["payload"] for m in outcome.messages]) + json.dumps(outcome.report)
                  + outcome.markdown)
    for secret in sandbox.secrets():
        for form in secret_forms(secret):
            assert form not in everything, f"a form of a secret was printed, sent or written: {form[:4]}…"


def test_a_backfilled_past_week_measures_its_own_four_weeks(sandbox, dag, capfd):
    past = (NOW - timedelta(days=14)).replace(hour=4)
    outcome = run(sandbox, dag, capfd, past, {"capacity_growth"})
    assert outcome.report["facts"]["run_kind"].startswith("PAST DATE checked")
    capacity = outcome.report["measurements"]["capacity_planning"]
    stamp = past.strftime("%Y-%m-%dT%H%MZ")
    assert all(f"/by-logical-date/{stamp}/charts/" in key for key in outcome.charts)
    rows = {row[0]: row for row in capacity["tables"]["Trends (daily peaks)"]["rows"]}
    assert rows["solemate-backend running tasks"][-1].startswith("in ")
    window = next(f for f in outcome.report["findings"] if f["check"] == "capacity.ecs_tasks")
    assert window["severity"] == "P3"
    assert outcome.report["windows"]["capacity_planning"]["end"].startswith(past.strftime("%Y-%m-%dT%H:%M"))
