"""The maintenance dashboard inside the running Airflow (plugins/solemate_dashboard.py), after the
end-to-end runs have filled the reports bucket: behind Airflow's authentication, listed in the UI's
navigation, and rendered by a real headless Chromium as a person sees it. The screenshot is kept in
test-artifacts/dashboard.png."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from tests.browser import Browser

pytestmark = [pytest.mark.e2e, pytest.mark.after_the_runs, pytest.mark.timeout(600)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_the_dashboard_needs_an_airflow_login(standalone):
    page = requests.get(f"{standalone.api_url}/solemate/", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 401 and "/auth/login?next=/solemate/" in unquote(page.text)
    forged = requests.get(f"{standalone.api_url}/solemate/api/summary", timeout=30,
                          headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code in (401, 403)


def test_the_ui_lists_the_dashboard_in_its_navigation(standalone):
    plugins = standalone.api("GET", "/plugins", None)["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "solemate_dashboard"]
    [view] = plugin["external_views"]
    assert view["href"] == "/solemate/" and view["destination"] == "nav" and view["category"] == "browse"
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == ["/solemate"]


def test_the_summary_is_what_the_runs_wrote(standalone):
    summary = requests.get(f"{standalone.api_url}/solemate/api/summary", timeout=60,
                           headers={"Authorization": f"Bearer {standalone.token}"}).json()
    dags = {d["dag_id"]: d for d in summary["dags"]}
    s3 = standalone.sandbox.client("s3")
    config = standalone.sandbox.config
    for dag_id in ("daily_maintenance", "dr_drill", "monthly_review"):
        latest = s3.get_object(Bucket=config.reports.bucket, Key=f"{config.reports.prefix}/{dag_id}/latest.json")
        assert dags[dag_id]["run_id"] == json.loads(latest["Body"].read())["run_id"], dag_id
    assert dags["weekly_review"]["state"] == "no report yet"  # only run by dag.test, in its own sandbox
    assert {row["component"] for row in summary["drill"]} >= {"Database", "Application"}
    assert summary["restore_trend"] and summary["restore_trend"][-1]["rto_minutes"] is not None
    assert len(summary["cost_trend"]) == 3 and summary["errors"] == []


def test_a_person_sees_the_dashboard_in_a_real_browser(standalone, tmp_path):
    summary = requests.get(f"{standalone.api_url}/solemate/api/summary", timeout=60,
                           headers={"Authorization": f"Bearer {standalone.token}"}).json()
    # The first finding the page lists (the daily run triggered through the REST API has one).
    first = next(f for d in summary["dags"] for f in d["findings"])
    browser = Browser(tmp_path / "chromium-profile")
    try:
        # Logged in as the UI is: Airflow's session cookie carries the token.
        browser.set_cookie(standalone.api_url, "_token", standalone.token)
        assert browser.open(f"{standalone.api_url}/solemate/") == 200
        screenshot = browser.screenshot(ARTIFACTS / "dashboard.png")
        assert browser.evaluate("document.title") == "SoleMate maintenance: production"
        text = browser.evaluate("document.body.innerText")
        assert f"[{first['severity']}] {first['check']} {first['resource']}" in text
        charts = browser.evaluate("""[...document.querySelectorAll('svg[role=img]')].map(svg => {
            const box = svg.getBoundingClientRect();
            return [svg.getAttribute('aria-label'), Math.round(box.width), Math.round(box.height),
                    svg.querySelectorAll('polyline.series, rect.bar').length]; })""")
        drawn = {label: (width, height, marks) for label, width, height, marks in charts}
        restore = drawn["Restore test: RTO and data RPO (minutes)"]
        cost = drawn["Monthly cost (USD)"]
        assert restore[0] > 300 and restore[1] > 100 and restore[2] >= 1
        assert cost[0] > 300 and cost[2] == 3
        (ARTIFACTS / "browser.txt").write_text(f"{browser.version}\n")
    finally:
        browser.close()
    assert screenshot.stat().st_size > 10_000
    # Without the cookie the same browser is asked to log in, never shown the data.
    anonymous = Browser(tmp_path / "anonymous-profile")
    try:
        assert anonymous.open(f"{standalone.api_url}/solemate/") == 401
        assert "Log in to Airflow first." in anonymous.evaluate("document.body.innerText")
    finally:
        anonymous.close()
