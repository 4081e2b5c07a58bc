"""Distributed training (torch DDP over gloo, 2 processes under torchrun): the steps of one
process, a resumable checkpoint, and a dead rank that ends the run instead of hanging it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from srgnn_rt_torch.distributed import DistributedTrainingError, Ranks, launch, share
from srgnn_rt_torch.train import TrainConfig, train

# Global batch 100 (50 per rank); the small dataset's 301 training prefixes end in a batch of one:
# one rank gets it, the other runs at weight 0.
CONFIG = TrainConfig(epochs=2, hidden_size=8, batch_size=100, select_on="test", lr_decay_step=2)
QUICK = dict(device="cpu", threads=1, progress=False)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_weighted_shares_average_to_the_global_batch_mean(size, world_size, seed):
    """Σ over ranks of weight × summed loss, averaged over ranks (what DDP does) = the batch mean."""
    losses = np.random.default_rng(seed).random(size)
    index = np.arange(size) + 7
    shares = [share(index, Ranks(rank, world_size)) for rank in range(world_size)]
    averaged = sum(weight * losses[mine - 7].sum() for mine, weight in shares) / world_size
    assert averaged == pytest.approx(losses.mean(), rel=1e-12)
    assert np.array_equal(np.concatenate([mine for mine, weight in shares if weight]), index)
    assert all(len(mine) == 1 for mine, weight in shares if not weight)


def _state(run_dir: Path):
    checkpoint = torch.load(run_dir / "last.pt", weights_only=True)
    return checkpoint["model"], json.loads((run_dir / "metrics.json").read_text())


def _assert_same_steps(two: Path, one: Path) -> float:
    """Same weights up to float summation order, same losses and metrics; the largest weight difference."""
    (weights_two, metrics_two), (weights_one, metrics_one) = _state(two), _state(one)
    error = max(float((weights_two[name] - weights_one[name]).abs().max()) for name in weights_one)
    assert error < 1e-5
    for a, b in zip(metrics_two["epochs"], metrics_one["epochs"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["lr"] == b["lr"]
        assert a["test"] == pytest.approx(b["test"], abs=100 / 200 + 1e-9)  # at most one of 200 prefixes
    assert metrics_two["best"]["epoch"] == metrics_one["best"]["epoch"]
    return error


def test_two_processes_train_as_one_and_resume(small_dataset, tmp_path):
    train(small_dataset, tmp_path / "one", CONFIG, **QUICK)
    result = launch(small_dataset, tmp_path / "two", CONFIG, nproc=2, **QUICK)
    assert [e["epoch"] for e in result.history] == [1, 2]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["processes"] == 2
    print(f"2 ranks vs 1 process, max |Δweight| after 2 epochs: {_assert_same_steps(tmp_path / 'two', tmp_path / 'one'):.2e}")

    longer = CONFIG.replace(epochs=3)
    train(small_dataset, tmp_path / "one", longer, resume=True, **QUICK)
    result = launch(small_dataset, tmp_path / "two", longer, nproc=2, resume=True, **QUICK)
    assert [e["lr"] for e in result.history] == pytest.approx([1e-3, 1e-3, 1e-4])
    print(f"after resuming to 3 epochs: {_assert_same_steps(tmp_path / 'two', tmp_path / 'one'):.2e}")
    with pytest.raises(ValueError, match="already holds a run"):  # refused before any process starts
        launch(small_dataset, tmp_path / "two", CONFIG, nproc=2, **QUICK)


def _rank_process(rank: int, run_dir: Path) -> int | None:
    """The pid of the training process of ``rank`` that writes ``run_dir`` (Linux /proc)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and str(run_dir).encode() in cmdline:
            return int(pid)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_a_dead_rank_ends_the_run_with_an_error(small_dataset, tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "srgnn_rt.cli", "train", str(small_dataset), "--out", str(run_dir),
               "--nproc", "2", "--epochs", "300", "--patience", "300", "--hidden-size", "8", "--select-on", "test",
               "--device", "cpu", "--threads", "1", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "last.pt").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.2)
        rank_1 = _rank_process(1, run_dir)
        assert rank_1 is not None
        os.kill(rank_1, signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)  # the bound: rank 0 must not wait forever
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1
    last_line = stderr.decode().strip().splitlines()[-1]
    assert last_line.startswith("srgnn-rt train: error: distributed training in") and "--resume" in last_line
    assert _rank_process(0, run_dir) is None
    assert issubclass(DistributedTrainingError, RuntimeError)
