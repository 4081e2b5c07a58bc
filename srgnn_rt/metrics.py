"""Top-K ranking metrics for next-item prediction: HR@K, MRR@K, NDCG@K (numpy only).

For one prediction with the target at rank ``r`` (1 = best):

- HR@K (hit rate; the paper's "P@20" / "Recall@20"): 1 if ``r <= K`` else 0;
- MRR@K: ``1 / r`` if ``r <= K`` else 0;
- NDCG@K: ``1 / log2(r + 1)`` if ``r <= K`` else 0 (one relevant item, so IDCG = 1).

Averages over predictions are reported in percent, as the paper does.

Tie rule: the rank of the target is 1 + the number of items with a *strictly*
higher score, so the target wins every tie (optimistic). The authors' evaluation
takes ``topk(20)`` and finds the target in it, which breaks ties by whatever order
topk returns. With real-valued model scores ties (almost) never happen and both
give the same numbers; with ties ours is an upper bound of theirs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["RankingMetrics", "ranking_metrics", "target_ranks"]


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
