"""The evidence chart (pure SVG): the threshold as a step line per objective version, breaching
windows marked, the record's occurrences ringed, revisions labelled, gaps where there is no
value; well-formed XML with escaped text."""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from services.alerts.charts import (
    Annotation,
    OccurrenceMark,
    WindowPoint,
    evidence_chart,
    nice_ticks,
)

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def window(
    i: int,
    value: float | None,
    status: str,
    *,
    threshold: float = 0.8,
    version: int = 1,
    revision: int = 0,
) -> WindowPoint:
    start = T0 + timedelta(minutes=i)
    return WindowPoint(
        start=start,
        end=start + timedelta(minutes=1),
        value=value,
        threshold=threshold,
        status=status,
        revision=revision,
        objective_version=version,
    )


SERIES = [
    window(0, 0.91, "pass"),
    window(1, 0.52, "breach"),
    window(2, 0.61, "breach", revision=1),
    window(3, None, "insufficient_data"),
    window(4, 0.88, "pass", threshold=0.85, version=2),
    window(5, 0.83, "breach", threshold=0.85, version=2),
]


def chart(**overrides: object) -> ET.Element:
    arguments: dict[str, object] = {
        "chart_id": "c",
        "title": "accuracy per window",
        "metric": "accuracy",
        "comparator": "ge",
        "occurrences": [
            OccurrenceMark(start=T0 + timedelta(minutes=1), value=0.52),
            OccurrenceMark(start=T0 + timedelta(minutes=2), value=0.74, withdrawn=True),
        ],
        **overrides,
    }
    svg = str(evidence_chart(overrides.pop("points", SERIES), **arguments))  # type: ignore[arg-type]
    return ET.fromstring(svg)  # well-formed XML


def classed(root: ET.Element, css: str) -> list[ET.Element]:
    """Elements whose class attribute is exactly ``css`` (legend keys carry an extra class)."""
    return [e for e in root.iter() if e.get("class") == css]


def test_breaching_windows_are_red_diamonds_on_a_band_and_passes_are_circles() -> None:
    root = chart()
    assert len(classed(root, "point breach")) == 3
    assert len(classed(root, "breach-band")) == 3
    assert len(classed(root, "point pass")) == 2
    assert all(e.tag == f"{SVG}path" for e in classed(root, "point breach"))
    assert all(e.tag == f"{SVG}circle" for e in classed(root, "point pass"))
    tips = [e.findtext(f"{SVG}title") or "" for e in classed(root, "point breach")]
    assert "accuracy 0.52 (threshold ≥ 0.8), breach" in tips[0]
    assert "revision 1" in tips[1] and "objective v2" in tips[2]


def test_the_threshold_steps_where_a_new_objective_version_changed_it() -> None:
    root = chart()
    [threshold] = classed(root, "threshold")
    levels = {float(y) for y in re.findall(r"[ML][\d.]+ ([\d.]+) H", threshold.get("d", ""))}
    assert len(levels) == 2  # 0.8 then 0.85
    [change] = classed(root, "version-change")
    assert change.findtext(f"{SVG}text") == "v2"
    desc = root.findtext(f"{SVG}desc") or ""
    assert "6 windows" in desc and "3 breaching" in desc and "threshold ≥ 0.8, 0.85" in desc
    assert "1 occurrence(s) of the record" in desc


def test_values_are_drawn_against_the_threshold_on_the_right_side() -> None:
    """SVG's y grows downwards: a value under a >= threshold is drawn below its line."""
    root = chart()
    threshold_y = float(
        re.findall(r"M[\d.]+ ([\d.]+)", classed(root, "threshold")[0].get("d", ""))[0]
    )
    breach = classed(root, "point breach")[0].get("d", "")
    diamond_top = float(re.match(r"M[\d.]+ ([\d.]+)", breach).group(1))  # type: ignore[union-attr]
    assert diamond_top > threshold_y
    passing = classed(root, "point pass")[0]
    assert float(passing.get("cy", "0")) < threshold_y


def test_occurrences_are_ringed_and_withdrawn_ones_hollow_at_their_old_value() -> None:
    root = chart()
    [ring] = classed(root, "occurrence")
    [withdrawn] = classed(root, "withdrawn")
    breach_cy = [
        float(m)
        for m in re.findall(r"L[\d.]+ ([\d.]+) L", classed(root, "point breach")[0].get("d", ""))
    ]
    assert math.isclose(float(ring.get("cy", "0")), breach_cy[0], abs_tol=0.1)
    revised_breach = classed(root, "point breach")[1].get("d", "")
    revised_cy = float(re.findall(r"L[\d.]+ ([\d.]+) L", revised_breach)[0])
    assert float(withdrawn.get("cy", "0")) < revised_cy  # 0.74 (withdrawn) is above 0.61
    assert "withdrawn occurrence" in (withdrawn.findtext(f"{SVG}title") or "")


def test_revised_windows_are_labelled_and_a_missing_value_breaks_the_line() -> None:
    root = chart()
    assert [e.text for e in classed(root, "revised")] == ["r1"]
    [line] = classed(root, "value-line")
    assert line.get("d", "").count("M") == 2  # a gap at the insufficient-data window
    [gap] = classed(root, "point insufficient")
    assert "no value (threshold ≥ 0.8), insufficient data" in (gap.findtext(f"{SVG}title") or "")


def test_annotations_and_the_compact_form() -> None:
    root = chart(annotations=[Annotation(T0 + timedelta(minutes=3, seconds=30), "actions done")])
    [note] = classed(root, "annotation")
    assert note.findtext(f"{SVG}text") == "actions done"
    compact = chart(compact=True, width=360, height=110)
    assert classed(compact, "legend") == [] and classed(compact, "axis x-axis") == []
    assert len(classed(compact, "point breach")) == 3


def test_text_is_escaped_and_an_empty_series_says_so() -> None:
    root = chart(title='<script>alert("x")</script>', metric="a&b")
    assert root.findtext(f"{SVG}title") == '<script>alert("x")</script>'
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))
    empty = ET.fromstring(
        str(evidence_chart([], chart_id="e", title="t", metric="m", comparator="ge"))
    )
    assert "No evaluations stored" in "".join(empty.itertext())


@pytest.mark.parametrize(
    "low,high", [(0.42, 0.88), (0.0, 1.0), (-3.2, 17.9), (1200.0, 1201.0), (0.5, 0.5)]
)
def test_ticks_cover_the_range_with_round_even_steps(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    [step] = steps
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))
    assert 2 <= len(ticks) <= 8
