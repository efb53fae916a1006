"""The overview's figures as charts and sentences: what the page shows of
app.console_overview.Overview. Pure (no request, no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup

from api.console.charts import Series, line_chart, stacked_bar_chart
from app.console_overview import OUTCOMES, FallbackShare, WriteTraffic

# Outcome colours that keep apart for the common colour blindnesses (green/amber/red differ
# in lightness too), and the legend names them.
OUTCOME_COLORS = {
    "succeeded": "#1e7a3c",
    "refused": "#d39b00",
    "failed": "#b3261e",
    "pending": "#8a94a6",
}
# Okabe and Ito's palette, for kinds (no meaning in the colour, only telling lines apart).
KIND_COLORS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00")
OTHER_KINDS = "other kinds"


@dataclass(frozen=True)
class HourCharts:
    writes: Markup
    kinds: Markup


@dataclass(frozen=True)
class DayCharts:
    writes: Markup
    fallback: Markup


def hour_charts(last_hour: WriteTraffic) -> HourCharts:
    return HourCharts(
        writes=outcome_bars(
            last_hour, title="Writes per minute, last hour (UTC)", window="last hour"
        ),
        kinds=kind_lines(last_hour, title="Writes per minute by kind, last hour (UTC)"),
    )


def day_charts(last_day: WriteTraffic) -> DayCharts:
    return DayCharts(
        writes=outcome_bars(
            last_day,
            title="Writes per 15 minutes, last 24 hours (UTC)",
            window="last 24 hours",
        ),
        fallback=fallback_line(
            last_day, title="Writes answered 202 per 15 minutes, last 24 hours (UTC)"
        ),
    )


def _time_labels(traffic: WriteTraffic) -> list[str]:
    return [start.strftime("%H:%M") for start in traffic.bucket_starts]


def _bucket_name(traffic: WriteTraffic) -> str:
    minutes = int(traffic.bucket.total_seconds() // 60)
    return "minute" if minutes == 1 else f"{minutes} minutes"


def traffic_summary(traffic: WriteTraffic, window: str) -> str:
    """One sentence a screen reader reads for a writes chart."""
    by_outcome = traffic.by_outcome()
    if not traffic.total:
        return f"No writes in the {window}."
    parts = ", ".join(f"{sum(by_outcome[outcome])} {outcome}" for outcome in OUTCOMES)
    totals = traffic.per_bucket(traffic.counts)
    peak = max(totals)
    busiest = _time_labels(traffic)[totals.index(peak)]
    return (
        f"{traffic.total} writes in the {window}: {parts}. "
        f"Busiest {_bucket_name(traffic)}: {busiest} with {peak}."
    )


def outcome_bars(traffic: WriteTraffic, *, title: str, window: str) -> Markup:
    by_outcome = traffic.by_outcome()
    return stacked_bar_chart(
        title=title,
        summary=traffic_summary(traffic, window),
        x_labels=_time_labels(traffic),
        series=[
            Series(outcome, by_outcome[outcome], OUTCOME_COLORS[outcome]) for outcome in OUTCOMES
        ],
        y_label=f"writes per {_bucket_name(traffic)}",
    )


def kind_lines(traffic: WriteTraffic, *, title: str) -> Markup:
    """A line per kind, the most written first; past the palette's size, the least written
    kinds share one line."""
    by_kind = traffic.by_kind()
    kinds = list(by_kind)
    if len(kinds) > len(KIND_COLORS):
        shown, merged = kinds[: len(KIND_COLORS) - 1], kinds[len(KIND_COLORS) - 1 :]
        other = [sum(values) for values in zip(*(by_kind[kind] for kind in merged), strict=True)]
        lines = [(kind, by_kind[kind]) for kind in shown] + [(OTHER_KINDS, other)]
    else:
        lines = list(by_kind.items())
    if lines:
        summary = "; ".join(f"{kind}: {sum(values)}" for kind, values in lines) + "."
    else:
        summary = "No writes in the last hour."
    return line_chart(
        title=title,
        summary=summary,
        x_labels=_time_labels(traffic),
        series=[
            Series(kind, values, color)
            for (kind, values), color in zip(lines, KIND_COLORS, strict=False)
        ],
        y_label=f"writes per {_bucket_name(traffic)}",
    )


def fallback_line(traffic: WriteTraffic, *, title: str) -> Markup:
    """The share of requests answered 202 in each bucket, as a percentage; no point where
    no request was answered."""
    shares = traffic.fallback_per_bucket()
    percent: list[float | None] = [
        None if share.share is None else round(100 * share.share, 1) for share in shares
    ]
    return line_chart(
        title=title,
        summary=f"In the last 24 hours: {share_text(traffic.fallback())}.",
        x_labels=_time_labels(traffic),
        series=[Series("answered 202", percent, "#0072b2")],
        y_label="% of requests",
        value_format=lambda value: f"{value:g} %",
        y_max=100,
    )


def share_text(share: FallbackShare) -> str:
    """ "3.1 % (4 of 130 requests)", or that no request was answered."""
    if share.share is None:
        return "no write requests answered"
    return (
        f"{100 * share.share:.1f} % ({share.answered_202} of {share.answered_by_request} requests)"
    )


def age_text(age: timedelta | None) -> str:
    """A duration as a person reads it: "42 s", "3 min 5 s", "2 h 10 min", "3 d 4 h"."""
    if age is None:
        return "none waiting"
    seconds = max(int(age.total_seconds()), 0)
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    largest = next(i for i, (_, size) in enumerate(units) if seconds >= size or size == 1)
    name, size = units[largest]
    parts = [f"{seconds // size} {name}"]
    if largest + 1 < len(units):
        next_name, next_size = units[largest + 1]
        if remainder := (seconds % size) // next_size:
            parts.append(f"{remainder} {next_name}")
    return " ".join(parts)


def utc_text(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")
