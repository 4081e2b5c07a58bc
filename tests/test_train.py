"""Training and evaluation: run-directory contents, schedule, determinism, resume, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from srgnn_rt.dataset import PreparedDataset
from srgnn_rt.metrics import RankingMetrics
from srgnn_rt_torch import train as train_module
from srgnn_rt_torch.evaluate import evaluate_run, popularity_metrics, popularity_ranking
from srgnn_rt_torch.run import load_run, load_run_config, resolve_device
from srgnn_rt_torch.train import TrainConfig, train

TINY = dict(hidden_size=8, batch_size=50)


def _weights(run_dir):
    return {k: v.clone() for k, v in load_run(run_dir).state_dict().items()}


def test_run_directory_holds_config_weights_and_metrics(synthetic_dataset, tmp_path):
    result = train(synthetic_dataset, tmp_path / "run", TrainConfig(epochs=2, **TINY), device="cpu", progress=False)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["config.json", "last.pt", "metrics.json", "model.pt"]
    config = load_run_config(tmp_path / "run")
    assert config["model"] == {"n_items": PreparedDataset.load(synthetic_dataset).n_items, "hidden_size": 8,
                               "step": 1, "nonhybrid": False}
    assert config["train"]["epochs"] == 2 and config["selection"] == "test"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] == [e["epoch"] for e in result.history]
    first = metrics["epochs"][0]
    assert first["loss"] > 0 and first["prefixes_per_second"] > 0
    assert set(first["test"]) == {f"{m}@{k}" for m in ("HR", "MRR", "NDCG") for k in (10, 20, 50)}
    best_epoch = metrics["best"]["checkpoint"]["epoch"]
    assert metrics["epochs"][best_epoch - 1]["test"]["HR@20"] == max(e["test"]["HR@20"] for e in metrics["epochs"])
    assert metrics["best"]["HR@20"]["value"] == metrics["best"]["checkpoint"]["test"]["HR@20"]
    model = load_run(tmp_path / "run")
    assert not model.training


def test_learning_rate_decays_after_its_epoch(synthetic_dataset, tmp_path):
    """The reference's scheduler.step() before the epoch decays one epoch early; ours does not."""
    config = TrainConfig(epochs=3, lr_decay_step=2, patience=5, **TINY)
    result = train(synthetic_dataset, tmp_path / "run", config, device="cpu", progress=False)
    assert [e["lr"] for e in result.history] == pytest.approx([1e-3, 1e-3, 1e-4])


def test_same_seed_same_weights(synthetic_dataset, tmp_path):
    config = TrainConfig(epochs=1, seed=7, **TINY)
    train(synthetic_dataset, tmp_path / "a", config, device="cpu", progress=False)
    train(synthetic_dataset, tmp_path / "b", config, device="cpu", progress=False)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[name], b[name]) for name in a)
    train(synthetic_dataset, tmp_path / "c", TrainConfig(epochs=1, seed=8, **TINY), device="cpu", progress=False)
    c = _weights(tmp_path / "c")
    assert not torch.equal(a["embedding.weight"], c["embedding.weight"])


def test_resume_continues_an_interrupted_run_exactly(synthetic_dataset, tmp_path, monkeypatch):
    config = TrainConfig(epochs=2, lr_decay_step=1, **TINY)
    train(synthetic_dataset, tmp_path / "straight", config, device="cpu", progress=False)

    real_evaluate = train_module.evaluate_model
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(synthetic_dataset, tmp_path / "resumed", config, device="cpu", progress=False)
    monkeypatch.setattr(train_module, "evaluate_model", real_evaluate)
    result = train(synthetic_dataset, tmp_path / "resumed", resume=True, device="cpu", progress=False)
    assert [e["epoch"] for e in result.history] == [1, 2]
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert [e["lr"] for e in result.history] == [e["lr"] for e in straight["epochs"]]
    assert [e["loss"] for e in result.history] == [e["loss"] for e in straight["epochs"]]
    last_straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    last_resumed = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last_straight[name], last_resumed[name]) for name in last_straight)


def test_validation_split_selects_on_validation(synthetic_dataset, tmp_path):
    result = train(synthetic_dataset, tmp_path / "run", TrainConfig(epochs=1, valid_fraction=0.1, **TINY),
                   device="cpu", progress=False)
    assert "validation" in result.history[0] and "test" not in result.history[0]
    assert load_run_config(tmp_path / "run")["selection"] == "validation"


