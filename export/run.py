"""The files of a training run directory, and loading a trained model from one.

A run directory holds ``config.json`` (model + training configuration, the
dataset used, the selection split; written when the run starts), ``last.pt``
(the whole training state after the last finished epoch, written atomically in
one file: the one source of truth for resume), and two views of it rewritten
after it: ``model.pt`` (the selected checkpoint's state dict) and
``metrics.json`` (every epoch and the selected one). ``.lock`` is held by the
process training into the directory. Weights load with ``weights_only=True``:
no code runs on load.
"""

from __future__ import annotations

import json
import os

import torch

from .model import SRGNN, ModelConfig

CONFIG_FILENAME = "config.json"
BEST_WEIGHTS_FILENAME = "model.pt"
LAST_STATE_FILENAME = "last.pt"
METRICS_FILENAME = "metrics.json"
LOCK_FILENAME = ".lock"


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when torch sees a GPU, else CPU; ``"cuda"`` without one raises."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but torch sees no CUDA device")
    return torch.device(device)


def load_run(run_dir: str | os.PathLike, *, device: str = "cpu") -> SRGNN:
    """The best model of a finished (or interrupted) run, in eval mode."""
    run_dir = os.fspath(run_dir)
    config_path = os.path.join(run_dir, CONFIG_FILENAME)
    weights_path = os.path.join(run_dir, BEST_WEIGHTS_FILENAME)
    for path in (config_path, weights_path):
        if not os.path.exists(path):
            raise ValueError(f"{run_dir} is not a finished run: {os.path.basename(path)} is missing")
    with open(config_path) as f:
        model_config = ModelConfig.from_dict(json.load(f)["model"])
    model = SRGNN(model_config)
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.to(resolve_device(device)).eval()


def load_run_config(run_dir: str | os.PathLike) -> dict:
    """The ``config.json`` of a run: ``{"model": ..., "train": ..., "data": ..., "selection": ...}``."""
    with open(os.path.join(os.fspath(run_dir), CONFIG_FILENAME)) as f:
        return json.load(f)
