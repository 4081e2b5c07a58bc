"""The service path: N concurrent clients, each sending one session at a time and waiting for it.

``direct``: every client thread calls ``Recommender.recommend_one`` itself.
``batcher``: every client submits to one ``MicroBatcher`` (default settings) and waits
on the Future. One round = every client sends its share of ``REQUESTS_PER_ROUND``
requests; the benchmark times rounds, and ``extra_info`` holds the throughput
(requests/s over the median round), the p50 / p99 latency of single requests over
all timed rounds, and for the batcher the mean batch it formed.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from bundles import requests

from srgnn_rt.batcher import MicroBatcher

CLIENTS = (1, 4, 16, 64)
MODES = ("direct", "batcher")
REQUESTS_PER_ROUND = 1024
ROUNDS = 5
K = 20


class _Clients:
    """``n`` client threads; ``run_round()`` lets each send ``per_client`` requests one after another
    through ``call(session)`` and returns when all are answered. Latencies (s) accumulate per client."""

    def __init__(self, n: int, call, sessions: list, per_client: int):
        self.latencies: list[list[float]] = [[] for _ in range(n)]
        self.errors: list[BaseException] = []
        self._start = threading.Barrier(n + 1)
        self._done = threading.Barrier(n + 1)
        self._stop = False
        self._threads = [
            threading.Thread(target=self._client, args=(i, call, sessions, per_client), daemon=True) for i in range(n)
        ]
        for thread in self._threads:
            thread.start()

    def _client(self, number: int, call, sessions: list, per_client: int) -> None:
        mine = self.latencies[number]
        offset = number * per_client
        while True:
            self._start.wait()
            if self._stop:
                return
            for j in range(per_client):
                session = sessions[(offset + j) % len(sessions)]
                began = time.perf_counter()
                try:
                    call(session)
                except Exception as exc:  # reported by the test, never swallowed
                    self.errors.append(exc)
                mine.append(time.perf_counter() - began)
            self._done.wait()

    def run_round(self) -> None:
        self._start.wait()
        self._done.wait()

    def reset(self) -> None:
        for latencies in self.latencies:
            latencies.clear()

    def close(self) -> None:
        self._stop = True
        self._start.wait()
        for thread in self._threads:
            thread.join()


class _Counting:
    """A recommender proxy that counts ``recommend`` calls and sessions (the batcher's batches)."""

    def __init__(self, recommender):
        self._recommender = recommender
        self.calls = 0
        self.sessions = 0

    def recommend(self, sessions, k=20, **options):
        self.calls += 1
        self.sessions += len(sessions)
        return self._recommender.recommend(sessions, k, **options)


def _serve(mode: str, recommender, clients: int, per_client: int, sessions: list, benchmark, rounds: int):
    """Run the rounds; returns the clients and, for the batcher, its settings and mean batch."""
    counting = _Counting(recommender)
    batcher = MicroBatcher(counting) if mode == "batcher" else None

    def call(session):
        if batcher is None:
            return recommender.recommend_one(session, K)
        return batcher.submit(session, K).result()

    pool = _Clients(clients, call, sessions, per_client)
    try:
        pool.run_round()  # warm-up, not timed
        pool.reset()
        counting.calls = counting.sessions = 0
        benchmark.pedantic(pool.run_round, rounds=rounds, iterations=1)
    finally:
        pool.close()
        if batcher is not None:
            batcher.close()
    if batcher is None:
        return pool, {}
    return pool, {"max_batch": batcher.max_batch, "max_wait_ms": batcher.max_wait_ms,
                  "mean_batch": counting.sessions / max(counting.calls, 1)}


@pytest.mark.parametrize("clients", CLIENTS)
@pytest.mark.parametrize("mode", MODES)
def test_service(benchmark, runtime_recommender, bench_bundle, smoke, mode, clients):
    per_client = 2 if smoke else max(1, REQUESTS_PER_ROUND // clients)
    rounds = 1 if smoke else ROUNDS
    sessions = requests(bench_bundle, 64 if smoke else 4096, seed=1)
    benchmark.group = f"service {clients} clients"
    pool, batching = _serve(mode, runtime_recommender, clients, per_client, sessions, benchmark, rounds)
    assert not pool.errors, pool.errors[:3]
    latencies = np.concatenate([np.asarray(x) for x in pool.latencies]) * 1000.0
    assert len(latencies) == clients * per_client * rounds
    info = dict(suite="service", path=f"service-{mode}", mode=mode, clients=clients, n_items=bench_bundle.n_items,
                requests_per_round=clients * per_client, p50_ms=float(np.percentile(latencies, 50)),
                p99_ms=float(np.percentile(latencies, 99)), **batching)
    if benchmark.stats:  # None with --benchmark-disable
        info["throughput_rps"] = clients * per_client / benchmark.stats.stats.median
    benchmark.extra_info.update(info)
