"""The weekly review's checks against the platform in moto and a real PostgreSQL server: database
maintenance, certificates (ACM and a live TLS probe), image vulnerabilities, capacity planning with
its charts. One world per module, reset to healthy between tests (`world_with`)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from moto import mock_aws
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from PIL import Image

from sandbox import review as sandbox_review
from sandbox.platform import Platform
from sandbox.tls import PUBLIC_NAME, PrivateCa, TlsEndpoint
from solemate_maintenance.charts import LIMIT_COLOUR, SERIES_COLOURS
from solemate_maintenance.config import EcsService, Upper, load_config
from solemate_maintenance.config import TlsEndpoint as TlsEndpointConfig
from solemate_maintenance.operators.reviews.capacity import CapacityPlanningOperator, fit_trend
from solemate_maintenance.operators.reviews.certificates import CertificateExpiryOperator
from solemate_maintenance.operators.reviews.database import PG_STAT_STATEMENTS_FIX, DatabaseMaintenanceOperator
from solemate_maintenance.operators.reviews.vulnerabilities import ImageVulnerabilityOperator, RunningImage
from tests.helpers import ANCHOR
from tests.unit.conftest import cached_clients
from tests.unit.test_daily_housekeeping import by_check, problems, run

pytestmark = pytest.mark.timeout(120)
CONFIG = load_config()
REGION = CONFIG.regions.primary


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tls")
    ca = PrivateCa(workdir)
    server = TlsEndpoint(workdir).start()
    yield ca, server
    server.stop()


@pytest.fixture(scope="module")
def world(tls):
    ca, server = tls
    with mock_aws():
        platform = Platform(CONFIG, cached_clients(REGION), tls=server, ca=ca)
        platform.create()
        platform.seed(ANCHOR)
        yield platform


@pytest.fixture
def world_with(world, postgres):
    def apply(*problems: str, anchor: datetime = ANCHOR):
        world.seed(anchor, frozenset(problems))
        postgres.apply_review_problems(frozenset(problems))
        return world

    yield apply
    apply()


# -- database maintenance (real PostgreSQL) ------------------------------------------------------------
@pytest.fixture
def platform_db(postgres, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_DB", json.dumps(postgres.connection))
    yield postgres
    postgres.drop_pg_stat_statements()


def database(**overrides):
    return DatabaseMaintenanceOperator(task_id="database_maintenance", db_conn_id="platform_db",
                                       db_instance_identifier=CONFIG.resources.rds.instance_id,
                                       thresholds=CONFIG.checks.database.model_copy(update=overrides))


def test_database_review_healthy_names_the_missing_pg_stat_statements_and_its_fix(platform_db):
    platform_db.apply_review_problems(frozenset())
    findings, error, measured = run(database())
    assert error is None
    assert problems(findings) == {("db.statements", CONFIG.resources.rds.instance_id): "P3"}
    statements = by_check(findings, "db.statements")[0]
    assert "not installed" in statements["summary"] and "shared_preload_libraries" in statements["summary"]
    for check in ("db.unused_index", "db.dead_tuples", "db.xid_age", "db.long_transaction", "db.connections"):
        assert [f["status"] for f in by_check(findings, check)] == ["ok"], check
    xid = by_check(findings, "db.xid_age")[0]["metrics"]["xid_age"]["value"]
    assert 0 < xid < 500_000_000
    tables = measured["tables"]
    assert ["top statements", PG_STAT_STATEMENTS_FIX] in tables["Recommendations (nothing was changed)"]["rows"]
    assert {row[0] for row in tables["Tables by dead tuples"]["rows"]} >= {"public.orders", "public.payments"}
    assert any(row[0] == "maintenance_ro" or row[1] >= 1 for row in tables["Connections by service"]["rows"])
    assert measured["headline"].startswith("Database: top statements unknown")


def test_bloated_table_and_unused_index_are_found_with_recommendations(world_with, platform_db):
    world_with("database_bloat")
    findings, error, measured = run(database(unused_index_min_stats_days=0))  # the server started just now
    assert error is None  # P3/P4: the report, not a page
    found = problems(findings)
    database_id = CONFIG.resources.rds.instance_id
    assert found[("db.dead_tuples", f"{database_id}/public.cart_events")] == "P3"  # 50 % dead >= 20 % critical
    assert found[("db.unused_index", f"{database_id}/public.cart_events_session_key")] == "P4"
    bloat = by_check(findings, "db.dead_tuples")[0]
    assert bloat["metrics"]["dead_tuple_percent"]["value"] == pytest.approx(50, abs=1)
    index = by_check(findings, "db.unused_index")[0]
    assert index["details"]["size_bytes"] >= 1024 * 1024
    recommendations = dict(measured["tables"]["Recommendations (nothing was changed)"]["rows"])
    assert recommendations["public.cart_events"].startswith("VACUUM (ANALYZE) public.cart_events;")
    assert recommendations["public.cart_events_session_key"].startswith(
        "DROP INDEX CONCURRENTLY public.cart_events_session_key;")
    # Nothing was changed: the dead rows are still there.
    with psycopg2.connect(host=str(platform_db.socket_dir), dbname="solemate", user="postgres") as conn, \
            conn.cursor() as cur:
        cur.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'cart_events'")
        assert cur.fetchone()[0] >= 20_000


def test_top_statements_from_pg_stat_statements_flag_the_slow_one(platform_db):
    platform_db.stand_in_pg_stat_statements([(101, "SELECT * FROM orders WHERE user_id = $1", 50_000, 2.5),
                                             (202, "SELECT sum(total_cents) FROM orders   GROUP BY status", 40, 1800.0),
                                             (303, "UPDATE carts SET items = $1 WHERE id = $2", 900, 0.4)])
    findings, error, measured = run(database(top_statements=2))
    assert error is None
    slow = [f for f in by_check(findings, "db.statements") if f["status"] != "ok"]
    assert [(f["resource"], f["severity"]) for f in slow] == [(f"{CONFIG.resources.rds.instance_id}/query 202", "P3")]
    assert "mean 1800 ms over 40 calls" in slow[0]["summary"] and "GROUP BY status" in slow[0]["summary"]
    top = next(t for title, t in measured["tables"].items() if title.startswith("Top statements"))
    assert [row[0] for row in top["rows"]] == ["101", "202"]  # by total time, limited to 2


def test_long_transactions_and_connections_per_service(platform_db):
    holders = [psycopg2.connect(**{**_ro(platform_db), "application_name": "solemate-backend"}) for _ in range(3)]
    try:
        holders[0].cursor().execute("SELECT count(*) FROM orders")  # opens a transaction and keeps it open
        findings, error, _ = run(database(long_transaction_minutes=Upper(warning=0, critical=60),
                                          max_connections_per_service=2))
    finally:
        for conn in holders:
            conn.close()
    assert error is None
    long = [f for f in by_check(findings, "db.long_transaction") if f["status"] != "ok"]
    assert [(f["resource"], f["severity"]) for f in long] == [(f"{CONFIG.resources.rds.instance_id}/solemate-backend",
                                                               "P3")]
    assert "SELECT count(*) FROM orders" in long[0]["summary"]
    per_service = by_check(findings, "db.connections_per_service")
    assert [f["resource"] for f in per_service] == [f"{CONFIG.resources.rds.instance_id}/solemate-backend"]
    assert "holds 3 connections, above the guide's 2 per service" in per_service[0]["summary"]


def test_database_review_refuses_nothing_but_fails_clearly(postgres, monkeypatch):
    findings, error, _ = run(database())  # no platform_db connection defined
    assert [(f["check"], f["status"]) for f in findings] == [("db.connection", "skipped")]
    wrong = {**postgres.connection, "password": "not-the-password"}
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_DB", json.dumps(wrong))
    findings, error, _ = run(database())
    assert error is not None and problems(findings) == {("db.connection", CONFIG.resources.rds.instance_id): "P2"}
    assert "not-the-password" not in json.dumps(findings)


def _ro(postgres):
    c = postgres.connection
    return {"host": c["host"], "port": c["port"], "dbname": c["schema"], "user": c["login"], "password": c["password"]}


# -- certificates ----------------------------------------------------------------------------------
def certificates(world, **overrides):
    endpoint = TlsEndpointConfig(host="127.0.0.1", port=world.tls.port, server_name=PUBLIC_NAME,
                                 ca_bundle=str(world.ca.bundle_path))
    thresholds = CONFIG.checks.certificates.model_copy(update={"endpoints": [endpoint], "timeout_seconds": 5,
                                                               **overrides})
    return CertificateExpiryOperator(task_id="certificates", regions=[REGION, CONFIG.regions.dr],
                                     thresholds=thresholds)


def test_certificates_healthy_in_acm_and_as_served(world_with):
    world = world_with()
    findings, error, measured = run(certificates(world))
    assert error is None and not problems(findings)
    acm = by_check(findings, "certificates.acm")
    assert [f["resource"].split(" (")[0] for f in acm] == [PUBLIC_NAME]
    served = by_check(findings, "certificates.endpoint")[0]
    assert served["resource"] == f"{PUBLIC_NAME} via 127.0.0.1:{world.tls.port}"
    assert served["metrics"]["days_left"]["value"] == sandbox_review.HEALTHY_DAYS
    assert measured["tables"]["Served by the endpoints (TLS probe)"]["rows"][0][1] == "yes"


def test_expiring_certificate_is_p2_in_acm_and_on_the_endpoint(world_with):
    world = world_with("expiring_certificate")
    findings, error, _ = run(certificates(world))
    assert error is not None
    found = problems(findings)
    assert set(found.values()) == {"P2"} and {check for check, _ in found} == {"certificates.acm",
                                                                               "certificates.endpoint"}
    acm = by_check(findings, "certificates.acm")[0]
    assert acm["summary"].startswith(f"expires in {sandbox_review.EXPIRING_DAYS} days")
    assert "imported certificates do not renew" in acm["summary"]
    assert "attach the renewed one" in by_check(findings, "certificates.endpoint")[0]["summary"]


def test_a_week_left_is_p1_and_an_unused_expiring_certificate_is_p4(world_with):
    world = world_with()
    acm = world._client("acm")
    for days, in_use in ((5, True), (10, False)):
        issued = world.ca.issue(f"api{days}.solemate.example", datetime.now(UTC) + timedelta(days=days, hours=6))
        arn = acm.import_certificate(Certificate=issued.certificate_pem, PrivateKey=issued.private_key_pem)[
            "CertificateArn"]
        if in_use:
            get_backend("acm")[DEFAULT_ACCOUNT_ID][REGION]._certificates[arn].in_use_by = [world.load_balancer_arn]
    try:
        findings, error, _ = run(certificates(world, page_size=1))
    finally:
        for summary in acm.list_certificates()["CertificateSummaryList"]:
            if summary["DomainName"].startswith("api"):
                acm.delete_certificate(CertificateArn=summary["CertificateArn"])
    found = {resource.split(" (")[0]: severity for (check, resource), severity in problems(findings).items()}
    assert found == {"api5.solemate.example": "P1", "api10.solemate.example": "P4"}
    assert error is not None


@pytest.mark.parametrize(("endpoint", "expected"), [
    ({"server_name": "shop.other.example"}, "Hostname mismatch"),
    ({"ca_bundle": None}, "self-signed certificate in certificate chain"),  # a CA nobody trusts
])
def test_a_certificate_browsers_refuse_is_p1(world_with, endpoint, expected):
    world = world_with()
    config = TlsEndpointConfig(**{"host": "127.0.0.1", "port": world.tls.port, "server_name": PUBLIC_NAME,
                                  "ca_bundle": str(world.ca.bundle_path), **endpoint})
    op = certificates(world, endpoints=[config])
    findings, error, _ = run(op)
    served = by_check(findings, "certificates.endpoint")[0]
    assert (served["severity"], error is not None) == ("P1", True)
    assert expected in served["summary"] and PUBLIC_NAME in served["summary"]  # what it does serve


def test_an_unreachable_endpoint_is_p2(world_with):
    world = world_with()
    closed = TlsEndpointConfig(host="127.0.0.1", port=1, server_name=PUBLIC_NAME)
    findings, error, _ = run(certificates(world, endpoints=[closed]))
    served = by_check(findings, "certificates.endpoint")[0]
    assert served["severity"] == "P2" and "TLS handshake failed" in served["summary"]


# -- image vulnerabilities ---------------------------------------------------------------------------
def vulnerabilities():
    return ImageVulnerabilityOperator(task_id="image_vulnerabilities", cluster=CONFIG.resources.ecs.cluster,
                                      services=CONFIG.resources.ecs.services, thresholds=CONFIG.checks.vulnerabilities)


def test_vulnerabilities_healthy_image_counts_the_lower_ones(world_with):
    world_with()
    findings, error, measured = run(vulnerabilities())
    assert error is None and not problems(findings)
    assert "no critical or high vulnerability (1 lower)" in by_check(findings, "vulnerabilities.scan")[0]["summary"]
    row = measured["tables"]["Images the services run"]["rows"][0]
    assert row[2] == "solemate-backend" and row[1].startswith("sha256:")


def test_critical_cve_is_p2_with_the_cve_and_digest(world_with):
    world_with("critical_cve")
    findings, error, _ = run(vulnerabilities())
    assert error is not None
    critical = by_check(findings, "vulnerabilities.critical")[0]
    high = by_check(findings, "vulnerabilities.high")[0]
    assert (critical["severity"], high["severity"]) == ("P2", "P3")
    digest = get_backend("ecr")[DEFAULT_ACCOUNT_ID][REGION].repositories[
        CONFIG.disaster_recovery.ecr_repository].images[0].image_digest
    assert sandbox_review.CRITICAL_CVE in critical["summary"] and digest in critical["summary"]
    assert high["details"]["cves"] == sandbox_review.HIGH_CVES
    assert critical["details"]["source"] == "task definition"  # moto runs no task


def test_an_unscanned_image_is_p3_and_one_outside_ecr_is_p4(world_with):
    world = world_with()
    image = get_backend("ecr")[DEFAULT_ACCOUNT_ID][REGION].repositories[
        CONFIG.disaster_recovery.ecr_repository].images[0]
    image.last_scan = None
    findings, error, _ = run(vulnerabilities())
    scan = by_check(findings, "vulnerabilities.scan")[0]
    assert scan["severity"] == "P3" and "no scan exists" in scan["summary"] and "scan on push" in scan["summary"]
    op = vulnerabilities()
    outside = list(op._scan(RunningImage("docker.io/library/nginx:1.27", None, "task definition", {"proxy"}), []))
    assert [(f.check, f.severity) for f in outside] == [("vulnerabilities.scan", "P4")]
    del world


# -- capacity planning ---------------------------------------------------------------------------------
def capacity(services=None, **overrides):
    return CapacityPlanningOperator(
        task_id="capacity_planning", cluster=CONFIG.resources.ecs.cluster,
        services=services or CONFIG.resources.ecs.services, db_instance_identifier=CONFIG.resources.rds.instance_id,
        cache_cluster_id=CONFIG.resources.elasticache.cluster_id,
        thresholds=CONFIG.checks.capacity.model_copy(update=overrides), bucket=CONFIG.reports.bucket,
        reports_prefix=CONFIG.reports.prefix)


def chart(world, measured, name):
    entry = next(c for c in measured["charts"] if c["key"].endswith(f"/charts/{name}.png"))
    body = world._client("s3").get_object(Bucket=CONFIG.reports.bucket, Key=entry["key"])["Body"].read()
    return entry, Image.open(io.BytesIO(body))


def colours(image):
    return {"#{:02x}{:02x}{:02x}".format(*pixel[:3]) for _, pixel in image.convert("RGB").getcolors(1 << 20)}


def test_capacity_healthy_with_a_chart_per_metric(world_with):
    world = world_with()
    findings, error, measured = run(capacity())
    assert error is None and not problems(findings)
    assert len(findings) == 7 and {f["status"] for f in findings} == {"ok"}
    assert len(measured["charts"]) == 7
    entry, image = chart(world, measured, "capacity-rds_free_storage")
    assert entry["key"] == "reports/daily_maintenance/by-logical-date/2026-11-20T0200Z/charts/capacity-rds_free_storage.png"
    assert image.format == "PNG" and image.size == (800, 360)
    assert image.info["Series"] == "daily peak; trend; limit" and "RDS free storage" in image.info["Title"]
    assert {SERIES_COLOURS[0], SERIES_COLOURS[1], LIMIT_COLOUR} <= colours(image)
    rows = {row[0]: row for row in measured["tables"]["Trends (daily peaks)"]["rows"]}
    assert rows["RDS free storage"][1] == 28  # four weeks of daily values, hourly before the 5-minute week
    assert rows["solemate-backend running tasks"][-1] in ("not on this trend", "not within 90 days")


def test_growing_task_count_reaches_the_service_maximum_within_30_days_p3(world_with):
    world = world_with("capacity_growth")
    findings, error, measured = run(capacity())
    assert error is None
    assert problems(findings) == {("capacity.ecs_tasks", "solemate-backend running tasks"): "P3"}
    tasks = by_check(findings, "capacity.ecs_tasks")[0]
    days = tasks["metrics"]["days_to_limit"]["value"]
    assert 10 < days < 25 and "limit 20 tasks" in tasks["summary"]
    _, image = chart(world, measured, "capacity-ecs_tasks_0")
    assert image.info["Series"] == "daily peak; trend; limit" and "running tasks" in image.info["Title"]


def test_capacity_says_when_history_is_short_or_missing(world_with):
    world_with()
    findings, _, _ = run(capacity(), anchor=ANCHOR - timedelta(days=33))  # ~3 days of data before it
    assert {f["status"] for f in findings} == {"skipped"}
    other = [EcsService(name="not-deployed", min_tasks=1, max_tasks=4)]
    findings, _, _ = run(capacity(services=other))
    missing = by_check(findings, "capacity.ecs_tasks")[0]
    assert missing["severity"] == "P4" and "Container Insights" in missing["summary"]


@pytest.mark.parametrize(("values", "limit", "direction", "expected"), [
    ([10, 10, 10, 10], 20, "up", None),  # flat: never
    ([10, 11, 12, 13], 20, "up", 7.0),   # +1/day from 13
    ([10, 20, 30, 25], 20, "up", 0.0),   # already above: no time left
    ([50, 45, 40, 35], 10, "down", 5.0),
    ([50, 51, 52, 53], 10, "down", None),
])
def test_fit_trend(values, limit, direction, expected):
    trend = fit_trend(list(enumerate(map(float, values))), limit, direction)
    if expected is None:
        assert trend.days_to_limit is None
    else:
        assert trend.days_to_limit == pytest.approx(expected, abs=0.01)


def test_young_statistics_do_not_call_an_index_unused_and_a_blind_role_is_said(world_with, platform_db):
    world_with("database_bloat")
    findings, _, _ = run(database())  # 30 days of statistics needed; the embedded server is minutes old
    [unused] = by_check(findings, "db.unused_index")
    assert unused["status"] == "skipped" and "statistics only cover 0 days" in unused["summary"]
    platform_db.execute("REVOKE pg_monitor FROM maintenance_ro;")
    try:
        findings, _, _ = run(database())
    finally:
        platform_db.execute("GRANT pg_monitor TO maintenance_ro;")
    assert not by_check(findings, "db.connections") and not by_check(findings, "db.long_transaction")
    blind = by_check(findings, "db.monitoring_role")[0]
    assert blind["severity"] == "P3" and "GRANT pg_monitor" in blind["summary"]


def test_statement_literals_never_reach_the_report(platform_db):
    platform_db.stand_in_pg_stat_statements([(7, "ALTER ROLE app PASSWORD 'hunter2-secret'", 3, 900.0)])
    holder = psycopg2.connect(**{**_ro(platform_db), "application_name": "solemate-backend"})
    try:
        holder.cursor().execute("SELECT 'card 4111111111111111' FROM orders LIMIT 1")
        findings, _, measured = run(database(long_transaction_minutes=Upper(warning=0, critical=60)))
    finally:
        holder.close()
    text = json.dumps(findings) + json.dumps(measured)
    assert "hunter2-secret" not in text and "4111111111111111" not in text
    assert "ALTER ROLE app PASSWORD '?'" in text and "SELECT '?' FROM orders" in text
