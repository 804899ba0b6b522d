"""Run a CloudWatch Logs Insights query to completion: start, poll, follow the result pages."""

from __future__ import annotations

import logging
import time
from typing import Any

from solemate_maintenance.window import TimeWindow

QUERY_DONE = {"Complete", "Failed", "Cancelled", "Timeout", "Unknown"}
log = logging.getLogger(__name__)


class LogsInsightsQueryError(RuntimeError):
    """The query ended Failed, Cancelled, Timeout or Unknown, or did not finish in time (retryable)."""


def run_insights_query(logs: Any, *, log_group: str, window: TimeWindow, query: str, max_rows: int,
                       timeout_seconds: float, poll_seconds: float,
                       timeout_setting: str) -> tuple[list[dict[str, str]], int | None]:
    """The rows (field -> value) and the records matched. A query still running after
    `timeout_seconds` is stopped; the error names `timeout_setting`, the config key to raise."""
    query_id = logs.start_query(logGroupName=log_group, queryString=query, startTime=int(window.start.timestamp()),
                                endTime=int(window.end.timestamp()), limit=max_rows)["queryId"]
    deadline = time.monotonic() + timeout_seconds
    while True:
        response = logs.get_query_results(queryId=query_id)
        status = response["status"]
        if status == "Complete":
            rows = [{f["field"]: f.get("value", "") for f in row} for row in response.get("results", [])]
            matched = response.get("statistics", {}).get("recordsMatched")
            while response.get("nextToken"):  # large results come in pages of up to 10,000 rows
                response = logs.get_query_results(queryId=query_id, nextToken=response["nextToken"])
                rows += [{f["field"]: f.get("value", "") for f in row} for row in response.get("results", [])]
            return rows, int(matched) if matched is not None else None
        if status in QUERY_DONE:
            raise LogsInsightsQueryError(f"Logs Insights query {query_id} on {log_group} ended {status}")
        if time.monotonic() > deadline:
            try:
                logs.stop_query(queryId=query_id)
            except Exception:  # noqa: BLE001 - already finished, or not stoppable: the error below says it
                log.warning("could not stop query %s", query_id)
            raise LogsInsightsQueryError(f"Logs Insights query {query_id} on {log_group} still {status} after "
                                         f"{timeout_seconds:g} s ({timeout_setting})")
        time.sleep(poll_seconds)
