"""Session-based nearest neighbours: SKNN, V-SKNN, STAN and VSTAN, vectorised over many prefixes.

All four follow session-rec's ``algorithms/knn`` (Ludewig & Jannach 2018;
Garg et al., SIGIR 2019; Ludewig et al. 2021). For a prefix (the current
session) with clicks ``c_1..c_L``:

1. Candidates: the training sessions holding any item of the prefix, of which
   the ``sample_size`` most recent are kept (session-rec's ``sampling='recent'``).
2. Similarity of the prefix to a candidate ``n`` (``n`` as a set of items;
   ``w_i`` weighs prefix item ``i`` by the position ``p_i`` of its last click):
   - SKNN: cosine ``|q ∩ n| / sqrt(|q| |n|)`` (session-rec's cosine has an
     operator-precedence slip, ``a / sqrt(b) * sqrt(c)``; the paper's is used);
   - V-SKNN: ``sum_{i in q ∩ n} w_i / |q|``, ``w_i = weighting(p_i, L)``
     (default ``div``: ``p_i / L``);
   - STAN: ``sum_{i in q ∩ n} w_i / (sqrt(sum_{i in q} w_i^2) sqrt(|n|))`` with
     ``w_i = exp((p_i - L) / lambda_spw)``, times ``exp(-age_n / lambda_snh)``;
   - VSTAN: STAN's (or, with ``similarity='vec'``, V-SKNN's form with STAN's
     weights), times the same time decay.
3. The ``k`` most similar candidates with similarity > 0 are the neighbours
   (ties: the more recent first).
4. Item scores, summed over neighbours ``n`` with similarity ``sim``:
   - SKNN: ``sim`` for every item of ``n``;
   - V-SKNN: ``sim * weighting_score(step) * (1 + idf_weighting * idf_j)`` where
     ``step = L - p* + 1`` and ``p*`` is the last prefix position whose item is in ``n``;
   - STAN: ``sim * exp(-|pos_n(j) - pos_n*| / lambda_inh)``, ``pos_n(j)`` the last
     position of item ``j`` in ``n`` and ``pos_n*`` the last position in ``n`` of
     an item of the prefix;
   - VSTAN: STAN's, times ``(1 + lambda_idf * idf_j)`` and ``exp((p* - L) / lambda_ipw)``.
   ``idf_j = log(S / clicks on j)`` over the training sessions, as session-rec counts it.
   Items of the prefix itself may be recommended (session-rec's ``remind=True``).

Time: a prepared dataset keeps the order of sessions, not their dates, so a
session's age (days before the end of training) is passed in by the caller;
``None`` turns the time decay off. The decay of the query's own time is the
same for every neighbour and does not change a ranking, so ages relative to
the end of training suffice.

Deviations, all on session-rec's side of obvious slips: V-SKNN's ``linear``
weights are clamped at 0 instead of jumping to 0 after position 10 or turning
negative after step 10.

Vectorised: the candidate overlaps of a batch of prefixes are one sparse
matrix built from each item's ``sample_size`` most recent sessions (enough:
a session among the ``sample_size`` most recent holding any prefix item is
among the ``sample_size`` most recent holding each of its prefix items), and
the neighbours' item scores are sparse products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from srgnn_rt.graph import CSRSessions

from .ranking import ranks_and_top_k
from .sessions import ranges

__all__ = ["SKNN", "STAN", "VSKNN", "VSTAN", "SessionIndex"]

_POSITION_WEIGHTS = {  # weighting(p, L) of V-SKNN's prefix items
    "same": lambda p, n: np.ones_like(p, dtype=np.float64),
    "div": lambda p, n: p / n,
    "linear": lambda p, n: np.maximum(0.0, 1.0 - 0.1 * (n - p)),
    "quadratic": lambda p, n: (p / n) ** 2,
    "log": lambda p, n: 1.0 / np.log10(n - p + 1.7),
}
STEP_WEIGHTS = {
    # session-rec's weighting of an item ``s`` steps back (s = 1: adjacent / the last click);
    # V-SKNN's weighting_score of neighbours and the sequential rules' distance weights
    "same": lambda s: np.ones_like(s, dtype=np.float64),
    "div": lambda s: 1.0 / s,
    "linear": lambda s: np.maximum(0.0, 1.0 - 0.1 * s),
    "quadratic": lambda s: 1.0 / (s * s),
    "log": lambda s: 1.0 / np.log10(s + 1.7),
}


class SessionIndex:
    """Training sessions indexed for neighbour search.

    sessions: S sessions in date order (index 0 = oldest), internal ids 1..n_items;
    ages: float64[S] days from each session to the end of training, or None (no time decay).
    """

    def __init__(self, sessions: CSRSessions, n_items: int, ages: np.ndarray | None = None):
        items, offsets = np.asarray(sessions.items, dtype=np.int64), np.asarray(sessions.offsets, dtype=np.int64)
        self.n_items = n_items
        self.n_sessions = n_sessions = len(offsets) - 1
        self.width = width = n_items + 1
        lengths = np.diff(offsets)
        owner = np.repeat(np.arange(n_sessions), lengths)
        position = np.arange(len(items)) - np.repeat(offsets[:-1], lengths) + 1
        keys = owner * width + items
        # last click of each (session, item): the last of its key in a stable sort
        order = np.argsort(keys, kind="stable")
        last = np.ones(len(items), dtype=bool)
        last[order[:-1]] = keys[order[:-1]] != keys[order[1:]]
        self.click_item, self.click_position, self.click_offsets = items, position, offsets
        self.click_is_last = last
        self.pair_keys = keys[order][last[order]]  # sorted (session, item) keys, distinct
        pair_session, pair_item = np.divmod(self.pair_keys, width)
        self.session_size = np.bincount(pair_session, minlength=n_sessions).astype(np.float64)
        self.binary = sp.csr_matrix(
            (np.ones(len(pair_item)), (pair_session, pair_item)), shape=(n_sessions, width)
        )
        # postings: item -> sessions holding it, most recent first
        by_item = np.lexsort((-pair_session, pair_item))
        self.posting_sessions = pair_session[by_item]
        self.posting_offsets = np.zeros(width + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_item, minlength=width), out=self.posting_offsets[1:])
        clicks = np.bincount(items, minlength=width).astype(np.float64)
        with np.errstate(divide="ignore"):
            self.idf = np.where(clicks > 0, np.log(max(n_sessions, 1) / np.maximum(clicks, 1.0)), 0.0)
        if ages is not None:
            ages = np.asarray(ages, dtype=np.float64)
            if ages.shape != (n_sessions,):
                raise ValueError(f"ages must be float[{n_sessions}] (one per session), got shape {ages.shape}")
        self.ages = ages


@dataclass(frozen=True)
class _Queries:
    """The distinct items of B prefixes: ``row, item, position`` int64[Q] (last click, 1-based),
    sorted by (row, item); ``length`` int64[B] clicks per prefix; ``keys`` = row * width + item."""

    row: np.ndarray
    item: np.ndarray
    position: np.ndarray
    length: np.ndarray
    keys: np.ndarray


def _queries(items: np.ndarray, offsets: np.ndarray, width: int) -> _Queries:
    lengths = np.diff(offsets)
    row = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(items)) - np.repeat(offsets[:-1], lengths) + 1
    keys = row * width + items
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = sorted_keys[:-1] != sorted_keys[1:]
    chosen = order[last]
    return _Queries(row[chosen], items[chosen], position[chosen], lengths, sorted_keys[last])


class _KNN:
    """The shared search: candidates, similarity (per model), top-k neighbours, scores (per model)."""

    name = ""

    def __init__(self, k: int, sample_size: int):
        for label, value in (("k", k), ("sample_size", sample_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{type(self).__name__}: {label} must be an int >= 1, got {value!r}")
        self.k, self.sample_size = int(k), int(sample_size)
        self.index: SessionIndex | None = None

    def fit(self, index: SessionIndex) -> _KNN:
        self.index = index
        return self

    # per model
    def _query_weights(self, q: _Queries) -> np.ndarray:
        return np.ones(len(q.row))

    def _similarity(self, overlap, q: _Queries, rows, sessions) -> np.ndarray:
        raise NotImplementedError

    def _item_scores(self, q: _Queries, n_rows: int, rows, sessions, sim) -> sp.csr_matrix:
        raise NotImplementedError

    def scores(self, items: np.ndarray, offsets: np.ndarray) -> sp.csr_matrix:
        """Scores float64[B, n_items + 1] (csr) of B prefixes in CSR form (int64[M], int64[B+1])."""
        index = self.index
        if index is None:
            raise ValueError(f"{self.name} is not fitted: call fit(SessionIndex) first")
        n_rows = len(offsets) - 1
        q = _queries(items, offsets, index.width)
        weights = self._query_weights(q)
        # candidate overlaps: each prefix item brings its sample_size most recent sessions
        starts = index.posting_offsets[q.item]
        taken = np.minimum(index.posting_offsets[q.item + 1] - starts, self.sample_size)
        sessions = index.posting_sessions[ranges(starts, taken)]
        overlap = sp.csr_matrix(
            (np.repeat(weights, taken), (np.repeat(q.row, taken), sessions)), shape=(n_rows, index.n_sessions)
        )
        overlap.sum_duplicates()
        counts = np.diff(overlap.indptr)
        width = int(min(self.sample_size, counts.max(initial=0)))
        if width == 0:
            return sp.csr_matrix((n_rows, index.width))
        # the sample_size most recent candidates of each row, most recent in column 0
        entry_row = np.repeat(np.arange(n_rows), counts)
        column = overlap.indptr[1:][entry_row] - 1 - np.arange(len(overlap.indices))
        keep = column < width
        candidate = np.full((n_rows, width), -1, dtype=np.int64)
        weight = np.zeros((n_rows, width))
        candidate[entry_row[keep], column[keep]] = overlap.indices[keep]
        weight[entry_row[keep], column[keep]] = overlap.data[keep]
        present = candidate >= 0
        rows_2d = np.broadcast_to(np.arange(n_rows)[:, None], candidate.shape)
        sim = np.full(candidate.shape, -np.inf)
        sim[present] = self._similarity(weight[present], q, rows_2d[present], candidate[present])
        sim = np.round(sim, 12)  # sums in another order must not break ties differently
        chosen = _top_k_mask(sim, self.k) & (sim > 0)
        rows, sessions = rows_2d[chosen], candidate[chosen]
        return self._item_scores(q, n_rows, rows, sessions, sim[chosen])

    def rank(self, items: np.ndarray, offsets: np.ndarray, targets: np.ndarray, k: int):
        """``ranks: int64[B]`` and ``top_k: int64[B, min(k, n_items)]`` (see ``ranking``)."""
        return ranks_and_top_k(self.scores(items, offsets), targets, k)

    # shared pieces of the per-model formulas
    def _last_query_position(self, q: _Queries, rows, sessions) -> np.ndarray:
        """p*: the last prefix position whose item the neighbour holds, int64[N] (one per pair)."""
        index = self.index
        row_starts = np.searchsorted(q.row, rows, side="left")
        row_counts = np.searchsorted(q.row, rows, side="right") - row_starts
        at = ranges(row_starts, row_counts)
        pair = np.repeat(np.arange(len(rows)), row_counts)
        wanted = np.repeat(sessions, row_counts) * index.width + q.item[at]
        hit = np.searchsorted(index.pair_keys, wanted)
        held = index.pair_keys[np.minimum(hit, len(index.pair_keys) - 1)] == wanted
        best = np.zeros(len(rows), dtype=np.int64)
        np.maximum.at(best, pair[held], q.position[at][held])
        return best

    def _neighbour_sum(self, n_rows: int, rows, sessions, pair_weight) -> sp.csr_matrix:
        """sum over neighbours of ``pair_weight`` for every item of the neighbour."""
        neighbours = sp.csr_matrix((pair_weight, (rows, sessions)), shape=(n_rows, self.index.n_sessions))
        return sp.csr_matrix(neighbours @ self.index.binary)

    def _stan_scores(self, q: _Queries, n_rows: int, rows, sessions, pair_weight, lambda_inh, item_factor=None):
        """STAN's item neighbourhood: ``pair_weight * exp(-|pos_n(j) - pos_n*| / lambda_inh)``."""
        index = self.index
        starts = index.click_offsets[sessions]
        lengths = index.click_offsets[sessions + 1] - starts
        at = ranges(starts, lengths)
        pair = np.repeat(np.arange(len(rows)), lengths)
        item = index.click_item[at]
        position = index.click_position[at]
        wanted = rows[pair] * index.width + item
        hit = np.searchsorted(q.keys, wanted)
        in_query = q.keys[np.minimum(hit, len(q.keys) - 1)] == wanted
        anchor = np.zeros(len(rows), dtype=np.int64)
        np.maximum.at(anchor, pair[in_query], position[in_query])
        last = index.click_is_last[at]
        pair, item, position = pair[last], item[last], position[last]
        value = pair_weight[pair] * np.exp(-np.abs(position - anchor[pair]) / lambda_inh)
        if item_factor is not None:
            value = value * item_factor[item]
        return sp.csr_matrix((value, (rows[pair], item)), shape=(n_rows, index.width))

    def _time_decay(self, sessions, lambda_snh) -> np.ndarray | float:
        if lambda_snh is None or self.index.ages is None:
            return 1.0
        return np.exp(-self.index.ages[sessions] / lambda_snh)


