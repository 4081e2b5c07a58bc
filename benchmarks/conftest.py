"""Fixtures shared by the benchmark suites (pytest-benchmark).

This folder is on ``sys.path`` while the suites run, so they import their
helpers (``reference_style``) as top-level modules.
"""

from __future__ import annotations

import functools

import bundles
import paths
import pytest

from srgnn_rt.bundle import Bundle
from srgnn_rt.runtime import Recommender
from srgnn_rt.synthetic import generate_sessions


@pytest.fixture(scope="session")
def synthetic_sessions():
    """``synthetic_sessions(n_sessions, seed=0) -> list[list[int]]``: Diginetica-like sessions, cached.

    Internal ids 1..43097 with Zipf-like popularity, about 5 clicks a session
    (at most 70); the same arguments return the same (shared, not to be
    mutated) list.
    """
    return functools.cache(lambda n_sessions, seed=0: generate_sessions(n_sessions, seed=seed))


# --- latency suites (end to end, catalog, service): the bundle they run on ---------------------

SMOKE_ITEMS = 2_000  # the default synthetic bundle's catalog with --benchmark-disable


def pytest_addoption(parser):
    group = parser.getgroup("srgnn-rt latency suites")
    group.addoption("--bundle", default=None, metavar="PATH",
                    help="bundle directory to benchmark (default: a synthetic bundle of 43,097 items, d = 100, "
                         "built on first use and cached under .benchmarks/bundles/)")
    group.addoption("--bench-threads", type=int, default=2, metavar="N",
                    help="onnxruntime intra-op threads and torch threads of the measured paths (default 2)")


@pytest.fixture(scope="session")
def smoke(request) -> bool:
    """True under --benchmark-disable (the CI smoke run): every benchmark runs once, on small sizes."""
    return bool(request.config.getoption("benchmark_disable"))


@pytest.fixture(scope="session")
def bench_threads(request) -> int:
    threads = request.config.getoption("bench_threads")
    if threads < 1:
        raise pytest.UsageError(f"--bench-threads must be >= 1, got {threads}")
    return threads


@pytest.fixture(scope="session")
def bench_bundle(request, smoke) -> Bundle:
    """The bundle given with --bundle, else the default synthetic one (2,000 items in smoke mode)."""
    path = request.config.getoption("bundle")
    if path is None:
        path = bundles.synthetic_bundle(SMOKE_ITEMS if smoke else bundles.DEFAULT_ITEMS)
    return Bundle.load(path)


@pytest.fixture(scope="session")
def runtime_recommender(bench_bundle, bench_threads) -> Recommender:
    """The runtime on the CPU provider, serving ``bench_bundle``."""
    return Recommender.load(bench_bundle, device="cpu", threads=bench_threads)


@pytest.fixture(scope="session")
def path_for(bench_bundle, bench_threads, runtime_recommender):
    """``path_for(name)``: the path ``name`` of ``paths.PATHS`` on ``bench_bundle``, built on first
    use; runtime-cuda skips where CUDA does not load."""
    built = {}

    def model():
        if "model" not in built:
            built["model"] = paths.torch_model(bench_bundle, threads=bench_threads)
        return built["model"]

    def cuda():
        try:
            return paths.runtime(Recommender.load(bench_bundle, device="cuda", threads=bench_threads))
        except ValueError as exc:
            return f"runtime-cuda: {exc}"

    builders = {
        paths.REFERENCE: lambda: paths.reference(bench_bundle, model()),
        "torch+builder": lambda: paths.torch_builder(bench_bundle, model()),
        "runtime-cpu": lambda: paths.runtime(runtime_recommender),
        "runtime-cuda": cuda,
        paths.FLOOR: lambda: paths.floor(bench_bundle),
        "floor+topk": lambda: paths.floor_top_k(bench_bundle),
    }

    def path_for(name):
        if name not in built:
            built[name] = builders[name]()
        if isinstance(built[name], str):
            pytest.skip(built[name])
        return built[name]

    return path_for
