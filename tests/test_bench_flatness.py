"""bench.flatness: how the soak judges whether a purged table stayed flat."""

from __future__ import annotations

import pytest

from bench.flatness import MB, Sample, growth_violations, slope_per_hour, table_growth


def _samples(sizes_mb: list[float], every_s: float = 60) -> list[Sample]:
    return [
        Sample(at_s=n * every_s, bytes={"t": int(mb * MB)}, rows={"t": int(mb * 1000)})
        for n, mb in enumerate(sizes_mb)
    ]


def test_a_table_is_judged_against_its_size_at_the_end_of_the_warm_up() -> None:
    # Grows for two samples (the first window), then holds with a VACUUM sawtooth.
    growth = table_growth(_samples([0, 40, 80, 84, 82, 85, 83, 84]), "t", warmup_s=120)
    assert growth.warmup_bytes == 80 * MB
    assert growth.max_bytes == 85 * MB
    assert growth.end_bytes == 84 * MB
    assert growth.end_over_warmup == pytest.approx(1.05)
    assert growth.warmup_rows == 80_000 and growth.end_rows == 84_000
    assert growth_violations([growth], bound=1.5) == []


def test_a_table_that_keeps_growing_after_the_warm_up_is_a_violation() -> None:
    growth = table_growth(_samples([0, 40, 80, 100, 120, 140, 160]), "t", warmup_s=120)
    assert growth.growth_mb_per_h == pytest.approx(1200)  # 20 MB a minute
    [violation] = growth_violations([growth], bound=1.5)
    assert violation.startswith("t grew to 2.00 x its post-warm-up size")


def test_a_run_shorter_than_its_warm_up_is_judged_on_its_last_sample() -> None:
    growth = table_growth(_samples([0, 40, 80]), "t", warmup_s=600)
    assert growth.warmup_bytes == growth.end_bytes == 80 * MB
    assert growth.growth_mb_per_h == 0


def test_the_slope_is_zero_for_a_flat_series_and_per_hour_for_a_rising_one() -> None:
    assert slope_per_hour([(0, 5), (60, 5), (120, 5)]) == 0
    assert slope_per_hour([(0, 0), (1800, 1), (3600, 2)]) == pytest.approx(2)
    assert slope_per_hour([(0, 1)]) == 0
