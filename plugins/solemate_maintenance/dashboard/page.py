"""The dashboard as one HTML page with inline SVG charts: no JavaScript, no files to serve, readable in
the Airflow UI's frame and on a phone. Every value from a report is escaped (resource names and
summaries come from AWS and from the platform)."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import urlsplit

from solemate_maintenance.dashboard.data import SEVERITIES, DagStatus, Dashboard, TrendPoint, _number
from solemate_maintenance.redaction import trim

STATE_COLOURS = {"passed": "#1a7f37", "problems": "#9a6700", "failed": "#cf222e", "no report yet": "#6e7781",
                 "unreadable": "#cf222e"}
SEVERITY_COLOURS = {"P1": "#cf222e", "P2": "#e16f24", "P3": "#9a6700", "P4": "#6e7781"}
VERDICT_COLOURS = {"met": "#1a7f37", "missed": "#cf222e"}
SERIES_COLOURS = ("#0969da", "#8250df", "#1a7f37")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2328; }
h1 { font-size: 1.4rem; margin-bottom: 0.2rem; } h2 { font-size: 1.1rem; margin-top: 1.8rem; }
.muted { color: #6e7781; font-size: 0.85rem; }
table { border-collapse: collapse; margin-top: 0.5rem; } td, th { padding: 0.3rem 0.6rem; text-align: left;
  border-bottom: 1px solid #d0d7de; vertical-align: top; font-size: 0.9rem; }
.state { color: white; padding: 0.1rem 0.5rem; border-radius: 0.6rem; font-size: 0.8rem; white-space: nowrap; }
.sev { font-weight: 600; } .finding { font-size: 0.85rem; } svg { margin-top: 0.5rem; }
"""


def _link(url: str | None, text: str) -> str:
    """A link only to a web address: a report is data, and a ``javascript:`` URL in one must not run."""
    if url and urlsplit(url).scheme in ("http", "https"):
        return f'<a href="{escape(url)}" target="_top">{escape(text)}</a>'
    return escape(text)


def _section(draw: Callable[..., str], *args: Any) -> str:
    """One odd value in one report costs its section, not the page."""
    try:
        return draw(*args)
    except Exception as exc:
        return (f'<p class="finding" style="color:#cf222e">This section could not be drawn '
                f'({escape(type(exc).__name__)}).</p>')


def _state(state: str) -> str:
    return f'<span class="state" style="background:{STATE_COLOURS.get(state, "#6e7781")}">{escape(state)}</span>'


def _dag_row(status: DagStatus) -> str:
    report = status.report
    counts = " ".join(f'<span class="sev" style="color:{SEVERITY_COLOURS[s]}">{s}&nbsp;{n}</span>'
                      for s, n in status.open_by_severity.items() if n) or "none"
    findings = "".join(
        f'<div class="finding"><span class="sev" style="color:{SEVERITY_COLOURS.get(sev, "#6e7781")}">'
        f'[{escape(sev)}]</span> {escape(f.check)} {escape(f.resource)}: {escape(f.summary)}</div>'
        for f in status.top_findings for sev in [f.severity.value if f.severity else "-"])
    when = escape(report.logical_date or report.run_id) if report else ""
    link = _link(report.airflow_url, report.run_id) if report else ""
    error = f'<div class="finding">{escape(status.error)}</div>' if status.error else ""
    return (f"<tr><td><b>{escape(status.dag_id)}</b></td><td>{_state(status.state)}</td><td>{when}<br>"
            f'<span class="muted">{link}</span></td><td>{counts}</td><td>{findings}{error}</td></tr>')