def _top_k_mask(sim: np.ndarray, k: int) -> np.ndarray:
    """bool[B, W]: the k largest of each row; among equal values the leftmost (most recent)."""
    n_rows, width = sim.shape
    if width <= k:
        return np.isfinite(sim)
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1 : k]
    above = sim > kth
    equal = sim == kth
    room = k - above.sum(axis=1, keepdims=True)
    return above | (equal & (np.cumsum(equal, axis=1) <= room))


class SKNN(_KNN):
    """Session-kNN with cosine similarity (Ludewig & Jannach 2018); session-rec's ContextKNN."""

    name = "sknn"

    def __init__(self, k: int = 100, sample_size: int = 1000):
        super().__init__(k, sample_size)

    def _similarity(self, overlap, q, rows, sessions):
        distinct = np.bincount(q.row, minlength=len(q.length)).astype(np.float64)
        return overlap / np.sqrt(distinct[rows] * self.index.session_size[sessions])

    def _item_scores(self, q, n_rows, rows, sessions, sim):
        return self._neighbour_sum(n_rows, rows, sessions, sim)


class VSKNN(_KNN):
    """Vector multiplication session-kNN (Ludewig & Jannach 2018); session-rec's VMContextKNN."""

    name = "vsknn"

    def __init__(self, k: int = 100, sample_size: int = 1000, weighting: str = "div",
                 weighting_score: str = "div", idf_weighting: float = 0.0):
        super().__init__(k, sample_size)
        if weighting not in _POSITION_WEIGHTS or weighting_score not in STEP_WEIGHTS:
            raise ValueError(
                f"VSKNN: weighting and weighting_score must be in {sorted(_POSITION_WEIGHTS)}, "
                f"got {weighting!r}, {weighting_score!r}"
            )
        self.weighting, self.weighting_score, self.idf_weighting = weighting, weighting_score, float(idf_weighting)

    def _query_weights(self, q):
        return _POSITION_WEIGHTS[self.weighting](q.position.astype(np.float64), q.length[q.row].astype(np.float64))

    def _similarity(self, overlap, q, rows, sessions):
        distinct = np.bincount(q.row, minlength=len(q.length)).astype(np.float64)
        return overlap / distinct[rows]

    def _item_scores(self, q, n_rows, rows, sessions, sim):
        step = q.length[rows] - self._last_query_position(q, rows, sessions) + 1
        scores = self._neighbour_sum(n_rows, rows, sessions, sim * STEP_WEIGHTS[self.weighting_score](step))
        if self.idf_weighting:
            scores = sp.csr_matrix(scores @ sp.diags(1.0 + self.idf_weighting * self.index.idf))
        return scores


