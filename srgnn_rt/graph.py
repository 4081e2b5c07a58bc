"""Batched SR-GNN session graphs: the model inputs of a batch of sessions.

``build_graphs`` turns a batch of sessions of internal item ids (1..n_items; 0
is padding) into padded arrays (see ``SessionGraphs``). Sessions come as any of

- a list or tuple of sessions, each a list / tuple of ints or a 1-D integer
  numpy array (what a service receives);
- a ``CSRSessions`` (what training slices mini-batches from);
- a 0-padded 2-D integer numpy array ``int64[B, L]`` (clicks first, then 0s).

Input is validated here (vectorised); the graphs are built by the compiled
kernel ``srgnn_rt._graph`` (GIL released, parallel over sessions) or, with
``backend="python"``, by the numpy specification in ``srgnn_rt.graph_reference``.
The graph semantics are documented there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from srgnn_rt import _graph, graph_reference
from srgnn_rt.validation import positive_int

_EDGE_WEIGHTS = ("binary", "count")
_BACKENDS = ("compiled", "python")
_INT64 = np.dtype(np.int64)
_INT64_MAX = np.iinfo(np.int64).max
MAX_PAD_NODES = 1 << 16
"""Largest ``pad_nodes``: one session's padded adjacency is then 2**16 x 2**17 float32 = 32 GiB."""
MAX_PAD_LENGTH = 1 << 24
"""Largest ``pad_length``: 16.7 M clicks, 192 MiB of alias and mask per session."""
_LIMITS = {"n_items": _INT64_MAX, "max_length": _INT64_MAX, "pad_nodes": MAX_PAD_NODES,
           "pad_length": MAX_PAD_LENGTH}


class CSRSessions(NamedTuple):
    """A batch of B sessions, end to end.

    items: int64[M] the clicks of all sessions (internal ids >= 1);
    offsets: int64[B+1] with session b = ``items[offsets[b]:offsets[b+1]]``,
    ``offsets[0] == 0`` and ``offsets[B] == M``.
    """

    items: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_sequences(cls, sessions, *, n_items: int | None = None) -> CSRSessions:
        """Validated CSR of a list or tuple of sessions (lists / tuples of ints or 1-D int arrays)."""
        n_items = _optional_positive_int(n_items, "n_items")
        items, offsets, _ = _validated_csr(sessions, n_items)
        return cls(items, offsets)

    @property
    def lengths(self) -> np.ndarray:
        """int64[B]: clicks per session."""
        return np.diff(self.offsets)

    def take(self, indices) -> CSRSessions:
        """Sessions ``indices`` (int[K], each in 0..B-1, repeats allowed) as a new CSRSessions."""
        items, offsets = np.asarray(self.items), np.asarray(self.offsets)
        indices = np.asarray(indices)
        if indices.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {indices.shape}")
        if indices.size == 0:
            return CSRSessions(items[:0].copy(), np.zeros(1, dtype=np.int64))
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {indices.dtype}")
        n_sessions = len(offsets) - 1
        outside = (indices < 0) | (indices >= n_sessions)
        if outside.any():
            at = int(np.argmax(outside))
            raise ValueError(f"indices[{at}] = {indices[at]} is outside 0..{n_sessions - 1}")
        starts = offsets[indices]
        lengths = offsets[indices + 1] - starts
        taken_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=taken_offsets[1:])
        # Click k of the result, in taken session b, is items[starts[b] + k - taken_offsets[b]].
        shift = np.repeat(starts - taken_offsets[:-1], lengths)
        return CSRSessions(items[np.arange(taken_offsets[-1]) + shift], taken_offsets)


@dataclass(frozen=True, eq=False)
class SessionGraphs:
    """Padded graphs of B sessions; N = nodes per session, T = clicks per session.

    items: int64[B, N] the distinct item ids of each session (its nodes), in
        ascending id order (the order of ``np.unique``), 0-padded.
    adjacency: float32[B, N, 2N] = ``[A_in | A_out]``: ``adjacency[b, j, i]`` =
        w(i -> j) / in-weight of j, ``adjacency[b, i, N + j]`` = w(i -> j) /
        out-weight of i (node indices); 0 in padding and edge-less rows.
    alias: int64[B, T] the node index of each kept click, 0 in padding.
    mask: float32[B, T] 1.0 at kept clicks, 0.0 in padding (float so the
        model multiplies by it directly).
    lengths: int64[B] kept clicks per session (after ``max_length``).
    n_nodes: int64[B] distinct items per session (real rows of ``items``).
    """

    items: np.ndarray
    adjacency: np.ndarray
    alias: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    n_nodes: np.ndarray


