"""Server-drawn SVG charts for the console: stacked bars and lines, with axes, tick labels,
a legend, and a title and description that a screen reader announces.

Pure: numbers in, markup out (no Flask, no database), so the charts are tested on their
own. Sized by the viewBox only, the SVG takes its container's width (a phone's too) and
its text scales with it; no script draws anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

WIDTH = 640
PLOT_HEIGHT = 170
MARGIN_LEFT = 60  # room for the y tick labels
MARGIN_RIGHT = 12
MARGIN_TOP = 14
AXIS_BAND = 30  # below the plot: x tick labels
LEGEND_ROW = 20
FONT_SIZE = 11
# A legend label's width per character, for the largest size the page draws chart text at
# (16 px on a phone, static/console.css): no font metrics on the server.
LEGEND_CHAR_WIDTH = 16 * 0.6
# At most this many x labels, so they never overlap (a day has 96 quarter hours).
MAX_X_LABELS = 7
BAR_FILL = 0.8  # of its slot a bar takes; the rest separates it from the next

ValueFormat = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One named row of values, one per x label; None (lines only) is "no value here"."""

    label: str
    values: Sequence[float | None]
    color: str  # any CSS colour; the legend shows it beside the label


def compact_number(value: float) -> str:
    """12, 2.5, 1.2k, 3M: short enough for an axis."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    if value == int(value):
        return str(int(value))
    return f"{value:.2g}"


def nice_ticks(peak: float, count: int = 4) -> list[float]:
    """Ticks from 0 through a round number at or above `peak`: the finest step of 1, 2 or
    5 times a power of ten that needs at most `count` + 1 intervals (whole numbers when
    the peak is at least 1)."""
    if not peak > 0:
        return [0.0, 1.0]
    power = 10 ** math.floor(math.log10(peak / count))
    step = next(
        m * power for m in (1, 2, 5, 10, 20) if math.ceil(peak / (m * power) - 1e-9) <= count + 1
    )
    if peak >= 1:
        step = max(step, 1.0)
    intervals = math.ceil(peak / step - 1e-9)
    return [round(step * i, 10) for i in range(intervals + 1)]


# Every piece of markup is one of these constant templates, filled by Markup.format, which
# escapes what it is given (labels and titles are tenant data: kinds, reward names).
_H_RULE = Markup(
    '<line x1="{x1}" y1="{y:.1f}" x2="{x2}" y2="{y:.1f}" stroke="{stroke}" stroke-width="1"/>'
)
_TEXT = Markup(
    '<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">{text}</text>'
)
_Y_LABEL = Markup(
    '<text class="axis-name" x="12" y="{y:.1f}" text-anchor="middle" font-size="{size}" '
    'transform="rotate(-90 12 {y:.1f})">{text}</text>'
)
_SWATCH = Markup(
    '<rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/>'
    '<text x="{text_x}" y="{text_y}" font-size="{size}">{label}</text>'
)
_BAR = Markup(
    '<rect x="{x:.2f}" y="{y:.2f}" width="{width:.2f}" height="{height:.2f}" fill="{color}">'
    "<title>{x_label} {label}: {value}</title></rect>"
)
_DOT = Markup(
    '<circle cx="{x:.2f}" cy="{y:.2f}" r="2.5" fill="{color}">'
    "<title>{x_label} {label}: {value}</title></circle>"
)
_LINE = Markup(
    '<path d="{path}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round">'
    "<title>{label}</title></path>"
)
_SVG = Markup(
    '<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
    'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg" '
    'font-family="system-ui, sans-serif"><title>{title}</title><desc>{summary}</desc>'
    "{body}</svg>"
)
_GROUP = Markup('<g class="{name}"{hidden}>{parts}</g>')


def _group(name: str, parts: list[Markup], *, hidden: bool = False) -> Markup:
    return _GROUP.format(
        name=name,
        hidden=Markup(' aria-hidden="true"') if hidden else "",
        parts=Markup("").join(parts),
    )


class _Frame:
    """The plot's geometry: the value-to-pixel scales, the axes and the legend."""

    def __init__(self, x_count: int, peak: float, series: Sequence[Series]) -> None:
        self.x_count = max(x_count, 1)
        self.ticks = nice_ticks(peak)
        self.top_value = self.ticks[-1]
        self.plot_left = MARGIN_LEFT
        self.plot_right = WIDTH - MARGIN_RIGHT
        self.plot_width = self.plot_right - MARGIN_LEFT
        self.plot_top = MARGIN_TOP
        self.plot_bottom = MARGIN_TOP + PLOT_HEIGHT
        self.legend_rows = _legend_layout(series)
        self.height = self.plot_bottom + AXIS_BAND + LEGEND_ROW * len(self.legend_rows) + 6

    @property
    def slot(self) -> float:
        return self.plot_width / self.x_count

    def x_center(self, position: int) -> float:
        return self.plot_left + self.slot * (position + 0.5)

    def y(self, value: float) -> float:
        return self.plot_bottom - PLOT_HEIGHT * (value / self.top_value)

    def axes(self, x_labels: Sequence[str], y_label: str, value_format: ValueFormat) -> Markup:
        """Grid lines with their values, the baseline, x labels and the y axis's name:
        hidden from screen readers, which read the chart's title and description."""
        parts = []
        for tick in self.ticks:
            y = self.y(tick)
            parts.append(
                _H_RULE.format(x1=self.plot_left, x2=self.plot_right, y=y, stroke="#d0d4d9")
            )
            parts.append(
                _TEXT.format(
                    x=self.plot_left - 6,
                    y=y + 4,
                    anchor="end",
                    size=FONT_SIZE,
                    text=value_format(tick),
                )
            )
        parts.append(
            _H_RULE.format(
                x1=self.plot_left, x2=self.plot_right, y=self.plot_bottom, stroke="#5f6b7a"
            )
        )
        every = max(1, math.ceil(len(x_labels) / MAX_X_LABELS))
        for position, label in enumerate(x_labels):
            if position % every == 0:
                parts.append(
                    _TEXT.format(
                        x=self.x_center(position),
                        y=self.plot_bottom + 16,
                        anchor="middle",
                        size=FONT_SIZE,
                        text=label,
                    )
                )
        parts.append(
            _Y_LABEL.format(y=self.plot_top + PLOT_HEIGHT / 2, size=FONT_SIZE, text=y_label)
        )
        return _group("chart-axes", parts, hidden=True)

    def legend(self) -> Markup:
        parts = []
        top = self.plot_bottom + AXIS_BAND
        for row_number, row in enumerate(self.legend_rows):
            y = top + row_number * LEGEND_ROW
            for x, entry in row:
                parts.append(
                    _SWATCH.format(
                        x=x,
                        y=y,
                        color=entry.color,
                        text_x=x + 14,
                        text_y=y + 9,
                        size=FONT_SIZE,
                        label=entry.label,
                    )
                )
        return _group("chart-legend", parts)


