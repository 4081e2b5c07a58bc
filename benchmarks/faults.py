"""Fault load: well-formed requests through the micro-batcher, alone and beside hostile ones.

Well-formed clients (threads) each send synthetic sessions of the bundle's items
(``bundles.requests``) one at a time and wait for the answer. The run is made
twice: once alone ("clean"), once beside hostile clients that keep sending, until
the well-formed ones are done, huge sessions (by default 10,000 clicks over 2,585
distinct items, the issue's case) and garbage (ids of the wrong type, floats, NaN,
nested lists, a 5,000-digit id, no list at all, unknown ids). It reports the p50 /
p99 latency of the well-formed requests in each run and their ratio, and what
became of the hostile requests (answered, or which error). Clean and hostile runs
alternate for ``--rounds`` rounds and are pooled, so that a change in the machine's
load between them does not pass for an effect. It passes (exit 0) when
every well-formed request got its k items in both runs and every request, hostile
or not, completed::

    python -m benchmarks.faults [--bundle PATH] [--requests 5000] [--rounds 3] [--hostile {mixed,huge,garbage}]
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srgnn_rt.batcher import DEFAULT_MAX_BATCH_COST, MicroBatcher
from srgnn_rt.bundle import Bundle
from srgnn_rt.runtime import Recommender

ANSWER_TIMEOUT_S = 600.0  # a request not answered by then counts as lost
GARBAGE: tuple[Any, ...] = (
    ["abc", "def"],          # strings for a model of int ids
    [1.5, 2.5],
    [float("nan")],
    [True, False],
    [[1, 2], [3]],
    [None],
    [10**5000],              # a 5,000-digit id: unknown
    [-1, -2, -3],            # unknown ids only: the most popular items
    {"session": [1, 2]},     # not a list of ids
    12345,
)


HOSTILE_KINDS = ("mixed", "huge", "garbage")


def hostile_requests(bundle: Bundle, kind: str = "mixed", *, clicks: int, distinct: int, seed: int = 0) -> list[Any]:
    """What hostile clients send, in turn: a huge session (``clicks`` clicks cycling over ``distinct``
    random known items) and every kind of ``GARBAGE`` ("mixed"), or one of the two alone."""
    rng = np.random.default_rng(seed)
    raw_ids = bundle.vocab.raw_ids
    pool = rng.choice(len(raw_ids), size=min(distinct, len(raw_ids)), replace=False)
    huge = [raw_ids[i] for i in np.resize(pool, clicks).tolist()]
    return {"mixed": [huge, *GARBAGE], "huge": [huge], "garbage": list(GARBAGE)}[kind]


@dataclass
class LoadResult:
    """One run: well-formed latencies (ms, in request order), failures among them, and the outcome
    of each hostile request ("answered" or the error's type)."""

    latencies_ms: np.ndarray
    failures: list[str]
    hostile: collections.Counter = field(default_factory=collections.Counter)
    elapsed_s: float = 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def run_load(
    recommender: Recommender,
    sessions: list,
    hostile: list | None,
    *,
    total: int,
    clients: int,
    hostile_clients: int = 1,
    k: int = 20,
    max_batch: int = 64,
    max_batch_cost: int = DEFAULT_MAX_BATCH_COST,
    max_wait_ms: float = 2.0,
) -> LoadResult:
    """``total`` well-formed requests (``sessions`` in turn) from ``clients`` threads through one
    ``MicroBatcher``; with ``hostile``, ``hostile_clients`` more threads send its requests in turn
    until the well-formed ones are done."""
    latencies = np.full(total, np.nan)
    failures: list[str] = []
    outcomes: collections.Counter = collections.Counter()
    lock = threading.Lock()
    next_index = iter(range(total))
    done = threading.Event()

    def well_formed(batcher: MicroBatcher) -> None:
        for index in next_index:  # shared: each index is taken by one thread
            began = time.perf_counter()
            try:
                result = batcher.submit(sessions[index % len(sessions)], k).result(ANSWER_TIMEOUT_S)
                if len(result.items) != k or result.fallback:
                    raise AssertionError(f"{len(result.items)} items, fallback {result.fallback}")
            except Exception as exc:  # the verdict of the run
                with lock:
                    failures.append(f"request {index}: {type(exc).__name__}: {exc}")
            latencies[index] = (time.perf_counter() - began) * 1000.0

    def attacker(batcher: MicroBatcher, offset: int) -> None:
        for number in range(offset, sys.maxsize):
            if done.is_set():
                return
            future = batcher.submit(hostile[number % len(hostile)], k)
            try:
                future.result(ANSWER_TIMEOUT_S)
                outcome = "answered"
            except TimeoutError:
                outcome = "LOST (not answered)"
            except Exception as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes[outcome] += 1

    with MicroBatcher(recommender, max_batch=max_batch, max_batch_cost=max_batch_cost,
                      max_wait_ms=max_wait_ms) as batcher:
        workers = [threading.Thread(target=well_formed, args=(batcher,)) for _ in range(clients)]
        attackers = [threading.Thread(target=attacker, args=(batcher, i)) for i in range(hostile_clients if hostile
                                                                                       else 0)]
        began = time.perf_counter()
        for thread in attackers + workers:
            thread.start()
        for thread in workers:
            thread.join()
        elapsed = time.perf_counter() - began
        done.set()
        for thread in attackers:
            thread.join()
    return LoadResult(latencies, failures, outcomes, elapsed)


def merged(results: list[LoadResult]) -> LoadResult:
    """Several runs as one: all their latencies, failures and hostile outcomes."""
    return LoadResult(np.concatenate([r.latencies_ms for r in results]), [f for r in results for f in r.failures],
                      sum((r.hostile for r in results), collections.Counter()), sum(r.elapsed_s for r in results))


def report(name: str, result: LoadResult) -> str:
    line = (f"{name:>8}: {len(result.latencies_ms):,} well-formed requests in {result.elapsed_s:.1f} s, "
            f"p50 {result.percentile(50):.2f} ms, p99 {result.percentile(99):.2f} ms, failed {len(result.failures)}")
    if result.hostile:
        line += "\n          hostile: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(result.hostile.items()))
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: the synthetic 43,097-item bundle)")
    parser.add_argument("--requests", type=int, default=5_000, help="well-formed requests per run")
    parser.add_argument("--rounds", type=int, default=3, help="clean and hostile runs, alternated")
    parser.add_argument("--clients", type=int, default=15, help="well-formed client threads")
    parser.add_argument("--hostile-clients", type=int, default=1)
    parser.add_argument("--hostile", choices=HOSTILE_KINDS, default="mixed",
                        help="what hostile clients send: huge sessions and garbage in turn, or one of them")
    parser.add_argument("--huge-clicks", type=int, default=10_000)
    parser.add_argument("--huge-distinct", type=int, default=2_585)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-batch-cost", type=int, default=DEFAULT_MAX_BATCH_COST)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    from benchmarks.bundles import requests, synthetic_bundle  # here: the suites import this module as ``faults``

    for name in ("requests", "rounds", "clients", "hostile_clients", "huge_clicks", "huge_distinct", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    path = args.bundle or synthetic_bundle()
    bundle = Bundle.load(path)
    recommender = Recommender.load(bundle, device="cpu", threads=args.threads)
    sessions = requests(bundle, 4096, seed=11)
    hostile = hostile_requests(bundle, args.hostile, clicks=args.huge_clicks, distinct=args.huge_distinct)
    settings = dict(total=args.requests, clients=args.clients, hostile_clients=args.hostile_clients,
                    max_batch=args.max_batch, max_batch_cost=args.max_batch_cost, max_wait_ms=args.max_wait_ms)
    cut = f"cut to {recommender.max_length} clicks" if recommender.max_length else "not cut"
    print(f"bundle {path}: {bundle.n_items:,} items, sessions {cut}; {args.clients} "
          f"well-formed clients, {args.hostile_clients} hostile ({args.hostile}: {len(hostile)} requests in turn; "
          f"huge = {args.huge_clicks:,} clicks over {args.huge_distinct:,} items); max_batch {args.max_batch}, "
          f"max_batch_cost {args.max_batch_cost}, max_wait_ms {args.max_wait_ms}", flush=True)
    run_load(recommender, sessions, None, **dict(settings, total=min(args.requests, 1000)))  # warm-up
    runs: dict[str, list[LoadResult]] = {"clean": [], "hostile": []}
    for number in range(1, args.rounds + 1):  # alternated, so that a drift of the machine's load hits both
        for name, attacks in (("clean", None), ("hostile", hostile)):
            runs[name].append(run_load(recommender, sessions, attacks, **settings))
            print(f"round {number} " + report(name, runs[name][-1]), flush=True)
    clean, mixed = merged(runs["clean"]), merged(runs["hostile"])
    print(report("clean", clean) + "\n" + report("hostile", mixed))
    print(f"well-formed latency beside hostile requests / alone: p50 x{mixed.percentile(50) / clean.percentile(50):.2f}"
          f", p99 x{mixed.percentile(99) / clean.percentile(99):.2f}")
    failures = clean.failures + mixed.failures
    lost = sum(n for outcome, n in mixed.hostile.items() if outcome.startswith("LOST"))
    for failure in failures[:5]:
        print(f"  {failure}")
    passed = not failures and not lost
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