def test_existing_run_is_not_overwritten_and_resume_needs_a_run(synthetic_dataset, tmp_path):
    train(synthetic_dataset, tmp_path / "run", TrainConfig(epochs=1, **TINY), device="cpu", progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        train(synthetic_dataset, tmp_path / "run", TrainConfig(epochs=1, **TINY), device="cpu", progress=False)
    with pytest.raises(ValueError, match="cannot resume"):
        train(synthetic_dataset, tmp_path / "other", resume=True, device="cpu", progress=False)
    with pytest.raises(ValueError, match="not a finished run"):
        load_run(tmp_path / "other")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"lr": 0}, "lr > 0"),
        ({"valid_fraction": 1.0}, "valid_fraction"),
        ({"edge_weight": "sum"}, "edge_weight"),
        ({"ks": (10, 50)}, "must contain 20"),
        ({"max_length": 0}, "max_length"),
    ],
)
def test_bad_train_config(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_train_config_round_trips_and_refuses_unknown_keys():
    config = TrainConfig(epochs=4, ks=(5, 20))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 0.1})


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_evaluate_run_matches_a_direct_ranking(synthetic_run, synthetic_dataset):
    """evaluate_run's model metrics equal ranks computed here from the model's full scores."""
    from srgnn_rt.graph import CSRSessions, build_graphs

    report = evaluate_run(synthetic_run, synthetic_dataset, device="cpu")
    dataset = PreparedDataset.load(synthetic_dataset)
    model = load_run(synthetic_run)
    graphs = build_graphs(CSRSessions(dataset.test.items, dataset.test.offsets))
    with torch.no_grad():
        scores = model(*(torch.from_numpy(a) for a in (graphs.items, graphs.adjacency, graphs.alias, graphs.mask)))
    expected = RankingMetrics(ks=(10, 20, 50))
    expected.update(scores.numpy(), dataset.test.targets)
    assert report["prefixes"] == len(dataset.test)
    assert report["model"] == pytest.approx(expected.result(), abs=1e-9)


def test_popularity_ranks_by_count_then_id():
    counts = np.array([0, 5, 9, 5, 1], dtype=np.int64)
    assert popularity_ranking(counts).tolist() == [2, 1, 3, 4]
    from srgnn_rt.dataset import PrefixSplit

    split = PrefixSplit(items=np.array([1, 2, 3], dtype=np.int64), offsets=np.array([0, 1, 2, 3], dtype=np.int64),
                        targets=np.array([2, 3, 4], dtype=np.int64))
    result = popularity_metrics(counts, split, ks=(1, 3))
    assert result["HR@1"] == pytest.approx(100 / 3) and result["HR@3"] == pytest.approx(200 / 3)
    assert result["MRR@3"] == pytest.approx(100 * (1 + 1 / 3) / 3)


def test_model_beats_most_popular_by_2x_on_synthetic_data(tmp_path):
    """The built-in default data (quickstart-sized catalog) carries sequence structure that SR-GNN learns."""
    from srgnn_rt.synthetic import SyntheticConfig, generate_click_log
    from srgnn_rt_torch.prepare import prepare

    log = generate_click_log(15_000, seed=5, days=30, config=SyntheticConfig(n_items=3000))
    log.write_csv(tmp_path / "clicks.csv")
    prepare(tmp_path / "clicks.csv", tmp_path / "data", format="csv", session_column="session",
            item_column="item", time_column="time")
    train(tmp_path / "data", tmp_path / "run", TrainConfig(epochs=3, hidden_size=32), device="cpu", progress=False)
    report = evaluate_run(tmp_path / "run", tmp_path / "data", device="cpu")
    assert report["model"]["HR@20"] >= 2 * report["most_popular"]["HR@20"]


@pytest.mark.cuda
def test_training_and_evaluation_on_cuda_match_cpu(synthetic_dataset, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device here")
    from srgnn_rt.graph import CSRSessions, build_graphs

    config = TrainConfig(epochs=1, **TINY)
    train(synthetic_dataset, tmp_path / "gpu", config, device="cuda", progress=False)
    train(synthetic_dataset, tmp_path / "cpu", config, device="cpu", progress=False)
    gpu_loss = json.loads((tmp_path / "gpu" / "metrics.json").read_text())["epochs"][0]["loss"]
    cpu_loss = json.loads((tmp_path / "cpu" / "metrics.json").read_text())["epochs"][0]["loss"]
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-3)
    dataset = PreparedDataset.load(synthetic_dataset)
    graphs = build_graphs(CSRSessions(dataset.test.items, dataset.test.offsets))
    arrays = [torch.from_numpy(a) for a in (graphs.items, graphs.adjacency, graphs.alias, graphs.mask)]
    model = load_run(tmp_path / "gpu")
    with torch.no_grad():
        on_cpu = model(*arrays)
        on_gpu = model.to("cuda")(*(a.to("cuda") for a in arrays)).cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-4)
    report = evaluate_run(tmp_path / "gpu", synthetic_dataset, device="cuda")
    assert report["model"] == pytest.approx(evaluate_run(tmp_path / "gpu", synthetic_dataset, device="cpu")["model"],
                                            abs=100 / len(dataset.test) + 1e-9)


def test_diginetica_sample_reproduces_the_reference_range(diginetica_sample, tmp_path):
    """10 epochs, seeds 0-2, on the real sample (99 test prefixes: one hit is one point).

    The authors' code, schedule fixed, reached a mean best HR@20 of 11.45 and MRR@20
    of 3.72 here; we measured 9.76 / 2.56 over these seeds and 10.86 / 3.01 over
    seeds 0-7. The bounds only catch a broken pipeline, not noise.
    """
    from srgnn_rt_torch.prepare import prepare

    prepare(diginetica_sample, tmp_path / "data", format="diginetica")
    best = []
    for seed in (0, 1, 2):
        result = train(tmp_path / "data", tmp_path / f"run{seed}", TrainConfig(epochs=10, seed=seed),
                       device="cpu", progress=False)
        best.append((result.best["HR@20"]["value"], result.best["MRR@20"]["value"]))
    mean_hr, mean_mrr = np.mean(best, axis=0)
    assert 6.0 <= mean_hr <= 20.0 and 1.5 <= mean_mrr <= 8.0, best
