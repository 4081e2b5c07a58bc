"""The fault load (``faults``) as a benchmark: well-formed requests through the micro-batcher,
alone ("clean") and beside a hostile client sending huge sessions and garbage ("hostile").

Each benchmark times one run; ``extra_info`` holds the p50 / p99 latency of the
well-formed requests and what became of the hostile ones.
"""

from __future__ import annotations

import faults
import pytest
from bundles import requests

CLIENTS = 15
HUGE_DISTINCT = 2_585


@pytest.mark.parametrize("hostile", [False, True], ids=["clean", "hostile"])
def test_faults(benchmark, runtime_recommender, bench_bundle, smoke, hostile):
    total = 64 if smoke else 4096
    sessions = requests(bench_bundle, total, seed=11)
    attacks = None
    if hostile:
        attacks = faults.hostile_requests(bench_bundle, clicks=200 if smoke else 10_000, distinct=HUGE_DISTINCT)
    benchmark.group = "faults"
    result = benchmark.pedantic(faults.run_load, args=(runtime_recommender, sessions, attacks),
                                kwargs=dict(total=total, clients=CLIENTS), rounds=1, iterations=1)
    assert not result.failures, result.failures[:3]
    assert not any(outcome.startswith("LOST") for outcome in result.hostile)
    assert bool(result.hostile) == hostile  # every hostile request sent was answered or refused
    benchmark.extra_info.update(suite="faults", hostile=hostile, clients=CLIENTS, requests=total,
                                n_items=bench_bundle.n_items, p50_ms=result.percentile(50),
                                p99_ms=result.percentile(99), hostile_outcomes=dict(result.hostile))
