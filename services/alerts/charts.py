"""Evidence charts, drawn on the server as inline SVG (no script, no CDN, prints cleanly).

One chart shows an objective's metric per evaluation window against its threshold: the
threshold as a step line (it moves when a new objective version changes it, and the version
change is marked), breaching windows as red diamonds on a shaded band, a record's occurrences
ringed (withdrawn ones hollow, at the value they had), and windows whose verdict came from a
later revision labelled ``r<n>``. Pure functions of their inputs; the page adds a data table
with the same numbers for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

__all__ = [
    "COMPARATOR_SIGNS",
    "Annotation",
    "OccurrenceMark",
    "WindowPoint",
    "evidence_chart",
    "nice_ticks",
]

COMPARATOR_SIGNS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "eq": "=", "ne": "≠"}
"""How a comparator reads next to a threshold."""


@dataclass(frozen=True, slots=True)
class WindowPoint:
    """One evaluation window as the alerts service applied it (its latest revision)."""

    start: datetime
    end: datetime
    value: float | None
    threshold: float | None
    status: str
    """pass, breach, insufficient_data or error."""
    revision: int = 0
    objective_version: int | None = None


@dataclass(frozen=True, slots=True)
class OccurrenceMark:
    """One of a record's occurrences: the breaching window behind it and the value it had."""

    start: datetime
    value: float | None
    withdrawn: bool = False


@dataclass(frozen=True, slots=True)
class Annotation:
    """A moment marked with a vertical line (e.g. when the corrective actions were done)."""

    at: datetime
    label: str


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _number(value: float) -> str:
    return f"{value:.4g}"


def _when(at: datetime) -> str:
    return _utc(at).strftime("%Y-%m-%d %H:%M:%S UTC")


def _f(value: float) -> str:
    return f"{value:.1f}"


class _Scale:
    def __init__(self, low: float, high: float, out_low: float, out_high: float) -> None:
        self.low, self.high = low, high
        self.out_low, self.out_high = out_low, out_high

    def __call__(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return self.out_low + (value - self.low) / span * (self.out_high - self.out_low)


def _empty(chart_id: str, title: str, width: int, height: int) -> Markup:
    return Markup(
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}: no evaluations stored yet</title>'
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" class="empty">'
        "No evaluations stored for this objective yet</text></svg>"
    )


