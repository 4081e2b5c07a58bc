"""The serving runtime: a bundle + onnxruntime -> recommendations for sessions of raw item ids.

Needs numpy and onnxruntime only, never torch. A request goes: raw ids -> the
last ``max_length`` known clicks of each session, as internal ids (``Vocab``;
unknown ids dropped and counted, or an error) -> batches of sessions of similar
cost -> graph arrays from the compiled builder -> the ONNX model's in-graph
top-k -> raw ids. Sessions with no known item get the most popular items (or an
error).

One request must not cost everyone, so every session is bounded:

- a session longer than ``max_clicks`` raw ids (default ``DEFAULT_MAX_CLICKS``)
  is refused with a ValueError naming it, after looking at its length only;
- a session is cut to its last ``max_length`` known clicks (the bundle's, or
  ``DEFAULT_MAX_LENGTH`` for bundles that record none), walking back from its
  last click and stopping at the known click before them: the work per session
  is bounded by the cap (plus the unknown ids met on the way), never by the
  session's length;
- a batch runs in buckets of sessions of similar size (``cost_buckets``), so
  short sessions are never padded to a long one.

One ``Recommender`` holds one onnxruntime session, created at load and shared by
all calls; ``recommend`` keeps every per-call state local, so any number of
threads may call it at once and get what sequential calls give.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnxruntime

from .bundle import (
    ENCODER_FILENAME,
    MODEL_FILENAME,
    Bundle,
    BundleError,
    require_exact_model,
)
from .graph import build_graphs
from .retrieval import Retriever, encoder_model
from .validation import positive_int
from .vocab import RawId

__all__ = ["Recommendation", "Recommender", "cost_buckets", "graph_bytes"]

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_DEVICES = ("auto", "cpu", "cuda")
_UNKNOWN = ("drop", "error")
_EMPTY = ("popular", "error")
_INPUTS = ("items", "adjacency", "alias", "mask", "k")
RETRIEVALS = ("exact", "index")
_ENCODER_INPUTS = ("node_embeddings", "adjacency", "alias", "mask")
BUCKET_SIZE = 64
"""Most sessions in one model run; larger batches run in several (see ``cost_buckets``)."""
SMALL_FEED_BYTES = 1 << 16
"""Graph arrays up to this size are one run whatever their padding: below it a run's fixed cost dominates."""
DEFAULT_MAX_LENGTH = 200
"""Known clicks kept per session when neither the bundle nor ``Recommender.load`` sets ``max_length``.

Export records it in bundles whose training set no cut. Generous: the
Diginetica sample's sessions average 4.1 clicks, 99.9 % have at most 40 and the
longest 54, and SR-GNN's readout weighs the last click most; small enough that
a session's graph stays within 200 x 400 float32 (320 KB).
"""
DEFAULT_MAX_CLICKS = 20_000
"""Longest session accepted, in raw clicks before the cut (``Recommender.load(max_clicks=...)``).

Cutting walks back from the last click, so a long session of known ids costs
no more than a short one; this limit bounds the walk through unknown ids (about
0.4 microseconds each: 8 ms for 20,000) and refuses absurd requests before any
work. Generous: 100 times the default cut.
"""
_METADATA = {"n_items": "srgnn_rt.n_items", "embedding_size": "srgnn_rt.embedding_size"}