def _legend_layout(series: Sequence[Series]) -> list[list[tuple[int, Series]]]:
    """Legend entries placed left to right, wrapping to a new row when one would not fit
    (a label's width estimated from its length)."""
    rows: list[list[tuple[int, Series]]] = []
    x = WIDTH  # forces the first row
    for entry in series:
        width = 14 + int(len(entry.label) * LEGEND_CHAR_WIDTH) + 12
        if x + width > WIDTH - MARGIN_RIGHT and x > MARGIN_LEFT:
            rows.append([])
            x = MARGIN_LEFT
        rows[-1].append((x, entry))
        x += width
    return rows


def _svg(frame: _Frame, title: str, summary: str, body: list[Markup]) -> Markup:
    return _SVG.format(
        width=WIDTH,
        height=frame.height,
        label=f"{title}. {summary}" if summary else title,
        title=title,
        summary=summary,
        body=Markup("").join(body),
    )


def _check_lengths(x_labels: Sequence[str], series: Sequence[Series]) -> None:
    for entry in series:
        if len(entry.values) != len(x_labels):
            raise ValueError(
                f"series {entry.label!r} has {len(entry.values)} values for {len(x_labels)} labels"
            )


def stacked_bar_chart(
    *,
    title: str,
    summary: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_label: str,
    value_format: ValueFormat = compact_number,
) -> Markup:
    """One bar per x label, the series stacked bottom up in the order given; each segment
    has a tooltip title ("12:05 succeeded: 3"). Values must not be negative; None is 0."""
    _check_lengths(x_labels, series)
    totals = [
        sum(float(entry.values[position] or 0) for entry in series)
        for position in range(len(x_labels))
    ]
    frame = _Frame(len(x_labels), max(totals, default=0.0), series)
    bar_width = max(frame.slot * BAR_FILL, 1.0)
    bars = []
    for position, x_label in enumerate(x_labels):
        stacked = 0.0
        for entry in series:
            value = float(entry.values[position] or 0)
            if value <= 0:
                continue
            top = frame.y(stacked + value)
            bars.append(
                _BAR.format(
                    x=frame.x_center(position) - bar_width / 2,
                    y=top,
                    width=bar_width,
                    height=frame.y(stacked) - top,
                    color=entry.color,
                    x_label=x_label,
                    label=entry.label,
                    value=value_format(value),
                )
            )
            stacked += value
    body = [frame.axes(x_labels, y_label, value_format), _group("chart-bars", bars)]
    return _svg(frame, title, summary, [*body, frame.legend()])


def line_chart(
    *,
    title: str,
    summary: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    y_label: str,
    value_format: ValueFormat = compact_number,
    y_max: float | None = None,
) -> Markup:
    """One line per series through the middle of each x label's slot; a None value breaks
    the line there (a lone value between breaks is drawn as a dot). `y_max`: the axis
    reaches at least this (e.g. 100 for a percentage)."""
    _check_lengths(x_labels, series)
    peak = max(
        (float(value) for entry in series for value in entry.values if value is not None),
        default=0.0,
    )
    frame = _Frame(len(x_labels), max(peak, y_max or 0.0), series)
    lines = []
    for entry in series:
        for run in _unbroken_runs(entry.values):
            if len(run) == 1:
                [(position, value)] = run
                lines.append(
                    _DOT.format(
                        x=frame.x_center(position),
                        y=frame.y(value),
                        color=entry.color,
                        x_label=x_labels[position],
                        label=entry.label,
                        value=value_format(value),
                    )
                )
                continue
            path = " ".join(
                f"{'M' if index == 0 else 'L'}{frame.x_center(position):.2f},{frame.y(value):.2f}"
                for index, (position, value) in enumerate(run)
            )
            lines.append(_LINE.format(path=path, color=entry.color, label=entry.label))
    body = [frame.axes(x_labels, y_label, value_format), _group("chart-lines", lines)]
    return _svg(frame, title, summary, [*body, frame.legend()])


def _unbroken_runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for position, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((position, float(value)))
    if current:
        runs.append(current)
    return runs
