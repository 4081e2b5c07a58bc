"""Growth with the catalog: latency of the reference path, the runtime and the floor, and the
runtime's load time and peak memory, for synthetic bundles of 10k, 43k, 300k and 1M items
(d = 100, random weights; built on first use and cached, see ``bundles``).

With ``--benchmark-disable`` (the CI smoke run) the catalogs are 1,000 and 2,000 items.
Peak memory is the peak resident set of a fresh process that loads the bundle and
serves batches of 1, 100 and 512 sessions (``extra_info`` of the runtime's benchmarks).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import paths
import pytest
from bundles import requests, synthetic_bundle

from srgnn_rt.bundle import Bundle
from srgnn_rt.runtime import Recommender

CATALOG_SIZES = (10_000, 43_097, 300_000, 1_000_000)
SMOKE_CATALOG_SIZES = (1_000, 2_000)
CATALOG_PATHS = ("reference", "runtime-cpu", "floor")
BATCH_SIZES = (1, 100)

_MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from srgnn_rt.runtime import Recommender

    path, threads = sys.argv[1], int(sys.argv[2])
    mb = 1 << 20 if sys.platform == "darwin" else 1 << 10  # ru_maxrss is in bytes there, KiB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    recommender = Recommender.load(path, device="cpu", threads=threads)
    load_s = time.perf_counter() - began
    raw = recommender.bundle.vocab.raw_ids
    rng = np.random.default_rng(0)
    for batch_size in (1, 100, 512):
        recommender.recommend([[raw[i] for i in rng.integers(0, len(raw), 5)] for _ in range(batch_size)], 20)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"load_s": load_s, "rss_before_load_mb": before / mb, "peak_rss_mb": peak / mb}))
    """
)


def pytest_generate_tests(metafunc):
    if "n_items" in metafunc.fixturenames:
        smoke = metafunc.config.getoption("benchmark_disable")
        metafunc.parametrize("n_items", SMOKE_CATALOG_SIZES if smoke else CATALOG_SIZES, scope="module")


@pytest.fixture(scope="module")
def catalog(n_items, bench_threads):
    """``(bundle, {path name: path})`` of the synthetic bundle with ``n_items`` items."""
    bundle = Bundle.load(synthetic_bundle(n_items))
    built = {
        "reference": paths.reference(bundle, paths.torch_model(bundle, threads=bench_threads)),
        "runtime-cpu": paths.runtime(Recommender.load(bundle, device="cpu", threads=bench_threads)),
        "floor": paths.floor(bundle),
    }
    return bundle, built


@pytest.fixture(scope="module")
def memory(catalog, bench_threads) -> dict:
    """Load time and peak resident memory of a process serving the bundle (empty where
    the ``resource`` module is missing, i.e. on Windows)."""
    try:
        import resource  # noqa: F401
    except ImportError:
        return {}
    bundle, _ = catalog
    completed = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(bundle.path), str(bench_threads)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(completed.stdout)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("path", CATALOG_PATHS)
def test_catalog(benchmark, catalog, memory, n_items, path, batch_size):
    bundle, built = catalog
    recommend = built[path]
    sessions = requests(bundle, batch_size, seed=batch_size)
    benchmark.group = f"catalog B={batch_size}"
    benchmark.extra_info.update(suite="catalog", path=path, batch_size=batch_size, n_items=n_items,
                                embedding_size=bundle.embedding_size)
    if path == "runtime-cpu":
        benchmark.extra_info.update(memory)
    recommend(sessions)
    assert len(benchmark(recommend, sessions)) == batch_size
