"""``benchmarks.report`` on a small hand-made pytest-benchmark file (not timed): the table's
ratios, the goals, the plots, and the command line."""

from __future__ import annotations

import json

import pytest
import report


def _bench(suite: str, median_s: float, **info) -> dict:
    name = f"test_{suite}[{'-'.join(str(v) for v in info.values())}]"
    return {"name": name, "fullname": f"benchmarks/x.py::{name}", "group": suite,
            "extra_info": {"suite": suite, **info}, "stats": {"median": median_s}}


@pytest.fixture
def run_file(tmp_path):
    benchmarks = [
        _bench("end_to_end", 0.010, path="reference", batch_size=1),
        _bench("end_to_end", 0.0004, path="runtime-cpu", batch_size=1),
        _bench("end_to_end", 0.0002, path="floor", batch_size=1),
        _bench("end_to_end", 0.500, path="reference", batch_size=100),
        _bench("end_to_end", 0.012, path="runtime-cpu", batch_size=100),
        _bench("end_to_end", 0.006, path="floor", batch_size=100),
        _bench("catalog", 0.001, path="runtime-cpu", batch_size=1, n_items=10_000, peak_rss_mb=150.0, load_s=0.2),
        _bench("catalog", 0.004, path="runtime-cpu", batch_size=1, n_items=300_000, peak_rss_mb=900.0, load_s=1.5),
        _bench("session_length", 0.002, path="runtime-cpu", batch_size=1, session_length=20, kept_length=20),
        _bench("service", 0.5, path="service-direct", mode="direct", clients=64, p50_ms=20.0, p99_ms=90.0,
               throughput_rps=1000.0),
        _bench("service", 0.1, path="service-batcher", mode="batcher", clients=64, p50_ms=8.0, p99_ms=20.0,
               throughput_rps=5000.0, mean_batch=50.0),
        _bench("service", 0.4, path="service-triton", mode="triton", clients=64, p50_ms=25.0, p99_ms=45.0,
               throughput_rps=2000.0, mean_batch=12.0, batcher_rps=3600.0),
        _bench("service", 0.5, path="service-ray-serve", mode="ray-serve", clients=64, p50_ms=30.0, p99_ms=60.0,
               throughput_rps=1500.0, mean_batch=30.0),
        {"name": "test_compiled[batch1]", "fullname": "benchmarks/g.py::test_compiled[batch1]",
         "group": "graph builder, batch 1", "extra_info": {"batch_size": 1}, "stats": {"median": 6e-6}},
    ]
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": benchmarks, "machine_info": {"cpu": {"brand_raw": "test cpu"}},
                                "commit_info": {"id": "abc"}, "datetime": "today"}))
    return path


def test_table_ratios_and_goals(run_file):
    text = report.render(*report.load_runs([run_file]))
    sections = {section.splitlines()[0].split()[0]: section.splitlines()[3:] for section in text.split("\n\n")}
    end_to_end = {tuple(line.split()[:2]): line.split()[2:] for line in sections["End"]}
    assert end_to_end["runtime-cpu", "1"] == ["0.400", "400.0", "2,500", "25.00x", "2.00x"]
    assert end_to_end["runtime-cpu", "100"][-2:] == ["41.67x", "2.00x"]
    assert sections["Service"][0].split() == ["batcher", "64", "5,000", "8.00", "20.00", "50.0", "5.00x"]
    assert "[met] one session <= 0.5 ms: 0.400 ms" in text
    assert "[NOT met] B=100 within 1.5x of the floor: 2.00x" in text
    assert "[met] batcher, 64 clients, p99 < 25 ms: 20.0 ms" in text
    # An engine is compared with the batcher measured in turn with it when the run has that figure.
    assert "[met] triton, 64 clients, >= 0.5x the batcher's throughput (in turn with it): 0.56x (2,000 / 3,600)" in text
    assert "[NOT met] ray-serve, 64 clients, >= 0.5x the batcher's throughput (in its own test): 0.30x" in text
    assert "[met] triton, 64 clients, p99 < 50 ms: 45.0 ms" in text
    assert "test_compiled[batch1]" in text and "test cpu" in text


def test_plots_and_command_line(run_file, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert report.main([str(run_file), "--plots", str(tmp_path / "plots")]) == 0
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["latency_vs_batch.png", "latency_vs_catalog.png", "latency_vs_session_length.png",
                       "service_throughput.png"]
    assert "plots:" in capsys.readouterr().out


def test_a_file_that_is_not_a_run_is_an_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert report.main([str(tmp_path / "x.json"), "--plots", str(tmp_path)]) == 2
    assert "is not pytest-benchmark JSON" in capsys.readouterr().err