def evidence_chart(
    points: Sequence[WindowPoint],
    *,
    chart_id: str,
    title: str,
    metric: str,
    comparator: str,
    threshold: float | None = None,
    occurrences: Sequence[OccurrenceMark] = (),
    annotations: Sequence[Annotation] = (),
    width: int = 760,
    height: int = 260,
    compact: bool = False,
) -> Markup:
    """The SVG of ``metric`` per window against its threshold (``threshold`` for windows that
    did not store one). ``compact`` drops the legend and the time axis (small multiples)."""
    points = sorted(points, key=lambda p: _utc(p.start))
    if not points:
        return _empty(chart_id, title, width, height)
    left, right = (44, 8) if compact else (60, 16)
    top, bottom = (8, 10) if compact else (34, 40)
    starts = [_utc(p.start) for p in points]
    ends = [_utc(p.end) for p in points]
    t0, t1 = min(starts).timestamp(), max(ends).timestamp()
    x = _Scale(t0, t1 if t1 > t0 else t0 + 1, left, width - right)
    thresholds = [p.threshold if p.threshold is not None else threshold for p in points]
    marks = [(_utc(o.start), o) for o in occurrences]
    values = [p.value for p in points if p.value is not None]
    values += [t for t in thresholds if t is not None]
    values += [o.value for _s, o in marks if o.value is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.08 or abs(high) * 0.1 or 0.1
    ticks = nice_ticks(low - pad, high + pad, 3 if compact else 5)
    y = _Scale(ticks[0], ticks[-1], height - bottom, top)
    sign = COMPARATOR_SIGNS.get(comparator, comparator)

    def mid(p: WindowPoint) -> float:
        return (x(_utc(p.start).timestamp()) + x(_utc(p.end).timestamp())) / 2

    breaches = sum(1 for p in points if p.status == "breach")
    summary = (
        f"{metric} per window, {len(points)} windows from {_when(starts[0])} to "
        f"{_when(ends[-1])}; {breaches} breaching; threshold {sign} "
        + (", ".join(dict.fromkeys(_number(t) for t in thresholds if t is not None)) or "unknown")
    )
    if occurrences:
        summary += f"; {sum(1 for o in occurrences if not o.withdrawn)} occurrence(s) of the record"
    cid = escape(chart_id)
    out: list[str] = [
        f'<svg class="chart{" compact" if compact else ""}" id="{cid}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{cid}-title {cid}-desc" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{cid}-title">{escape(title)}</title>',
        f'<desc id="{cid}-desc">{escape(summary)}</desc>',
    ]
    # grid and value axis
    out.append('<g class="axis y-axis">')
    for tick in ticks:
        ty = y(tick)
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(ty)}" y2="{_f(ty)}"/>'
            f'<text x="{left - 6}" y="{_f(ty + 4)}" text-anchor="end">{_number(tick)}</text>'
        )
    out.append("</g>")
    if not compact:
        out.append('<g class="axis x-axis">')
        for tick_t in _time_ticks(t0, t1):
            tx = x(tick_t)
            label = _time_label(tick_t, t1 - t0)
            anchor = "end" if tx > width - right - 30 else "middle"  # the last one stays inside
            out.append(
                f'<line class="tick" x1="{_f(tx)}" x2="{_f(tx)}" y1="{height - bottom}" '
                f'y2="{height - bottom + 5}"/><text x="{_f(tx)}" y="{height - bottom + 18}" '
                f'text-anchor="{anchor}">{escape(label)}</text>'
            )
        out.append(
            f'<text class="axis-title" x="{width - right}" y="{height - 4}" text-anchor="end">'
            "window (UTC)</text></g>"
        )
    # breaching windows: a shaded band over the window
    for p in points:
        if p.status == "breach":
            x0, x1 = x(_utc(p.start).timestamp()), x(_utc(p.end).timestamp())
            out.append(
                f'<rect class="breach-band" x="{_f(x0)}" y="{top}" '
                f'width="{_f(max(x1 - x0, 1.0))}" height="{height - top - bottom}"/>'
            )
    # objective versions: a dashed line where the version in force changes
    previous_version = points[0].objective_version
    for p in points[1:]:
        if p.objective_version is not None and p.objective_version != previous_version:
            vx = x(_utc(p.start).timestamp())
            out.append(
                f'<g class="version-change"><line x1="{_f(vx)}" x2="{_f(vx)}" y1="{top}" '
                f'y2="{height - bottom}"/><text x="{_f(vx + 3)}" y="{top + 10}">'
                f"v{p.objective_version}</text>"
                f"<title>objective version {p.objective_version} from {_when(p.start)}</title></g>"
            )
            previous_version = p.objective_version
    for note in annotations:
        at = _utc(note.at).timestamp()
        if t0 <= at <= t1:
            ax = x(at)
            out.append(
                f'<g class="annotation"><line x1="{_f(ax)}" x2="{_f(ax)}" y1="{top}" '
                f'y2="{height - bottom}"/><text x="{_f(ax - 3)}" y="{top + 10}" '
                f'text-anchor="end">{escape(note.label)}</text>'
                f"<title>{escape(note.label)} at {_when(note.at)}</title></g>"
            )
    # the threshold: a step line, one level per window
    steps: list[str] = []
    for p, t in zip(points, thresholds, strict=True):
        if t is None:
            continue
        x0, x1, ty = x(_utc(p.start).timestamp()), x(_utc(p.end).timestamp()), y(t)
        steps.append(f"{'L' if steps else 'M'}{_f(x0)} {_f(ty)} H{_f(x1)}")
    levels = ", ".join(dict.fromkeys(_number(t) for t in thresholds if t is not None))
    if steps:
        out.append(
            f'<path class="threshold" d="{" ".join(steps)}">'
            f"<title>threshold {sign} {levels}</title></path>"
        )
    # the metric: a line through the windows that have a value (gaps where none)
    segments: list[str] = []
    pen_down = False
    for p in points:
        if p.value is None:
            pen_down = False
            continue
        segments.append(f"{'L' if pen_down else 'M'}{_f(mid(p))} {_f(y(p.value))}")
        pen_down = True
    if segments:
        out.append(f'<path class="value-line" d="{" ".join(segments)}"/>')
    # the record's occurrences, ringed (withdrawn: hollow and dashed, at the value they had)
    by_start = {_utc(p.start): p for p in points}
    for start, mark in marks:
        window = by_start.get(start)
        value = mark.value if mark.value is not None else (window.value if window else None)
        if value is None:
            continue
        ox = mid(window) if window else x(start.timestamp())
        kind = "withdrawn" if mark.withdrawn else "occurrence"
        out.append(
            f'<circle class="{kind}" cx="{_f(ox)}" cy="{_f(y(value))}" r="{4 if compact else 8}">'
            f"<title>{'withdrawn occurrence' if mark.withdrawn else 'occurrence'} of the record: "
            f"window from {_when(start)}, value {_number(value)}</title></circle>"
        )
    # one marker per window
    for p in points:
        px = mid(p)
        what = p.status.replace("_", " ")
        tip = f"window {_when(p.start)} to {_when(p.end)}: "
        tip += f"{metric} {_number(p.value)}" if p.value is not None else "no value"
        t = p.threshold if p.threshold is not None else threshold
        if t is not None:
            tip += f" (threshold {sign} {_number(t)})"
        tip += f", {what}"
        if p.revision:
            tip += f", revision {p.revision}"
        if p.objective_version is not None:
            tip += f", objective v{p.objective_version}"
        if p.value is None:
            out.append(
                f'<g class="point insufficient"><text x="{_f(px)}" y="{height - bottom - 3}" '
                f'text-anchor="middle">&#215;</text><title>{escape(tip)}</title></g>'
            )
            continue
        py = y(p.value)
        if p.status == "breach":
            r = 3.5 if compact else 5.5
            out.append(
                f'<path class="point breach" d="M{_f(px)} {_f(py - r)} L{_f(px + r)} {_f(py)} '
                f'L{_f(px)} {_f(py + r)} L{_f(px - r)} {_f(py)} Z"><title>{escape(tip)}</title>'
                "</path>"
            )
        else:
            out.append(
                f'<circle class="point {escape(p.status)}" cx="{_f(px)}" cy="{_f(py)}" '
                f'r="{2 if compact else 3.5}"><title>{escape(tip)}</title></circle>'
            )
        if p.revision and not compact:
            out.append(
                f'<text class="revised" x="{_f(px)}" y="{_f(py - 9)}" text-anchor="middle">'
                f"r{p.revision}</text>"
            )
    if not compact:
        out.append(_legend(left, metric, sign))
    out.append("</svg>")
    return Markup("".join(out))