def line_chart(title: str, points: list[TrendPoint], series: dict[str, str], targets: dict[str, Any],
               unit: str, width: int = 640, height: int = 220) -> str:
    """A line per series (with its target as a dashed line); x = the runs in order."""
    values = [v for p in points for k in series if (v := p.values.get(k)) is not None]
    values += [t for k in series if (t := targets.get(k)) is not None]
    if not points or not values:
        return f'<p class="muted">{escape(title)}: no measurements yet.</p>'
    left, right, top, bottom = 50, 50, 30, 40  # room for the last date label
    top_value = max(values) * 1.15 or 1.0
    step = (width - left - right) / max(len(points) - 1, 1)

    def x(index: int) -> float:
        return left + index * step

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - value / top_value)

    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<text x="{left}" y="18" font-size="13" font-weight="600">{escape(title)}</text>',
             f'<line x1="{left}" y1="{y(0)}" x2="{width - right}" y2="{y(0)}" stroke="#d0d7de"/>',
             f'<text x="{left - 6}" y="{y(top_value) + 4}" font-size="10" text-anchor="end">'
             f'{top_value:.0f} {escape(unit)}</text>',
             f'<text x="{left - 6}" y="{y(0) + 4}" font-size="10" text-anchor="end">0</text>']
    for index, point in enumerate(points):
        parts.append(f'<text x="{x(index)}" y="{height - bottom + 16}" font-size="10" text-anchor="middle">'
                     f'{escape(point.label)}</text>')
    for key, colour in zip(series, SERIES_COLOURS, strict=False):
        if (target := targets.get(key)) is not None:
            parts.append(f'<line x1="{left}" y1="{y(target)}" x2="{width - right}" y2="{y(target)}" '
                         f'stroke="{colour}" stroke-dasharray="4 3" opacity="0.6"/>')
        coordinates = [(x(i), y(v)) for i, p in enumerate(points) if (v := p.values.get(key)) is not None]
        if coordinates:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coordinates)
            parts.append(f'<polyline class="series" data-series="{escape(key)}" points="{path}" fill="none" '
                         f'stroke="{colour}" stroke-width="2"/>')
            parts += [f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}"/>' for cx, cy in coordinates]
    legend_x = left
    for (key, label), colour in zip(series.items(), SERIES_COLOURS, strict=False):
        target = targets.get(key)
        text = f"{label}" + (f" (target {target:g})" if target is not None else "")
        parts.append(f'<rect x="{legend_x}" y="{height - 14}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="{height - 5}" font-size="11">{escape(text)}</text>')
        legend_x += 14 + 7 * len(text) + 20
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, points: list[TrendPoint], key: str, unit: str, width: int = 640, height: int = 220) -> str:
    values = [v for p in points if (v := p.values.get(key)) is not None]
    if not values:
        return f'<p class="muted">{escape(title)}: no measurements yet.</p>'
    left, right, top, bottom = 60, 20, 30, 30
    top_value = max(values) * 1.15 or 1.0
    slot = (width - left - right) / len(points)
    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<text x="{left}" y="18" font-size="13" font-weight="600">{escape(title)}</text>']
    for index, point in enumerate(points):
        value = point.values.get(key)
        if value is None:
            continue
        bar = (height - top - bottom) * value / top_value
        x = left + index * slot + slot * 0.15
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{height - bottom - bar:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{bar:.1f}" fill="{SERIES_COLOURS[0]}"><title>{escape(point.label)}: '
                     f'{escape(unit)}{value:,.2f}</title></rect>'
                     f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom + 14}" font-size="10" '
                     f'text-anchor="middle">{escape(point.label)}</text>'
                     f'<text x="{x + slot * 0.35:.1f}" y="{height - bottom - bar - 4:.1f}" font-size="10" '
                     f'text-anchor="middle">{escape(unit)}{value:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _drill_table(board: Dashboard) -> str:
    if not board.drill:
        return '<p class="muted">No DR drill report yet: trigger dr_drill.</p>'

    def number(value: Any, decimals: int = 1) -> str:
        drawn = _number(value)
        if drawn is not None:
            return f"{drawn:.{decimals}f}"
        if isinstance(value, float | int) and not isinstance(value, bool):
            return "—"  # NaN, infinity, or an integer no float can hold: not a measurement
        return "—" if value is None else escape(trim(str(value), 40))

    rows = "".join(_section(_drill_row, r, number) for r in board.drill)
    run = board.drill_run
    return (f'<p class="muted">Drill {escape(run.run_id)} ({escape(run.logical_date or "")}) against the '
            f"guide's targets, minutes.</p><table><tr><th>component</th><th>RTO target</th><th>RTO</th>"
            f"<th>RPO target</th><th>RPO</th><th>verdict</th></tr>{rows}</table>")


def _drill_row(r: dict[str, Any], number: Callable[..., str]) -> str:
    return "".join(
        f"<tr><td>{escape(str(r.get('component')))}</td><td>{number(r.get('rto_target_minutes'), 0)}</td>"
        f"<td>{number(r.get('rto_minutes'))}</td><td>{number(r.get('rpo_target_minutes'), 0)}</td>"
        f"<td>{number(r.get('rpo_minutes'))}</td><td><b style=\"color:"
        f"{VERDICT_COLOURS.get(str(r.get('verdict')), '#6e7781')}\">{escape(str(r.get('verdict')))}</b></td></tr>")


def render(board: Dashboard) -> str:
    rows = "".join(_section(_dag_row, status) for status in board.dags)
    restore = _section(line_chart, "Restore test: RTO and data RPO (minutes)", board.restore_trend,
                       {"rto_minutes": "RTO", "data_rpo_minutes": "data RPO"}, board.restore_targets, "min")
    cost = _section(bar_chart, "Monthly cost (USD)", board.cost_trend, "total_usd", "$")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>SoleMate maintenance: {escape(board.environment)}</title><style>{STYLE}</style></head>
<body>
<h1>SoleMate maintenance: {escape(board.environment)}</h1>
<div class="muted">From the latest run reports in the reports bucket, {board.generated_at:%Y-%m-%d %H:%M} UTC.
Open findings by severity ({", ".join(SEVERITIES)}); a run fails on P1 and P2.</div>
{"".join(f'<p class="finding" style="color:#cf222e">{escape(e)}</p>' for e in board.errors)}
<h2>Latest run per DAG</h2>
<table><tr><th>DAG</th><th>state</th><th>checked</th><th>open findings</th><th>what to look at first</th></tr>
{rows}</table>
<h2>Restore tests</h2>{restore}
<h2>DR drill</h2>{_section(_drill_table, board)}
<h2>Cost</h2>{cost}
</body></html>"""
