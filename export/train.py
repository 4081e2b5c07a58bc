"""Training SR-GNN as the reference does, without its defects.

The schedule is the authors': Adam (lr 1e-3, L2 1e-5), learning rate ×0.1 every
3 epochs, batch 100, 30 epochs, early stop after 10 epochs without a new best
HR@20 or MRR@20. Unlike the authors' code on current PyTorch, the decay is
applied after the epoch it belongs to. Batches are built by the compiled graph
builder from the prepared CSR arrays; the run directory's files are described
in ``run.py``.

Selection: with ``valid_fraction > 0`` the best epoch is chosen on a validation
split carved from the most recent training prefixes; without it, as in the
reference, on the test split (the reference's own quirk, kept as the default so
that numbers compare with the paper's).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from srgnn_rt.atomic import staging_file
from srgnn_rt.dataset import PreparedDataset, PrefixSplit
from srgnn_rt.graph import CSRSessions

from .batches import BatchLoader
from .evaluate import evaluate_model
from .model import SRGNN, ModelConfig
from .run import BEST_WEIGHTS_FILENAME, CONFIG_FILENAME, LAST_STATE_FILENAME, METRICS_FILENAME, resolve_device

SELECTION_METRIC = "HR@20"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults: the paper's)."""

    epochs: int = 30
    batch_size: int = 100
    lr: float = 1e-3
    l2: float = 1e-5
    lr_decay_step: int = 3
    lr_decay: float = 0.1
    patience: int = 10
    hidden_size: int = 100
    step: int = 1
    nonhybrid: bool = False
    max_length: int | None = None
    edge_weight: str = "binary"
    valid_fraction: float = 0.0
    seed: int = 0
    ks: tuple[int, ...] = (10, 20, 50)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr_decay_step", "patience", "hidden_size", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {value!r}")
        if not (self.lr > 0 and self.l2 >= 0 and 0 < self.lr_decay <= 1):
            raise ValueError(f"need lr > 0, l2 >= 0, 0 < lr_decay <= 1; got {self.lr}, {self.l2}, {self.lr_decay}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"TrainConfig.valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"TrainConfig.max_length must be >= 1 or None, got {self.max_length!r}")
        if self.edge_weight not in ("binary", "count"):
            raise ValueError(f"TrainConfig.edge_weight must be 'binary' or 'count', got {self.edge_weight!r}")
        if 20 not in self.ks:
            raise ValueError(f"TrainConfig.ks must contain 20 (the selection metric is HR@20), got {self.ks!r}")
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown training option(s): {sorted(unknown)}")
        values = dict(values)
        if "ks" in values:
            values["ks"] = tuple(values["ks"])
        return cls(**values)


@dataclass
class TrainResult:
    """What a finished run reports: per-epoch history and the best epoch."""

    run_dir: str
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)


def _split_validation(train: PrefixSplit, fraction: float) -> tuple[PrefixSplit, PrefixSplit | None]:
    """The last ``fraction`` of the (time-ordered) training prefixes become validation."""
    if fraction == 0.0:
        return train, None
    n = len(train)
    n_valid = max(1, int(round(n * fraction)))
    if n_valid >= n:
        raise ValueError(f"valid_fraction={fraction} leaves no training prefixes out of {n}")
    cut = n - n_valid
    sessions = CSRSessions(train.items, train.offsets)
    parts = []
    for index in (np.arange(0, cut), np.arange(cut, n)):
        part = sessions.take(index)
        parts.append(PrefixSplit(items=part.items, offsets=part.offsets, targets=train.targets[index]))
    return parts[0], parts[1]


