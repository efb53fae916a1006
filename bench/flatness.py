"""Whether a table stayed flat over a soak: pure arithmetic over size samples.

A purged table grows until the first retention window has passed and its first purged
rows' space has been made reusable (by VACUUM); from then on, it should hold about a
window's worth of rows and stop growing. So each table is judged against its size at the
end of that warm-up, never against an empty start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    at_s: float  # seconds since writing began
    bytes: dict[str, int]  # table -> pg_total_relation_size (heap, indexes, TOAST)
    rows: dict[str, int]  # table -> live rows


@dataclass(frozen=True)
class TableGrowth:
    table: str
    warmup_bytes: int  # at the first sample at or after the warm-up
    max_bytes: int  # over the whole run
    end_bytes: int
    warmup_rows: int
    end_rows: int
    # Least-squares slope over the samples from the warm-up on: a trend, not a spike.
    growth_mb_per_h: float

    @property
    def end_over_warmup(self) -> float:
        return self.end_bytes / self.warmup_bytes if self.warmup_bytes else float("inf")

    def as_row(self) -> dict[str, float | int | str]:
        return {
            "table": self.table,
            "warmup_mb": round(self.warmup_bytes / MB, 1),
            "max_mb": round(self.max_bytes / MB, 1),
            "end_mb": round(self.end_bytes / MB, 1),
            "end_over_warmup": round(self.end_over_warmup, 2),
            "warmup_rows": self.warmup_rows,
            "end_rows": self.end_rows,
            "growth_mb_per_h": round(self.growth_mb_per_h, 1),
        }


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour; 0 for fewer than two."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return 3600 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def table_growth(samples: Sequence[Sample], table: str, warmup_s: float) -> TableGrowth:
    """`samples` in time order; the warm-up sample is the first at or after `warmup_s`
    (the last sample if the run ended sooner)."""
    settled = [sample for sample in samples if sample.at_s >= warmup_s] or [samples[-1]]
    warmup, end = settled[0], samples[-1]
    return TableGrowth(
        table=table,
        warmup_bytes=warmup.bytes[table],
        max_bytes=max(sample.bytes[table] for sample in samples),
        end_bytes=end.bytes[table],
        warmup_rows=warmup.rows[table],
        end_rows=end.rows[table],
        growth_mb_per_h=slope_per_hour([(s.at_s, s.bytes[table] / MB) for s in settled]),
    )


def growth_violations(growth: Sequence[TableGrowth], bound: float) -> list[str]:
    """A table whose end size exceeds `bound` x its size at the end of the warm-up."""
    return [
        f"{each.table} grew to {each.end_over_warmup:.2f} x its post-warm-up size "
        f"({each.warmup_bytes / MB:.1f} -> {each.end_bytes / MB:.1f} MB; bound {bound} x)"
        for each in growth
        if each.end_over_warmup > bound
    ]
