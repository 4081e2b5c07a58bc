"""Evaluation with the paper's metrics, beside baselines, with confidence intervals.

Ranking is over items 1..n as the authors do. A target's rank is 1 + the number
of items the model scores strictly higher (float ties are vanishingly rare);
the most-popular list breaks count ties by internal id, as the runtime's
popularity fallback serves it. Baselines (``baselines/``) rank the same test
prefixes; every figure gets a 95 % interval from a bootstrap over test sessions
and each baseline a paired comparison with SR-GNN (``report.py``).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

from srgnn_rt.dataset import PreparedDataset, PrefixSplit
from srgnn_rt.metrics import RankingMetrics

from .batches import BatchLoader
from .model import SRGNN
from .report import DEFAULT_KS, add_baselines, model_entry, new_report
from .run import METRICS_FILENAME, load_run, load_run_config, resolve_device

REFERENCE = "SR-GNN"


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


@torch.no_grad()
def model_predictions(model: SRGNN, loader: BatchLoader, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``ranks: int64[P]`` (ties go to the target) and ``top_k: int64[P, min(k, n_items)]`` internal ids."""
    model.eval()
    ranks, tops = [], []
    for items, adjacency, alias, mask, targets in loader.batches():
        scores = model(items, adjacency, alias, mask)
        target_scores = scores.gather(1, (targets - 1).unsqueeze(1))
        ranks.append(((scores > target_scores).sum(dim=1) + 1).cpu().numpy())
        tops.append((scores.topk(min(k, scores.shape[1]), dim=1).indices + 1).cpu().numpy())
    return np.concatenate(ranks).astype(np.int64), np.concatenate(tops).astype(np.int64)


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


def run_selection(run_dir: str | os.PathLike) -> str:
    """How the run's checkpoint was chosen, as ``train`` recorded it (metrics.json, else config.json):
    e.g. ``"validation split (HR@20), epoch 3"``."""
    path = os.path.join(os.fspath(run_dir), METRICS_FILENAME)
    selection, epoch = None, None
    if os.path.exists(path):
        with open(path) as f:
            metrics = json.load(f)
        selection = metrics.get("selection")
        epoch = (metrics.get("best") or {}).get("epoch")
    if selection is None:
        selection = load_run_config(run_dir).get("selection")
    if not isinstance(selection, dict) or "split" not in selection:
        return "unknown (no selection recorded)"
    text = f"{selection['split']} split"
    if selection.get("metric"):
        text += f" ({selection['metric']})"
    return text + (f", epoch {epoch}" if epoch else "")


def evaluate_run(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    split: str = "test",
    ks=DEFAULT_KS,
    batch_size: int = 100,
    device: str = "auto",
    baselines=(),
    search: bool = True,
    select_metric: str = "HR@20",
    n_resamples: int = 1000,
    seed: int = 0,
    log=None,
) -> dict:
    """Metrics of a run's best model, of most-popular and of ``baselines`` on a prepared split.

    Returns the report of ``report.py`` (``"models"``, ``"comparisons"``, ...) plus, as before,
    ``"model"`` and ``"most_popular"``: plain metrics in percent under keys like ``"HR@20"``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if baselines and split != "test":
        raise ValueError("baselines are chosen on a validation split carved from train: evaluate them on test")
    ks = tuple(ks)
    dataset = PreparedDataset.load(data_dir)
    run_config = load_run_config(run_dir)
    torch_device = resolve_device(device)
    model = load_run(run_dir, device=str(torch_device))
    if model.config.n_items != dataset.vocab.n_items:
        raise ValueError(
            f"run {run_dir} was trained on {model.config.n_items} items but {data_dir} has {dataset.vocab.n_items}"
        )
    prefixes = getattr(dataset, split)
    report, bootstrap = new_report(split, prefixes, ks, n_resamples, seed)
    loader = BatchLoader(
        prefixes,
        n_items=dataset.vocab.n_items,
        batch_size=batch_size,
        device=torch_device,
        max_length=run_config["train"]["max_length"],
        edge_weight=run_config["train"]["edge_weight"],
    )
    started = time.perf_counter()
    ranks, top_k = model_predictions(model, loader, max(ks))
    selection = run_selection(run_dir)
    report["selection"] = selection
    report["reference"] = REFERENCE
    report["models"][REFERENCE] = model_entry(ranks, top_k, bootstrap, dataset.item_counts, ks, selection,
                                              rank_seconds=time.perf_counter() - started)
    report["model"] = {name: value["value"] for name, value in report["models"][REFERENCE]["metrics"].items()
                       if name.split("@")[0] in ("HR", "MRR", "NDCG")}
    report["most_popular"] = popularity_metrics(dataset.item_counts, prefixes, ks)
    if baselines:
        add_baselines(report, bootstrap, dataset, baselines, ks, search, select_metric, log, ranks)
    return report