def build_optimizer(model: SRGNN, config: TrainConfig) -> torch.optim.Adam:
    """Adam with the reference's settings; the fused kernel where this torch has one for the
    model's device (on 2 CPU cores it cuts the step over a 43k-item table from 13 ms to 3 ms)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.l2, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.l2)


def _save_weights(obj, path: str) -> None:
    with staging_file(path) as staging:
        torch.save(obj, staging)


def _save_json(obj, path: str) -> None:
    with staging_file(path) as staging, open(staging, "w") as f:
        json.dump(obj, f, indent=2)


def _improves(metrics: dict, best: dict) -> dict[str, bool]:
    """Which of HR@20 / MRR@20 beat their best so far (the reference's two counters)."""
    return {name: metrics[name] > best.get(name, {}).get("value", -1.0) for name in ("HR@20", "MRR@20")}


def train(
    data_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    *,
    device: str = "auto",
    threads: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train SR-GNN on a prepared dataset directory; write the run into ``run_dir``.

    ``resume=True`` continues from ``run_dir/last.pt`` with the configuration
    saved there; otherwise ``run_dir`` must not hold a run yet.
    """
    from tqdm.auto import tqdm

    data_dir, run_dir = os.fspath(data_dir), os.fspath(run_dir)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    dataset = PreparedDataset.load(data_dir)
    config_path = os.path.join(run_dir, CONFIG_FILENAME)
    if resume:
        if not os.path.exists(os.path.join(run_dir, LAST_STATE_FILENAME)):
            raise ValueError(f"cannot resume: {run_dir} has no {LAST_STATE_FILENAME}")
        with open(config_path) as f:
            saved = json.load(f)
        config = TrainConfig.from_dict(saved["train"])
    elif os.path.exists(config_path):
        raise ValueError(f"{run_dir} already holds a run; pass resume=True or choose another directory")

    torch_device = resolve_device(device)
    torch.manual_seed(config.seed)
    model_config = ModelConfig(
        n_items=dataset.vocab.n_items, hidden_size=config.hidden_size, step=config.step, nonhybrid=config.nonhybrid
    )
    model = SRGNN(model_config).to(torch_device)
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_step, gamma=config.lr_decay)

    train_split, valid_split = _split_validation(dataset.train, config.valid_fraction)
    n_items = dataset.vocab.n_items
    loader_options = dict(
        n_items=n_items,
        batch_size=config.batch_size,
        device=torch_device,
        max_length=config.max_length,
        edge_weight=config.edge_weight,
    )
    train_loader = BatchLoader(train_split, **loader_options)
    select_loader = BatchLoader(valid_split or dataset.test, **loader_options)
    selection = "validation" if valid_split is not None else "test"

    history: list[dict] = []
    best: dict = {}
    bad_epochs = 0
    first_epoch = 0
    os.makedirs(run_dir, exist_ok=True)
    if resume:
        state = torch.load(os.path.join(run_dir, LAST_STATE_FILENAME), map_location=torch_device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        with open(os.path.join(run_dir, METRICS_FILENAME)) as f:
            saved_metrics = json.load(f)
        history, best = saved_metrics["epochs"], saved_metrics["best"]
        bad_epochs = saved_metrics["bad_epochs"]
        first_epoch = len(history)
    else:
        _save_json(
            {
                "model": model_config.to_dict(),
                "train": config.to_dict(),
                "data": {"path": os.path.abspath(data_dir), "manifest": dataset.manifest},
                "selection": selection,
            },
            config_path,
        )

    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(first_epoch, config.epochs):
        if bad_epochs >= config.patience:
            break
        model.train()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train_split))
        total_loss, n_seen, started = 0.0, 0, time.perf_counter()
        bar = tqdm(
            train_loader.batches(order), total=len(train_loader), desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="batch", disable=not progress, leave=False, mininterval=0.5,
        )
        for batch_number, (items, adjacency, alias, mask, targets) in enumerate(bar):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(items, adjacency, alias, mask), targets - 1)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(targets)
            n_seen += len(targets)
            if batch_number % 50 == 0:
                bar.set_postfix(
                    loss=f"{total_loss / n_seen:.4f}",
                    prefixes_per_s=f"{n_seen / (time.perf_counter() - started):.0f}",
                    refresh=False,
                )
        train_seconds = time.perf_counter() - started
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()  # after the epoch: the reference's schedule, without its off-by-one
        metrics = evaluate_model(model, select_loader, config.ks)
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / max(n_seen, 1),
            "lr": lr,
            "train_seconds": train_seconds,
            "prefixes_per_second": n_seen / train_seconds if train_seconds > 0 else None,
            selection: metrics,
        }
        history.append(record)
        improved = _improves(metrics, best)
        for name, better in improved.items():
            if better:
                best[name] = {"value": metrics[name], "epoch": epoch + 1}
        if improved[SELECTION_METRIC]:
            _save_weights(model.state_dict(), os.path.join(run_dir, BEST_WEIGHTS_FILENAME))
            best["checkpoint"] = {"epoch": epoch + 1, selection: metrics}
        bad_epochs = 0 if any(improved.values()) else bad_epochs + 1
        _save_weights(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            os.path.join(run_dir, LAST_STATE_FILENAME),
        )
        _save_json(
            {"selection": selection, "epochs": history, "best": best, "bad_epochs": bad_epochs},
            os.path.join(run_dir, METRICS_FILENAME),
        )
        if progress:
            shown = "  ".join(f"{k} {metrics[k]:.2f}" for k in ("HR@20", "MRR@20"))
            tqdm.write(f"epoch {epoch + 1}: loss {record['loss']:.4f}  {selection} {shown}  "
                       f"({record['prefixes_per_second']:.0f} prefixes/s)")
    return TrainResult(run_dir=run_dir, history=history, best=best)
