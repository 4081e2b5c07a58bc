"""Approximate retrieval for large catalogs: an inner-product index proposes candidates, exact fp32 scores rank them.

SR-GNN scores item i by the unnormalised inner product ``s_h . e_i``, so finding the
top items is maximum inner product search (MIPS), not cosine search. The index is
faiss ``IndexIVFPQFastScan`` with ``METRIC_INNER_PRODUCT`` (kind ``IVFPQFastScan``):
k-means splits the item table into ``lists`` cells; a query scans the ``nprobe``
cells whose centroids score highest, scoring each item from a 4-bit product-quantised
code (``subquantizers`` codes of 4 bits, d / 2 by default: 50 bytes per item at
d = 100, an eighth of the fp32 row) with SIMD table lookups. On a trained model the
cells, not the codes, limit recall (measured: the same recall as fp32 cells,
``IVFFlat``, at every nprobe once ~200 candidates are re-scored), and the codes scan
several times faster, so more cells are scanned for the same time. Graph indexes
(HNSW) recalled less for more time on the trained model, even after the MIPS-to-L2
transform (0.97 at efSearch 512, 0.65 ms per session on 10k items). Indexes of the
earlier kind ``IVFFlat`` (fp32 cells) still load and serve.

Serving (``Retriever.top_k``): the index proposes ``candidates`` items per session
(at least k + the session's distinct items, so ``exclude_seen`` still returns k);
their scores are recomputed in fp32 from the bundle's memory-mapped item table and
the best k are kept, ties to the lower id as in exact mode. With ``nprobe = lists``
and ``candidates >= n_items`` this is exact scoring.

Storage: ``item_index.faiss`` in the bundle (``srgnn-rt index BUNDLE``), listed with
its sha256 in the manifest like every file; the manifest's ``retrieval`` section
records the kind, the parameters and the sha256 of ``item_embeddings.npy`` the index
was built from. Loading parses, with faiss's own reader (no pickle, no code), the very
bytes ``Bundle.load`` verified against the manifest, and rejects (``BundleError``) an index that is not
an inner-product index of the recorded kind over the bundle's item table (count,
size, metric, lists, subquantizers, table checksum). faiss is the optional extra ``srgnn-rt[faiss]``, imported
only here and only when an index is built or loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import (
    ENCODER_FILENAME,
    INDEX_FILENAME,
    ITEM_EMBEDDINGS_FILENAME,
    Bundle,
    BundleError,
    add_to_bundle,
)
from .validation import positive_int

__all__ = ["IndexParameters", "Retriever", "add_index", "build_index", "encoder_model", "exact_top_k",
           "recall_at_k", "recall_sweep", "synthetic_sessions"]

_KINDS = {"IVFPQFastScan": "IndexIVFPQFastScan", "IVFFlat": "IndexIVFFlat"}  # manifest kind -> faiss class
_METRIC = "inner_product"
_TRAIN_POINTS_PER_LIST = 40  # k-means training sample per list (faiss warns below 39)
_KMEANS_ITERATIONS = 10
_CODEBOOK_TRAIN_POINTS = 16 * 39  # the 16 centroids of each 4-bit codebook (faiss warns below 39 each)
_ADD_CHUNK = 1 << 17  # rows added to the index at a time, so a memory-mapped table is read in pieces
_EXACT_CHUNK = 1 << 16  # items scored at a time by exact_top_k


def _faiss():
    """The faiss module, or ImportError saying which extra to install."""
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "retrieval with an index needs faiss, which is not installed: pip install 'srgnn-rt[faiss]'"
        ) from None
    return faiss


@dataclasses.dataclass(frozen=True)
class IndexParameters:
    """``lists``: k-means cells of the index; ``nprobe``: cells scanned per session;
    ``candidates``: items proposed per session and re-scored exactly (the runtime asks
    for at least k + the session's distinct items); ``kind``: ``"IVFPQFastScan"`` (4-bit
    codes) or ``"IVFFlat"`` (fp32 rows); ``subquantizers``: 4-bit codes per item
    (IVFPQFastScan only; must divide the embedding size), None for IVFFlat."""

    lists: int
    nprobe: int
    candidates: int
    kind: str = "IVFPQFastScan"
    subquantizers: int | None = None

    def __post_init__(self):
        for name in ("lists", "nprobe", "candidates"):
            positive_int(getattr(self, name), name)
        if self.nprobe > self.lists:
            raise ValueError(f"nprobe ({self.nprobe}) must be at most lists ({self.lists})")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {tuple(_KINDS)}, got {self.kind!r}")
        if self.kind == "IVFFlat" and self.subquantizers is not None:
            raise ValueError(f"an IVFFlat index has no subquantizers, got {self.subquantizers!r}")
        if self.subquantizers is not None:
            positive_int(self.subquantizers, "subquantizers")

    @classmethod
    def default(cls, n_items: int, *, lists: int | None = None, nprobe: int | None = None,
                candidates: int | None = None, subquantizers: int | None = None) -> IndexParameters:
        """Defaults from the catalog size: lists ~ 2 sqrt(n) (at most n / 39, faiss's
        minimum training points per cell), nprobe ~ lists / 4 (at least 16, at most
        lists), 200 candidates, an IVFPQFastScan index (``subquantizers`` None: d / 2
        at build time); any of them given is kept."""
        positive_int(n_items, "n_items")
        if lists is None:
            lists = max(1, min(round(2 * math.sqrt(n_items)), n_items // 39))
        if nprobe is None:
            nprobe = min(lists, max(16, math.ceil(lists / 4)))
        return cls(lists=lists, nprobe=nprobe, candidates=200 if candidates is None else candidates,
                   subquantizers=subquantizers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _subquantizers(parameters: IndexParameters, d: int) -> int:
    """The 4-bit codes per item of an IVFPQFastScan index: as given (must divide d), else
    the largest divisor of d that is at most d / 2 (two dimensions per code)."""
    if parameters.subquantizers is None:
        return max(m for m in range(1, max(1, d // 2) + 1) if d % m == 0)
    if d % parameters.subquantizers:
        raise ValueError(f"subquantizers ({parameters.subquantizers}) must divide the embedding size ({d})")
    return parameters.subquantizers


def build_index(item_embeddings: np.ndarray, parameters: IndexParameters, *, seed: int = 0) -> Any:
    """A faiss inner-product index of ``parameters.kind`` over ``item_embeddings:
    float32[n_items, d]`` (label j is internal id j + 1). K-means (10 iterations) trains
    on at most 40 rows per list (and the 4-bit codebooks on the same rows), drawn with
    ``seed``; rows are added in chunks (a memory-mapped table is read piecewise)."""
    faiss = _faiss()
    n_items, d = item_embeddings.shape
    if parameters.lists > n_items:
        raise ValueError(f"lists ({parameters.lists}) must be at most the number of items ({n_items})")
    rng = np.random.default_rng(seed)
    n_train = min(n_items, max(parameters.lists * _TRAIN_POINTS_PER_LIST, _CODEBOOK_TRAIN_POINTS))
    sample = np.sort(rng.choice(n_items, size=n_train, replace=False)) if n_train < n_items else slice(None)
    training = np.ascontiguousarray(item_embeddings[sample], dtype=np.float32)
    if parameters.kind == "IVFFlat":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, parameters.lists, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(d), d, parameters.lists,
                                         _subquantizers(parameters, d), 4, faiss.METRIC_INNER_PRODUCT)
        index.pq.cp.seed = seed
    index.cp.seed = seed
    index.cp.niter = _KMEANS_ITERATIONS
    index.train(training)
    del training
    for start in range(0, n_items, _ADD_CHUNK):
        index.add(np.ascontiguousarray(item_embeddings[start:start + _ADD_CHUNK], dtype=np.float32))
    return index


def add_index(bundle: str | Path | Bundle, parameters: IndexParameters | None = None, *, seed: int = 0) -> Bundle:
    """Build the index of the bundle's item table and add it to the bundle atomically
    (replacing any earlier one); ``parameters`` default to ``IndexParameters.default``.
    A ``Bundle`` loaded whole is used as it is (its verified bytes; not read again: 4 GB at
    10 M items), a path or a partly loaded one is loaded. Returns the bundle loaded again; its manifest's ``retrieval`` section records the
    parameters, the build time and the checksum of the item table."""
    path = bundle.path if isinstance(bundle, Bundle) else Path(bundle)
    loaded = bundle if isinstance(bundle, Bundle) and not bundle.skipped else Bundle.load(path)
    if not loaded.has_file(ENCODER_FILENAME):
        raise BundleError(
            f"bundle {path} has no {ENCODER_FILENAME} (it was exported before retrieval mode existed); "
            f"export it again to add an index"
        )
    faiss = _faiss()
    if parameters is None:
        parameters = IndexParameters.default(loaded.n_items)
    if parameters.kind == "IVFPQFastScan":
        parameters = dataclasses.replace(parameters,
                                         subquantizers=_subquantizers(parameters, loaded.embedding_size))
    began = time.perf_counter()
    index = build_index(loaded.item_embeddings(), parameters, seed=seed)
    build_s = time.perf_counter() - began
    section = {
        **parameters.to_dict(), "metric": _METRIC, "n_items": loaded.n_items,
        "embedding_size": loaded.embedding_size, "seed": seed, "build_seconds": round(build_s, 3),
        "faiss": faiss.__version__,
        "item_embeddings_sha256": loaded.manifest["files"][ITEM_EMBEDDINGS_FILENAME]["sha256"],
    }
    return add_to_bundle(loaded, INDEX_FILENAME, lambda file: faiss.write_index(index, str(file)),
                         {"retrieval": section})


def encoder_model(bundle: Bundle) -> bytes:
    """The bytes of the bundle's ``encoder.onnx``, as ``Bundle.load`` verified them
    (the bytes checked are the bytes onnxruntime gets)."""
    if not bundle.has_file(ENCODER_FILENAME):
        raise BundleError(
            f"bundle {bundle.path} has no {ENCODER_FILENAME} (it was exported before retrieval mode existed); "
            f"export it again to serve with an index"
        )
    return bundle.files[ENCODER_FILENAME]  # verified by Bundle.load


def _read_index(bundle: Bundle) -> Any:
    """The bundle's index, parsed from the bytes ``Bundle.load`` verified against the manifest."""
    faiss = _faiss()
    data = np.frombuffer(bundle.files[INDEX_FILENAME], dtype=np.uint8)
    try:
        return faiss.deserialize_index(data)  # faiss returns it as its concrete class (IndexIVFFlat, ...)
    except RuntimeError as exc:
        raise BundleError(f"bundle {bundle.path}: {INDEX_FILENAME} is not a faiss index: {exc}") from None


