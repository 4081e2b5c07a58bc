"""The srgnn-rt command line, end to end on small data."""

from __future__ import annotations

import io
import json

from srgnn_rt.cli import main
from srgnn_rt.runtime import Recommender


def test_synth_prepare_train_evaluate_export_recommend(tmp_path, capsys, monkeypatch):
    clicks, data, run, bundle = (tmp_path / name for name in ("clicks.csv", "data", "run", "bundle"))
    assert main(["synth", str(clicks), "--sessions", "1500", "--items", "150", "--days", "20"]) == 0
    assert main(["prepare", "--format", "csv", str(clicks), str(data)]) == 0
    prepared = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert prepared["n_items"] > 0 and prepared["train_prefixes"] > prepared["test_prefixes"] > 0

    assert main(["train", str(data), "--out", str(run), "--epochs", "1", "--hidden-size", "8", "--quiet",
                 "--device", "cpu"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["best"]["epoch"] == 1 and trained["selection"]["split"] == "validation"

    assert main(["evaluate", str(run), str(data), "--json", "--ks", "5", "20", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["model"]) == {"HR@5", "MRR@5", "NDCG@5", "HR@20", "MRR@20", "NDCG@20"}
    assert main(["evaluate", str(run), str(data), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "SR-GNN" in table and "most popular" in table

    assert main(["export", str(run), str(bundle)]) == 0
    capsys.readouterr()
    recommender = Recommender.load(bundle, device="cpu")
    known = recommender.bundle.vocab.raw_ids[:3]
    lines = f"{known[0]},{known[1]}\n\n{json.dumps(known)}\n{known[2]}, 999999999\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert main(["recommend", str(bundle), "-k", "4", "--device", "cpu"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(results) == 3
    assert all(len(r["items"]) == 4 for r in results)
    assert results[0]["items"] == recommender.recommend_one(known[:2], k=4).items
    assert results[2]["n_unknown"] == 1


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("srgnn-rt train: error:") and "does not exist" in err
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "file").write_text("x")
    (tmp_path / "log.csv").write_text("session,item,time\n1,2,3\n")
    assert main(["prepare", "--format", "csv", str(tmp_path / "log.csv"), str(tmp_path / "occupied")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_recommend_rejects_text_ids_for_an_int_model(synthetic_bundle, tmp_path, capsys):
    sessions = tmp_path / "sessions.txt"
    sessions.write_text("abc,def\n")
    assert main(["recommend", str(synthetic_bundle), str(sessions), "--device", "cpu"]) == 2
    assert "line 1: this model's item ids are integers" in capsys.readouterr().err


def test_quickstart_refuses_a_foreign_directory(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["quickstart", "--workdir", str(tmp_path)]) == 2
    assert "not made by quickstart" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_quickstart_runs_end_to_end(tmp_path, capsys):
    assert main(["quickstart", "--workdir", str(tmp_path / "qs"), "--sessions", "4000", "--items", "400",
                 "--epochs", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "[5/5] serving on CPUExecutionProvider" in out and "latency (median)" in out
    assert (tmp_path / "qs" / "bundle" / "manifest.json").is_file()
