"""Sparse baseline scores -> the rank of each target and the top-K list of each prefix.

A baseline scores few items per prefix (those of its neighbours or rules); every
other item scores 0. Items are ordered by score, ties by ascending internal id,
so a target with score 0 is ranked after every scored item and after the
unscored items with a smaller id: the rank a plain ``sort`` of the whole score
vector would give, never the optimistic "ties go to the target" rule that
would put an unscored target among the first few.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["ranks_and_top_k"]


def ranks_and_top_k(scores: sp.csr_matrix, targets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ranks and top-``k`` lists from ``scores: float64[B, n_items + 1]`` (csr, column = internal id,
    entries >= 0, column 0 unused) and ``targets: int64[B]``.

    Returns ``ranks: int64[B]`` (1 = best) and ``top_k: int64[B, min(k, n_items)]`` (internal ids).
    """
    scores = sp.csr_matrix(scores)
    scores.sum_duplicates()
    scores.eliminate_zeros()
    n_rows, n_columns = scores.shape
    n_items = n_columns - 1
    indptr, columns, values = scores.indptr, scores.indices.astype(np.int64), scores.data
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    keys = rows * n_columns + columns  # sorted: csr with sorted indices
    target_keys = np.arange(n_rows) * n_columns + targets
    at = np.minimum(np.searchsorted(keys, target_keys), max(len(keys) - 1, 0))
    found = (keys[at] == target_keys) if len(keys) else np.zeros(n_rows, dtype=bool)
    target_score = np.where(found, values[at] if len(keys) else 0.0, 0.0)
    ahead = (values > target_score[rows]) | ((values == target_score[rows]) & (columns < targets[rows]))
    ranks = 1 + np.bincount(rows, weights=ahead, minlength=n_rows).astype(np.int64)
    unscored = target_score == 0.0
    scored_before = np.bincount(rows, weights=columns < targets[rows], minlength=n_rows).astype(np.int64)
    # an unscored target: every scored item, then unscored items with a smaller id
    ranks[unscored] += (targets - 1 - scored_before)[unscored]

    width = min(k, n_items)
    top_k = np.zeros((n_rows, width), dtype=np.int64)
    order = np.lexsort((columns, -values, rows))
    counts = np.diff(indptr)
    position = np.arange(len(order)) - np.repeat(indptr[:-1], counts)
    keep = position < width
    top_k[rows[order][keep], position[keep]] = columns[order][keep]
    short = np.flatnonzero(counts < width)
    if short.size:
        # fill with the smallest unscored ids: among 1..2*width-1 at least width are unscored
        span = min(2 * width - 1, n_items)
        candidates = np.broadcast_to(np.arange(1, span + 1), (len(short), span))
        candidate_keys = short[:, None] * n_columns + candidates
        hit = np.searchsorted(keys, candidate_keys)
        hit = np.minimum(hit, max(len(keys) - 1, 0))
        scored = (keys[hit] == candidate_keys) if len(keys) else np.zeros(candidate_keys.shape, dtype=bool)
        free = ~scored
        slot = counts[short][:, None] + np.cumsum(free, axis=1) - 1
        fill = free & (slot < width)
        top_k[np.repeat(short, fill.sum(axis=1)), slot[fill]] = candidates[fill]
    return ranks, top_k
