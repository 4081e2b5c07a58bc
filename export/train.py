"""Training SR-GNN as the reference does, without its defects.

The schedule is the authors': Adam (lr 1e-3, L2 1e-5), learning rate ×0.1 every
3 epochs, batch 100, 30 epochs, early stop after 10 epochs without a new best
HR@20 or MRR@20. Unlike the authors' code on current PyTorch, the decay is
applied after the epoch it belongs to. Batches are built by the compiled graph
builder from the prepared CSR arrays; the run directory's files are described
in ``run.py``.

Selection (a clean protocol by default): the checkpoint is the first epoch
reaching the highest HR@20 on a validation split carved from the latest
training sessions (``valid_fraction`` of the training prefixes, whole sessions,
10% by default); the test split is never looked at. ``select_on="test"``
chooses on the test split instead, as the reference does, only to reproduce the
paper's numbers (which are, in addition, the best HR@20 and the best MRR@20 of
any epoch). The run reports as its ``best`` exactly the checkpoint's epoch and
metrics, so evaluating ``model.pt`` on the same split gives the same figures.
"""

from __future__ import annotations

import contextlib
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

from . import distributed
from .batches import BatchLoader
from .evaluate import evaluate_model
from .model import SRGNN, ModelConfig
from .run import (
    BEST_WEIGHTS_FILENAME,
    CONFIG_FILENAME,
    LAST_STATE_FILENAME,
    LOCK_FILENAME,
    METRICS_FILENAME,
)

SELECTION_METRIC = "HR@20"
DEFAULT_VALID_FRACTION = 0.1
# Below this many validation prefixes the chosen epoch is mostly noise: the run says so.
FEW_VALIDATION_PREFIXES = 100
CHECKPOINT_VERSION = 2
# Options a resumed run may change: they say when to stop, not what a step does.
RESUMABLE_OPTIONS = ("epochs", "patience")


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
    select_on: str = "validation"
    valid_fraction: float | None = None  # with select_on="validation": default 0.1
    seed: int = 0
    ks: tuple[int, ...] = (10, 20, 50)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "lr_decay_step", "patience", "hidden_size", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {value!r}")
        if not (self.lr > 0 and self.l2 >= 0 and 0 < self.lr_decay <= 1):
            raise ValueError(f"need lr > 0, l2 >= 0, 0 < lr_decay <= 1; got {self.lr}, {self.l2}, {self.lr_decay}")
        if self.select_on == "validation":
            if self.valid_fraction is None:
                object.__setattr__(self, "valid_fraction", DEFAULT_VALID_FRACTION)
            if not 0.0 < self.valid_fraction < 1.0:
                raise ValueError(f"TrainConfig.valid_fraction must be in (0, 1), got {self.valid_fraction!r}")
        elif self.select_on == "test":
            if self.valid_fraction is not None:
                raise ValueError(f"TrainConfig.valid_fraction={self.valid_fraction!r} applies to "
                                 "select_on='validation' only; with select_on='test' every training prefix trains")
        else:
            raise ValueError(f"TrainConfig.select_on must be 'validation' or 'test', got {self.select_on!r}")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"TrainConfig.max_length must be >= 1 or None, got {self.max_length!r}")
        if self.edge_weight not in ("binary", "count"):
            raise ValueError(f"TrainConfig.edge_weight must be 'binary' or 'count', got {self.edge_weight!r}")
        if 20 not in self.ks:
            raise ValueError(f"TrainConfig.ks must contain 20 (the selection metric is HR@20), got {self.ks!r}")
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied (and checked); a new ``select_on`` takes its own default fraction."""
        if "select_on" in changes and "valid_fraction" not in changes:
            changes["valid_fraction"] = None
        return dataclasses.replace(self, **changes)

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
    """What a run reports: per-epoch history, how the checkpoint is chosen (``selection``),
    and the checkpoint itself (``best``: its epoch and its metrics on the selection split)."""

    run_dir: str
    history: list[dict] = field(default_factory=list)
    selection: dict = field(default_factory=dict)
    best: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def split_validation(train: PrefixSplit, fraction: float) -> tuple[PrefixSplit, PrefixSplit]:
    """(training, validation): the latest training sessions holding about ``fraction`` of the prefixes
    become validation. Sessions are whole: the pipeline writes each session's prefixes longest first,
    down to one click, so a session ends after each one-click prefix; sessions are in time order."""
    n = len(train)
    lengths = np.diff(train.offsets)
    starts = np.concatenate([[0], np.flatnonzero(lengths[:-1] == 1) + 1])
    if len(starts) < 2:
        raise ValueError(f"the training split holds {n} prefixes in {len(starts)} session: too few to carve a "
                         "validation split; select on the test split (select_on='test', --select-on test)")
    wanted = n - max(1, round(n * fraction))
    cut = int(starts[1:][np.argmin(np.abs(starts[1:] - wanted))])  # nearest session start, never 0
    sessions = CSRSessions(train.items, train.offsets)
    parts = []
    for index in (np.arange(0, cut), np.arange(cut, n)):
        part = sessions.take(index)
        parts.append(PrefixSplit(items=part.items, offsets=part.offsets, targets=train.targets[index]))
    return parts[0], parts[1]


def selection_prefixes(dataset: PreparedDataset, config: TrainConfig) -> PrefixSplit:
    """The prefixes a run with ``config`` chooses its checkpoint on (to reproduce its ``best``)."""
    if config.select_on == "test":
        return dataset.test
    return split_validation(dataset.train, config.valid_fraction)[1]


def build_optimizer(model: SRGNN, config: TrainConfig) -> torch.optim.Adam:
    """Adam with the reference's settings; the fused kernel where this torch has one for the
    model's device (on 2 CPU cores it cuts the step over a 43k-item table from 13 ms to 3 ms)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.l2, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.l2)