def _checked_index(bundle: Bundle) -> tuple[Any, IndexParameters]:
    """The bundle's index and parameters; BundleError when either does not match the item table."""
    where = f"bundle {bundle.path}"
    if not bundle.has_file(INDEX_FILENAME):
        raise BundleError(f"{where} has no item index; add one with `srgnn-rt index {bundle.path}`")
    if not bundle.has_file(ENCODER_FILENAME):
        raise BundleError(f"{where} has an index but no {ENCODER_FILENAME}; export it again")
    section = bundle.manifest.get("retrieval")
    if not isinstance(section, dict):
        raise BundleError(f"{where}: manifest.json lists {INDEX_FILENAME} but has no 'retrieval' section")
    try:
        parameters = IndexParameters(section["lists"], section["nprobe"], section["candidates"], section["kind"],
                                     section.get("subquantizers"))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: manifest.json 'retrieval' section is invalid: {exc!r}") from None
    table_sha = bundle.manifest["files"][ITEM_EMBEDDINGS_FILENAME]["sha256"]
    if section.get("item_embeddings_sha256") != table_sha:
        raise BundleError(
            f"{where}: {INDEX_FILENAME} was built from another item table (sha256 "
            f"{section.get('item_embeddings_sha256')}, {ITEM_EMBEDDINGS_FILENAME} is {table_sha}); "
            f"rebuild it with `srgnn-rt index {bundle.path}`"
        )
    faiss = _faiss()
    index = _read_index(bundle)
    found = {
        "kind": type(index).__name__, "metric": index.metric_type, "n_items": index.ntotal, "d": index.d,
        "lists": getattr(index, "nlist", None), "subquantizers": getattr(getattr(index, "pq", None), "M", None),
    }
    wanted = {
        "kind": _KINDS[parameters.kind], "metric": faiss.METRIC_INNER_PRODUCT, "n_items": bundle.n_items,
        "d": bundle.embedding_size, "lists": parameters.lists, "subquantizers": parameters.subquantizers,
    }
    if found != wanted:
        raise BundleError(f"{where}: {INDEX_FILENAME} does not match the item table: it has {found}, "
                          f"expected {wanted}")
    return index, parameters


