"""The benchmark's pure arithmetic: ratios, medians, spreads, boundedness, percentiles."""

from __future__ import annotations

import pytest

from benchmarks import stats


def test_ratios_pair_rounds_not_medians() -> None:
    # Round 2 was slow for both sides: pairing keeps the ratio, dividing medians would not.
    agent = [800.0, 400.0, 820.0]
    baseline = [1000.0, 500.0, 1000.0]
    assert stats.ratios(agent, baseline) == pytest.approx([0.8, 0.8, 0.82])


@pytest.mark.parametrize(("agent", "baseline"), [([1.0], [1.0, 2.0]), ([], []), ([1.0], [0.0])])
def test_ratios_refuse_mismatched_or_empty_or_zero(
    agent: list[float], baseline: list[float]
) -> None:
    with pytest.raises(ValueError, match=r"round|positive"):
        stats.ratios(agent, baseline)


def test_median_and_spread() -> None:
    values = [0.9, 0.7, 0.8, 1.0, 0.6]
    assert stats.median(values) == pytest.approx(0.8)
    assert stats.spread(values) == {"min": 0.6, "max": 1.0, "range_pct": 50.0, "n": 5}
    mid, spread = stats.headline([2.0, 4.0])
    assert mid == 3.0 and spread["n"] == 2


def test_empty_inputs_are_errors_not_zeroes() -> None:
    with pytest.raises(ValueError, match="no values"):
        stats.median([])
    with pytest.raises(ValueError, match="no values"):
        stats.spread([])
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([7.0], 99) == 7.0


def test_slope_of_a_growing_queue() -> None:
    samples = [(float(t), 100.0 * t) for t in range(10)]
    assert stats.slope_per_s(samples) == pytest.approx(100.0)
    assert stats.slope_per_s([(0.0, 5.0)]) == 0.0


def test_bounded_flat_queue_and_unbounded_growing_one() -> None:
    flat = [(float(t), 10.0 if t % 2 else 30.0) for t in range(20)]
    growing = [(float(t), 50.0 * t) for t in range(20)]
    assert stats.is_bounded(flat, rate=500.0)
    assert not stats.is_bounded(growing, rate=500.0)
    assert not stats.is_bounded([], rate=500.0)


def test_a_queue_that_stopped_growing_but_stayed_huge_is_not_bounded() -> None:
    backlog = [(float(t), 20_000.0) for t in range(20)]
    assert not stats.is_bounded(backlog, rate=500.0)


def test_missing_keys_names_every_headline_and_its_spread() -> None:
    assert set(stats.missing_keys({})) >= {
        "consumer_ratio",
        "consumer_ratio_spread",
        "tests_wall_s_spread",
        "agent_rss_mb",
        "startup_s",
        "machine",
        "date",
    }
    complete: dict[str, object] = {k: 1.0 for k in stats.HEADLINE_KEYS}
    complete |= {f"{k}_spread": {} for k in stats.HEADLINE_KEYS}
    complete |= {"machine": {}, "date": "", "raw": {}, "agent_rss_mb": {}, "startup_s": {}}
    assert stats.missing_keys(complete) == []


def test_the_issues_list_these_result_keys() -> None:
    assert set(stats.HEADLINE_KEYS) == {
        # issue 7
        "consumer_ratio",
        "publisher_ratio",
        "peer_ratio",
        "max_sustained_rate_msgs_per_s",
        "e2e_latency_p99_ms",
        "cost_10min_usd",
        "agent_rss_mb_max",
        "tests_wall_s",
        # issue 13
        "consumer_process_ratio",
        "knee_msgs_per_s",
        "knee_p99_ms",
    }
    assert set(stats.NESTED_KEYS) == {"agent_rss_mb", "startup_s"}


def test_target_status() -> None:
    assert stats.target_status("consumer_ratio", 1.01) == "met"
    assert stats.target_status("consumer_ratio", 0.99) == "missed"
    assert stats.target_status("publisher_ratio", 0.94) == "missed"
    assert stats.target_status("knee_p99_ms", 101.0) == "missed"
    assert stats.target_status("cost_10min_usd", 0.2) == "missed"
    assert stats.target_status("tests_wall_s", 170.0) == "met"
    assert stats.target_status("agent_rss_mb_max", 30.0) == ""
    assert stats.target_status("peer_ratio", None) == ""


def test_footprint_rows_group_by_type_and_mode() -> None:
    rows = [{"type": "consumer", "mode": "dry-run", "rss_mb": v} for v in (44.0, 47.0, 45.0)] + [
        {"type": "consumer", "mode": "live", "rss_mb": 90.0}
    ]
    grouped = stats.by_type_and_mode(rows, "rss_mb")
    assert grouped["consumer"]["dry-run"]["median"] == 45.0
    assert grouped["consumer"]["dry-run"]["n"] == 3
    assert grouped["consumer"]["live"]["min"] == 90.0