class STAN(_KNN):
    """Sequence and time aware neighbourhood (Garg et al., SIGIR 2019); session-rec's STAN.

    lambda_snh is in days (None: no time decay)."""

    name = "stan"

    def __init__(self, k: int = 100, sample_size: int = 5000, lambda_spw: float = 1.02,
                 lambda_snh: float | None = 5.0, lambda_inh: float = 2.05):
        super().__init__(k, sample_size)
        _check_positive(self, lambda_spw=lambda_spw, lambda_inh=lambda_inh, lambda_snh=lambda_snh)
        self.lambda_spw, self.lambda_snh, self.lambda_inh = lambda_spw, lambda_snh, lambda_inh

    def _query_weights(self, q):
        return np.exp((q.position - q.length[q.row]) / self.lambda_spw)

    def _similarity(self, overlap, q, rows, sessions):
        norm = np.sqrt(np.bincount(q.row, weights=self._query_weights(q) ** 2, minlength=len(q.length)))
        sim = overlap / (norm[rows] * np.sqrt(self.index.session_size[sessions]))
        return sim * self._time_decay(sessions, self.lambda_snh)

    def _item_scores(self, q, n_rows, rows, sessions, sim):
        return self._stan_scores(q, n_rows, rows, sessions, sim, self.lambda_inh)


