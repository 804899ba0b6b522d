"""The maintenance dashboard's routes through FastAPI's TestClient, reading real report JSON from S3
(moto) through the provider's S3 hook. Airflow's own authentication in front of it is tested against
the running api-server (tests/e2e/test_standalone_dashboard.py)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import boto3
import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient
from moto import mock_aws

from solemate_maintenance.config import load_config
from solemate_maintenance.dashboard.app import create_app, reports_of
from solemate_maintenance.dashboard.data import DAG_IDS
from solemate_maintenance.report import RunReport
from tests.helpers import UNIT_NOW

NOW = UNIT_NOW  # the frozen clock of the unit tests (tests/unit/conftest.py)
HOSTILE = '<script>alert("x")</script>'


def report(dag_id: str, logical_date: datetime, *, findings=(), failed=(), measurements=None) -> RunReport:
    return RunReport(
        dag_id=dag_id, run_id=f"scheduled__{logical_date.isoformat()}", run_type="scheduled",
        logical_date=logical_date.isoformat(), data_interval_start=None, data_interval_end=None,
        environment="production", task_states={}, failed_tasks=list(failed),
        airflow_url=f"http://airflow.example/dags/{dag_id}/runs/x",
        findings=[{"check": check, "resource": resource, "status": "critical" if severity in ("P1", "P2") else "warning",
                   "severity": severity, "summary": summary, "task_id": "t", "lifecycle": "new"}
                  for check, resource, severity, summary in findings],
        measurements=measurements or {})


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture
def bucket(config, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", config.regions.primary)
    with mock_aws():
        boto3.client("s3", region_name=config.regions.primary).create_bucket(Bucket=config.reports.bucket)
        yield reports_of(config)


def store_report(store, item: RunReport, latest: bool = True) -> None:
    moment = datetime.fromisoformat(item.logical_date)
    store.write(store.date_key(item.dag_id, moment), item.model_dump_json())
    if latest:
        store.write(store.latest_key(item.dag_id), item.model_dump_json())


def allow_everyone(request: Request) -> None:
    return None


def login_at(next_url: str) -> str:
    return f"/auth/login?next={next_url}"


@pytest.fixture
def client(config):
    return TestClient(create_app(config_loader=lambda: config, guard=allow_everyone, login_url=login_at))


@pytest.fixture
def world(bucket):
    """A month of the platform as the reports tell it: a failed daily run with a P1 (whose summary
    carries markup), three weekly restore tests, a drill with one missed target, three monthly costs."""
    store_report(bucket, report("daily_maintenance", NOW - timedelta(hours=3), failed=["rds_health"], findings=[
        ("rds.connectivity", "production-postgres", "P1", f"connection refused {HOSTILE}"),
        ("ecs.running_tasks", "solemate-backend", "P2", "1 of 2 tasks running"),
        ("cost.unused", "vol-0abc", "P4", "unattached volume")]))
    for weeks, (rto, rpo) in enumerate([(41.0, 4.0), (38.5, 3.5), (52.0, 6.5)]):
        moment = NOW - timedelta(weeks=3 - weeks)
        store_report(bucket, report("weekly_backup_verification", moment, measurements={"restore_validate": {
            "rto_minutes": rto, "data_rpo_minutes": rpo, "rto_target_minutes": 60, "rpo_target_minutes": 5}}))
    store_report(bucket, report("dr_drill", NOW - timedelta(days=2), measurements={"dr_scorecard": {"components": [
        {"component": "Database", "rto_target_minutes": 60, "rto_minutes": 31.2, "rpo_target_minutes": 5,
         "rpo_minutes": 2.0, "verdict": "met"},
        {"component": "Complete system", "rto_target_minutes": 240, "rto_minutes": 301.0, "rpo_target_minutes": 60,
         "rpo_minutes": None, "verdict": "missed"}]}}))
    for months, total in enumerate([10234.5, 11020.0, 15880.25]):
        moment = (NOW.replace(day=3, hour=6, minute=0, second=0) - timedelta(days=31 * (3 - months))).replace(day=3)
        month = (moment.replace(day=1) - timedelta(days=1)).replace(day=1)
        store_report(bucket, report("monthly_review", moment, measurements={
            "cost_review": {"month": month.date().isoformat(), "total_usd": total}}))
    return bucket


def test_the_page_shows_each_dag_its_findings_the_restore_trend_the_drill_and_the_cost(client, world):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<title>SoleMate maintenance: production</title>" in html
    row = re.search(r"<tr><td><b>daily_maintenance</b>.*?</tr>", html, re.S).group(0)
    assert ">failed<" in row and "P1&nbsp;1" in row and "P2&nbsp;1" in row and "P4&nbsp;1" in row
    assert "rds.connectivity production-postgres: connection refused" in row
    assert HOSTILE not in html and "&lt;script&gt;" in html  # a finding's text is never markup
    assert re.search(r"<tr><td><b>weekly_review</b></td><td>.*no report yet", html)
    restore = re.search(r'<svg[^>]*aria-label="Restore test[^"]*".*?</svg>', html, re.S).group(0)
    assert restore.count('class="series"') == 2 and restore.count("<circle") == 6
    assert "RTO (target 60)" in restore and "data RPO (target 5)" in restore
    drill = html.split("<h2>DR drill</h2>", 1)[1].split("<h2>", 1)[0]
    assert "Complete system" in drill and ">missed<" in drill and "301.0" in drill and "—" in drill
    cost = re.search(r'<svg[^>]*aria-label="Monthly cost[^"]*".*?</svg>', html, re.S).group(0)
    assert cost.count('class="bar"') == 3 and "$15,880" in cost


def test_the_summary_json_counts_open_findings_and_orders_the_trends_oldest_first(client, world):
    summary = client.get("/api/summary").json()
    dags = {d["dag_id"]: d for d in summary["dags"]}
    assert dags["daily_maintenance"]["state"] == "failed"
    assert dags["daily_maintenance"]["open_by_severity"] == {"P1": 1, "P2": 1, "P3": 0, "P4": 1}
    assert [f["severity"] for f in dags["daily_maintenance"]["findings"]] == ["P1", "P2", "P4"]
    assert dags["weekly_backup_verification"]["state"] == "passed"
    assert dags["dr_failover"]["state"] == "no report yet" and dags["dr_failover"]["run_id"] is None
    assert [p["rto_minutes"] for p in summary["restore_trend"]] == [41.0, 38.5, 52.0]
    assert summary["restore_targets"] == {"rto_minutes": 60, "data_rpo_minutes": 5}
    assert [p["total_usd"] for p in summary["cost_trend"]] == [10234.5, 11020.0, 15880.25]
    months = [p["month"] for p in summary["cost_trend"]]
    assert months == sorted(months) and len(set(months)) == 3
    assert [r["verdict"] for r in summary["drill"]] == ["met", "missed"] and summary["errors"] == []


def test_an_empty_bucket_says_what_is_missing_instead_of_failing(client, bucket):
    page = client.get("/")
    assert page.status_code == 200
    assert page.text.count("no report yet") == len(DAG_IDS)  # every DAG with a report, airflow_housekeeping too
    assert "no measurements yet" in page.text and "No DR drill report yet" in page.text


def test_a_bucket_it_cannot_read_is_named_on_the_page_not_a_500(config, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", config.regions.primary)
    with mock_aws():  # no bucket at all
        page = TestClient(create_app(config_loader=lambda: config, guard=allow_everyone, login_url=login_at)).get("/")
    assert page.status_code == 200
    assert "history unreadable" in page.text and "NoSuchBucket" in page.text
    assert page.text.count("no report yet") + page.text.count("unreadable") >= len(DAG_IDS)


def test_without_a_login_a_browser_gets_a_way_in_and_a_script_gets_json(config, bucket):
    def nobody(request: Request) -> None:
        raise HTTPException(status_code=401, detail="Not authenticated")

    client = TestClient(create_app(config_loader=lambda: config, guard=nobody, login_url=login_at))
    browser = client.get("/", headers={"Accept": "text/html"})
    assert browser.status_code == 401 and 'href="/auth/login?next=/"' in browser.text
    script = client.get("/api/summary")
    assert script.status_code == 401 and script.json() == {"detail": "Not authenticated"}
    # Nothing answers without the guard: no docs, no schema.
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404, path


def test_the_guard_asks_the_auth_manager_about_every_dag_whatever_the_query_names(config, bucket, monkeypatch):
    """Airflow's requires_access_dag would authorise against a dag_id in the query string: read
    access to one DAG must not open the page that shows all of them."""
    import airflow.api_fastapi.app as api_app
    from airflow.api_fastapi.core_api.security import get_user

    asked = []

    class OneDagReader:
        def is_authorized_dag(self, **kwargs):
            asked.append(kwargs)
            return kwargs.get("details") is not None  # allowed for a named DAG only

        def get_url_login(self, **kwargs):
            return "/auth/login"

    monkeypatch.setattr(api_app, "get_auth_manager", lambda: OneDagReader())
    app = create_app(config_loader=lambda: config)
    app.dependency_overrides[get_user] = lambda: "reader-of-daily"
    response = TestClient(app).get("/api/summary?dag_id=daily_maintenance")
    assert response.status_code == 403, response.text
    assert asked == [{"method": "GET", "user": "reader-of-daily"}]


def test_what_a_report_carries_cannot_script_or_break_the_page(client, bucket):
    """Reports are data anyone with write access to the bucket could shape: a javascript: link, a
    string where a number belongs, a corrupt latest.json."""
    hostile = report("daily_maintenance", NOW - timedelta(hours=1), findings=[("x", "y", "P2", "z")])
    hostile.airflow_url = "javascript:fetch('/api/v2/dags')//"
    store_report(bucket, hostile)
    store_report(bucket, report("dr_drill", NOW - timedelta(days=1), measurements={"dr_scorecard": {"components": [
        {"component": "Database", "rto_target_minutes": 60, "rto_minutes": "soon", "rpo_target_minutes": 5,
         "rpo_minutes": None, "verdict": "met"}, "not a row"]}}))
    store_report(bucket, report("weekly_backup_verification", NOW - timedelta(days=3), measurements={
        "restore_validate": {"rto_minutes": "12", "data_rpo_minutes": True, "rto_target_minutes": 60}}))
    bucket.write(bucket.latest_key("monthly_review"), "{not json")
    page = client.get("/")
    assert page.status_code == 200
    assert "javascript:" not in page.text and "href=\"javascript" not in page.text
    assert "soon" in page.text  # shown as text, not formatted as a number
    assert re.search(r"<b>monthly_review</b></td><td>.*unreadable", page.text)
    assert "reports/monthly_review/latest.json unreadable" in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp


@pytest.mark.parametrize("components", [None, "all of them", {"database": "met"}])
def test_drill_components_that_are_not_a_list_cost_the_table_not_the_page(client, bucket, components):
    store_report(bucket, report("dr_drill", NOW - timedelta(days=1), measurements={
        "dr_scorecard": {"components": components}}))
    assert client.get("/").status_code == 200
    summary = client.get("/api/summary")
    assert summary.status_code == 200 and summary.json()["drill"] == []


def test_odd_numbers_in_a_report_cost_their_cell_never_the_page(client, bucket):
    """A 400-digit integer (no float holds it), NaN and infinity: strict JSON and the charts refuse them."""
    import json

    huge = 10 ** 400

    def store_raw(item: RunReport) -> None:  # as another writer may: NaN and Infinity literals, not null
        text = json.dumps(item.model_dump(mode="python"), default=str, allow_nan=True)
        for key in (bucket.date_key(item.dag_id, datetime.fromisoformat(item.logical_date)),
                    bucket.latest_key(item.dag_id)):
            bucket.write(key, text)

    store_raw(report("dr_drill", NOW - timedelta(days=1), measurements={"dr_scorecard": {"components": [
        {"component": "Database", "rto_target_minutes": huge, "rto_minutes": float("nan"), "rpo_target_minutes": 5,
         "rpo_minutes": float("inf"), "verdict": "met"}]}}))
    store_raw(report("weekly_backup_verification", NOW - timedelta(days=2), measurements={
        "restore_validate": {"rto_minutes": huge, "data_rpo_minutes": float("nan"), "rto_target_minutes": 60,
                             "rpo_target_minutes": 5}}))
    page = client.get("/")
    assert page.status_code == 200
    assert "nan" not in page.text.lower().replace("maintenance", "") and "inf" not in re.sub(
        r"information|infinity", "", page.text.lower())
    assert "<td>Database</td><td>—</td><td>—</td><td>5</td><td>—</td>" in page.text
    summary = client.get("/api/summary")
    assert summary.status_code == 200
    assert summary.json()["drill"][0]["rto_minutes"] is None and summary.json()["restore_trend"][0]["rto_minutes"] is None
