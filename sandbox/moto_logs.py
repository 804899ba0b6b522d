"""CloudWatch Logs Insights closer to AWS in the sandbox's moto.

moto 5.2.5 parses only ``fields``, ``sort`` and ``limit``, ignores ``filter``, does not discover the
fields of JSON log lines, and completes every query at once. AWS discovers JSON fields, applies the
filter, reports ``statistics.recordsMatched``, and answers ``Running`` until the query is done.
This adds the subset our queries use: JSON field discovery, ``filter <field> in [...]`` and
``filter <field> = "value"``, statistics, and one ``Running`` answer before ``Complete``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moto.logs import models as logs_models
from moto.logs.logs_query.query_parser import parse_query

_FILTER_IN = re.compile(r'filter\s+([\w.@]+)\s+in\s+\[([^\]]*)\]')
_FILTER_EQ = re.compile(r'filter\s+([\w.@]+)\s*=\s*("(?:[^"\\]|\\.)*"|\S+)')


def _filters(query: str) -> list[tuple[str, set[str]]]:
    found = [(field, {json.loads(v.strip()) if v.strip().startswith('"') else v.strip()
                      for v in values.split(",") if v.strip()}) for field, values in _FILTER_IN.findall(query)]
    found += [(field, {json.loads(v) if v.startswith('"') else v}) for field, v in _FILTER_EQ.findall(query)]
    return found


def _event_fields(event: Any, stream: Any, group: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"@ptr": event.event_id, "@timestamp": event.timestamp, "@message": event.message,
                              "@logStream": stream.log_stream_name, "@log": group.name}
    try:
        parsed = json.loads(event.message)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        fields.update({k: v for k, v in parsed.items() if not isinstance(v, dict | list)})
    return fields


def execute_query(log_groups: list[Any], query: str, start_time: int, end_time: int) -> list[dict[str, Any]]:
    parsed = parse_query(query)
    filters = _filters(query)
    rows = []
    for group in log_groups:
        for stream in group.streams.values():
            for event in stream.events:
                if start_time and event.timestamp < start_time * 1000 or end_time and event.timestamp > end_time * 1000:
                    continue
                fields = _event_fields(event, stream, group)
                if all(str(fields.get(field)) in values for field, values in filters):
                    rows.append(fields)
    rows.sort(key=lambda f: f["@timestamp"], reverse=parsed.sort_reversed())
    matched = len(rows)
    if parsed.limit:
        rows = rows[:parsed.limit]
    wanted = [f for f in parsed.fields if f] or ["@timestamp", "@message"]
    results = [{"@ptr": r["@ptr"], **{f: r[f] for f in wanted if f in r}} for r in rows]
    execute_query.last_matched = matched  # type: ignore[attr-defined]
    return results


_original_init = logs_models.LogQuery.__init__


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self.records_matched = getattr(execute_query, "last_matched", len(self.results))
    self.polled = 0


def _to_result_json(self: Any) -> dict[str, Any]:
    # The first poll finds the query still running, as on AWS, so callers must poll.
    self.polled = getattr(self, "polled", 0) + 1
    if self.polled == 1 and self.status == "Complete":
        return {"results": [], "status": "Running", "statistics": {"recordsMatched": 0.0}}
    return {
        "results": [[{"field": key, "value": str(val)} for key, val in result.items()] for result in self.results],
        "status": self.status,
        "statistics": {"recordsMatched": float(getattr(self, "records_matched", len(self.results))),
                       "recordsScanned": float(getattr(self, "records_matched", len(self.results)))},
    }


def apply() -> None:
    logs_models.execute_query = execute_query  # type: ignore[attr-defined]
    logs_models.LogQuery.__init__ = _init  # type: ignore[method-assign]
    logs_models.LogQuery.to_result_json = _to_result_json  # type: ignore[method-assign]
