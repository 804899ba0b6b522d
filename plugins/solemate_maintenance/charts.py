"""Charts for the reports: PNG line charts, stored next to the report they belong to.

Each PNG names its series in its metadata (``Series``), so a reader (or a test) can tell what it
plots without looking at pixels. matplotlib is imported only when a chart is drawn.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from solemate_maintenance.report_store import ReportStore

# Colours a person can tell apart, and a test can find in the pixels.
SERIES_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
LIMIT_COLOUR = "#d62728"


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[datetime, float]]
    style: Literal["line", "dashed", "bar"] = "line"


@dataclass(frozen=True)
class Chart:
    name: str  # file name without .png: letters, digits, - and _
    title: str
    unit: str
    series: list[Series]
    limit: float | None = None
    limit_label: str = "limit"
    notes: dict[str, str] = field(default_factory=dict)

    def render(self) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 3.6), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.subplots()
        for colour, series in zip(SERIES_COLOURS, self.series, strict=False):
            xs, ys = [p[0] for p in series.points], [p[1] for p in series.points]
            if series.style == "bar":
                axes.bar(xs, ys, color=colour, label=series.name, width=0.8)
            else:
                axes.plot(xs, ys, color=colour, label=series.name, linewidth=2,
                          linestyle="--" if series.style == "dashed" else "-",
                          marker="o" if series.style == "line" and len(xs) < 40 else None,
                          markersize=3)
        if self.limit is not None:
            axes.axhline(self.limit, color=LIMIT_COLOUR, linestyle=":", linewidth=2,
                         label=f"{self.limit_label} ({self.limit:g} {self.unit})".strip())
        axes.set_title(self.title, fontsize=11)
        axes.set_ylabel(self.unit)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="best")
        figure.autofmt_xdate()
        figure.tight_layout()
        buffer = io.BytesIO()
        names = [s.name for s in self.series] + ([self.limit_label] if self.limit is not None else [])
        figure.savefig(buffer, format="png", metadata={"Title": self.title, "Series": "; ".join(names),
                                                        **self.notes})
        return buffer.getvalue()


def publish_charts(store: ReportStore, dag_id: str, logical_date: datetime,
                   charts: list[Chart]) -> list[dict[str, Any]]:
    """Render and upload each chart under the checked date's report folder (a re-run replaces them);
    returns what the report lists: title, key, s3 URI and a browser link."""
    published = []
    for chart in charts:
        key = store.date_key(dag_id, logical_date, f"charts/{chart.name}.png")
        store.s3.load_bytes(chart.render(), key=key, bucket_name=store.bucket, replace=True)
        published.append({"title": chart.title, "key": key, "uri": store.uri(key), "url": store.browse_url(key)})
    return published
