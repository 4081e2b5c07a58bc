"""End to end, raw ids in -> top-20 raw ids out: every path of ``paths`` per batch size,
and the model paths per session length.

Benchmarks are grouped by batch size (``end-to-end B=...``) and session length
(``session length L, B=...``) so pytest-benchmark's table compares the paths side by
side; ``extra_info`` names the path, batch size, session length, catalog and provider
for ``benchmarks.report``.
"""

from __future__ import annotations

import pytest
from bundles import requests
from paths import PATHS

BATCH_SIZES = (1, 16, 100, 512)
SESSION_LENGTHS = (5, 20, 70, 200)
LENGTH_PATHS = ("reference", "torch+builder", "runtime-cpu")
LENGTH_BATCH_SIZES = (1, 100)


def _check(result, sessions, path: str, vocab) -> None:
    """One answer per session; model paths give 20 raw ids of the catalog each (floor: scores)."""
    assert len(result) == len(sessions)
    if path != "floor":
        assert all(len(items) == 20 for items in result)
        assert vocab.internal_id(result[0][0]) != 0


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("path", PATHS)
def test_batch(benchmark, path_for, bench_bundle, path, batch_size):
    recommend = path_for(path)
    sessions = requests(bench_bundle, batch_size, seed=batch_size)
    benchmark.group = f"end-to-end B={batch_size}"
    benchmark.extra_info.update(suite="end_to_end", path=path, batch_size=batch_size, n_items=bench_bundle.n_items,
                                embedding_size=bench_bundle.embedding_size)
    recommend(sessions)  # warm-up: first-run allocations are not what a service sees
    _check(benchmark(recommend, sessions), sessions, path, bench_bundle.vocab)


@pytest.mark.parametrize("batch_size", LENGTH_BATCH_SIZES)
@pytest.mark.parametrize("length", SESSION_LENGTHS)
@pytest.mark.parametrize("path", LENGTH_PATHS)
def test_session_length(benchmark, path_for, bench_bundle, path, length, batch_size):
    recommend = path_for(path)
    sessions = requests(bench_bundle, batch_size, length=length, seed=length)
    cut = bench_bundle.graph_builder.max_length
    benchmark.group = f"session length {length}, B={batch_size}"
    benchmark.extra_info.update(suite="session_length", path=path, batch_size=batch_size, session_length=length,
                                kept_length=min(length, cut or length), n_items=bench_bundle.n_items)
    recommend(sessions)
    _check(benchmark(recommend, sessions), sessions, path, bench_bundle.vocab)


def test_reference_and_compiled_builder_paths_agree(path_for, bench_bundle):
    """Not timed: the two torch paths differ only in how graphs are built, so their top-20 agree."""
    sessions = requests(bench_bundle, 16, seed=3)
    assert path_for("reference")(sessions) == path_for("torch+builder")(sessions)
