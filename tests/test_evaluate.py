"""The evaluation report: SR-GNN beside baselines with intervals, the table, plots, JSON, runs summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srgnn_rt.cli import main

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def report(synthetic_run, synthetic_dataset):
    from srgnn_rt_torch.evaluate import evaluate_run

    return evaluate_run(synthetic_run, synthetic_dataset, device="cpu", ks=(5, 20), baselines=("pop", "sr"),
                        n_resamples=200)


def test_report_holds_every_model_with_intervals(report, synthetic_dataset):
    from srgnn_rt.dataset import PreparedDataset

    dataset = PreparedDataset.load(synthetic_dataset)
    assert list(report["models"]) == ["SR-GNN", "pop", "sr"]
    assert report["prefixes"] == len(dataset.test)
    assert report["sessions"] == dataset.manifest["test_sessions"]
    for entry in report["models"].values():
        assert set(entry["metrics"]) == {f"{m}@{k}" for m in ("HR", "MRR", "NDCG", "Coverage", "Popularity")
                                         for k in (5, 20)}
        for estimate in entry["metrics"].values():
            assert estimate["low"] <= estimate["value"] <= estimate["high"]
        assert entry["curve"]["K"] == list(range(1, 21))
        assert entry["curve"]["HR"][19] == pytest.approx(entry["metrics"]["HR@20"]["value"])
    # the legacy keys still hold the point figures
    assert report["model"]["HR@20"] == report["models"]["SR-GNN"]["metrics"]["HR@20"]["value"]
    assert report["most_popular"]["MRR@20"] == pytest.approx(report["models"]["pop"]["metrics"]["MRR@20"]["value"])
    assert report["models"]["SR-GNN"]["selected_on"].startswith(report["selection"].split(" ")[0])
    assert report["models"]["sr"]["selected_on"].startswith("validation (HR@20")
    assert report["models"]["pop"]["selected_on"] == "published defaults"


def test_comparisons_are_paired_differences(report):
    for name in ("pop", "sr"):
        for metric, difference in report["comparisons"][name].items():
            expected = report["models"]["SR-GNN"]["metrics"][metric]["value"] - \
                report["models"][name]["metrics"][metric]["value"]
            assert difference["value"] == pytest.approx(expected)
            assert difference["significant"] == (difference["low"] > 0 or difference["high"] < 0)
            assert 0.0 <= difference["p_value"] <= 1.0


def test_table_and_plots(report, tmp_path):
    from srgnn_rt_torch.report import format_table, write_plots

    table = format_table(report)
    for text in ("SR-GNN", "most popular", "sr ", "HR@5", "Coverage@20", "selected on", "minus each baseline",
                 report["models"]["SR-GNN"]["selected_on"]):
        assert text in table
    pytest.importorskip("matplotlib")
    paths = write_plots(report, tmp_path / "plots")
    assert len(paths) == 3
    for path in paths:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_baselines_command_json(synthetic_dataset, capsys):
    assert main(["baselines", str(synthetic_dataset), "--baselines", "pop,sr", "--no-search", "--json",
                 "--ks", "20", "--resamples", "50"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["models"]) == ["pop", "sr"]
    assert report["models"]["sr"]["params"] == {"steps": 10, "weighting": "div", "pruning": 20}
    assert "comparisons" not in report


def test_evaluate_rejects_an_unknown_baseline(synthetic_run, synthetic_dataset, capsys):
    assert main(["evaluate", str(synthetic_run), str(synthetic_dataset), "--baselines", "pop,gru4rec"]) == 2
    assert "unknown baseline(s) ['gru4rec']" in capsys.readouterr().err


def _fake_run(directory, seed, hr, mrr, selection="validation"):
    directory.mkdir()
    recorded = {"split": selection, "metric": "HR@20"}  # as train records it
    (directory / "config.json").write_text(json.dumps({"train": {"seed": seed}, "selection": recorded}))
    metrics = {"selection": recorded, "best": {"epoch": 2, selection: {"HR@20": hr, "MRR@20": mrr}}}
    (directory / "metrics.json").write_text(json.dumps(metrics))
    return directory


def test_runs_summary(tmp_path, capsys):
    runs = [_fake_run(tmp_path / f"seed{s}", s, hr, mrr) for s, hr, mrr in ((0, 10.0, 4.0), (1, 14.0, 5.0),
                                                                          (2, 12.0, 6.0))]
    assert main(["runs", *map(str, runs), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["selection"] == "validation"
    assert summary["summary"]["HR@20"] == pytest.approx({"mean": 12.0, "sd": 2.0, "min": 10.0, "max": 14.0})
    assert summary["summary"]["MRR@20"]["sd"] == pytest.approx(float(np.std([4, 5, 6], ddof=1)))
    assert main(["runs", *map(str, runs)]) == 0
    text = capsys.readouterr().out
    assert "3 runs (seeds 0, 1, 2)" in text and "12.00 ± 2.00" in text and "selected on validation" in text
    assert main(["runs", str(tmp_path / "nothing")]) == 2
    assert "is not a training run" in capsys.readouterr().err
