"""Training throughput: our loop against one in the style of the authors' code.

Both train the same SR-GNN (same initial weights, Adam, cross-entropy) on the
same mini-batches of synthetic Diginetica-sized prefixes (43,097 items). They
differ where the authors' code differs from ours:

- reference style: graphs built click by click in Python
  (``benchmarks/reference_style.py``), arrays converted to tensors per batch, and
  the authors' per-session ``torch.stack`` gather of click states in the forward;
- ours: a CSR gather of the batch, the compiled builder, the model's batched
  gather and the fused Adam kernel (``BatchLoader`` + ``SRGNN`` + ``build_optimizer``).

With ``--nproc 1,2`` it also times our loop in N processes training together
(torch DDP over gloo, or nccl with ``--device cuda`` and N GPUs): each takes its
share of every global batch of 100, as ``srgnn-rt train --nproc N`` does, with
``--threads`` split between them.

Run from the repository root:
``python -m benchmarks.training_throughput [--batches 200] [--threads 2] [--device cuda] [--nproc 1,2]``.
Prints prefixes per second of each loop (median over repeats) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time

import numpy as np
import torch

from benchmarks.reference_style import build_graphs_per_click
from srgnn_rt.dataset import PrefixSplit
from srgnn_rt.synthetic import SyntheticConfig, generate_sessions_array
from srgnn_rt_torch import distributed
from srgnn_rt_torch.batches import BatchLoader
from srgnn_rt_torch.model import SRGNN, ModelConfig
from srgnn_rt_torch.train import TrainConfig, build_optimizer


def _prefixes(n_sessions: int, n_items: int, seed: int) -> PrefixSplit:
    """Every prefix of synthetic sessions of length >= 2: ``s[:i] -> s[i]``."""
    items, offsets = generate_sessions_array(n_sessions, seed=seed, config=SyntheticConfig(n_items=n_items))
    flat, bounds, targets = [], [0], []
    for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        for end in range(a + 1, b):
            flat.extend(items[a:end].tolist())
            bounds.append(len(flat))
            targets.append(int(items[end]))
    return PrefixSplit(np.array(flat, dtype=np.int64), np.array(bounds, dtype=np.int64),
                       np.array(targets, dtype=np.int64))


def _reference_style_scores(model: SRGNN, items, adjacency, alias, mask) -> torch.Tensor:
    """The authors' forward: GNN over nodes, then a Python loop stacking each session's click states."""
    hidden = model.embedding(items)
    for _ in range(model.config.step):
        hidden = model.gnn(adjacency, hidden)
    seq_hidden = torch.stack([hidden[i][alias[i]] for i in torch.arange(len(alias)).long()])
    last = seq_hidden[torch.arange(mask.shape[0], device=mask.device).long(), torch.sum(mask, 1).long() - 1]
    alpha = model.q(torch.sigmoid(model.w1(last).unsqueeze(1) + model.w2(seq_hidden)))
    s_g = torch.sum(alpha * seq_hidden * mask.view(mask.shape[0], -1, 1).float(), 1)
    s_h = model.w3(torch.cat([s_g, last], 1))
    return model.score(s_h)


def _reference_style_batches(split: PrefixSplit, order: np.ndarray, batch_size: int, device: torch.device):
    items, offsets = split.items.tolist(), split.offsets.tolist()
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size].tolist()
        sessions = [items[offsets[i] : offsets[i + 1]] for i in index]
        node_items, adjacency, alias, mask = build_graphs_per_click(sessions)
        yield tuple(t.to(device) for t in (
            torch.Tensor(node_items).long(), torch.Tensor(adjacency).float(), torch.Tensor(alias).long(),
            torch.Tensor(mask).float(), torch.Tensor(split.targets[index]).long()))


def _train_seconds(batches, model: SRGNN, forward, optimizer) -> float:
    synchronize = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    loss_fn = torch.nn.CrossEntropyLoss()
    started = time.perf_counter()
    for items, adjacency, alias, mask, targets in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(model, items, adjacency, alias, mask), targets - 1)
        loss.backward()
        optimizer.step()
    synchronize()
    return time.perf_counter() - started


def _ddp_worker(rank: int, nproc: int, port: int, args: argparse.Namespace, result_path: str) -> None:
    """One of ``nproc`` processes timing DDP steps over the same batches as the single-process loop."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(nproc),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(max(1, args.threads // nproc))
    ranks, device = distributed.join(args.device)
    split = _prefixes(args.sessions, args.items, seed=0)
    loader = BatchLoader(split, n_items=args.items, batch_size=100, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    rates = []
    for repeat in range(args.repeats):
        order = np.random.default_rng(repeat).permutation(len(split))[: args.batches * 100]
        torch.manual_seed(repeat)
        model = SRGNN(ModelConfig(n_items=args.items)).to(device)
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = build_optimizer(model, TrainConfig())
        torch.distributed.barrier()
        started = time.perf_counter()
        for start in range(0, len(order), 100):
            index, weight = distributed.share(order[start : start + 100], ranks)
            items, adjacency, alias, mask, targets = loader.batch(index)
            optimizer.zero_grad(set_to_none=True)
            (loss_fn(network(items, adjacency, alias, mask), targets - 1) * weight).backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        torch.distributed.barrier()
        rates.append(len(order) / (time.perf_counter() - started))
    if ranks.main:
        with open(result_path, "w") as f:
            json.dump(rates, f)
    distributed.leave(ranks)


def _ddp_rates(nproc: int, args: argparse.Namespace) -> list[float]:
    with socket.socket() as probe:  # a free port for the process group's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        result_path = os.path.join(directory, "rates.json")
        torch.multiprocessing.spawn(_ddp_worker, args=(nproc, port, args, result_path), nprocs=nproc)
        with open(result_path) as f:
            return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=25_000, help="synthetic sessions (about 4 prefixes each)")
    parser.add_argument("--items", type=int, default=43_097)
    parser.add_argument("--batches", type=int, default=200, help="batches of 100 timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--nproc", default="1", help="comma-separated process counts for our loop, e.g. 1,2")
    args = parser.parse_args()
    process_counts = [int(n) for n in args.nproc.split(",")]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    split = _prefixes(args.sessions, args.items, seed=0)
    print(f"{len(split):,} prefixes over {args.items:,} items; timing {args.batches} batches of 100, "
          f"{args.repeats} repeats, {args.threads} threads, device {device}")
    loader = BatchLoader(split, n_items=args.items, batch_size=100, device=device)
    ours_fn = lambda model, *arrays: model(*arrays)  # noqa: E731
    rates = {"reference style": [], "srgnn_rt": []}
    for repeat in range(args.repeats):
        order = np.random.default_rng(repeat).permutation(len(split))[: args.batches * 100]
        torch.manual_seed(repeat)
        initial = SRGNN(ModelConfig(n_items=args.items)).state_dict()
        for name, batches, forward, make_optimizer in (
            ("reference style", _reference_style_batches(split, order, 100, device), _reference_style_scores,
             lambda model: torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)),
            ("srgnn_rt", loader.batches(order), ours_fn, lambda model: build_optimizer(model, TrainConfig())),
        ):
            model = SRGNN(ModelConfig(n_items=args.items))
            model.load_state_dict(initial)
            model.to(device)
            rates[name].append(len(order) / _train_seconds(batches, model, forward, make_optimizer(model)))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, rate in medians.items():
        print(f"{name:>16}: {rate:8.0f} prefixes/s  (runs: {', '.join(f'{r:.0f}' for r in rates[name])})")
    print(f"{'speed-up':>16}: {medians['srgnn_rt'] / medians['reference style']:8.2f}x")
    for nproc in (n for n in process_counts if n > 1):
        runs = _ddp_rates(nproc, args)
        print(f"{f'srgnn_rt x{nproc}':>16}: {statistics.median(runs):8.0f} prefixes/s  (nproc {nproc}, DDP, "
              f"{max(1, args.threads // nproc)} threads each; runs: {', '.join(f'{r:.0f}' for r in runs)}; "
              f"{statistics.median(runs) / medians['srgnn_rt']:.2f}x of nproc 1)")


if __name__ == "__main__":
    main()