def build_graphs(
    sessions,
    *,
    n_items: int | None = None,
    max_length: int | None = None,
    pad_nodes: int | None = None,
    pad_length: int | None = None,
    edge_weight: str = "binary",
    backend: str = "compiled",
) -> SessionGraphs:
    """Session graphs of a batch (list of sessions, ``CSRSessions`` or 0-padded 2-D int array).

    n_items: ids above it are an error. max_length: keep only the last
    ``max_length`` clicks of longer sessions (default: all). pad_nodes /
    pad_length: fixed N / T (static shapes, at most ``MAX_PAD_NODES`` /
    ``MAX_PAD_LENGTH``); a session that does not fit is an error. Otherwise
    N = most distinct items in one session and T = longest kept session. edge_weight: ``"binary"`` (an edge counts once, the authors'
    code) or ``"count"`` (weighted by repeats, the paper's text). backend:
    ``"compiled"`` or ``"python"`` (the numpy specification, for checks).

    Raises TypeError / ValueError naming the session, position and value of
    bad input.
    """
    n_items = _optional_positive_int(n_items, "n_items")
    max_length = _optional_positive_int(max_length, "max_length")
    pad_nodes = _optional_positive_int(pad_nodes, "pad_nodes")
    pad_length = _optional_positive_int(pad_length, "pad_length")
    if edge_weight not in _EDGE_WEIGHTS:
        raise ValueError(f"edge_weight must be one of {_EDGE_WEIGHTS}, got {edge_weight!r}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")

    items, offsets, lengths = _validated_csr(sessions, n_items)
    kept = lengths if max_length is None else np.minimum(lengths, max_length)
    if backend == "compiled":
        *arrays, n_nodes = _graph.build(items, offsets, kept, pad_nodes or 0, pad_length or 0, edge_weight == "count")
    else:
        ends = offsets[1:].tolist()
        graphs = [
            graph_reference.session_graph(items[end - k : end], edge_weight) for end, k in zip(ends, kept.tolist())
        ]
        n_nodes = np.array([len(nodes) for nodes, _, _ in graphs], dtype=np.int64)
        # The shape rule (and its errors) is shared with the compiled kernel.
        n_node_cols, n_click_cols = _graph.output_shape(n_nodes, kept, pad_nodes or 0, pad_length or 0)
        arrays = graph_reference.stack_padded(graphs, n_node_cols, n_click_cols)
    return SessionGraphs(*arrays, lengths=kept, n_nodes=n_nodes)


def _optional_positive_int(value, name: str) -> int | None:
    """None, or ``value`` as an int in 1..``_LIMITS[name]`` (TypeError / ValueError naming ``name``)."""
    if value is None:
        return None
    if isinstance(value, int) and value.bit_length() > 64:  # before any message prints all its digits
        raise ValueError(f"{name} must be in 1..{_LIMITS[name]}, got an int of {value.bit_length()} bits")
    value = positive_int(value, name)
    if value > _LIMITS[name]:
        shown = value if value.bit_length() <= 64 else f"an int of {value.bit_length()} bits"
        raise ValueError(f"{name} must be in 1..{_LIMITS[name]}, got {shown}")
    return value


