"""Offline scoring suite: ``score_file`` (Parquet in and out, 1 and 2 worker processes) beside
``recommend`` on batches of 512 in a loop, over the same sessions.

Each benchmark times one pass over N sessions (20,480; 1,024 in smoke mode), so
sessions/s = N / median; ``extra_info`` (suite ``scoring``) gives ``benchmarks.report``
the path, N and workers. Peak memory at millions of sessions and the Ray engine are
measured by ``python -m benchmarks.scoring`` (minutes, not part of CI).
"""

from __future__ import annotations

import pytest
from bundles import requests

pytest.importorskip("pyarrow")

BATCH = 512


@pytest.fixture(scope="module")
def scoring_sessions(bench_bundle, smoke):
    return requests(bench_bundle, 1_024 if smoke else 20_480, seed=11)


@pytest.fixture(scope="module")
def scoring_input(scoring_sessions, tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("scoring") / "sessions.parquet"
    pq.write_table(pa.table({"session": list(range(len(scoring_sessions))), "items": scoring_sessions}), path)
    return path


def test_recommend_loop(benchmark, runtime_recommender, scoring_sessions):
    def loop():
        for start in range(0, len(scoring_sessions), BATCH):
            runtime_recommender.recommend(scoring_sessions[start:start + BATCH], 20)

    benchmark.group = "scoring"
    benchmark.extra_info.update(suite="scoring", path="recommend loop", sessions=len(scoring_sessions), workers=1)
    runtime_recommender.recommend(scoring_sessions[:BATCH], 20)
    benchmark.pedantic(loop, rounds=3, iterations=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_score_file(benchmark, bench_bundle, bench_threads, scoring_input, scoring_sessions, tmp_path, workers):
    from srgnn_rt.scoring import score_file

    output = tmp_path / "answers.parquet"

    def score():
        return score_file(bench_bundle.path, scoring_input, output, k=20, batch_size=BATCH, workers=workers,
                          device="cpu", threads=bench_threads if workers == 1 else None, progress=False)

    benchmark.group = "scoring"
    benchmark.extra_info.update(suite="scoring", path=f"score, {workers} worker{'s' if workers > 1 else ''}",
                                sessions=len(scoring_sessions), workers=workers)
    summary = benchmark.pedantic(score, rounds=3, iterations=1)
    assert (summary.sessions, summary.errors) == (len(scoring_sessions), 0)


def test_report_shows_scoring_rates():
    """Not timed: the report's scoring rows and goal from a hand-made run."""
    import report

    runs = [{"name": path, "fullname": path, "extra_info": {"suite": "scoring", "path": path, "sessions": 1000},
             "stats": {"median": median}}
            for path, median in (("recommend loop", 0.5), ("score, 1 worker", 0.6), ("score, 2 workers", 0.4))]
    rows = [line.split() for line in report.scoring_table(runs).splitlines()[2:]]
    assert rows == [["recommend", "loop", "1,000", "0.50", "2,000", "1.00x"],
                    ["score,", "1", "worker", "1,000", "0.60", "1,667", "0.83x"],
                    ["score,", "2", "workers", "1,000", "0.40", "2,500", "1.25x"]]
    assert "[met] score, 1 worker, >= 0.8x the recommend loop's sessions/s: 0.83x" in report.goals(runs)
