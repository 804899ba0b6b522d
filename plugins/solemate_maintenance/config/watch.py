"""The `watch` section: the continuous watch (performance every 15 minutes, the database hourly) and
the incident record every DAG shares."""

from __future__ import annotations

from pydantic import Field

from solemate_maintenance.config.base import Lower, Minutes, Percent, PositiveSeconds, SeverityName, Upper, _Strict


class PerformanceWatch(_Strict):
    """`performance_watch`: the guide's "automated performance analysis every 15 minutes".

    Thresholds are the daily checks' (`checks.rds`, `checks.ecs`, `checks.elasticache`,
    `checks.business`, `kpis`); what is only the watch's is here."""

    # The schedule's interval: a watch judges the time since the previous successful one.
    interval_minutes: int = Field(default=15, ge=5, le=60)
    # After a scheduler outage the first watch reaches back this far at most (and says the rest of
    # the gap was not watched): CloudWatch keeps 1-minute data 15 days, but a day of it is one call.
    max_window_minutes: Minutes = 240
    # Every datapoint of this length is judged on its own: a 10-minute outage is not averaged away.
    period_seconds: PositiveSeconds = 300
    # An ALB answering this share of requests with 5xx counts as "application unavailable" (P1).
    unavailable_error_rate_percent: Percent = 50
    # RDS FreeableMemory (MiB): low memory means swapping and a database about to slow down.
    freeable_memory_mb: Lower = Lower(warning=1024, critical=256)


class DatabaseWatch(_Strict):
    """`database_watch`: the guide's "database optimization recommendations hourly" (read-only SQL)."""

    # How many statements the finding names, of those whose time or calls grew most in the hour.
    top_statements: int = Field(default=5, ge=1, le=50)
    # A statement whose mean time grew by this much since the previous hour is a finding (P3).
    mean_time_growth_percent: float = Field(default=50, gt=0)
    # ...and at least this slow on average (ms): a 0.1 ms query doubling is not news.
    min_mean_ms: float = Field(default=100, ge=0)
    # Its findings are recommendations: a statement regression (P3) is announced once, as an incident.
    open_severity: SeverityName = "P3"
    # Sessions waiting on a lock this long (seconds): P3 at warning, P2 at critical. Connections per
    # service and long transactions use the weekly review's thresholds (`checks.database`).
    lock_wait_seconds: Upper = Upper(warning=30, critical=300)


class Watch(_Strict):
    performance: PerformanceWatch = PerformanceWatch()
    database: DatabaseWatch = DatabaseWatch()
    # Incidents open for problems at this severity or worse; milder ones stay in the watch's report.
    open_severity: SeverityName = "P2"
    # An open incident is re-announced at most this often ("open for 2 h 15 min").
    reminder_hours: float = Field(default=4, gt=0, le=24 * 7)
    # One small object per environment: <reports.prefix>/<state_prefix>/<environment>.json.
    state_prefix: str = Field(default="incidents", pattern=r"^[A-Za-z0-9._-]+$")
    # Resolved incidents are kept this long in the record (the daily digest, the reviews, MTTR).
    keep_resolved_days: int = Field(default=45, ge=1, le=400)
