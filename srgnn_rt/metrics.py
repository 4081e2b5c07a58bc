"""Top-K ranking metrics for next-item prediction and their confidence intervals (numpy only).

For one prediction with the target at rank ``r`` (1 = best):

- HR@K (hit rate; the paper's "P@20" / "Recall@20"): 1 if ``r <= K`` else 0;
- MRR@K: ``1 / r`` if ``r <= K`` else 0;
- NDCG@K: ``1 / log2(r + 1)`` if ``r <= K`` else 0 (one relevant item, so IDCG = 1).

Averages over predictions are reported in percent, as the paper does. Beyond
accuracy, as session-rec defines them (also in percent):

- Coverage@K: the share of the catalogue that appears in at least one top-K list;
- Popularity@K: per prediction, the mean over its top-K items of the item's
  training clicks divided by the most clicked item's, averaged over predictions.

Uncertainty: ``SessionBootstrap`` resamples whole test *sessions* with
replacement (the prefixes of one session are correlated, so resampling
prefixes would understate the spread), seeded, and gives 95 % percentile
intervals of every mean metric and of paired differences between two models;
Coverage@K, a union rather than a mean, gets a delete-one-session jackknife
interval instead.

Tie rule: the rank of the target is 1 + the number of items with a *strictly*
higher score, so the target wins every tie (optimistic). The authors' evaluation
takes ``topk(20)`` and finds the target in it, which breaks ties by whatever order
topk returns. With real-valued model scores ties (almost) never happen and both
give the same numbers; with ties ours is an upper bound of theirs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Estimate",
    "RankingMetrics",
    "SessionBootstrap",
    "coverage",
    "per_prediction_metrics",
    "popularity",
    "ranking_metrics",
    "target_ranks",
]


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of each target among all items.

    scores: float[B, n_items], column j is item id j + 1; targets: int[B], internal
    ids 1..n_items. Returns int64[B]: 1 + number of items scoring strictly higher
    than the target (ties go to the target). NaN scores raise ValueError.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    real = np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)
    if scores.ndim != 2 or not real:
        raise ValueError(f"scores must be a float[B, n_items] array, got {scores.dtype}{list(scores.shape)}")
    if targets.ndim != 1 or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be an int[B] array, got {targets.dtype}{list(targets.shape)}")
    if targets.shape[0] != scores.shape[0]:
        raise ValueError(f"targets has {targets.shape[0]} rows but scores has {scores.shape[0]}")
    n_items = scores.shape[1]
    outside = (targets < 1) | (targets > n_items)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise ValueError(f"target {targets[row]} at row {row} is outside 1..{n_items} (internal ids)")
    if np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        row = int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])
        raise ValueError(f"scores row {row} contains NaN")
    target_scores = np.take_along_axis(scores, (targets - 1)[:, None].astype(np.intp), axis=1)
    return 1 + np.count_nonzero(scores > target_scores, axis=1).astype(np.int64)


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks is empty: give at least one cut-off K")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"cut-off K must be an int >= 1, got {k!r} in ks={ks!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks has a repeated cut-off: {ks!r}")
    return tuple(int(k) for k in ks)


def _check_ranks(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or not np.issubdtype(ranks.dtype, np.integer):
        raise ValueError(f"ranks must be an int[B] array, got {ranks.dtype}{list(ranks.shape)}")
    if ranks.size and ranks.min() < 1:
        row = int(np.argmin(ranks))
        raise ValueError(f"rank {ranks[row]} at row {row} is below 1 (ranks start at 1)")
    return ranks


def _sums(ranks: np.ndarray, ks: tuple[int, ...]) -> np.ndarray:
    """float64[len(ks), 3]: per K, the sums of hit, reciprocal rank and NDCG gain."""
    ranks = ranks.astype(np.float64)
    reciprocal = 1.0 / ranks
    gain = 1.0 / np.log2(ranks + 1.0)
    out = np.empty((len(ks), 3))
    for i, k in enumerate(ks):
        hit = ranks <= k
        out[i] = hit.sum(), reciprocal[hit].sum(), gain[hit].sum()
    return out


def _as_dict(sums: np.ndarray, count: int, ks: tuple[int, ...]) -> dict[str, float]:
    result = {}
    for i, k in enumerate(ks):
        for j, name in enumerate(("HR", "MRR", "NDCG")):
            result[f"{name}@{k}"] = float(100.0 * sums[i, j] / count)
    return result


def ranking_metrics(ranks: np.ndarray, ks: Iterable[int] = (20,)) -> dict[str, float]:
    """HR@K, MRR@K and NDCG@K in percent from target ranks int[B] (B >= 1).

    Keys are ``"HR@20"``, ``"MRR@20"``, ``"NDCG@20"`` and so on, in the order of ``ks``.
    """
    ks = _check_ks(ks)
    ranks = _check_ranks(ranks)
    if ranks.size == 0:
        raise ValueError("ranks is empty: metrics of no predictions are undefined")
    return _as_dict(_sums(ranks, ks), ranks.size, ks)


class RankingMetrics:
    """Streaming HR@K / MRR@K / NDCG@K over many batches; holds only running sums.

    >>> m = RankingMetrics(ks=(1, 2))
    >>> m.update_ranks(np.array([1, 2, 5]))
    >>> m.result()["MRR@2"]  # (1 + 1/2 + 0) / 3, in percent
    50.0
    """

    def __init__(self, ks: Iterable[int] = (10, 20, 50)):
        self.ks = _check_ks(ks)
        self._sums = np.zeros((len(self.ks), 3))
        self._count = 0

    @property
    def count(self) -> int:
        """Number of predictions seen so far."""
        return self._count

    def update(self, scores: np.ndarray, targets: np.ndarray) -> None:
        """Add a batch: scores float[B, n_items] (column j is item j + 1), targets int[B] in 1..n_items."""
        self.update_ranks(target_ranks(scores, targets))

    def update_ranks(self, ranks: np.ndarray) -> None:
        """Add a batch of target ranks int[B] (1 = best)."""
        ranks = _check_ranks(ranks)
        self._sums += _sums(ranks, self.ks)
        self._count += ranks.size

    def result(self) -> dict[str, float]:
        """Metrics so far in percent, keys like ``"HR@20"``, ``"MRR@20"``, ``"NDCG@20"``."""
        if self._count == 0:
            raise ValueError("RankingMetrics has seen no predictions yet")
        return _as_dict(self._sums, self._count, self.ks)

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._sums[:] = 0.0
        self._count = 0


def per_prediction_metrics(ranks: np.ndarray, ks: Iterable[int] = (20,)) -> dict[str, np.ndarray]:
    """HR@K, MRR@K and NDCG@K of each prediction in percent: ``{"HR@20": float64[B], ...}``.

    Their means are ``ranking_metrics(ranks, ks)``.
    """
    ks = _check_ks(ks)
    ranks = _check_ranks(ranks).astype(np.float64)
    result = {}
    for k in ks:
        hit = ranks <= k
        result[f"HR@{k}"] = 100.0 * hit
        result[f"MRR@{k}"] = np.where(hit, 100.0 / ranks, 0.0)
        result[f"NDCG@{k}"] = np.where(hit, 100.0 / np.log2(ranks + 1.0), 0.0)
    return result


def _check_top_k(top_k: np.ndarray, k: int, n_items: int) -> np.ndarray:
    top_k = np.asarray(top_k)
    if top_k.ndim != 2 or not np.issubdtype(top_k.dtype, np.integer):
        raise ValueError(f"top_k must be an int[B, K] array, got {top_k.dtype}{list(top_k.shape)}")
    if top_k.shape[1] < min(k, n_items):
        raise ValueError(f"top_k has {top_k.shape[1]} columns; K = {k} needs {min(k, n_items)}")
    top_k = top_k[:, :k]
    if top_k.size and (top_k.min() < 1 or top_k.max() > n_items):
        raise ValueError(f"top_k holds ids outside 1..{n_items} (internal ids)")
    return top_k


def popularity(top_k: np.ndarray, item_counts: np.ndarray, k: int = 20) -> np.ndarray:
    """Popularity@K of each prediction in percent: float64[B].

    top_k: int[B, >=K] internal ids, best first; item_counts: int[n_items + 1] training clicks
    (index 0 unused). The mean over the top-K items of ``count / max count``.
    """
    item_counts = np.asarray(item_counts, dtype=np.float64)
    top_k = _check_top_k(top_k, k, len(item_counts) - 1)
    peak = item_counts[1:].max(initial=0.0)
    if peak <= 0:
        raise ValueError("item_counts has no click: popularity is undefined")
    return 100.0 * (item_counts[top_k] / peak).mean(axis=1)


def coverage(top_k: np.ndarray, n_items: int, k: int = 20) -> float:
    """Coverage@K in percent: distinct items in the top-K lists / n_items."""
    top_k = _check_top_k(top_k, k, n_items)
    return 100.0 * len(np.unique(top_k)) / n_items


@dataclass(frozen=True)
class Estimate:
    """A figure and its confidence interval ``[low, high]``; for a difference, its p-value."""

    value: float
    low: float
    high: float
    p_value: float | None = None

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (meaningful for differences)."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        result = {"value": self.value, "low": self.low, "high": self.high}
        if self.p_value is not None:
            result.update(p_value=self.p_value, significant=self.significant)
        return result


class SessionBootstrap:
    """Bootstrap over sessions: every replicate draws G sessions with replacement.

    groups: int[B], the session (0..G-1) of each prediction. The same seed draws
    the same replicates for every call, so intervals of two models computed
    from one instance are paired. Percentile intervals at ``confidence``.

    >>> boot = SessionBootstrap(np.array([0, 0, 1, 2]), n_resamples=200, seed=0)
    >>> estimate = boot.mean(np.array([1.0, 1.0, 0.0, 1.0]))
    >>> estimate.value, estimate.low <= estimate.value <= estimate.high
    (0.75, True)
    """

    _CHUNK = 100  # replicates drawn at once: bounds memory at 100 x G

    def __init__(self, groups: np.ndarray, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95):
        groups = np.asarray(groups)
        if groups.ndim != 1 or not np.issubdtype(groups.dtype, np.integer) or groups.size == 0:
            raise ValueError(f"groups must be a non-empty int[B] array, got {groups.dtype}{list(groups.shape)}")
        if groups.min() < 0:
            raise ValueError(f"groups must be >= 0, got {groups.min()}")
        if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 10:
            raise ValueError(f"n_resamples must be an int >= 10, got {n_resamples!r}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
        _, self.groups = np.unique(groups, return_inverse=True)
        self.n_groups = int(self.groups.max()) + 1
        self.n_resamples, self.seed, self.confidence = int(n_resamples), seed, confidence
        self._sizes = np.bincount(self.groups, minlength=self.n_groups).astype(np.float64)

    def _weights(self):
        """Yield float64[C, G]: how often each session is drawn, C replicates at a time."""
        for chunk, begin in enumerate(range(0, self.n_resamples, self._CHUNK)):
            count = min(self._CHUNK, self.n_resamples - begin)
            draws = np.random.default_rng([self.seed, chunk]).integers(0, self.n_groups, size=(count, self.n_groups))
            draws += (np.arange(count) * self.n_groups)[:, None]
            yield np.bincount(draws.ravel(), minlength=count * self.n_groups).reshape(count, -1).astype(np.float64)

    def _replicate_means(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape != self.groups.shape:
            raise ValueError(f"values has shape {values.shape}; expected one per prediction {self.groups.shape}")
        sums = np.bincount(self.groups, weights=values, minlength=self.n_groups)
        return np.concatenate([(w @ sums) / (w @ self._sizes) for w in self._weights()])

    def _interval(self, replicates: np.ndarray) -> tuple[float, float]:
        alpha = 1.0 - self.confidence
        low, high = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
        return float(low), float(high)

    def mean(self, values: np.ndarray) -> Estimate:
        """The mean of per-prediction ``values: float[B]`` and its interval."""
        replicates = self._replicate_means(values)
        return Estimate(float(np.mean(values)), *self._interval(replicates))

    def difference(self, values_a: np.ndarray, values_b: np.ndarray) -> Estimate:
        """Paired ``mean(a) - mean(b)`` over the same predictions, its interval and a two-sided
        bootstrap p-value (twice the share of replicates on the far side of 0, at most 1)."""
        values_a, values_b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
        if values_a.shape != values_b.shape:
            raise ValueError(f"paired values differ in shape: {values_a.shape} vs {values_b.shape}")
        difference = values_a - values_b
        replicates = self._replicate_means(difference)
        p_value = min(1.0, 2.0 * min(np.mean(replicates <= 0), np.mean(replicates >= 0)))
        return Estimate(float(np.mean(difference)), *self._interval(replicates), p_value=float(p_value))

    def coverage(self, top_k: np.ndarray, n_items: int, k: int = 20) -> Estimate:
        """Coverage@K (percent) and its interval.

        Coverage is a union over sessions, not a mean: a bootstrap resample holds
        only about 63 % of the distinct sessions and would shrink it, so its
        interval is the delete-one-session jackknife with a normal approximation
        (removing session g loses the items only g recommends).
        """
        top_k = _check_top_k(top_k, k, n_items)
        if len(top_k) != len(self.groups):
            raise ValueError(f"top_k has {len(top_k)} rows; expected one per prediction ({len(self.groups)})")
        pairs = np.unique(np.repeat(self.groups, top_k.shape[1]) * (n_items + 1) + top_k.ravel())
        group, item = np.divmod(pairs, n_items + 1)
        sessions_per_item = np.bincount(item, minlength=n_items + 1)
        only_here = np.bincount(group[sessions_per_item[item] == 1], minlength=self.n_groups)
        value = coverage(top_k, n_items, k)
        leave_one_out = value - 100.0 * only_here / n_items
        g = self.n_groups
        spread = np.sqrt((g - 1) / g * np.sum((leave_one_out - leave_one_out.mean()) ** 2)) if g > 1 else 0.0
        z = _normal_quantile(1.0 - (1.0 - self.confidence) / 2)
        return Estimate(value, max(0.0, value - z * spread), min(100.0, value + z * spread))


def _normal_quantile(p: float) -> float:
    """The standard normal quantile, by bisection on erf (numpy has no inverse)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        middle = (low + high) / 2
        if 0.5 * (1.0 + math.erf(middle / math.sqrt(2.0))) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2
