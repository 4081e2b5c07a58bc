"""Soak run: a million requests through the micro-batcher from many threads (not part of CI).

Every client thread sends one session at a time and waits for its answer; 70% of
requests ask for the top 20, the rest for k = 10, k = 50 or ``exclude_seen=True``, so
that batches hold several groups. An
error is an exception or an answer without k raw ids. Resident memory (Linux
``/proc/self/statm``) is sampled after loading, after a warm-up and every 10% of
the run. The warm-up is the first 10% of requests (five passes over the 20,000
sessions at the default million): onnxruntime's arena grows until the batch with
the largest padded shape has run, which takes tens of thousands of requests. The
run passes (exit 0) with no error and less than 5% growth from the warm-up to the
end; growth since loading is printed too::

    python -m benchmarks.soak [--bundle PATH] [--requests 1000000] [--clients 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.bundles import requests, synthetic_bundle
from srgnn_rt.batcher import MicroBatcher
from srgnn_rt.bundle import Bundle
from srgnn_rt.runtime import Recommender

_MIX = ((10, False), (50, False), (20, True)) + ((20, False),) * 7  # (k, exclude_seen), by request index
WARM_UP_FRACTION = 0.10
MAX_GROWTH = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float:
    """Current resident set size of this process in MiB (Linux)."""
    statm = Path("/proc/self/statm")
    if not statm.is_file():
        raise SystemExit("benchmarks.soak reads resident memory from /proc/self/statm: it runs on Linux only")
    return int(statm.read_text().split()[1]) * _PAGE / (1 << 20)


class _Load:
    """Client threads sending ``total`` requests, one at a time each, through ``batcher``."""

    def __init__(self, batcher: MicroBatcher, sessions: list, total: int, clients: int):
        self.total = total
        self.errors: list[str] = []
        self.n_errors = 0
        self._errors_lock = threading.Lock()
        # Written now, so that its pages are resident before the first memory sample.
        self.latencies = np.full(total, np.nan, dtype=np.float32)
        self._done = [0] * clients  # answered per client (each written by its own thread only)
        self._next = itertools.count()
        self._batcher = batcher
        self._sessions = sessions
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    @property
    def answered(self) -> int:
        return sum(self._done)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _client(self, number: int) -> None:
        while (index := next(self._next)) < self.total:
            session = self._sessions[index % len(self._sessions)]
            k, exclude_seen = _MIX[index % len(_MIX)]
            began = time.perf_counter()
            try:
                result = self._batcher.submit(session, k, exclude_seen=exclude_seen).result()
                if len(result.items) != k:
                    raise AssertionError(f"request {index}: {len(result.items)} items for k = {k}")
            except Exception as exc:  # counted and reported: the soak's verdict
                with self._errors_lock:
                    self.n_errors += 1
                    if len(self.errors) < 5:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
            self.latencies[index] = time.perf_counter() - began
            self._done[number] += 1


def soak(bundle: Path, *, total: int, clients: int, threads: int, max_batch: int, max_wait_ms: float) -> bool:
    """Run the soak, print its progress and verdict; True when it passes."""
    recommender = Recommender.load(bundle, device="cpu", threads=threads)
    sessions = requests(Bundle.load(bundle), 20_000, seed=7)
    print(f"bundle {bundle}: {recommender.n_items:,} items; {total:,} requests from {clients} threads, "
          f"max_batch {max_batch}, max_wait_ms {max_wait_ms}, {threads} onnxruntime threads", flush=True)
    warm_up_at = max(1, int(total * WARM_UP_FRACTION))
    step = max(1, total // 10)
    after_warm_up = None
    with MicroBatcher(recommender, max_batch=max_batch, max_wait_ms=max_wait_ms) as batcher:
        load = _Load(batcher, sessions, total, clients)
        after_load = resident_mb()
        print(f"resident after load: {after_load:,.1f} MiB", flush=True)
        began = time.perf_counter()
        load.start()
        next_report = step
        while (answered := load.answered) < total:
            if after_warm_up is None and answered >= warm_up_at:
                after_warm_up = resident_mb()
                print(f"resident after warm-up ({answered:,} requests): {after_warm_up:,.1f} MiB", flush=True)
            if answered >= next_report:
                elapsed = time.perf_counter() - began
                print(f"{answered:>9,} answered  {answered / elapsed:8,.0f} req/s  resident {resident_mb():,.1f} MiB"
                      f"  errors {load.n_errors}", flush=True)
                next_report += step
            time.sleep(0.2)
        load.join()
    elapsed = time.perf_counter() - began
    end = resident_mb()
    after_warm_up = after_warm_up or end
    growth = (end - after_warm_up) / after_warm_up
    latency_ms = load.latencies * 1000.0
    p50, p99, p999 = np.percentile(latency_ms, [50, 99, 99.9])
    print(f"done: {total:,} requests in {elapsed:,.1f} s ({total / elapsed:,.0f} req/s); latency p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, p99.9 {p999:.2f} ms")
    print(f"errors: {load.n_errors}" + "".join(f"\n  {error}" for error in load.errors))
    print(f"resident: after load {after_load:,.1f} MiB, after warm-up {after_warm_up:,.1f} MiB, end {end:,.1f} MiB; "
          f"growth {100 * growth:+.2f}% since warm-up (limit {100 * MAX_GROWTH:.0f}%), "
          f"{100 * (end - after_load) / after_load:+.2f}% since load")
    passed = load.n_errors == 0 and growth < MAX_GROWTH
    print("PASS" if passed else "FAIL")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: the synthetic 43,097-item bundle)")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    for name in ("requests", "clients", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    bundle = args.bundle or synthetic_bundle()
    passed = soak(bundle, total=args.requests, clients=args.clients, threads=args.threads,
                  max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