def _validated_csr(sessions, n_items: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(items: int64[M], offsets: int64[B+1], lengths: int64[B])`` of any accepted input form, fully checked."""
    if isinstance(sessions, CSRSessions):
        items, offsets = _csr_arrays(sessions)
    elif isinstance(sessions, np.ndarray):
        items, offsets = _padded_to_csr(sessions)
    elif isinstance(sessions, (list, tuple)):
        items, offsets = _graph.sequences_to_csr(sessions)
    else:
        raise TypeError(
            f"sessions must be a list or tuple of sessions, a CSRSessions or a 0-padded 2-D "
            f"integer array, got {type(sessions).__name__}"
        )
    return items, offsets, _checked_lengths(items, offsets, n_items)


def _integer_array(array, name: str) -> np.ndarray:
    """``array`` as int64 (TypeError for non-integer dtypes, ValueError past int64)."""
    array = np.asarray(array)
    if array.dtype is _INT64:
        return array
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} has dtype {array.dtype}; item ids and offsets must be integers")
    if array.dtype == np.uint64 and array.size and array.max() > _INT64_MAX:
        at = np.unravel_index(int(np.argmax(array > _INT64_MAX)), array.shape)
        raise ValueError(f"{name}[{', '.join(map(str, at))}] = {array[at]} does not fit in int64")
    return array.astype(np.int64, copy=False)


def _csr_arrays(csr: CSRSessions) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous int64 ``(items, offsets)`` of a CSRSessions whose offsets span exactly its items."""
    items = _integer_array(csr.items, "CSRSessions.items")
    offsets = _integer_array(csr.offsets, "CSRSessions.offsets")
    if items.ndim != 1 or offsets.ndim != 1:
        raise ValueError(
            f"CSRSessions.items and .offsets must be 1-D, got shapes {items.shape} and {offsets.shape}"
        )
    if len(offsets) < 2:
        raise ValueError("the batch is empty: CSRSessions.offsets must hold B + 1 >= 2 entries")
    if offsets[0] != 0 or offsets[-1] != len(items):
        raise ValueError(
            f"CSRSessions.offsets must start at 0 and end at len(items) = {len(items)}, "
            f"got {offsets[0]} .. {offsets[-1]}"
        )
    return np.ascontiguousarray(items), np.ascontiguousarray(offsets)  # monotonicity: _checked_lengths


def _padded_to_csr(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of a 0-padded ``int[B, L]`` array (each row: clicks, then only 0s)."""
    if padded.ndim != 2:
        raise ValueError(
            f"a sessions array must be 2-D (B, L), 0-padded; got shape {padded.shape} "
            f"(pass one session as [array] or a list of 1-D arrays)"
        )
    padded = _integer_array(padded, "sessions")
    if padded.shape[0] == 0:
        raise ValueError("the batch is empty: the sessions array has 0 rows")
    negative = padded < 0
    if negative.any():
        b, t = np.unravel_index(int(np.argmax(negative)), padded.shape)
        raise ValueError(f"session {b} has item id {padded[b, t]} at position {t} (ids start at 1)")
    clicked = padded != 0
    after_padding = clicked[:, 1:] & ~clicked[:, :-1]
    if after_padding.any():
        b, t = np.unravel_index(int(np.argmax(after_padding)), after_padding.shape)
        raise ValueError(
            f"session {b} has item id {padded[b, t + 1]} at position {t + 1} after padding (0) "
            f"at position {t}; padding must only trail the clicks"
        )
    offsets = np.zeros(padded.shape[0] + 1, dtype=np.int64)
    np.cumsum(clicked.sum(axis=1), out=offsets[1:])
    return padded[clicked], offsets


def _checked_lengths(items: np.ndarray, offsets: np.ndarray, n_items: int | None) -> np.ndarray:
    """Session lengths int64[B]; ValueError naming the first empty/decreasing session or id outside 1..n_items."""
    if len(offsets) < 2:
        raise ValueError("the batch is empty: no sessions")
    lengths = offsets[1:] - offsets[:-1]
    shortest, _ = _graph.min_max(lengths)
    if shortest < 0:
        s = int(np.argmax(lengths < 0))
        raise ValueError(f"offsets decrease at session {s}: {offsets[s]} > {offsets[s + 1]}")
    if shortest == 0:
        raise ValueError(f"session {int(np.argmax(lengths == 0))} is empty")
    low, high = _graph.min_max(items)
    if low < 1:
        _raise_bad_id(items, offsets, items < 1, "(ids start at 1)")
    if n_items is not None and high > n_items:
        _raise_bad_id(items, offsets, items > n_items, f"above n_items={n_items}")
    return lengths


def _raise_bad_id(items: np.ndarray, offsets: np.ndarray, bad: np.ndarray, why: str) -> None:
    at = int(np.argmax(bad))
    session = int(np.searchsorted(offsets, at, side="right")) - 1
    raise ValueError(f"session {session} has item id {items[at]} at position {at - offsets[session]} {why}")
