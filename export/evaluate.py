"""Evaluation with the paper's metrics, beside a most-popular baseline.

Ranking is over items 1..n as the authors do. A target's rank is 1 + the number
of items the model scores strictly higher (float ties are vanishingly rare);
the most-popular list breaks count ties by internal id, as the runtime's
popularity fallback serves it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from srgnn_rt.dataset import PreparedDataset, PrefixSplit
from srgnn_rt.metrics import RankingMetrics

from .batches import BatchLoader
from .model import SRGNN
from .run import load_run, load_run_config, resolve_device

DEFAULT_KS = (10, 20, 50)


@torch.no_grad()
def evaluate_model(model: SRGNN, loader: BatchLoader, ks=DEFAULT_KS) -> dict[str, float]:
    """HR@K, MRR@K and NDCG@K (percent) of ``model`` over every prefix of ``loader``."""
    model.eval()
    metrics = RankingMetrics(ks=ks)
    for items, adjacency, alias, mask, targets in loader.batches():
        scores = model(items, adjacency, alias, mask)
        target_scores = scores.gather(1, (targets - 1).unsqueeze(1))
        ranks = (scores > target_scores).sum(dim=1) + 1
        metrics.update_ranks(ranks.cpu().numpy())
    return metrics.result()


def popularity_ranking(item_counts: np.ndarray) -> np.ndarray:
    """Internal ids 1..n, most clicked first, count ties by id: int64[n]."""
    counts = item_counts[1:]
    ids = np.arange(1, len(item_counts), dtype=np.int64)
    return ids[np.lexsort((ids, -counts))]


def popularity_metrics(item_counts: np.ndarray, split: PrefixSplit, ks=DEFAULT_KS) -> dict[str, float]:
    """Metrics of the most-popular baseline (training click counts) on ``split``."""
    ranking = popularity_ranking(item_counts)
    rank_of = np.empty(len(ranking) + 1, dtype=np.int64)
    rank_of[ranking] = np.arange(1, len(ranking) + 1)
    metrics = RankingMetrics(ks=ks)
    metrics.update_ranks(rank_of[split.targets])
    return metrics.result()


def evaluate_run(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    split: str = "test",
    ks=DEFAULT_KS,
    batch_size: int = 100,
    device: str = "auto",
) -> dict:
    """Metrics of a run's best model and of most-popular on a prepared split.

    Returns ``{"split", "prefixes", "model": {...}, "most_popular": {...}}`` with
    metrics in percent under keys like ``"HR@20"``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    dataset = PreparedDataset.load(data_dir)
    run_config = load_run_config(run_dir)
    torch_device = resolve_device(device)
    model = load_run(run_dir, device=str(torch_device))
    if model.config.n_items != dataset.vocab.n_items:
        raise ValueError(
            f"run {run_dir} was trained on {model.config.n_items} items but {data_dir} has {dataset.vocab.n_items}"
        )
    prefixes = getattr(dataset, split)
    loader = BatchLoader(
        prefixes,
        n_items=dataset.vocab.n_items,
        batch_size=batch_size,
        device=torch_device,
        max_length=run_config["train"]["max_length"],
        edge_weight=run_config["train"]["edge_weight"],
    )
    return {
        "split": split,
        "prefixes": len(prefixes),
        "model": evaluate_model(model, loader, ks),
        "most_popular": popularity_metrics(dataset.item_counts, prefixes, ks),
    }
