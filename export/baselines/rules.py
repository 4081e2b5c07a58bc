"""Sequential rules (Kamehkhosh et al. 2017; Ludewig & Jannach 2018) and most-popular.

SR: every ordered pair of clicks ``a`` then ``b`` at most ``steps`` positions
apart in a training session adds ``weighting(distance)`` to the rule ``a -> b``
(``div``: 1 / distance); each item keeps its ``pruning`` strongest rules (ties:
smaller id; 0 keeps all). A prefix is scored by the rules of its last click,
as session-rec's ``SequentialRules`` does.

Most popular: the number of training clicks of each item, the same for every prefix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .knn import STEP_WEIGHTS, SessionIndex
from .ranking import ranks_and_top_k

__all__ = ["MostPopular", "SequentialRules"]


class SequentialRules:
    """Sequential rules; ``scores`` gives float64[B, n_items + 1] (csr) for B prefixes."""

    name = "sr"

    def __init__(self, steps: int = 10, weighting: str = "div", pruning: int = 20):
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"SequentialRules: steps must be an int >= 1, got {steps!r}")
        if isinstance(pruning, bool) or not isinstance(pruning, (int, np.integer)) or pruning < 0:
            raise ValueError(f"SequentialRules: pruning must be an int >= 0 (0 keeps all), got {pruning!r}")
        if weighting not in STEP_WEIGHTS:
            raise ValueError(f"SequentialRules: weighting must be in {sorted(STEP_WEIGHTS)}, got {weighting!r}")
        self.steps, self.weighting, self.pruning = int(steps), weighting, int(pruning)
        self.rules: sp.csr_matrix | None = None

    def fit(self, index: SessionIndex) -> SequentialRules:
        items, offsets, n_items = index.click_item, index.click_offsets, index.n_items
        owner = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        sources, targets, weights = [], [], []
        for distance in range(1, self.steps + 1):
            same = owner[:-distance] == owner[distance:]
            sources.append(items[:-distance][same])
            targets.append(items[distance:][same])
            weights.append(np.full(int(same.sum()), float(STEP_WEIGHTS[self.weighting](np.array(distance)))))
        width = n_items + 1
        rules = sp.csr_matrix(
            (np.concatenate(weights), (np.concatenate(sources), np.concatenate(targets))), shape=(width, width)
        )
        rules.sum_duplicates()
        rules.eliminate_zeros()
        if self.pruning:
            rules = _strongest(rules, self.pruning)
        self.rules = rules
        return self

    def scores(self, items: np.ndarray, offsets: np.ndarray) -> sp.csr_matrix:
        if self.rules is None:
            raise ValueError("SequentialRules is not fitted: call fit(SessionIndex) first")
        return self.rules[items[np.asarray(offsets[1:]) - 1]]

    def rank(self, items: np.ndarray, offsets: np.ndarray, targets: np.ndarray, k: int):
        """``ranks: int64[B]`` and ``top_k: int64[B, min(k, n_items)]`` (see ``ranking``)."""
        return ranks_and_top_k(self.scores(items, offsets), targets, k)


def _strongest(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Each row's ``keep`` largest entries (ties: smaller column)."""
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    position = np.arange(len(order)) - np.repeat(matrix.indptr[:-1], counts)
    chosen = order[position < keep]
    return sp.csr_matrix((matrix.data[chosen], (rows[chosen], matrix.indices[chosen])), shape=matrix.shape)


class MostPopular:
    """Training click counts as the score of every prefix."""

    name = "pop"

    def __init__(self):
        self.counts: np.ndarray | None = None

    def fit(self, index: SessionIndex) -> MostPopular:
        self.counts = np.bincount(index.click_item, minlength=index.width).astype(np.float64)
        self.counts[0] = 0.0
        return self

    def rank(self, items: np.ndarray, offsets: np.ndarray, targets: np.ndarray, k: int):
        """``ranks: int64[B]`` and ``top_k: int64[B, min(k, n_items)]``: most clicked first, ties by id."""
        if self.counts is None:
            raise ValueError("MostPopular is not fitted: call fit(SessionIndex) first")
        ids = np.arange(1, len(self.counts), dtype=np.int64)
        ranking = ids[np.lexsort((ids, -self.counts[1:]))]
        rank_of = np.empty(len(self.counts), dtype=np.int64)
        rank_of[ranking] = np.arange(1, len(ranking) + 1)
        top_k = np.broadcast_to(ranking[:k], (len(targets), min(k, len(ranking))))
        return rank_of[targets], np.ascontiguousarray(top_k)