def _save_torch(obj, path: str) -> None:
    with staging_file(path) as staging:
        torch.save(obj, staging)


def _save_json(obj, path: str) -> None:
    with staging_file(path) as staging, open(staging, "w") as f:
        json.dump(obj, f, indent=2)


def _improves(metrics: dict, highest: dict) -> dict[str, bool]:
    """Which of HR@20 / MRR@20 beat their highest so far (the reference's two early-stop counters)."""
    return {name: metrics[name] > highest.get(name, -1.0) for name in ("HR@20", "MRR@20")}


def saved_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The training configuration a run directory was started with (``config.json``)."""
    path = os.path.join(os.fspath(run_dir), CONFIG_FILENAME)
    if not os.path.exists(path):
        raise ValueError(f"cannot resume: {os.fspath(run_dir)} holds no run ({CONFIG_FILENAME} is missing); "
                         "start one without --resume")
    with open(path) as f:
        return TrainConfig.from_dict(json.load(f)["train"])


def _resumed_config(saved: TrainConfig, given: TrainConfig | None) -> TrainConfig:
    """``given`` when it differs from ``saved`` only in options a resume may change; else ValueError."""
    if given is None:
        return saved
    changed = [
        f"{name} (the run has {getattr(saved, name)!r}, given {getattr(given, name)!r})"
        for name in (f.name for f in dataclasses.fields(TrainConfig))
        if name not in RESUMABLE_OPTIONS and getattr(saved, name) != getattr(given, name)
    ]
    if changed:
        raise ValueError(f"cannot change {', '.join(changed)} when resuming: a resumed run keeps its "
                         f"configuration except {' and '.join(RESUMABLE_OPTIONS)}; start a new run instead")
    return given


@contextlib.contextmanager
def _locked(run_dir: str):
    """Hold ``run_dir/.lock`` (POSIX advisory lock, freed by the OS if the process dies):
    two processes never train into one directory."""
    os.makedirs(run_dir, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(os.path.join(run_dir, LOCK_FILENAME), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{run_dir} is in use: another process is training into it") from None
        yield


def _load_checkpoint(run_dir: str) -> dict | None:
    """The training state in ``run_dir/last.pt``, or None when no epoch has finished yet."""
    path = os.path.join(run_dir, LAST_STATE_FILENAME)
    if not os.path.exists(path):
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"cannot resume: {path} was written by another version of srgnn-rt; start a new run")
    return state


def _open_run(
    run_dir: str, config: TrainConfig | None, resume: bool, dataset: PreparedDataset, notes: list[str]
) -> tuple[TrainConfig, dict | None]:
    """Check ``run_dir`` for a fresh or resumed run; the configuration to train with and the checkpoint.

    A directory whose run finished no epoch (killed during epoch 1) is never a dead end:
    a fresh run takes it over, ``resume`` starts it from epoch 1 with its saved configuration.
    """
    has_config = os.path.exists(os.path.join(run_dir, CONFIG_FILENAME))
    checkpoint = _load_checkpoint(run_dir) if has_config else None
    if resume:
        config = _resumed_config(saved_config(run_dir), config)
        if checkpoint is None:
            notes.append(f"{run_dir} finished no epoch before it stopped: starting it from epoch 1")
        else:
            _check_same_data(run_dir, dataset)
            _check_extension(config, checkpoint, notes)
        return config, checkpoint
    if checkpoint is not None:
        raise ValueError(f"{run_dir} already holds a run ({checkpoint['epochs_done']} epochs trained); "
                         "pass resume=True (--resume) to continue it, or choose another directory")
    if has_config:
        notes.append(f"{run_dir} held a run that finished no epoch: replacing it")
    return config if config is not None else TrainConfig(), None


def _check_extension(config: TrainConfig, checkpoint: dict, notes: list[str]) -> None:
    """Refuse an ``epochs`` or ``patience`` that a resumed run could not honour; note a finished run."""
    done, bad_epochs = checkpoint["epochs_done"], checkpoint["bad_epochs"]
    if config.epochs < done:
        raise ValueError(f"the run has already trained {done} epochs; epochs={config.epochs} cannot undo them")
    if done < config.epochs and bad_epochs >= config.patience:
        raise ValueError(f"the run stopped early after epoch {done}: {bad_epochs} epochs without a new best "
                         f"reach patience={config.patience}; raise patience (--patience) to train more epochs")
    if done == config.epochs:
        notes.append(f"the run has already trained its {done} epochs; pass a larger epochs (--epochs) to extend it")


def _selection(config: TrainConfig, select_split: PrefixSplit) -> dict:
    """How the run chooses its checkpoint, as recorded in config.json, metrics.json and the result."""
    selection = {"split": config.select_on, "prefixes": len(select_split),
                 "metric": SELECTION_METRIC, "rule": f"the first epoch with the highest {SELECTION_METRIC}"}
    if config.select_on == "validation":
        selection["valid_fraction"] = config.valid_fraction
        selection["from"] = "the latest training sessions, held out of training"
    else:
        selection["note"] = "the reference's protocol: test figures of the chosen epoch are optimistic"
    return selection


def _check_same_data(run_dir: str, dataset: PreparedDataset) -> None:
    """A resumed run must train on the dataset it started with (same manifest)."""
    with open(os.path.join(run_dir, CONFIG_FILENAME)) as f:
        recorded = json.load(f)["data"]
    if recorded["manifest"] != dataset.manifest:
        raise ValueError(f"cannot resume: the dataset given is not the one the run was trained on "
                         f"({recorded['path']}, by its manifest)")


def _write_views(checkpoint: dict, run_dir: str, best_changed: bool) -> None:
    """``model.pt`` and ``metrics.json`` from the checkpoint (rewritten after it, so a kill in
    between is repaired by the next resume)."""
    if best_changed:
        _save_torch(checkpoint["best_model"], os.path.join(run_dir, BEST_WEIGHTS_FILENAME))
    _save_json(
        {"selection": checkpoint["selection"], "best": checkpoint["best"], "epochs": checkpoint["history"],
         "bad_epochs": checkpoint["bad_epochs"]},
        os.path.join(run_dir, METRICS_FILENAME),
    )


def preflight(data_dir, run_dir, config: TrainConfig | None, resume: bool) -> list[str]:
    """The checks ``train`` makes before it starts (dataset, run directory, resumed options),
    for a launcher to fail early; the notes they give."""
    notes: list[str] = []
    _open_run(os.fspath(run_dir), config, resume, PreparedDataset.load(data_dir), notes)
    return notes


def read_result(run_dir: str | os.PathLike) -> TrainResult:
    """The result of a run as recorded in its ``metrics.json``."""
    with open(os.path.join(os.fspath(run_dir), METRICS_FILENAME)) as f:
        metrics = json.load(f)
    return TrainResult(run_dir=os.fspath(run_dir), history=metrics["epochs"], selection=metrics["selection"],
                       best=metrics["best"])


def train(
    data_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    device: str = "auto",
    threads: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train SR-GNN on a prepared dataset directory; write the run into ``run_dir``.

    A fresh run needs a ``run_dir`` without a trained epoch (default config: the paper's).
    ``resume=True`` continues from ``run_dir/last.pt`` exactly as if never stopped;
    ``config``, when given, must equal the saved one except ``epochs`` (a larger value
    extends the run on the same schedule) and ``patience``. Under ``torchrun`` every
    process calls this: they train together (``distributed.py``), rank 0 writes the run
    and returns its result (the other ranks return an empty one).
    """
    from tqdm.auto import tqdm

    data_dir, run_dir = os.fspath(data_dir), os.fspath(run_dir)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    dataset = PreparedDataset.load(data_dir)
    ranks, torch_device = distributed.join(device)
    notes: list[str] = []
    finished = False
    try:
        with contextlib.ExitStack() as stack:
            def open_on_main():
                stack.enter_context(_locked(run_dir))
                return _open_run(run_dir, config, resume, dataset, notes)

            config, checkpoint = distributed.from_main(ranks, open_on_main)
            if not ranks.main:  # the training state only: rank 0 keeps the records
                checkpoint = checkpoint and {key: checkpoint[key] for key in ("epochs_done", "model", "optimizer",
                                                                              "scheduler")}
            result = _train(dataset, data_dir, run_dir, config, checkpoint, ranks, torch_device, notes,
                            progress and ranks.main, tqdm)
        finished = True
        return result
    finally:
        distributed.leave(ranks, finished=finished)


