"""The load's rate limit (Pacer) and the latency guard's rate from probe round trips."""

from __future__ import annotations

import pytest

from scorehouse.publish.writer import LatencyGuard, Pacer

MS = 1e-3


def feed(guard: LatencyGuard, latency_s: float, windows: int, sent: float | None = None) -> float:
    for _ in range(windows * guard.window):
        rate = guard.observe(latency_s, sent)
    return rate


def test_the_rate_doubles_from_the_start_while_probes_stay_under_the_target() -> None:
    guard = LatencyGuard(1 * MS, start=10_000, floor=1_000, window=4)
    rates = [feed(guard, 0.2 * MS, 1) for _ in range(4)]
    assert rates == [20_000, 40_000, 80_000, 160_000]
    assert guard.cuts == 0 and guard.over == 0 and guard.probes == 16


def test_the_first_probe_over_the_target_halves_the_rate_then_it_grows_by_a_step() -> None:
    guard = LatencyGuard(1 * MS, start=100_000, window=4, hold=2, step=0.1)
    assert guard.observe(0.5 * MS) == 100_000
    assert guard.observe(3 * MS) == 50_000  # at once, not at the window's end
    assert guard.cuts == 1 and guard.over == 1 and guard.in_window == 0
    # After a cut: additive, 10 % of the rate before the cut per window.
    assert [feed(guard, 0.5 * MS, 1) for _ in range(3)] == [60_000, 70_000, 80_000]
    assert guard.observe(3 * MS) == 40_000


def test_probes_right_after_a_cut_do_not_cut_again() -> None:
    guard = LatencyGuard(1 * MS, start=100_000, window=10, hold=3)
    assert guard.observe(5 * MS) == 50_000
    # The writes queued before the cut still reach Redis: three slow probes are held.
    assert [guard.observe(5 * MS) for _ in range(3)] == [50_000] * 3
    assert guard.cuts == 1 and guard.over == 4
    assert guard.observe(5 * MS) == 25_000  # the fourth is the new rate's own
    assert guard.cuts == 2


def test_one_slow_probe_in_a_window_is_ignored_two_are_not() -> None:
    guard = LatencyGuard(1 * MS, start=100_000, window=10, quantile=0.9)
    for latency in [0.3 * MS] * 9 + [5 * MS]:
        rate = guard.observe(latency)
    assert rate == 200_000  # one probe in ten over the target: allowed at the 90 % quantile
    rates = [guard.observe(latency) for latency in [0.3 * MS] * 3 + [5 * MS] * 2]
    assert rates == [200_000] * 4 + [100_000] and guard.cuts == 1


def test_the_rate_stays_between_the_floor_and_the_rate_limits_share() -> None:
    guard = LatencyGuard(1 * MS, ceiling=30_000, start=100_000, floor=2_000, window=2)
    assert guard.rate == 30_000
    assert feed(guard, 0.1 * MS, 3) == 30_000
    assert feed(guard, 9 * MS, 20) == 2_000  # a server that stays slow: the load still advances


def test_a_cut_starts_from_what_the_task_really_sent_and_growth_follows_it() -> None:
    guard = LatencyGuard(1 * MS, start=400_000, window=2)
    # The task sent only 100k/s (reading held it back): the cut halves that, not 400k.
    assert feed(guard, 4 * MS, 1, sent=100_000) == 50_000
    guard = LatencyGuard(1 * MS, start=100_000, window=2)
    # Doubling stops at twice what the task sends, so an unused rate cannot pile up.
    assert feed(guard, 0.1 * MS, 5, sent=60_000) == 120_000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_s": 0},
        {"target_s": MS, "window": 0},
        {"target_s": MS, "decrease": 1.0},
        {"target_s": MS, "hold": -1},
    ],
)
def test_nonsense_parameters_are_refused(kwargs: dict[str, float]) -> None:
    target = kwargs.pop("target_s")
    with pytest.raises(ValueError):
        LatencyGuard(target, **kwargs)  # type: ignore[arg-type]


def test_the_pacer_spreads_keys_at_its_rate_and_follows_a_new_rate() -> None:
    pacer = Pacer(1000.0, burst_s=0.0)
    assert pacer.delay(100, now=10.0) == pytest.approx(0.1)
    assert pacer.delay(100, now=10.1) == pytest.approx(0.1)  # sent at 10.1, paid until 10.2
    pacer.rate = 100.0
    assert pacer.delay(100, now=10.2) == pytest.approx(1.0)


def test_the_pacer_keeps_at_most_a_burst_of_unused_allowance() -> None:
    pacer = Pacer(1000.0, burst_s=0.05)
    assert pacer.delay(50, now=0.0) == 0.0  # a fresh start may use one burst
    # Idle for 10 s: only 50 ms of allowance is left, not 10 s of it.
    assert pacer.delay(50, now=10.0) == 0.0
    assert pacer.delay(50, now=10.0) == pytest.approx(0.05)


def test_no_rate_means_no_wait() -> None:
    assert Pacer(None).delay(10**9, now=0.0) == 0.0
