"""The recommendation paths the suites compare, each ``sessions of raw ids -> top-20 raw ids``.

- ``reference``: the authors' way: ids looked up one by one, graphs built click by
  click (``reference_style.build_graphs_per_click``), torch eager, ``torch.topk``;
- ``torch+builder``: the same torch eager model on graphs from the compiled builder;
- ``runtime-cpu`` / ``runtime-cuda``: ``Recommender.recommend`` on that provider;
- ``floor``: the scoring product alone, numpy float32 ``s_h @ E[1:].T`` for the
  batch's number of sessions (s_h random; no graph, no GNN, no top-k);
- ``floor+topk``: the floor, then top-20 (``argpartition`` + sort) and raw ids.

The torch paths use the bundle's model config and item embeddings with random
GNN and attention weights (a bundle does not keep them in torch form; latency
does not depend on their values).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from srgnn_rt.bundle import Bundle
from srgnn_rt.graph import build_graphs
from srgnn_rt.runtime import Recommender
from srgnn_rt.vocab import RawId

RecommendPath = Callable[[Sequence[Sequence[RawId]]], list]

K = 20
MAX_BATCH = 512  # the floors keep random s_h for batches up to this size
REFERENCE = "reference"
FLOOR = "floor"
PATHS = (REFERENCE, "torch+builder", "runtime-cpu", "runtime-cuda", FLOOR, "floor+topk")


def torch_model(bundle: Bundle, *, threads: int):
    """An eval-mode ``SRGNN`` with the bundle's config and item embeddings, other weights random.

    Sets torch's intra-op threads (process-wide) to ``threads``.
    """
    import torch

    from srgnn_rt_torch.model import SRGNN, ModelConfig

    torch.set_num_threads(threads)
    model = SRGNN(ModelConfig.from_dict(bundle.manifest["model"])).eval()
    with torch.no_grad():
        model.embedding.weight[0] = 0.0
        model.embedding.weight[1:] = torch.from_numpy(np.array(bundle.item_embeddings()))
    return model


def _torch_top_k(bundle: Bundle, model, arrays) -> list:
    """Raw ids of the top K of each session, from graph arrays (items, adjacency, alias, mask)."""
    import torch

    with torch.inference_mode():
        scores = model(*(torch.from_numpy(array) for array in arrays))
        top = torch.topk(scores, K, dim=1).indices.numpy() + 1
    return bundle.vocab.decode(top).tolist()


def reference(bundle: Bundle, model) -> RecommendPath:
    """The authors'-style path (see the module docstring)."""
    from reference_style import build_graphs_per_click

    index = {raw: position + 1 for position, raw in enumerate(bundle.vocab.raw_ids)}
    cut = bundle.graph_builder.max_length

    def recommend(sessions):
        internal = []
        for session in sessions:
            ids = [index[raw] for raw in session]
            internal.append(ids[-cut:] if cut else ids)
        return _torch_top_k(bundle, model, build_graphs_per_click(internal))

    return recommend


def torch_builder(bundle: Bundle, model) -> RecommendPath:
    """Torch eager on graphs from ``srgnn_rt.graph.build_graphs``."""
    builder = bundle.graph_builder

    def recommend(sessions):
        graphs = build_graphs([bundle.vocab.encode(s) for s in sessions], n_items=bundle.n_items,
                              max_length=builder.max_length, edge_weight=builder.edge_weight)
        return _torch_top_k(bundle, model, (graphs.items, graphs.adjacency, graphs.alias, graphs.mask))

    return recommend


def runtime(recommender: Recommender) -> RecommendPath:
    """``Recommender.recommend`` (exact fp32, default options)."""

    def recommend(sessions):
        return [result.items for result in recommender.recommend(sessions, K)]

    return recommend


def _floor_arrays(bundle: Bundle, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(s_h float32[MAX_BATCH, d] random, E[1:] float32[n_items, d] in memory)."""
    table = np.array(bundle.item_embeddings())
    s_h = np.random.default_rng(seed).standard_normal((MAX_BATCH, table.shape[1]), dtype=np.float32)
    return s_h, table


def floor(bundle: Bundle, seed: int = 0) -> RecommendPath:
    """Scores float32[B, n_items] = ``s_h @ E[1:].T`` for B = len(sessions)."""
    s_h, table = _floor_arrays(bundle, seed)

    def score(sessions):
        return s_h[: len(sessions)] @ table.T

    return score


def floor_top_k(bundle: Bundle, seed: int = 0) -> RecommendPath:
    """The floor's product, then the top-20 raw ids of each row, best first."""
    s_h, table = _floor_arrays(bundle, seed)

    def recommend(sessions):
        scores = s_h[: len(sessions)] @ table.T
        best = np.argpartition(scores, -K, axis=1)[:, -K:]
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
        return bundle.vocab.decode(np.take_along_axis(best, order, axis=1) + 1).tolist()

    return recommend
