"""The /stats chart: messages sent per hour by delivery lane, and publication → alert time
(half within, 95 % within) per hour, over the last 24 hours, as one PNG.

`hourly_series` builds the figures from the hourly counters (storage.counters) and nothing
else; `draw_png` draws them with matplotlib's Agg renderer (no display, no pyplot state),
imported only when a chart is drawn, and slow enough (tens of milliseconds, a second or two
the first time) to be run off the event loop (bot.newsroom). Anything that goes wrong
drawing raises: the caller sends the figures as text instead.

Every word on the chart comes in `ChartLabels`, already written in the admin's language by
the caller (bot.commands.admin.chart_labels): the drawing thread translates nothing.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from storage.counters import HOUR, LATENCY_BUCKETS, Figures, lane_sent
from storage.outbox import LANE_NAMES, LANES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HOURS = 24
# The lanes' colours, bottom of the stack first (colour-blind safe, Okabe–Ito).
COLOURS = {"broadcasts": "#E69F00", "personal": "#0072B2", "sections": "#56B4E9", "corrections": "#999999"}
SIZE = (8.0, 5.0)  # inches
DPI = 100


@dataclass(frozen=True, slots=True)
class ChartLabels:
    """The chart's words: its title, axis labels, legend and the units of its duration axis
    (formats with `{n}`: seconds, minutes, hours, days)."""

    title: str
    sent: str = "messages sent"
    half: str = "half within"
    most: str = "95 % within"
    nothing: str = "no alerts sent"
    latency: str = "publication → alert"
    lanes: Mapping[str, str] = field(default_factory=dict)  # lane name → its label
    units: tuple[str, str, str, str] = ("{n} s", "{n} min", "{n} h", "{n} d")


@dataclass(frozen=True, slots=True)
class HourlySeries:
    """One value per hour, oldest hour first; `hours` are epoch seconds // 3600."""

    hours: tuple[int, ...]
    sent: dict[str, tuple[int, ...]]  # lane name → messages sent in each hour
    p50: tuple[float | None, ...]  # seconds within which half the hour's alerts arrived
    p95: tuple[float | None, ...]

    @property
    def total_sent(self) -> int:
        return sum(sum(counts) for counts in self.sent.values())


def hourly_series(by_hour: Mapping[int, Figures], now: float, hours: int = HOURS) -> HourlySeries:
    """The last `hours` hours, the one holding `now` included; hours without a row are 0
    sent and no latency."""
    last = int(now // HOUR)
    span = tuple(range(last - hours + 1, last + 1))
    empty = Figures({})
    rows = [by_hour.get(hour, empty) for hour in span]
    return HourlySeries(
        hours=span,
        sent={LANE_NAMES[lane]: tuple(r.get(lane_sent(LANE_NAMES[lane])) for r in rows) for lane in LANES},
        p50=tuple(r.latency_percentile(0.50) for r in rows),
        p95=tuple(r.latency_percentile(0.95) for r in rows),
    )


def _duration_label(seconds: float, units: tuple[str, str, str, str]) -> str:
    second, minute, hour, day = units
    if seconds < 60:
        return second.format(n=f"{seconds:g}")
    if seconds < 3600:
        return minute.format(n=f"{seconds / 60:g}")
    if seconds < 86400:
        return hour.format(n=f"{seconds / 3600:g}")
    return day.format(n=f"{seconds / 86400:g}")


def draw_png(series: HourlySeries, *, labels: ChartLabels, zone: ZoneInfo, font: Path | None = None) -> bytes:
    """Two panels sharing the hours (in `zone`): stacked bars of messages sent per lane, and
    the hour's publication → alert time, half and 95 % within (log scale). `font`: a font
    file for every text of the chart (matplotlib's own DejaVu Sans otherwise)."""
    figure = _figure(series, labels, zone, font)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def chart_texts(series: HourlySeries, *, labels: ChartLabels, zone: ZoneInfo) -> list[str]:
    """Every text the chart shows (title, axes, legend, ticks), as drawn."""
    figure = _figure(series, labels, zone, None)
    from matplotlib.text import Text

    figure.canvas.draw()
    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def _figure(series: HourlySeries, labels: ChartLabels, zone: ZoneInfo, font: Path | None) -> Figure:
    # matplotlib writes its font cache at first import: never into the operator's $HOME.
    os.environ.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "newsbot-matplotlib"))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.text import Text
    from matplotlib.ticker import NullFormatter

    figure = Figure(figsize=SIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    x = list(range(len(series.hours)))

    base = [0] * len(x)
    for lane, counts in series.sent.items():
        top.bar(x, counts, bottom=base, width=0.8, label=labels.lanes.get(lane, lane), color=COLOURS.get(lane))
        base = [b + c for b, c in zip(base, counts, strict=True)]
    top.set_ylabel(labels.sent)
    top.set_ylim(0, max(max(base, default=0), 1) * 1.15)
    top.legend(loc="upper left", ncols=4, fontsize=8, frameon=False)
    top.grid(axis="y", alpha=0.3)

    known = [v for v in (*series.p50, *series.p95) if v is not None]
    if known:
        for values, label, colour in ((series.p50, labels.half, "#009E73"), (series.p95, labels.most, "#D55E00")):
            bottom.plot(x, [float("nan") if v is None else v for v in values], marker="o", markersize=3,
                        label=label, color=colour)
        bottom.set_yscale("log")
        ticks = [b for b in LATENCY_BUCKETS if min(known) / 3 <= b <= max(known) * 3]
        bottom.set_yticks(ticks, [_duration_label(t, labels.units) for t in ticks])
        bottom.yaxis.set_minor_formatter(NullFormatter())
        bottom.set_ylim(min(known) / 2, max(known) * 2)
        bottom.legend(loc="upper left", ncols=2, fontsize=8, frameon=False)
    else:
        bottom.set_yticks([])
        bottom.text(0.5, 0.5, labels.nothing, ha="center", va="center", transform=bottom.transAxes)
    bottom.set_ylabel(labels.latency)
    bottom.grid(axis="y", alpha=0.3)

    hours = [dt.datetime.fromtimestamp(h * HOUR, zone).strftime("%H:00") for h in series.hours]
    bottom.set_xticks(x[::3], hours[::3])
    bottom.set_xlim(-0.6, len(x) - 0.4)
    figure.suptitle(labels.title)
    if font is not None:
        for text in figure.findobj(Text):
            prop = FontProperties(fname=str(font), size=text.get_fontsize())
            text.set_fontproperties(prop)
    figure.subplots_adjust(left=0.1, right=0.98, top=0.92, bottom=0.08, hspace=0.08)
    return figure