def _train(dataset, data_dir, run_dir, config, checkpoint, ranks, torch_device, notes, progress, tqdm) -> TrainResult:
    torch.manual_seed(config.seed)
    model_config = ModelConfig(
        n_items=dataset.vocab.n_items, hidden_size=config.hidden_size, step=config.step, nonhybrid=config.nonhybrid
    )
    model = SRGNN(model_config).to(torch_device)
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_step, gamma=config.lr_decay)

    if config.select_on == "validation":
        train_split, select_split = split_validation(dataset.train, config.valid_fraction)
    else:
        train_split, select_split = dataset.train, dataset.test
    selection = _selection(config, select_split)
    if len(select_split) < FEW_VALIDATION_PREFIXES:
        notes.append(f"the {config.select_on} split holds only {len(select_split)} prefixes: "
                     "the epoch it selects is a noisy choice")
    loader_options = dict(
        n_items=dataset.vocab.n_items,
        batch_size=config.batch_size,
        device=torch_device,
        max_length=config.max_length,
        edge_weight=config.edge_weight,
    )
    train_loader = BatchLoader(train_split, **loader_options)
    select_loader = BatchLoader(select_split, **loader_options)
    split = config.select_on

    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
    if ranks.main:
        if checkpoint is None:
            checkpoint = {"version": CHECKPOINT_VERSION, "selection": selection, "epochs_done": 0, "history": [],
                          "best": {}, "highest": {}, "bad_epochs": 0, "best_model": None}
        else:
            _write_views(checkpoint, run_dir, best_changed=True)
        _save_json(
            {
                "model": model_config.to_dict(),
                "train": config.to_dict(),
                "data": {"path": os.path.abspath(data_dir), "manifest": dataset.manifest},
                "selection": selection,
                "processes": ranks.world_size,
            },
            os.path.join(run_dir, CONFIG_FILENAME),
        )
        if progress:
            for note in notes:
                tqdm.write(f"note: {note}")
    first_epoch = 0 if checkpoint is None else checkpoint["epochs_done"]
    network = model
    if ranks.distributed:
        device_ids = [torch_device.index] if torch_device.type == "cuda" else None
        network = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    bad_epochs = checkpoint["bad_epochs"] if ranks.main else 0
    for epoch in range(first_epoch, config.epochs):
        if distributed.from_main(ranks, lambda: bad_epochs >= config.patience):  # rank 0 decides, all follow
            break
        network.train()
        # The order of an epoch depends on (seed, epoch) only: no RNG state to carry across a resume,
        # and every rank draws the same one.
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train_split))
        total_loss, n_seen, started = 0.0, 0, time.perf_counter()
        bar = tqdm(
            range(0, len(order), config.batch_size), total=len(train_loader), unit="batch",
            desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False, mininterval=0.5,
        )
        for batch_number, start in enumerate(bar):
            index, weight = distributed.share(order[start : start + config.batch_size], ranks)
            items, adjacency, alias, mask, targets = train_loader.batch(index)
            optimizer.zero_grad(set_to_none=True)
            summed_loss = torch.nn.functional.cross_entropy(network(items, adjacency, alias, mask), targets - 1,
                                                            reduction="sum")
            (summed_loss * weight).backward()  # DDP's average over ranks makes it the global batch's mean
            optimizer.step()
            if weight:
                total_loss += summed_loss.item()
                n_seen += len(targets)
            if batch_number % 50 == 0:
                bar.set_postfix(
                    loss=f"{total_loss / max(n_seen, 1):.4f}",
                    prefixes_per_s=f"{n_seen * ranks.world_size / (time.perf_counter() - started):.0f}",
                    refresh=False,
                )
        total_loss, n_seen = distributed.summed(ranks, total_loss, n_seen)
        train_seconds = time.perf_counter() - started
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()  # after the epoch: the reference's schedule, without its off-by-one
        if not ranks.main:
            continue
        metrics = evaluate_model(model, select_loader, config.ks)
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / max(n_seen, 1),
            "lr": lr,
            "train_seconds": train_seconds,
            "prefixes_per_second": n_seen / train_seconds if train_seconds > 0 else None,
            split: metrics,
        }
        checkpoint["history"].append(record)
        improved = _improves(metrics, checkpoint["highest"])
        for name, better in improved.items():
            if better:
                checkpoint["highest"][name] = metrics[name]
        if improved[SELECTION_METRIC]:
            checkpoint["best_model"] = {name: value.detach().clone() for name, value in model.state_dict().items()}
            checkpoint["best"] = {"epoch": epoch + 1, split: metrics}
        bad_epochs = 0 if any(improved.values()) else bad_epochs + 1
        checkpoint.update(
            epochs_done=epoch + 1, bad_epochs=bad_epochs, model=model.state_dict(),
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
        )
        _save_torch(checkpoint, os.path.join(run_dir, LAST_STATE_FILENAME))
        _write_views(checkpoint, run_dir, best_changed=improved[SELECTION_METRIC])
        if progress:
            shown = "  ".join(f"{k} {metrics[k]:.2f}" for k in ("HR@20", "MRR@20"))
            tqdm.write(f"epoch {epoch + 1}: loss {record['loss']:.4f}  {split} {shown}  "
                       f"({record['prefixes_per_second']:.0f} prefixes/s)")
    if not ranks.main:
        return TrainResult(run_dir=run_dir)
    return TrainResult(run_dir=run_dir, history=checkpoint["history"], selection=checkpoint["selection"],
                       best=checkpoint["best"], notes=notes)
