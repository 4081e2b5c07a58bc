"""Tests of srgnn_rt.metrics: hand examples, a brute-force reference, input validation, and the
session bootstrap's coverage of the true value on simulated clustered data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srgnn_rt.metrics import (
    RankingMetrics,
    SessionBootstrap,
    coverage,
    per_prediction_metrics,
    popularity,
    ranking_metrics,
    target_ranks,
)


def _brute_rank(row: list[float], target: int) -> int:
    return 1 + sum(1 for s in row if s > row[target - 1])


def _brute_metrics(ranks: list[int], k: int) -> tuple[float, float, float]:
    hits = [1.0 if r <= k else 0.0 for r in ranks]
    rr = [1.0 / r if r <= k else 0.0 for r in ranks]
    gain = [1.0 / math.log2(r + 1) if r <= k else 0.0 for r in ranks]
    n = len(ranks)
    return 100 * sum(hits) / n, 100 * sum(rr) / n, 100 * sum(gain) / n


def test_ranks_hand_example():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    # row 0: item 3 (score 0.5) is beaten by item 2 only; row 1: item 4 is last
    assert target_ranks(scores, np.array([3, 4])).tolist() == [2, 4]
    assert target_ranks(scores, np.array([2, 1])).tolist() == [1, 1]


def test_ties_go_to_the_target():
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]])
    assert target_ranks(scores, np.array([4])).tolist() == [1]
    assert target_ranks(scores, np.array([1])).tolist() == [4]


def test_without_ties_rank_is_the_topk_position():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((20, 50))
    targets = rng.integers(1, 51, size=20)
    order = np.argsort(-scores, axis=1)
    positions = np.argmax(order == (targets - 1)[:, None], axis=1) + 1
    np.testing.assert_array_equal(target_ranks(scores, targets), positions)


def test_metrics_hand_example():
    result = ranking_metrics(np.array([1, 2, 5, 30]), ks=(2, 20))
    assert list(result) == ["HR@2", "MRR@2", "NDCG@2", "HR@20", "MRR@20", "NDCG@20"]
    assert result["HR@2"] == pytest.approx(50.0)
    assert result["MRR@2"] == pytest.approx(100 * (1 + 0.5) / 4)
    assert result["HR@20"] == pytest.approx(75.0)
    assert result["MRR@20"] == pytest.approx(100 * (1 + 0.5 + 0.2) / 4)
    assert result["NDCG@20"] == pytest.approx(100 * (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)


def test_rank_exactly_k_counts():
    result = ranking_metrics(np.array([20, 21]), ks=(20,))
    assert result == pytest.approx({"HR@20": 50.0, "MRR@20": 100 / 40, "NDCG@20": 50 / math.log2(21)})


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda n_items: st.tuples(
            st.lists(
                st.tuples(
                    st.lists(st.integers(-3, 3).map(float), min_size=n_items, max_size=n_items),
                    st.integers(1, n_items),
                ),
                min_size=1,
                max_size=8,
            ),
            st.integers(1, 3),
        )
    )
)
def test_against_brute_force(data):
    """Small integer-valued scores force many ties."""
    rows, n_batches = data
    scores = np.array([row for row, _ in rows], dtype=np.float32)
    targets = np.array([t for _, t in rows], dtype=np.int64)
    expected_ranks = [_brute_rank(row, t) for row, t in rows]
    assert target_ranks(scores, targets).tolist() == expected_ranks

    ks = (1, 3, 10)
    streaming = RankingMetrics(ks=ks)
    for part in np.array_split(np.arange(len(rows)), n_batches):
        streaming.update(scores[part], targets[part])
    assert streaming.count == len(rows)
    one_shot = ranking_metrics(np.array(expected_ranks), ks=ks)
    for k in ks:
        hr, mrr, ndcg = _brute_metrics(expected_ranks, k)
        for result in (streaming.result(), one_shot):
            assert result[f"HR@{k}"] == pytest.approx(hr)
            assert result[f"MRR@{k}"] == pytest.approx(mrr)
            assert result[f"NDCG@{k}"] == pytest.approx(ndcg)


def test_random_batches_match_brute_force():
    rng = np.random.default_rng(1)
    metrics = RankingMetrics()
    all_ranks = []
    for _ in range(5):
        scores = rng.standard_normal((30, 200)).astype(np.float32)
        targets = rng.integers(1, 201, size=30)
        metrics.update(scores, targets)
        all_ranks += [_brute_rank(row.tolist(), t) for row, t in zip(scores, targets)]
    result = metrics.result()
    for k in (10, 20, 50):
        hr, mrr, ndcg = _brute_metrics(all_ranks, k)
        assert result[f"HR@{k}"] == pytest.approx(hr)
        assert result[f"MRR@{k}"] == pytest.approx(mrr)
        assert result[f"NDCG@{k}"] == pytest.approx(ndcg)


def test_streaming_update_ranks_and_reset():
    metrics = RankingMetrics(ks=(1, 2))
    metrics.update_ranks(np.array([1, 2]))
    metrics.update_ranks(np.array([5], dtype=np.int32))
    metrics.update_ranks(np.array([], dtype=np.int64))
    assert metrics.count == 3
    assert metrics.result()["MRR@2"] == pytest.approx(50.0)
    assert metrics.result()["HR@1"] == pytest.approx(100 / 3)
    metrics.reset()
    assert metrics.count == 0
    with pytest.raises(ValueError, match="no predictions"):
        metrics.result()


@pytest.mark.parametrize(
    ("scores", "targets", "message"),
    [
        (np.zeros((2, 3)), np.array([1, 4]), r"target 4 at row 1 is outside 1\.\.3"),
        (np.zeros((2, 3)), np.array([0, 1]), r"target 0 at row 0"),
        (np.zeros((2, 3)), np.array([1]), "targets has 1 rows but scores has 2"),
        (np.zeros(3), np.array([1]), "scores must be"),
        (np.zeros((1, 3)), np.array([1.0]), "targets must be an int"),
        (np.array([[0.0, np.nan]]), np.array([1]), "row 0 contains NaN"),
    ],
)
def test_target_ranks_rejects_bad_input(scores, targets, message):
    with pytest.raises(ValueError, match=message):
        target_ranks(scores, targets)


def test_rank_and_k_validation():
    with pytest.raises(ValueError, match="rank 0 at row 1 is below 1"):
        ranking_metrics(np.array([3, 0]))
    with pytest.raises(ValueError, match="ranks must be an int"):
        RankingMetrics().update_ranks(np.array([1.5]))
    with pytest.raises(ValueError, match="empty"):
        ranking_metrics(np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="K must be an int >= 1"):
        RankingMetrics(ks=(20, 0))
    with pytest.raises(ValueError, match="repeated"):
        RankingMetrics(ks=(20, 20))
    with pytest.raises(ValueError, match="ks is empty"):
        RankingMetrics(ks=())


def test_per_prediction_metrics_average_to_ranking_metrics():
    ranks = np.array([1, 2, 5, 30, 3])
    values = per_prediction_metrics(ranks, ks=(2, 20))
    assert values["MRR@2"].tolist() == pytest.approx([100, 50, 0, 0, 0])
    assert values["NDCG@20"][2] == pytest.approx(100 / math.log2(6))
    means = {name: float(v.mean()) for name, v in values.items()}
    assert means == pytest.approx(ranking_metrics(ranks, ks=(2, 20)))


def test_popularity_and_coverage_hand_example():
    counts = np.array([0, 10, 5, 0, 1])  # item 1 is the most clicked
    top = np.array([[1, 2], [2, 4], [2, 1]])
    # popularity: means of count / 10 over each list: (1 + .5) / 2, (.5 + .1) / 2, (.5 + 1) / 2
    assert popularity(top, counts, k=2).tolist() == pytest.approx([75.0, 30.0, 75.0])
    assert popularity(top, counts, k=1).tolist() == pytest.approx([100.0, 50.0, 50.0])
    assert coverage(top, n_items=4, k=2) == pytest.approx(75.0)  # items 1, 2, 4 of 4
    assert coverage(top, n_items=4, k=1) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="outside 1..4"):
        coverage(np.array([[5]]), n_items=4, k=1)
    with pytest.raises(ValueError, match="K = 3 needs 3"):
        popularity(top, counts, k=3)


def _clustered_trial(rng, n_sessions=80):
    """Prefixes of one session share its hit probability (strong within-session correlation).
    The true mean HR is 25 %: E[p] = 0.5 / (0.5 + 1.5), independent of session length."""
    p = rng.beta(0.5, 1.5, size=n_sessions)
    groups = np.repeat(np.arange(n_sessions), rng.integers(1, 8, size=n_sessions))
    return groups, 100.0 * (rng.random(len(groups)) < p[groups])


def test_session_bootstrap_covers_the_true_value_at_its_nominal_rate():
    """Seeded simulation, so the rates are fixed numbers (0.945 and 0.815 here); the bounds leave
    room for platform rounding, not for chance. Resampling prefixes instead of sessions
    under-covers: that is why sessions are resampled."""
    rng = np.random.default_rng(123)
    by_session = by_prefix = 0
    trials = 200
    for trial in range(trials):
        groups, hits = _clustered_trial(rng)
        session = SessionBootstrap(groups, n_resamples=400, seed=trial).mean(hits)
        prefix = SessionBootstrap(np.arange(len(groups)), n_resamples=400, seed=trial).mean(hits)
        by_session += session.low <= 25.0 <= session.high
        by_prefix += prefix.low <= 25.0 <= prefix.high
    assert 0.91 <= by_session / trials <= 0.98
    assert by_prefix / trials < 0.88


def test_bootstrap_is_seeded_and_paired():
    rng = np.random.default_rng(0)
    groups, a = _clustered_trial(rng)
    b = np.where(rng.random(len(a)) < 0.9, a, 100.0 - a)
    first = SessionBootstrap(groups, n_resamples=300, seed=7)
    again = SessionBootstrap(groups, n_resamples=300, seed=7)
    assert first.mean(a) == again.mean(a)
    assert first.mean(a).value == pytest.approx(a.mean())
    same = first.difference(a, a)
    assert (same.value, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not same.significant
    better = first.difference(a + 10.0, a)  # 10 points better everywhere: significant
    assert better.low == pytest.approx(10.0) and better.high == pytest.approx(10.0)
    assert better.significant and better.p_value == 0.0
    mixed = first.difference(a, b)
    assert mixed.low <= mixed.value <= mixed.high


def test_coverage_interval_is_the_session_jackknife():
    # sessions 0, 1, 2; items only session 0 recommends: {3}; only session 2: {4, 5}
    groups = np.array([0, 0, 1, 2])
    top = np.array([[1, 3], [1, 2], [1, 2], [4, 5]])
    estimate = SessionBootstrap(groups, n_resamples=50).coverage(top, n_items=10, k=2)
    assert estimate.value == pytest.approx(50.0)
    leave_one_out = np.array([40.0, 50.0, 30.0])
    spread = math.sqrt(2 / 3 * ((leave_one_out - leave_one_out.mean()) ** 2).sum())
    assert estimate.low == pytest.approx(50.0 - 1.959964 * spread, abs=1e-4)
    assert estimate.high == pytest.approx(50.0 + 1.959964 * spread, abs=1e-4)


def test_bootstrap_validation():
    with pytest.raises(ValueError, match="non-empty int"):
        SessionBootstrap(np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="n_resamples"):
        SessionBootstrap(np.array([0, 1]), n_resamples=5)
    with pytest.raises(ValueError, match="one per prediction"):
        SessionBootstrap(np.array([0, 1])).mean(np.array([1.0]))
    with pytest.raises(ValueError, match="differ in shape"):
        SessionBootstrap(np.array([0, 1])).difference(np.zeros(2), np.zeros(3))