class VSTAN(STAN):
    """STAN extended with V-SKNN's ideas (Ludewig et al. 2021); session-rec's VSKNN_STAN."""

    name = "vstan"

    def __init__(self, k: int = 100, sample_size: int = 5000, similarity: str = "cosine",
                 lambda_spw: float = 1.02, lambda_snh: float | None = 5.0, lambda_inh: float = 2.05,
                 lambda_ipw: float = 1.02, lambda_idf: float = 5.0):
        super().__init__(k, sample_size, lambda_spw, lambda_snh, lambda_inh)
        if similarity not in ("cosine", "vec"):
            raise ValueError(f"VSTAN: similarity must be 'cosine' or 'vec', got {similarity!r}")
        _check_positive(self, lambda_ipw=lambda_ipw)
        if lambda_idf < 0:
            raise ValueError(f"VSTAN: lambda_idf must be >= 0, got {lambda_idf!r}")
        self.similarity, self.lambda_ipw, self.lambda_idf = similarity, lambda_ipw, lambda_idf

    def _similarity(self, overlap, q, rows, sessions):
        if self.similarity == "cosine":
            return super()._similarity(overlap, q, rows, sessions)
        distinct = np.bincount(q.row, minlength=len(q.length)).astype(np.float64)
        return overlap / distinct[rows] * self._time_decay(sessions, self.lambda_snh)

    def _item_scores(self, q, n_rows, rows, sessions, sim):
        ipw = np.exp((self._last_query_position(q, rows, sessions) - q.length[rows]) / self.lambda_ipw)
        factor = 1.0 + self.lambda_idf * self.index.idf
        return self._stan_scores(q, n_rows, rows, sessions, sim * ipw, self.lambda_inh, factor)


def _check_positive(model, **values) -> None:
    for label, value in values.items():
        if value is not None and not value > 0:
            raise ValueError(f"{type(model).__name__}: {label} must be > 0 (or None), got {value!r}")
