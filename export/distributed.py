"""Multi-process training with torch DDP: the process group, each rank's share of a batch, the launcher.

``srgnn-rt train DATA --out RUN --nproc N`` runs ``torchrun --standalone`` with N
processes on this machine; on several machines start the same command under
``torchrun`` on each (``torchrun --nnodes M --nproc-per-node N --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m srgnn_rt.cli train DATA --out RUN``): ``train``
joins the process group that torchrun describes in the environment. Backend
``gloo`` on CPU, ``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).

Every rank draws the same shuffled order of each epoch; global batch ``b`` (the
``batch_size`` prefixes a single process would take) is split into N near-equal
contiguous shares, one per rank. A rank's loss is its share's summed cross
entropy times ``N / |b|``: DDP averages gradients over ranks, which gives
exactly the mean over the global batch, uneven shares and the last, short
batch included (a rank with no prefix left runs one prefix at weight 0 so that
it still joins the all-reduce). So N ranks take the steps one process takes,
up to float summation order. Rank 0 alone evaluates, writes the run and decides
early stopping; the other ranks follow its decision.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .run import resolve_device

# A rank waits this long for the others (rank 0 evaluates meanwhile) before the run fails.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


class DistributedTrainingError(RuntimeError):
    """A distributed run failed: a rank died or raised (torchrun printed which, above)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def join(device: str) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun described in the environment (if any): the ranks and this
    rank's device. Without torchrun: one process, ``resolve_device(device)``."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Ranks(), resolve_device(device)
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        torch_device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(torch_device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return ranks, torch_device


def leave(ranks: Ranks, *, finished: bool) -> None:
    """Leave the process group. After a normal end (``finished``) the ranks first meet, so that
    none tears its connections down while another is still finishing (rank 0 writes the run's
    files last); after an error they leave at once, as a rank may be dead."""
    if ranks.distributed:
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def share(index: np.ndarray, ranks: Ranks) -> tuple[np.ndarray, float]:
    """This rank's prefixes of global batch ``index: int64[G]`` and the weight of their summed loss
    (``world_size / G``, or 0 for a rank left without prefixes, which then runs ``index[:1]``)."""
    mine = np.array_split(index, ranks.world_size)[ranks.rank]
    if len(mine) == 0:
        return index[:1], 0.0
    return mine, ranks.world_size / len(index)


def from_main(ranks: Ranks, make):
    """``make()`` on rank 0, its value sent to every rank; rank 0's error ends every rank with its message."""
    if not ranks.distributed:
        return make()
    payload = [None]
    if ranks.main:
        try:
            payload = [("value", make())]
        except Exception as exc:
            dist.broadcast_object_list([("error", f"{type(exc).__name__}: {exc}")], src=0)
            raise
    dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise ValueError(f"rank 0 failed: {value}")
    return value


def summed(ranks: Ranks, *values: float) -> list[float]:
    """``values`` summed over ranks (float64)."""
    if not ranks.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def launch(
    data_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    config=None,
    *,
    nproc: int,
    device: str = "auto",
    threads: int | None = None,
    resume: bool = False,
    progress: bool = True,
):
    """``train(...)`` in ``nproc`` processes on this machine (``torchrun --standalone``); the run's result.

    Each process gets ``threads`` torch threads (default: this machine's cores / nproc).
    Raises DistributedTrainingError when a rank fails (a dead rank ends the others).
    """
    from .train import TrainResult, preflight, read_result

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be an int >= 1, got {nproc!r}")
    notes = preflight(data_dir, run_dir, config, resume)
    spec = {
        "data_dir": os.fspath(data_dir), "run_dir": os.fspath(run_dir),
        "config": None if config is None else config.to_dict(), "device": device,
        "threads": threads or max(1, (os.cpu_count() or 1) // nproc), "resume": resume, "progress": progress,
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "srgnn_rt_torch.distributed", json.dumps(spec)]
    returncode = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}).returncode
    if returncode != 0:
        raise DistributedTrainingError(
            f"distributed training in {os.fspath(run_dir)} failed (torchrun exit status {returncode}): "
            "a rank died or raised, see its error above; the run resumes from its last finished epoch "
            "with --resume")
    result: TrainResult = read_result(run_dir)
    result.notes[:0] = notes
    return result


def _worker(spec: dict) -> None:
    """One rank of ``launch``: ``train`` with the launcher's arguments."""
    from .train import TrainConfig, train

    config = None if spec["config"] is None else TrainConfig.from_dict(spec["config"])
    train(spec["data_dir"], spec["run_dir"], config, device=spec["device"], threads=spec["threads"],
          resume=spec["resume"], progress=spec["progress"] and os.environ.get("RANK", "0") == "0")


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