class Retriever:
    """Retrieval mode of a bundle: the index, the memory-mapped item table, and how many
    cells to probe and candidates to re-score. Thread-safe: searches share no state."""

    def __init__(self, index: Any, item_embeddings: np.ndarray, parameters: IndexParameters):
        """``index``: a faiss IVF index over ``item_embeddings: float32[n_items, d]``
        (see ``build_index``); use ``Retriever.load`` for a bundle's."""
        self._index = index
        self._table = item_embeddings
        self._n_items = item_embeddings.shape[0]
        self._search_all = _faiss().SearchParametersIVF(nprobe=index.nlist)
        self._set(parameters)

    @classmethod
    def load(cls, bundle: Bundle) -> Retriever:
        """The bundle's index (checked, see the module docstring) over its memory-mapped item table."""
        index, parameters = _checked_index(bundle)
        return cls(index, bundle.item_embeddings(), parameters)

    def _set(self, parameters: IndexParameters) -> None:
        self.parameters = parameters
        self._search = _faiss().SearchParametersIVF(nprobe=parameters.nprobe)

    def with_parameters(self, *, nprobe: int | None = None, candidates: int | None = None) -> Retriever:
        """A retriever sharing this one's index and table with other ``nprobe`` / ``candidates``."""
        current = self.parameters
        parameters = dataclasses.replace(
            current, nprobe=current.nprobe if nprobe is None else nprobe,
            candidates=current.candidates if candidates is None else candidates,
        )
        other = copy.copy(self)
        other._set(parameters)
        return other

    @property
    def n_items(self) -> int:
        return self._n_items

    def node_embeddings(self, items: np.ndarray) -> np.ndarray:
        """items: int64[B, N] internal ids (0 = padding) -> float32[B, N, d] rows of the
        table (zeros for padding), the encoder's first input."""
        rows = self._table[np.maximum(items - 1, 0)]
        rows[items == 0] = 0.0
        return rows

    def top_k(
        self, s_h: np.ndarray, k: int, seen: Sequence[np.ndarray] | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per session: scores float32[<=k] and internal ids int64[<=k], best first.

        ``s_h: float32[B, d]``; ``seen[i]``: distinct internal ids to leave out of row i
        (None: keep all). A row keeps fewer than k only when fewer items remain. Rows
        where the probed cells hold too few items are searched again over every cell.
        """
        s_h = np.ascontiguousarray(s_h, dtype=np.float32)
        most_seen = max((len(row) for row in seen), default=0) if seen is not None else 0
        wanted = min(self._n_items, k + most_seen)
        n_candidates = min(self._n_items, max(self.parameters.candidates, wanted))
        _, labels = self._index.search(s_h, n_candidates, params=self._search)
        short = np.flatnonzero((labels >= 0).sum(axis=1) < wanted)
        if len(short):
            _, labels[short] = self._index.search(s_h[short], n_candidates, params=self._search_all)
        ids = labels + 1  # internal ids; 0 where a row found fewer than n_candidates
        rows = self._table[np.maximum(labels, 0)]  # [B, C, d]
        scores = np.matmul(rows, s_h[:, :, None])[:, :, 0]  # [B, C]; batched matmul, faster than einsum
        drop = ids == 0
        if seen is not None:
            for row, items in enumerate(seen):
                drop[row] |= np.isin(ids[row], items)
        scores[drop] = -np.inf
        order = np.lexsort((ids, -scores), axis=1)[:, :k]
        kept_scores = np.take_along_axis(scores, order, axis=1)
        kept_ids = np.take_along_axis(ids, order, axis=1)
        n_left = np.isfinite(kept_scores).sum(axis=1).tolist()
        return ([kept_scores[row, :n] for row, n in enumerate(n_left)],
                [kept_ids[row, :n] for row, n in enumerate(n_left)])


def exact_top_k(item_embeddings: np.ndarray, s_h: np.ndarray, k: int) -> np.ndarray:
    """int64[B, k]: internal ids of the k best items of each row of ``s_h: float32[B, d]``
    by exact inner product with ``item_embeddings: float32[n_items, d]`` (scored in
    chunks of items, so a memory-mapped table is read piecewise; order within a row unspecified)."""
    n_items = item_embeddings.shape[0]
    best_scores = np.full((len(s_h), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(s_h), 0), dtype=np.int64)
    for start in range(0, n_items, _EXACT_CHUNK):
        chunk = s_h @ np.asarray(item_embeddings[start:start + _EXACT_CHUNK]).T
        scores = np.concatenate([best_scores, chunk], axis=1)
        ids = np.concatenate([best_ids, np.broadcast_to(np.arange(start + 1, start + 1 + chunk.shape[1]),
                                                         chunk.shape)], axis=1)
        keep = np.argpartition(-scores, min(k, scores.shape[1]) - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_ids = np.take_along_axis(ids, keep, axis=1)
    return best_ids


def recall_at_k(
    retriever: Retriever, item_embeddings: np.ndarray, s_h: np.ndarray, k: int = 20, exact: np.ndarray | None = None
) -> float:
    """Mean over sessions of |retrieved top-k ∩ exact top-k| / k for the session
    embeddings ``s_h: float32[B, d]`` (the index's error alone: both sides score the same s_h).
    ``exact``: ``exact_top_k(item_embeddings, s_h, k)`` when already computed."""
    k = min(positive_int(k, "k"), retriever.n_items)
    if exact is None:
        exact = exact_top_k(item_embeddings, s_h, k)
    _, retrieved = retriever.top_k(s_h, k)
    hits = [len(np.intersect1d(a, b)) for a, b in zip(exact, retrieved)]
    return float(np.mean(hits)) / k if hits else float("nan")


def synthetic_sessions(n_items: int, n_sessions: int, *, seed: int = 0) -> list[np.ndarray]:
    """``n_sessions`` sessions of internal ids (int64 arrays) from the synthetic click
    model over ``n_items`` items: stand-ins for held-out sessions when measuring recall."""
    from .synthetic import SyntheticConfig, generate_sessions_array

    items, offsets = generate_sessions_array(n_sessions, seed=seed, config=SyntheticConfig(n_items=n_items))
    return np.split(items.astype(np.int64), offsets[1:-1])


def recall_sweep(
    retriever: Retriever, item_embeddings: np.ndarray, s_h: np.ndarray, k: int = 20,
    nprobes: Sequence[int] | None = None,
) -> list[dict[str, float]]:
    """Recall@k and search time of the retriever at several ``nprobe`` (default: its own
    times 1/4, 1/2, 1, 2, 4, within 1..lists), for the session embeddings ``s_h: float32[B, d]``.
    Rows: ``{"nprobe", "candidates", "recall", "ms_per_batch_of_100"}``."""
    lists, own = retriever.parameters.lists, retriever.parameters.nprobe
    if nprobes is None:
        nprobes = sorted({min(lists, max(1, round(own * factor))) for factor in (0.25, 0.5, 1, 2, 4)})
    exact = exact_top_k(item_embeddings, s_h, min(k, retriever.n_items))
    rows = []
    for nprobe in nprobes:
        variant = retriever.with_parameters(nprobe=nprobe)
        recall = recall_at_k(variant, item_embeddings, s_h, k, exact)
        began = time.perf_counter()
        for start in range(0, len(s_h), 100):
            variant.top_k(s_h[start:start + 100], k)
        elapsed = time.perf_counter() - began
        rows.append({"nprobe": nprobe, "candidates": variant.parameters.candidates, "recall": recall,
                     "ms_per_batch_of_100": 1e3 * elapsed / max(1, math.ceil(len(s_h) / 100))})
    return rows