@dataclass(frozen=True, eq=False)
class Recommendation:
    """Recommendations for one session, best first.

    ``items``: raw item ids (k of them; fewer only when ``exclude_seen`` leaves fewer
    than k items); ``scores: float32[len(items)]``: the model's scores (logits), or the
    items' training click counts when ``fallback``; ``n_unknown``: raw ids of the
    session that the model does not know (dropped); ``fallback``: the session had
    no known item, so ``items`` are the most popular ones.
    """

    items: list[RawId]
    scores: np.ndarray
    n_unknown: int
    fallback: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"items": [...], "scores": [...], "n_unknown": int, "fallback": bool}``."""
        return {"items": list(self.items), "scores": self.scores.tolist(), "n_unknown": self.n_unknown,
                "fallback": self.fallback}


@dataclass(frozen=True)
class _Encoded:
    """A batch of sessions as known internal ids: ``sessions[i]`` (list of ints, possibly empty)
    and ``n_unknown[i]`` dropped raw ids."""

    sessions: list[list[int]]
    n_unknown: list[int]


class Recommender:
    """SR-GNN recommendations from a bundle directory; create with ``Recommender.load``."""

    def __init__(
        self,
        bundle: Bundle,
        session: onnxruntime.InferenceSession,
        *,
        max_length: int | None = None,
        max_clicks: int | None = DEFAULT_MAX_CLICKS,
        retriever: Retriever | None = None,
    ):
        self._bundle = bundle
        self._retriever = retriever
        self._session = session
        self._provider = session.get_providers()[0]
        self._io_device = "cuda" if self._provider == _CUDA else None
        builder = bundle.graph_builder
        if max_length is None:
            max_length = builder.max_length if builder.max_length is not None else DEFAULT_MAX_LENGTH
        self._max_length = positive_int(max_length, "max_length")
        self._max_clicks = None if max_clicks is None else positive_int(max_clicks, "max_clicks")
        self._edge_weight = builder.edge_weight
        self._n_items = bundle.n_items
        self._vocab = bundle.vocab
        kinds = {type(raw) for raw in bundle.vocab.raw_ids}
        self._raw_id_type = kinds.pop() if len(kinds) == 1 else None
        counts = bundle.item_counts[1:]
        self._popular_ids = np.argsort(-counts, kind="stable").astype(np.int64) + 1
        self._popular_scores = counts[self._popular_ids - 1].astype(np.float32)
        if retriever is None:
            _check_model(bundle, session, MODEL_FILENAME, _INPUTS)
        else:
            _check_model(bundle, session, ENCODER_FILENAME, _ENCODER_INPUTS)

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike | Bundle,
        *,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        threads: int | None = None,
        max_length: int | None = None,
        max_clicks: int | None = DEFAULT_MAX_CLICKS,
        retrieval: Literal["exact", "index"] = "exact",
        spin_wait: bool = True,
    ) -> Recommender:
        """Load and check a bundle directory (or an already loaded ``Bundle``).

        ``device="auto"`` uses CUDA when onnxruntime's CUDA provider really loads and
        otherwise the CPU, with one warning; ``"cuda"`` raises ValueError when the CUDA
        provider does not load; ``"cpu"`` never tries CUDA. ``threads``: onnxruntime's
        intra-op threads (default: onnxruntime's choice, one per core). ``spin_wait``:
        whether idle intra-op threads spin for the next run (onnxruntime's default):
        about 0.1 ms less at batch 1 on 2 threads, but they burn the cores that the
        process's other threads need, e.g. a server's event loop; the engines
        (Ray Serve, Triton) and index mode load with ``False``.

        ``max_length``: known clicks kept per session (default: the bundle's
        ``graph_builder.max_length``, or ``DEFAULT_MAX_LENGTH`` when it records
        none; another value serves the model on sessions unlike its training).
        ``max_clicks``: longest session accepted, in raw ids before the cut (None:
        no limit); longer ones raise ValueError.
        ``retrieval="index"`` serves from the bundle's item index (``srgnn-rt index``; see
        ``srgnn_rt.retrieval``): the encoder gives s_h, the index proposes candidates,
        exact scores rank them; model.onnx and its item tables are not loaded. It raises
        BundleError when the bundle has no (matching) index and ImportError without faiss.
        A retrieval-only bundle (exported without model.onnx) serves in this mode only:
        ``"exact"`` raises BundleError saying so.
        """
        if max_clicks is not None:
            positive_int(max_clicks, "max_clicks")
        if max_length is not None:
            positive_int(max_length, "max_length")
        if retrieval not in RETRIEVALS:
            raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}, got {device!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
        if not isinstance(spin_wait, bool):
            raise TypeError(f"spin_wait must be True or False, got {spin_wait!r}")
        if not isinstance(bundle, Bundle):  # index mode serves encoder.onnx: model.onnx is not read
            if retrieval == "exact":  # a retrieval-only bundle fails here, before its item table is read
                require_exact_model(bundle)
            bundle = Bundle.load(bundle, skip=(MODEL_FILENAME,) if retrieval == "index" else ())
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        has_provider = _CUDA in onnxruntime.get_available_providers()
        has_driver = _cuda_driver_present()
        want_cuda = device != "cpu" and has_provider and has_driver
        providers = [_CUDA, _CPU] if want_cuda else [_CPU]
        retriever = Retriever.load(bundle) if retrieval == "index" else None
        if not spin_wait or retriever is not None:  # in index mode faiss's threads search right after each run
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = bundle.model_bytes if retriever is None else encoder_model(bundle)
        name = MODEL_FILENAME if retriever is None else ENCODER_FILENAME
        try:  # from the verified bytes, never from the path: the file may have been replaced since
            session = onnxruntime.InferenceSession(model, options, providers=providers)
        except MemoryError:
            raise
        except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base class
            raise BundleError(f"bundle {bundle.path}: {name} cannot be loaded by onnxruntime: {exc}") from None
        if device != "cpu" and session.get_providers()[0] != _CUDA:
            if not has_provider:
                why = "this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
            elif not has_driver:
                why = "no NVIDIA driver (libcuda) is present"
            else:
                why = "its CUDA provider failed to load (see onnxruntime's log above)"
            if device == "cuda":
                raise ValueError(f"device='cuda' was asked for but {why}")
            warnings.warn(f"srgnn_rt: running on the CPU: {why}", RuntimeWarning, stacklevel=2)
        return cls(bundle, session, max_length=max_length, max_clicks=max_clicks, retriever=retriever)

    @property
    def provider(self) -> str:
        """The onnxruntime execution provider that runs the model, e.g. ``"CPUExecutionProvider"``."""
        return self._provider

    @property
    def spin_wait(self) -> bool:
        """Whether onnxruntime's idle intra-op threads spin between runs, as the session was created."""
        try:
            entry = self._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # never set: onnxruntime's default, spinning
            return True
        return entry != "0"

    @property
    def bundle(self) -> Bundle:
        return self._bundle

    @property
    def n_items(self) -> int:
        return self._n_items

    @property
    def retriever(self) -> Retriever | None:
        """The index and its parameters in retrieval mode ``"index"``; None in ``"exact"``."""
        return self._retriever

    @property
    def retrieval(self) -> str:
        """``"exact"`` (every item scored by the model) or ``"index"`` (see ``Recommender.load``)."""
        return "exact" if self._retriever is None else "index"

    @property
    def max_length(self) -> int:
        """Sessions are cut to their last ``max_length`` known clicks."""
        return self._max_length

    @property
    def max_clicks(self) -> int | None:
        """Longest session accepted, in raw ids before the cut (None: no limit)."""
        return self._max_clicks

    def request_cost(self, session: Sequence[RawId]) -> int:
        """Upper bound of the clicks the model will see for ``session``: ``min(len(session), max_length)``.

        Cheap (the length only, nothing is encoded) so that a micro-batcher can
        size batches by cost. Raises what ``recommend`` would for a session that
        is not a sequence (TypeError) or is longer than ``max_clicks``
        (ValueError), so such a request can be refused before it is queued.
        """
        return min(self._checked_length(session, 0), self._max_length)

    @property
    def raw_id_type(self) -> type | None:
        """``int`` or ``str`` when every raw item id of the model has that type; None when mixed."""
        return self._raw_id_type

    def recommend(
        self,
        sessions: Sequence[Sequence[RawId]],
        k: int = 20,
        *,
        exclude_seen: bool = False,
        unknown: Literal["drop", "error"] = "drop",
        empty: Literal["popular", "error"] = "popular",
    ) -> list[Recommendation]:
        """The top ``k`` raw item ids of each session of raw item ids, best first.

        ``k``: int, 1 <= k <= n_items (TypeError / ValueError). ``exclude_seen``: leave out
        items the session already holds, still returning k (fewer only when fewer
        remain). ``unknown="drop"`` drops raw ids the model does not know and counts
        them in ``n_unknown``; ``"error"`` raises ValueError. A session with no known
        item gets the most popular items (``fallback=True``) with ``empty="popular"``,
        or raises ValueError with ``"error"``. Raw ids must be int or str (TypeError
        otherwise); a str where the model's ids are all ints, or the reverse, is a
        TypeError too, since ``123`` and ``"123"`` are different items.

        A session is its last ``max_length`` known clicks: it starts at its
        ``max_length``-th last known click, and what lies before counts for nothing
        (not type-checked, not counted in ``n_unknown``, not excluded by
        ``exclude_seen``; the walk back reads at most up to the previous known
        click). A session with at most ``max_length`` known clicks is read whole,
        exactly as without a cut. A session of more than ``max_clicks`` raw ids raises
        ValueError. Each session's answer does not depend on the rest of the batch.
        """
        k = self._checked_k(k)
        if not isinstance(exclude_seen, bool):
            raise TypeError(f"exclude_seen must be a bool, got {exclude_seen!r}")
        if empty not in _EMPTY:
            raise ValueError(f"empty must be one of {_EMPTY}, got {empty!r}")
        encoded = self._encode(sessions, unknown)
        if empty == "error":
            for index, session in enumerate(encoded.sessions):
                if not session:
                    raise ValueError(f"session {index} has no known item ({encoded.n_unknown[index]} unknown ids)")
        known = [index for index, session in enumerate(encoded.sessions) if session]
        results: list[Recommendation | None] = [None] * len(encoded.sessions)
        if known:
            batch = [encoded.sessions[index] for index in known]
            scores, ids = self._top_k(batch, k, exclude_seen)
            for row, index in enumerate(known):
                results[index] = Recommendation(
                    items=self._vocab.decode(ids[row]).tolist(), scores=scores[row],
                    n_unknown=encoded.n_unknown[index], fallback=False,
                )
        for index, session in enumerate(encoded.sessions):
            if not session:
                results[index] = Recommendation(
                    items=self._vocab.decode(self._popular_ids[:k]).tolist(), scores=self._popular_scores[:k].copy(),
                    n_unknown=encoded.n_unknown[index], fallback=True,
                )
        return results

    def recommend_one(
        self,
        session: Sequence[RawId],
        k: int = 20,
        *,
        exclude_seen: bool = False,
        unknown: Literal["drop", "error"] = "drop",
        empty: Literal["popular", "error"] = "popular",
    ) -> Recommendation:
        """``recommend`` for a single session of raw item ids."""
        return self.recommend([session], k, exclude_seen=exclude_seen, unknown=unknown, empty=empty)[0]

    def session_embeddings(
        self, sessions: Sequence[Sequence[RawId]], *, unknown: Literal["drop", "error"] = "drop"
    ) -> np.ndarray:
        """float32[B, d]: the session embedding s_h of each session (for retrieval with an
        ANN index over ``bundle.item_embeddings()``; the score of item i is ``s_h . e_i``).

        Unknown raw ids are dropped or raise as in ``recommend``; a session with no
        known item raises ValueError.
        """
        encoded = self._encode(sessions, unknown)
        for index, session in enumerate(encoded.sessions):
            if not session:
                raise ValueError(f"session {index} has no known item ({encoded.n_unknown[index]} unknown ids)")
        if not encoded.sessions:
            return np.zeros((0, self._bundle.embedding_size), dtype=np.float32)
        (embeddings,) = self._infer(encoded.sessions, 1, ["session_embedding"])
        return embeddings

    def _checked_k(self, k: Any) -> int:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {k!r} of type {type(k).__name__}")
        k = int(k)
        if not 1 <= k <= self._n_items:
            raise ValueError(f"k must be in 1..{self._n_items} (the model's number of items), got {k}")
        return k

    def _encode(self, sessions: Any, unknown: str) -> _Encoded:
        """The kept internal ids of each session (see ``recommend``); TypeError / ValueError for bad input."""
        if unknown not in _UNKNOWN:
            raise ValueError(f"unknown must be one of {_UNKNOWN}, got {unknown!r}")
        if isinstance(sessions, (str, bytes)) or not isinstance(sessions, Sequence):
            raise TypeError(
                f"sessions must be a list of sessions (lists of raw item ids), got {type(sessions).__name__}"
            )
        encoded = _Encoded(sessions=[], n_unknown=[])
        for index, session in enumerate(sessions):
            ids, n_unknown = self._kept_clicks(session, index, unknown)
            encoded.sessions.append(ids)
            encoded.n_unknown.append(n_unknown)
        return encoded

    def _checked_length(self, session: Any, index: int) -> int:
        """``len(session)`` of a sequence or 1-D array of at most ``max_clicks`` ids, or TypeError / ValueError."""
        if isinstance(session, np.ndarray):
            if session.ndim != 1 or session.dtype.kind not in "iuUO":
                raise TypeError(f"session {index} must be a 1-D array of raw item ids, got {session.dtype}"
                                f"{list(session.shape)}")
        elif isinstance(session, (str, bytes)) or not isinstance(session, Sequence):
            raise TypeError(
                f"session {index} must be a sequence of raw item ids, got {type(session).__name__}"
                f" (recommend takes a list of sessions; recommend_one takes one session)"
            )
        length = len(session)
        if self._max_clicks is not None and length > self._max_clicks:
            raise ValueError(
                f"session {index} has {length} clicks, more than max_clicks={self._max_clicks} "
                f"(Recommender.load(max_clicks=...) sets the limit)"
            )
        return length

    def _kept_clicks(self, session: Any, index: int, unknown: str) -> tuple[list[int], int]:
        """Internal ids of the last ``max_length`` known clicks of a session, and its unknown ids counted.

        A session with more than ``max_length`` known clicks starts at its
        ``max_length``-th last known click: the walk back from the last click
        stops at the known click before that one, and what lies before the start
        counts for nothing. Errors name the lowest position from the start on: a
        raw id of the wrong type (TypeError) first, then an unknown one with
        ``unknown="error"``. A session with at most ``max_length`` known clicks is
        read whole.
        """
        position = self._checked_length(session, index)
        if isinstance(session, np.ndarray):
            session = session.tolist()  # Python ints / strs; at most max_clicks of them
        expected, internal_id, cap = self._raw_id_type, self._vocab.internal_id, self._max_length
        kept: list[int] = []
        n_unknown = 0
        first_unknown = wrong_type = None
        at_cap = None  # (n_unknown, first_unknown, wrong_type) when the cap-th last known click was read
        while position:
            position -= 1
            value = session[position]
            if type(value) is not expected:
                if isinstance(value, np.integer):
                    value = int(value)
                if type(value) not in (int, str) or (expected is not None and type(value) is not expected):
                    wrong_type = position
                    continue
            item = internal_id(value)
            if not item:
                n_unknown += 1
                first_unknown = position
            elif at_cap is not None:  # a known click before the start: the session is cut
                n_unknown, first_unknown, wrong_type = at_cap
                break
            else:
                kept.append(item)
                if len(kept) == cap:
                    at_cap = n_unknown, first_unknown, wrong_type
        if wrong_type is not None:
            raise _type_error(session[wrong_type], index, wrong_type, expected)
        if first_unknown is not None and unknown == "error":
            raise ValueError(
                f"session {index} has unknown item id {_shown(session[first_unknown])} at position {first_unknown}"
            )
        kept.reverse()
        return kept, n_unknown

    def _feeds(self, sessions: list[list[int]], k: int) -> dict[str, np.ndarray]:
        graphs = build_graphs(sessions, n_items=self._n_items, max_length=self._max_length,
                              edge_weight=self._edge_weight)
        if self._retriever is not None:
            return {"node_embeddings": self._retriever.node_embeddings(graphs.items), "adjacency": graphs.adjacency,
                    "alias": graphs.alias, "mask": graphs.mask}
        return {"items": graphs.items, "adjacency": graphs.adjacency, "alias": graphs.alias, "mask": graphs.mask,
                "k": np.array([k], dtype=np.int64)}

    def _top_k(
        self, sessions: list[list[int]], k: int, exclude_seen: bool
    ) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray]]:
        """Per session (non-empty, internal ids): scores float32[<=k] and internal ids int64[<=k].

        Without ``exclude_seen`` these are the rows of the model's [B, k] outputs. With
        it the model is asked for k + (most distinct items of one session) and each
        session's own items are filtered out here; a row keeps fewer than k only when
        fewer items remain.
        """
        if self._retriever is not None:
            (s_h,) = self._infer(sessions, k, ["session_embedding"])
            seen = [np.unique(np.asarray(session, dtype=np.int64)) for session in sessions] if exclude_seen else None
            return self._retriever.top_k(s_h, k, seen)
        if not exclude_seen:
            return self._infer(sessions, k, ["scores", "item_ids"])
        distinct = [np.unique(np.asarray(session, dtype=np.int64)) for session in sessions]
        wide = min(self._n_items, k + max(len(d) for d in distinct))
        scores, ids = self._infer(sessions, wide, ["scores", "item_ids"])
        # Key (row, id) -> row * (n_items + 1) + id; an id is seen when its key is in the row's keys.
        stride = self._n_items + 1
        rows = np.arange(len(sessions), dtype=np.int64)
        seen_keys = np.concatenate([d + row * stride for row, d in zip(rows.tolist(), distinct)])
        seen = np.isin(ids + rows[:, None] * stride, seen_keys)
        order = np.argsort(seen, axis=1, kind="stable")[:, :k]
        n_left = np.minimum((~seen).sum(axis=1), k)
        kept_scores = np.take_along_axis(scores, order, axis=1)
        kept_ids = np.take_along_axis(ids, order, axis=1)
        return (
            [kept_scores[row, :n] for row, n in enumerate(n_left.tolist())],
            [kept_ids[row, :n] for row, n in enumerate(n_left.tolist())],
        )

    def _infer(self, sessions: list[list[int]], k: int, outputs: list[str]) -> list[np.ndarray]:
        """The model's ``outputs`` for non-empty sessions of internal ids; row i is session i.

        A run pads every session to its most nodes and clicks, so the batch runs
        in the buckets of ``cost_buckets`` (one run when padding costs little);
        the outputs are put back in the caller's order. Each session's result
        does not depend on its bucket.
        """
        n_nodes = np.fromiter((len(set(session)) for session in sessions), dtype=np.int64, count=len(sessions))
        lengths = np.fromiter(map(len, sessions), dtype=np.int64, count=len(sessions))
        buckets = cost_buckets(n_nodes, lengths)
        if len(buckets) == 1:
            return self._run(self._feeds(sessions, k), outputs)
        parts = [self._run(self._feeds([sessions[i] for i in bucket.tolist()], k), outputs) for bucket in buckets]
        order = np.concatenate(buckets)
        merged = []
        for position in range(len(outputs)):
            stacked = np.concatenate([part[position] for part in parts])
            result = np.empty_like(stacked)
            result[order] = stacked
            merged.append(result)
        return merged

    def _run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        """Run the model; on CUDA inputs and outputs go through IO binding."""
        if self._io_device is None:
            return self._session.run(outputs, feeds)
        binding = self._session.io_binding()
        for name, array in feeds.items():
            if name == "k":
                binding.bind_cpu_input(name, array)
            else:
                binding.bind_ortvalue_input(name, onnxruntime.OrtValue.ortvalue_from_numpy(array, self._io_device, 0))
        for name in outputs:
            binding.bind_output(name, self._io_device)
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def graph_bytes(n_nodes, lengths):
    """Bytes of the graph arrays of a session of ``n_nodes`` nodes and ``lengths`` clicks (ints, or
    int64[B] arrays for B sessions): items int64[N] + adjacency float32[N, 2N] + alias int64[T] +
    mask float32[T]."""
    return 8 * n_nodes * n_nodes + 8 * n_nodes + 12 * lengths


