"""Growth with the catalog: latency of the reference path, the runtime (exact and with its item
index, ``retrieval="index"``) and the floor, and the runtime's load time and peak memory, for
synthetic bundles of 10k, 43k, 300k and 1M items (d = 100, random weights; built on first use
and cached, see ``bundles``). The index path records its recall@20 against exact scoring on
the benchmark's sessions; ``test_trained_recall`` (slow: it trains a model on first use)
records recall on a trained model, whose embeddings are what an index really faces.

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
from bundles import indexed_bundle, requests

from srgnn_rt import retrieval
from srgnn_rt.bundle import Bundle
from srgnn_rt.runtime import Recommender

CATALOG_SIZES = (10_000, 43_097, 300_000, 1_000_000)
SMOKE_CATALOG_SIZES = (1_000, 2_000)
CATALOG_PATHS = ("reference", "runtime-cpu", "runtime-index", "floor")
RETRIEVALS = {"runtime-cpu": "exact", "runtime-index": "index"}
BATCH_SIZES = (1, 100)

_MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from srgnn_rt.runtime import Recommender

    path, threads, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    mb = 1 << 20 if sys.platform == "darwin" else 1 << 10  # ru_maxrss is in bytes there, KiB on Linux
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    recommender = Recommender.load(path, device="cpu", threads=threads, retrieval=mode)
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
    bundle = Bundle.load(indexed_bundle(n_items))
    built = {
        "reference": paths.reference(bundle, paths.torch_model(bundle, threads=bench_threads)),
        "runtime-cpu": paths.runtime(Recommender.load(bundle, device="cpu", threads=bench_threads)),
        "runtime-index": paths.runtime(Recommender.load(bundle, device="cpu", threads=bench_threads,
                                                        retrieval="index")),
        "floor": paths.floor(bundle),
    }
    return bundle, built


def _recall(bundle: Bundle, sessions) -> float:
    """recall@20 of the bundle's index against exact scoring, on ``sessions`` of raw ids."""
    recommender = Recommender.load(bundle, device="cpu", retrieval="index")
    s_h = recommender.session_embeddings(sessions)
    return retrieval.recall_at_k(recommender.retriever, bundle.item_embeddings(), s_h, paths.K)


@pytest.fixture(scope="module")
def recall(catalog) -> dict:
    bundle, _ = catalog
    return {"recall_at_20": _recall(bundle, requests(bundle, 500, seed=7)),
            "index": {key: bundle.manifest["retrieval"][key] for key in ("lists", "nprobe", "candidates",
                                                                           "build_seconds")}}


@pytest.fixture(scope="module")
def memory(catalog, bench_threads) -> dict:
    """Load time and peak resident memory of a process serving the bundle (empty where
    the ``resource`` module is missing, i.e. on Windows)."""
    try:
        import resource  # noqa: F401
    except ImportError:
        return {}
    bundle, _ = catalog
    measured = {}
    for mode in RETRIEVALS.values():
        completed = subprocess.run(
            [sys.executable, "-c", _MEMORY_PROBE, str(bundle.path), str(bench_threads), mode],
            capture_output=True, text=True, check=True,
        )
        measured[mode] = json.loads(completed.stdout)
    return measured


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("path", CATALOG_PATHS)
def test_catalog(benchmark, catalog, memory, recall, n_items, path, batch_size):
    bundle, built = catalog
    recommend = built[path]
    sessions = requests(bundle, batch_size, seed=batch_size)
    benchmark.group = f"catalog B={batch_size}"
    benchmark.extra_info.update(suite="catalog", path=path, batch_size=batch_size, n_items=n_items,
                                embedding_size=bundle.embedding_size)
    if path in RETRIEVALS:
        benchmark.extra_info.update(memory.get(RETRIEVALS[path], {}))
    if path == "runtime-index":
        benchmark.extra_info.update(recall)
    recommend(sessions)
    assert len(benchmark(recommend, sessions)) == batch_size


@pytest.mark.slow
def test_trained_recall(benchmark, bench_threads):
    """recall@20 of the default index on SR-GNN trained one epoch on a synthetic log
    (100k items, 50k sessions; about 10,700 items survive preparation), at several nprobe,
    on 1,000 synthetic sessions of its item ids."""
    bundle = Bundle.load(indexed_bundle(trained=True))
    recommender = Recommender.load(bundle, device="cpu", threads=bench_threads, retrieval="index")
    sessions = requests(bundle, 1000, seed=7)
    s_h = recommender.session_embeddings(sessions)
    rows = retrieval.recall_sweep(recommender.retriever, bundle.item_embeddings(), s_h, paths.K)
    benchmark.group = "trained recall"
    benchmark.extra_info.update(suite="trained-recall", n_items=bundle.n_items, sweep=rows,
                                recall_at_20=next(r["recall"] for r in rows
                                                  if r["nprobe"] == recommender.retriever.parameters.nprobe))
    batch = requests(bundle, 100, seed=100)
    benchmark(recommender.recommend, batch, paths.K)
