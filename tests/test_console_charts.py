"""The console's SVG charts (api/console/charts.py) and the overview's charts of its figures
(api/console/overview_charts.py), drawn without a database."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from api.console.charts import (
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    PLOT_HEIGHT,
    WIDTH,
    Series,
    compact_number,
    line_chart,
    nice_ticks,
    stacked_bar_chart,
)
from api.console.overview_charts import (
    age_text,
    fallback_line,
    kind_lines,
    outcome_bars,
    share_text,
    traffic_summary,
)
from app.console_overview import WriteCount, WriteTraffic

SVG = "{http://www.w3.org/2000/svg}"
PLOT_BOTTOM = MARGIN_TOP + PLOT_HEIGHT


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # noqa: S314 (markup these tests drew)


def bars(svg: ET.Element) -> list[ET.Element]:
    group = svg.find(f"{SVG}g[@class='chart-bars']")
    assert group is not None
    return group.findall(f"{SVG}rect")


def texts(svg: ET.Element, group_class: str) -> list[str]:
    group = svg.find(f"{SVG}g[@class='{group_class}']")
    assert group is not None
    return [text.text or "" for text in group.iter(f"{SVG}text")]


def outcome_chart(**changes: object) -> ET.Element:
    arguments: dict[str, object] = {
        "title": "Writes per minute",
        "summary": "9 writes",
        "x_labels": ["12:00", "12:01", "12:02"],
        "series": [
            Series("succeeded", [2, 4, 0], "#1b7f3b"),
            Series("failed", [0, 3, 0], "#c62828"),
        ],
        "y_label": "writes",
    }
    arguments.update(changes)
    return parse(stacked_bar_chart(**arguments))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peak", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (7, [0, 2, 4, 6, 8]),
        (10, [0, 2, 4, 6, 8, 10]),
        (13, [0, 5, 10, 15]),
        (100, [0, 20, 40, 60, 80, 100]),
        (999, [0, 200, 400, 600, 800, 1000]),
        (0.3, [0, 0.1, 0.2, 0.3]),
    ],
)
def test_ticks_are_round_numbers_from_zero_through_the_peak(
    peak: float, ticks: list[float]
) -> None:
    assert nice_ticks(peak) == ticks


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (12, "12"), (2.5, "2.5"), (1200, "1.2k"), (3_000_000, "3M"), (0.25, "0.25")],
)
def test_axis_numbers_are_compact(value: float, text: str) -> None:
    assert compact_number(value) == text


def test_a_chart_has_a_title_a_description_and_an_aria_label() -> None:
    svg = outcome_chart()
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == "Writes per minute. 9 writes"
    assert svg.findtext(f"{SVG}title") == "Writes per minute"
    assert svg.findtext(f"{SVG}desc") == "9 writes"


def test_a_chart_scales_by_its_viewbox_alone() -> None:
    svg = outcome_chart()
    assert svg.get("viewBox", "").startswith("0 0 640 ")
    assert svg.get("width") is None and svg.get("height") is None


def test_stacked_bars_are_as_tall_as_their_values_and_stack_in_series_order() -> None:
    svg = outcome_chart()
    drawn = bars(svg)
    # Zero values draw nothing: 2, 4 and 3 do.
    assert [rect.findtext(f"{SVG}title") for rect in drawn] == [
        "12:00 succeeded: 2",
        "12:01 succeeded: 4",
        "12:01 failed: 3",
    ]
    # The axis reaches 8 (ticks 0, 2, 4, 6, 8): 170 px for 8 writes.
    per_write = PLOT_HEIGHT / 8
    heights = [float(rect.get("height", 0)) for rect in drawn]
    assert heights == pytest.approx([2 * per_write, 4 * per_write, 3 * per_write])
    succeeded, failed = drawn[1], drawn[2]
    assert float(succeeded.get("y", 0)) + heights[1] == pytest.approx(PLOT_BOTTOM)
    assert float(failed.get("y", 0)) + heights[2] == pytest.approx(float(succeeded.get("y", 0)))
    assert failed.get("fill") == "#c62828"


def test_the_axes_carry_tick_and_x_labels_and_the_legend_every_series() -> None:
    svg = outcome_chart()
    assert texts(svg, "chart-axes") == [
        *("0", "2", "4", "6", "8"),
        *("12:00", "12:01", "12:02"),
        "writes",
    ]
    assert texts(svg, "chart-legend") == ["succeeded", "failed"]


def test_x_labels_are_thinned_so_they_do_not_overlap() -> None:
    labels = [f"{hour:02d}:00" for hour in range(24)]
    svg = outcome_chart(x_labels=labels, series=[Series("succeeded", [1] * 24, "#000")])
    shown = [text for text in texts(svg, "chart-axes") if ":" in text]
    assert shown == ["00:00", "04:00", "08:00", "12:00", "16:00", "20:00"]


def test_a_long_legend_wraps_onto_more_rows_and_the_chart_grows_for_it() -> None:
    one_row = outcome_chart()
    many = [Series(f"points.award_batch_{n}", [1, 1, 1], "#000") for n in range(8)]
    wrapped = outcome_chart(series=many)
    rows = {rect.get("y") for rect in wrapped.iter(f"{SVG}rect") if rect.get("width") == "10"}
    assert len(rows) > 1
    one_row_height = float(one_row.get("viewBox", "").split()[3])
    wrapped_height = float(wrapped.get("viewBox", "").split()[3])
    assert wrapped_height > one_row_height


def test_an_empty_window_still_draws_its_axes() -> None:
    svg = outcome_chart(series=[Series("succeeded", [0, 0, 0], "#000")])
    assert bars(svg) == []
    assert texts(svg, "chart-axes")[:2] == ["0", "1"]


def test_text_is_escaped() -> None:
    markup = stacked_bar_chart(
        title="<script>alert(1)</script>",
        summary='a "quoted" & <b>',
        x_labels=["<x>"],
        series=[Series("<kind>", [1], '"red"')],
        y_label="y",
    )
    assert "<script>" not in markup and "<kind>" not in markup and "<b>" not in markup
    svg = parse(markup)
    assert svg.findtext(f"{SVG}title") == "<script>alert(1)</script>"
    assert texts(svg, "chart-legend") == ["<kind>"]


def test_values_must_match_the_labels() -> None:
    with pytest.raises(ValueError, match="2 values for 3 labels"):
        stacked_bar_chart(
            title="t",
            summary="",
            x_labels=["a", "b", "c"],
            series=[Series("s", [1, 2], "#000")],
            y_label="y",
        )


def test_a_line_goes_through_each_value_and_breaks_where_there_is_none() -> None:
    svg = parse(
        line_chart(
            title="202 share",
            summary="",
            x_labels=["a", "b", "c", "d", "e"],
            series=[Series("share", [50, 100, None, 25, None], "#0072b2")],
            y_label="%",
            y_max=100,
        )
    )
    group = svg.find(f"{SVG}g[@class='chart-lines']")
    assert group is not None
    [path] = group.findall(f"{SVG}path")
    points = [step[1:].split(",") for step in path.get("d", "").split()]
    assert [step[0] for step in path.get("d", "").split()] == ["M", "L"]
    # Five slots across the plot: through the centres of the first two; 100 % is the top.
    slot = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / 5
    assert [float(x) for x, _ in points] == pytest.approx(
        [MARGIN_LEFT + slot / 2, MARGIN_LEFT + slot * 1.5]
    )
    assert [float(y) for _, y in points] == pytest.approx(
        [PLOT_BOTTOM - PLOT_HEIGHT / 2, MARGIN_TOP]
    )
    [dot] = group.findall(f"{SVG}circle")
    assert dot.findtext(f"{SVG}title") == "d share: 25"
    assert texts(svg, "chart-axes")[:6] == ["0", "20", "40", "60", "80", "100"]


def test_a_line_chart_axis_reaches_its_peak_above_y_max() -> None:
    svg = parse(
        line_chart(
            title="t",
            summary="",
            x_labels=["a", "b"],
            series=[Series("s", [3, 12], "#000")],
            y_label="y",
            y_max=10,
        )
    )
    assert texts(svg, "chart-axes")[:4] == ["0", "5", "10", "15"]


# --- the overview's charts from its figures (api/console/overview_charts.py) -----------

START = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def traffic(*counts: tuple[int, str, str, int]) -> WriteTraffic:
    """Three minutes from 12:00; counts as (minute, kind, outcome, writes)."""
    return WriteTraffic(
        since=START,
        until=START + timedelta(minutes=3),
        bucket=timedelta(minutes=1),
        counts=[
            WriteCount(START + timedelta(minutes=minute), kind, outcome, writes, 0, 0, writes)
            for minute, kind, outcome, writes in counts
        ],
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (42, "42 s"),
        (65, "1 min 5 s"),
        (3600, "1 h"),
        (7260, "2 h 1 min"),
        (90000, "1 d 1 h"),
    ],
)
def test_ages_read_as_their_two_largest_units(seconds: int, text: str) -> None:
    assert age_text(timedelta(seconds=seconds)) == text


def test_the_outcome_chart_s_summary_names_the_totals_and_the_busiest_minute() -> None:
    writes = traffic(
        (0, "points.award", "succeeded", 2),
        (1, "points.award", "succeeded", 4),
        (1, "rewards.claim", "refused", 1),
    )
    assert traffic_summary(writes, "last hour") == (
        "7 writes in the last hour: 6 succeeded, 1 refused, 0 failed, 0 pending. "
        "Busiest minute: 12:01 with 5."
    )
    assert traffic_summary(traffic(), "last hour") == "No writes in the last hour."
    svg = parse(outcome_bars(writes, title="Writes", window="last hour"))
    assert texts(svg, "chart-legend") == ["succeeded", "refused", "failed", "pending"]


def test_more_kinds_than_colours_leave_the_least_written_on_one_line() -> None:
    kinds = [f"kind.{letter}" for letter in "abcdefgh"]
    writes = traffic(*((0, kind, "succeeded", 10 - n) for n, kind in enumerate(kinds)))
    svg = parse(kind_lines(writes, title="By kind"))
    assert texts(svg, "chart-legend") == [*kinds[:5], "other kinds"]
    # The other kinds: 5 + 4 + 3 writes, at 12:00 alone: a dot.
    assert svg.get("aria-label", "").endswith("kind.e: 6; other kinds: 12.")


def test_the_202_line_has_no_point_where_no_request_was_answered() -> None:
    writes = WriteTraffic(
        since=START,
        until=START + timedelta(minutes=3),
        bucket=timedelta(minutes=1),
        counts=[
            WriteCount(START, "points.award", "succeeded", 4, 1, 0, 4),
            WriteCount(START + timedelta(minutes=2), "points.award", "pending", 2, 0, 2, 2),
        ],
    )
    svg = parse(fallback_line(writes, title="202"))
    group = svg.find(f"{SVG}g[@class='chart-lines']")
    assert group is not None
    dots = [dot.findtext(f"{SVG}title") for dot in group.findall(f"{SVG}circle")]
    assert dots == ["12:00 answered 202: 25 %", "12:02 answered 202: 100 %"]
    assert share_text(writes.fallback()) == "50.0 % (3 of 6 requests)"