def cost_buckets(n_nodes: np.ndarray, lengths: np.ndarray, max_size: int | None = None) -> list[np.ndarray]:
    """Split a batch into model runs that pad little: a list of int64 index arrays covering 0..B-1 once.

    ``n_nodes: int64[B]`` distinct items and ``lengths: int64[B]`` clicks per session.
    Sessions are taken in order of (nodes, clicks); a bucket takes the next one
    while it holds fewer than ``max_size`` (default ``BUCKET_SIZE``) sessions and its
    padded graph arrays, ``size x graph_bytes(most nodes, most clicks)``, stay
    within twice the bytes its sessions need on their own or within
    ``SMALL_FEED_BYTES``. So a session is padded at most to twice the cost of its
    bucket, and one long session among short ones runs alone.
    """
    max_size = BUCKET_SIZE if max_size is None else max_size
    n_nodes, lengths = np.asarray(n_nodes, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    order = np.lexsort((lengths, n_nodes))
    own = graph_bytes(n_nodes, lengths)[order].tolist()
    nodes, clicks = n_nodes[order].tolist(), lengths[order].tolist()
    bounds, start, total, longest = [0], 0, 0, 0
    for position in range(len(order)):
        size = position - start + 1
        padded = size * graph_bytes(nodes[position], max(longest, clicks[position]))
        if size > max_size or padded > max(2 * (total + own[position]), SMALL_FEED_BYTES):
            bounds.append(position)
            start, total, longest = position, 0, 0
        total += own[position]
        longest = max(longest, clicks[position])
    return np.split(order, bounds[1:])


def _shown(value: Any) -> str:
    """``repr(value)`` cut to 80 characters; a huge int by its size (its digits may not even print)."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"an int of {value.bit_length()} bits"
    return f"{value!r:.80}"


def _type_error(value: Any, index: int, position: int, expected: type | None) -> TypeError:
    """The error for raw id ``value`` at ``position`` of session ``index``, of a type the model cannot hold."""
    kind = type(value).__name__
    if expected is None or isinstance(value, bool) or not isinstance(value, (int, str, np.integer)):
        return TypeError(f"session {index} has {_shown(value)} of type {kind} at position {position}; "
                         f"raw item ids are int or str")
    return TypeError(f"session {index} has {_shown(value)} ({kind}) at position {position}, but this "
                     f"model's raw item ids are all {expected.__name__}")


def _cuda_driver_present() -> bool:
    """True when the NVIDIA driver library loads: without it onnxruntime's CUDA provider
    cannot work, and asking for it only fills stderr with onnxruntime's load errors."""
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def _check_model(bundle: Bundle, session: onnxruntime.InferenceSession, name: str, inputs: tuple[str, ...]) -> None:
    """The ONNX model ``name`` (model.onnx or encoder.onnx) has ``inputs`` and the sizes of the manifest."""
    names = tuple(i.name for i in session.get_inputs())
    if names != inputs:
        raise BundleError(f"bundle {bundle.path}: {name} has inputs {names}, expected {inputs}")
    metadata = session.get_modelmeta().custom_metadata_map
    for field, key in _METADATA.items():
        expected = getattr(bundle, field)
        if metadata.get(key) != str(expected):
            raise BundleError(
                f"bundle {bundle.path}: {name} was exported for {field} = {metadata.get(key)} but "
                f"manifest.json and the vocabulary say {expected}"
            )