def _legend(left: int, metric: str, sign: str) -> str:
    x = left
    parts = ['<g class="legend" aria-hidden="true">']
    items = [
        ('<path class="value-line key" d="M{x} 14 H{x2}"/>', f"{metric}"),
        ('<path class="threshold key" d="M{x} 14 H{x2}"/>', f"threshold ({sign})"),
        ('<path class="point breach key" d="M{xm} 9 L{xr} 14 L{xm} 19 L{xl} 14 Z"/>', "breach"),
        ('<circle class="occurrence key" cx="{xm}" cy="14" r="6"/>', "record occurrence"),
        ('<text class="revised key" x="{xm}" y="18" text-anchor="middle">r1</text>', "revised"),
    ]
    for shape, label in items:
        parts.append(
            shape.format(x=x, x2=x + 18, xm=x + 9, xl=x + 4, xr=x + 14)
            + f'<text x="{x + 24}" y="18">{escape(label)}</text>'
        )
        x += 34 + 7 * len(label)
    parts.append("</g>")
    return "".join(parts)


def _time_ticks(t0: float, t1: float, count: int = 5) -> list[float]:
    if t1 <= t0:
        return [t0]
    steps = [1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
    steps += [86400 * d for d in (2, 7, 14, 30, 90)]
    raw = (t1 - t0) / count
    step = next((s for s in steps if s >= raw), steps[-1])
    first = math.ceil(t0 / step) * step
    return [first + i * step for i in range(int((t1 - first) // step) + 1)]


def _time_label(at: float, span: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    if span <= 120:
        return moment.strftime("%H:%M:%S")
    if span <= 2 * 86400:
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d")
