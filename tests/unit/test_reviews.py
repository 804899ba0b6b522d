"""The reviews' calendar (windows in the team's time zone, the Monday and Friday modes, which runs
were due) and their messages' shape. Fixed dates: the calendar is the thing under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from solemate_maintenance.config import load_config
from solemate_maintenance.operators.reviews.day import Line, Review, Section, render_html, render_slack, review_window
from solemate_maintenance.schedules import scheduled_dags
from solemate_maintenance.window import TimeWindow

SHIPPED = load_config()


def config(**reviews):
    return SHIPPED.model_copy(update={"reviews": SHIPPED.reviews.model_copy(update=reviews)})


BERLIN = config(timezone="Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("kind", "fire", "start", "mode"), [
    # Tuesday 09:00 CET: since Monday's 18:00 CET.
    ("morning", "2026-12-01T08:00", "2026-11-30T17:00", ""),
    # Monday: since Friday's evening review, the weekend included.
    ("morning", "2026-11-30T08:00", "2026-11-27T17:00", "monday"),
    # The Monday after summer time began (29 March): Friday 18:00 CET is 17:00 UTC, Monday 09:00 CEST 07:00 UTC.
    ("morning", "2026-03-30T07:00", "2026-03-27T17:00", "monday"),
    # Evening: the team's day from local midnight; Friday is the week's roll-up.
    ("evening", "2026-12-04T17:00", "2026-12-03T23:00", "friday"),
    ("evening", "2026-07-07T16:00", "2026-07-06T22:00", ""),
    # New Year's Day on a Friday (2027): the window does not care about the year turning.
    ("evening", "2027-01-01T17:00", "2026-12-31T23:00", "friday"),
])
def test_review_windows_in_the_team_time_zone(kind, fire, start, mode):
    window, found_mode = review_window(kind, utc(fire), BERLIN)
    assert (window.start, window.end, found_mode) == (utc(start), utc(fire), mode)


def test_a_team_reviewing_every_day_has_no_weekend_roll_up():
    # Saturday's and Sunday's reviews happened: Monday's morning covers Sunday night only.
    window, mode = review_window("morning", utc("2026-11-30T09:00"), config(days="every-day"))
    assert mode == "" and window.start == utc("2026-11-29T18:00")
    sunday, mode = review_window("morning", utc("2026-11-29T09:00"), config(days="every-day"))
    assert mode == "" and sunday.start == utc("2026-11-28T18:00")


def test_the_schedules_say_which_runs_were_due():
    dags = scheduled_dags(BERLIN)
    # The reviews in Berlin time, Monday to Friday; the others in UTC.
    assert dags["morning_review"].fires(utc("2026-11-27T00:00"), utc("2026-12-01T00:00")) == [
        utc("2026-11-27T08:00"), utc("2026-11-30T08:00")]
    assert dags["daily_maintenance"].fires(utc("2026-12-04T02:00"), utc("2026-12-05T02:00")) == [utc("2026-12-04T02:00")]
    assert len(dags["performance_watch"].fires(utc("2026-12-04T00:00"), utc("2026-12-05T00:00"))) == 96
    # The monthly review due on 3 December reviews November: filed under its interval's start.
    monthly = dags["monthly_review"]
    [due] = monthly.fires(utc("2026-12-01T00:00"), utc("2026-12-31T00:00"))
    assert due == utc("2026-12-03T06:00") and monthly.logical_date(due) == utc("2026-11-03T06:00")
    assert "dr_failover" not in dags  # only a person starts a failover


def test_the_dag_files_use_the_same_schedules():
    from airflow.dag_processing.dagbag import DagBag

    from solemate_maintenance.config import REPO_ROOT

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    for dag_id, schedule in scheduled_dags(SHIPPED).items():
        timetable = bag.dags[dag_id].timetable
        assert (timetable.expression, str(timetable.timezone)) == (schedule.cron, schedule.timezone), dag_id


def test_the_slack_message_escapes_what_it_quotes_and_keeps_to_max_lines():
    hostile = Line("summary from a log line: <!channel> <https://evil.example|click> & co", "https://r.example/1")
    many = [Line(f"problem {n}", None, "P3") for n in range(12)]
    review = Review("evening", "", "Evening review", TimeWindow(utc("2026-12-04T00:00"), utc("2026-12-04T18:00")),
                    [Section("Monitoring health", [hostile, *many], "daily_maintenance")],
                    missing=["AWS Backup jobs: AccessDenied: not authorized"])
    text = render_slack(review, max_lines=5)
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text and "&lt;https://evil.example|click&gt; &amp; co" \
        in text
    assert "<https://r.example/1|report>" in text
    assert text.count("\n• ") == 5 + 1 + 1  # five lines, "and 8 more", one missing source
    assert "… and 8 more in the stored review" in text
    assert "*Not available for this review*\n• AWS Backup jobs: AccessDenied" in text
    page = render_html(review, max_lines=5)
    assert "&lt;!channel&gt;" in page and "<li>… and 8 more in the stored review</li>" in page


def test_an_hour_before_the_next_day_is_still_today():
    # 23:30 Berlin on a Thursday: the evening window is Thursday's, never Friday's (no Friday roll-up).
    window, mode = review_window("evening", utc("2026-12-03T22:30"), BERLIN)
    assert mode == "" and window.start == utc("2026-12-02T23:00") and window.end - window.start == timedelta(
        hours=23, minutes=30)


def test_the_evening_automation_window_reaches_back_to_the_previous_evening_review():
    from solemate_maintenance.operators.reviews.day import previous_evening_review

    new_york = config(timezone="America/New_York")
    # Monday 18:00 in New York (23:00 UTC): the Friday evening review before it, so the weekend's runs
    # (Sunday's airflow_housekeeping, the daily runs at 02:00 UTC) are all checked by someone.
    monday = utc("2026-11-30T23:00")
    start = previous_evening_review(monday, new_york)
    assert start == utc("2026-11-27T23:00")
    dags = scheduled_dags(new_york)
    assert dags["airflow_housekeeping"].fires(start, monday) == [utc("2026-11-29T05:00")]
    assert len(dags["daily_maintenance"].fires(start, monday)) == 3  # Saturday, Sunday and Monday 02:00 UTC


def test_a_retention_that_db_clean_would_undercut_is_refused_not_applied():
    from solemate_maintenance.operators.housekeeping.airflow_db import MetadataCleanupOperator

    settings = SHIPPED.airflow_housekeeping.model_copy(update={"retention_days": {"dag_run": 365, "xcom": 30}})
    cleanup = MetadataCleanupOperator(task_id="metadata_cleanup", settings=settings, bucket="b", reports_prefix="r")
    groups = cleanup._by_retention()
    # Cleaning dag_version (90 days) makes airflow db clean delete its dag_runs too, kept 365 days here.
    assert "dag_run" in cleanup._conflicts(90, groups[90])
    # A dependant kept shorter (xcom, 30 days) is only cleaned later than its own retention: no conflict.
    assert cleanup._conflicts(365, groups[365]) == []
