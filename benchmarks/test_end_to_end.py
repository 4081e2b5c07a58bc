"""End to end, raw ids in -> top-20 raw ids out: every path of ``paths`` per batch size,
the model paths per session length, and the runtime with one very long session in a batch.

Benchmarks are grouped by batch size (``end-to-end B=...``) and session length
(``session length L, B=...``) so pytest-benchmark's table compares the paths side by
side; ``extra_info`` names the path, batch size, session length, catalog and provider
for ``benchmarks.report``.
"""

from __future__ import annotations

import tracemalloc

import pytest
from bundles import requests
from paths import PATHS

BATCH_SIZES = (1, 16, 100, 512)
SESSION_LENGTHS = (5, 20, 70, 200)
LENGTH_PATHS = ("reference", "torch+builder", "runtime-cpu")
LENGTH_BATCH_SIZES = (1, 100)
SHORT_SESSIONS, SHORT_CLICKS, LONG_CLICKS = 63, 3, 10_000


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


@pytest.mark.parametrize("with_long", [False, True], ids=["63x3", "63x3+1x10000"])
def test_one_long_session(benchmark, path_for, bench_bundle, with_long):
    """63 three-click sessions, alone or in a batch of 64 with one 10,000-click session (issue 8).

    The long session is cut to the bundle's max_length and runs in a bucket of
    its own, so the batch should cost at most about twice the 63 alone.
    ``extra_info["traced_peak_bytes"]``: tracemalloc's peak over one call (the
    graph arrays and Python objects; onnxruntime's own memory is not traced).
    """
    recommend = path_for("runtime-cpu")
    sessions = requests(bench_bundle, SHORT_SESSIONS, length=SHORT_CLICKS, seed=SHORT_CLICKS)
    if with_long:
        pool = [raw for session in requests(bench_bundle, 2 * LONG_CLICKS // 5, seed=11) for raw in session]
        sessions.append(pool[:LONG_CLICKS])
    recommend(sessions)
    tracemalloc.start()
    try:
        recommend(sessions)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    benchmark.group = "one long session, B=64"
    benchmark.extra_info.update(suite="one_long_session", path="runtime-cpu", batch_size=len(sessions),
                                long_clicks=LONG_CLICKS if with_long else 0, traced_peak_bytes=peak,
                                n_items=bench_bundle.n_items)
    _check(benchmark(recommend, sessions), sessions, "runtime-cpu", bench_bundle.vocab)
