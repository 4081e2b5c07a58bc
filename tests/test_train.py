"""Training and evaluation: run-directory contents, schedule, determinism, resume, metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from srgnn_rt.dataset import PreparedDataset, PrefixSplit
from srgnn_rt.metrics import RankingMetrics
from srgnn_rt_torch.batches import BatchLoader
from srgnn_rt_torch.evaluate import evaluate_model, evaluate_run, popularity_metrics, popularity_ranking
from srgnn_rt_torch.run import load_run, load_run_config, resolve_device
from srgnn_rt_torch.train import TrainConfig, selection_prefixes, split_validation, train

TINY = dict(hidden_size=8, batch_size=50)
QUICK = dict(device="cpu", threads=1, progress=False)


def _weights(run_dir):
    return {k: v.clone() for k, v in load_run(run_dir).state_dict().items()}


def test_run_directory_holds_config_weights_and_metrics(small_dataset, tmp_path):
    result = train(small_dataset, tmp_path / "run", TrainConfig(epochs=2, **TINY), **QUICK)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == [".lock", "config.json", "last.pt", "metrics.json", "model.pt"]
    config = load_run_config(tmp_path / "run")
    assert config["model"] == {"n_items": PreparedDataset.load(small_dataset).n_items, "hidden_size": 8,
                               "step": 1, "nonhybrid": False}
    assert config["train"]["epochs"] == 2 and config["train"]["valid_fraction"] == 0.1
    assert config["selection"]["split"] == "validation" and config["selection"]["metric"] == "HR@20"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["selection"] == config["selection"] == result.selection
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] == [e["epoch"] for e in result.history]
    first = metrics["epochs"][0]
    assert first["loss"] > 0 and first["prefixes_per_second"] > 0 and "test" not in first
    assert set(first["validation"]) == {f"{m}@{k}" for m in ("HR", "MRR", "NDCG") for k in (10, 20, 50)}
    hr = [e["validation"]["HR@20"] for e in metrics["epochs"]]
    assert metrics["best"] == result.best == {"epoch": hr.index(max(hr)) + 1,
                                              "validation": metrics["epochs"][hr.index(max(hr))]["validation"]}
    model = load_run(tmp_path / "run")
    assert not model.training


def test_learning_rate_decays_after_its_epoch(small_dataset, tmp_path):
    """The reference's scheduler.step() before the epoch decays one epoch early; ours does not."""
    config = TrainConfig(epochs=3, lr_decay_step=2, patience=5, **TINY)
    result = train(small_dataset, tmp_path / "run", config, **QUICK)
    assert [e["lr"] for e in result.history] == pytest.approx([1e-3, 1e-3, 1e-4])


def test_same_seed_same_weights(small_dataset, tmp_path):
    config = TrainConfig(epochs=1, seed=7, **TINY)
    train(small_dataset, tmp_path / "a", config, **QUICK)
    train(small_dataset, tmp_path / "b", config, **QUICK)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[name], b[name]) for name in a)
    train(small_dataset, tmp_path / "c", TrainConfig(epochs=1, seed=8, **TINY), **QUICK)
    c = _weights(tmp_path / "c")
    assert not torch.equal(a["embedding.weight"], c["embedding.weight"])


def _prefixes_of(sessions):
    """Prefixes in the pipeline's order: each session's longest first, down to one click."""
    flat, offsets, targets = [], [0], []
    for session in sessions:
        for end in range(len(session) - 1, 0, -1):
            flat.extend(session[:end])
            offsets.append(len(flat))
            targets.append(session[end])
    return PrefixSplit(np.array(flat, dtype=np.int64), np.array(offsets, dtype=np.int64),
                       np.array(targets, dtype=np.int64))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(2, 6), min_size=2, max_size=40), st.floats(0.01, 0.9))
def test_validation_is_the_latest_whole_sessions(lengths, fraction):
    sessions = [[1 + (7 * s + i) % 50 for i in range(length)] for s, length in enumerate(lengths)]
    train_part, valid_part = split_validation(_prefixes_of(sessions), fraction)
    n_valid_sessions = int((np.diff(valid_part.offsets) == 1).sum())
    assert 1 <= n_valid_sessions < len(sessions)
    cut = len(sessions) - n_valid_sessions
    for part, expected in ((train_part, _prefixes_of(sessions[:cut])), (valid_part, _prefixes_of(sessions[cut:]))):
        for key in ("items", "offsets", "targets"):
            assert np.array_equal(getattr(part, key), getattr(expected, key))
    # The cut is the session boundary nearest to the wanted share (ties: either neighbour).
    n = sum(length - 1 for length in lengths)
    starts = np.cumsum([0] + [length - 1 for length in lengths])[1:-1]
    wanted = n - max(1, round(n * fraction))
    assert abs(len(train_part) - wanted) == np.abs(starts - wanted).min()


def test_one_training_session_cannot_be_split():
    with pytest.raises(ValueError, match=r"1 session: too few.*--select-on test"):
        split_validation(_prefixes_of([[1, 2, 3, 4]]), 0.1)


@pytest.mark.parametrize("select_on", ["validation", "test"])
def test_best_is_the_checkpoint_and_evaluating_it_reproduces_it(small_dataset, tmp_path, select_on):
    """train's reported best = model.pt's metrics on the selection split (issue: 30.10 vs 30.18)."""
    config = TrainConfig(epochs=3, select_on=select_on, **TINY)
    result = train(small_dataset, tmp_path / "run", config, **QUICK)
    dataset = PreparedDataset.load(small_dataset)
    split = selection_prefixes(dataset, config)
    assert result.selection["split"] == select_on and result.selection["prefixes"] == len(split)
    assert result.best[select_on]["HR@20"] == max(e[select_on]["HR@20"] for e in result.history)
    loader = BatchLoader(split, n_items=dataset.n_items, batch_size=config.batch_size, device=torch.device("cpu"))
    assert evaluate_model(load_run(tmp_path / "run"), loader, config.ks) == result.best[select_on]
    if select_on == "test":
        report = evaluate_run(tmp_path / "run", small_dataset, batch_size=config.batch_size, device="cpu")
        assert report["model"] == pytest.approx(result.best["test"], rel=1e-12)  # summed in another order
    else:
        assert len(split) + len(split_validation(dataset.train, 0.1)[0]) == len(dataset.train)
    assert any("noisy choice" in note for note in result.notes) == (select_on == "validation")  # 30 prefixes


# A training process that SIGKILLs itself at a chosen moment: during epoch 1 (before any
# checkpoint), inside the write of epoch 2's checkpoint (staging file full, not yet renamed),
# or just after that rename (model.pt and metrics.json not yet rewritten).
_KILLED_RUN = textwrap.dedent("""
    import contextlib, json, os, signal, sys
    from srgnn_rt_torch import train as module
    data, run, moment, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    if moment == "during-epoch-1":
        module.evaluate_model = die
    real_staging, writes = module.staging_file, []

    @contextlib.contextmanager
    def staging_file(path):
        with real_staging(path) as staging:
            yield staging
            writes.append(os.path.basename(path))
            if moment == "inside-checkpoint-2" and writes.count("last.pt") == 2:
                die()
        if moment == "after-checkpoint-2" and writes.count("last.pt") == 2:
            die()

    module.staging_file = staging_file
    module.train(data, run, module.TrainConfig(**options), device="cpu", threads=1, progress=False)
""")
KILL_MOMENTS = ("during-epoch-1", "inside-checkpoint-2", "after-checkpoint-2")


def _final_state(run_dir):
    checkpoint = torch.load(run_dir / "last.pt", weights_only=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return checkpoint, metrics, torch.load(run_dir / "model.pt", weights_only=True)


def _assert_same_run(resumed, straight):
    (a, metrics_a, best_a), (b, metrics_b, best_b) = _final_state(resumed), _final_state(straight)
    assert a["epochs_done"] == b["epochs_done"]
    for name in b["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
        assert torch.equal(best_a[name], best_b[name]), name
    assert a["scheduler"] == b["scheduler"]
    keys = ("epoch", "loss", "lr", "validation")
    assert [{k: e[k] for k in keys} for e in metrics_a["epochs"]] == [{k: e[k] for k in keys} for e in metrics_b["epochs"]]
    assert metrics_a["best"] == metrics_b["best"]


def test_a_run_killed_at_any_moment_resumes_to_the_same_weights(small_dataset, tmp_path):
    """SIGKILL a real training process at three moments; each resume ends bit-identical to a straight run."""
    options = dict(epochs=3, lr_decay_step=1, **TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = {
        moment: subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(small_dataset), str(tmp_path / moment),
                                  moment, json.dumps(options)], env=env, stderr=subprocess.PIPE)
        for moment in KILL_MOMENTS
    }
    train(small_dataset, tmp_path / "straight", TrainConfig(**options), **QUICK)
    for moment, process in killed.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == -9, (moment, stderr.decode())
        run_dir = tmp_path / moment
        left = {p.name for p in run_dir.iterdir()}
        assert ("last.pt" in left) == (moment != "during-epoch-1")
        assert any(name.endswith(".tmp.pt") for name in left) == (moment == "inside-checkpoint-2")
        result = train(small_dataset, run_dir, resume=True, **QUICK)
        assert [e["epoch"] for e in result.history] == [1, 2, 3]
        assert any("finished no epoch" in note for note in result.notes) == (moment == "during-epoch-1")
        assert not any(p.name.endswith(".tmp.pt") for p in run_dir.iterdir())  # the next write removed it
        _assert_same_run(run_dir, tmp_path / "straight")


def test_resume_with_more_epochs_extends_the_run_on_the_same_schedule(small_dataset, tmp_path):
    config = TrainConfig(epochs=2, lr_decay_step=2, **TINY)
    train(small_dataset, tmp_path / "straight", config.replace(epochs=3), **QUICK)
    train(small_dataset, tmp_path / "run", config, **QUICK)
    finished = train(small_dataset, tmp_path / "run", resume=True, **QUICK)
    assert len(finished.history) == 2 and any("already trained its 2 epochs" in note for note in finished.notes)
    result = train(small_dataset, tmp_path / "run", config.replace(epochs=3), resume=True, **QUICK)
    assert [e["lr"] for e in result.history] == pytest.approx([1e-3, 1e-3, 1e-4])
    _assert_same_run(tmp_path / "run", tmp_path / "straight")
    assert load_run_config(tmp_path / "run")["train"]["epochs"] == 3


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(lr=0.01), r"cannot change lr \(the run has 0.001, given 0.01\)"),
        (dict(epochs=1), "already trained 2 epochs; epochs=1 cannot undo them"),
        (dict(epochs=4, patience=1), "stopped early after epoch 2.*raise patience"),
    ],
)
def test_resume_refuses_options_it_cannot_honour(small_dataset, tmp_path, change, message):
    config = TrainConfig(epochs=2, lr=1e-3, lr_decay=1.0, **TINY)
    train(small_dataset, tmp_path / "run", config, **QUICK)
    if "patience" in change:  # make the finished run look early-stopped: 1 epoch without a new best
        checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
        checkpoint["bad_epochs"] = 1
        torch.save(checkpoint, tmp_path / "run" / "last.pt")
    with pytest.raises(ValueError, match=message):
        train(small_dataset, tmp_path / "run", config.replace(**change), resume=True, **QUICK)


def test_run_directory_states(small_dataset, synthetic_dataset, tmp_path):
    """Trained: refused to a fresh run; no epoch finished: taken over; locked: refused; other data: refused."""
    run_dir = tmp_path / "run"
    train(small_dataset, run_dir, TrainConfig(epochs=1, **TINY), **QUICK)
    with pytest.raises(ValueError, match=r"already holds a run \(1 epochs trained\).*--resume"):
        train(small_dataset, run_dir, TrainConfig(epochs=1, **TINY), **QUICK)
    with pytest.raises(ValueError, match="not the one the run was trained on"):
        train(synthetic_dataset, run_dir, resume=True, **QUICK)
    with pytest.raises(ValueError, match="holds no run"):
        train(small_dataset, tmp_path / "other", resume=True, **QUICK)
    with pytest.raises(ValueError, match="not a finished run"):
        load_run(tmp_path / "other")
    import fcntl

    with open(run_dir / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another process is training into it"):
            train(small_dataset, run_dir, resume=True, **QUICK)
    (run_dir / "last.pt").unlink()  # as if killed during epoch 1
    result = train(small_dataset, run_dir, TrainConfig(epochs=1, seed=3, **TINY), **QUICK)
    assert any("finished no epoch: replacing it" in note for note in result.notes)
    assert load_run_config(run_dir)["train"]["seed"] == 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"lr": 0}, "lr > 0"),
        ({"valid_fraction": 1.0}, "valid_fraction"),
        ({"valid_fraction": 0.0}, "valid_fraction"),
        ({"select_on": "test", "valid_fraction": 0.2}, "applies to select_on='validation' only"),
        ({"select_on": "train"}, "select_on"),
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
    """10 epochs, seeds 0-2, on the real sample (99 test prefixes: one hit is one point), with the
    paper's protocol: selection on the test split, the best HR@20 and best MRR@20 of any epoch.

    The authors' code, schedule fixed, reached a mean best HR@20 of 11.45 and MRR@20
    of 3.72 here; we measured 9.76 / 2.56 over these seeds and 10.86 / 3.01 over
    seeds 0-7. The bounds only catch a broken pipeline, not noise.
    """
    from srgnn_rt_torch.prepare import prepare

    prepare(diginetica_sample, tmp_path / "data", format="diginetica")
    best = []
    for seed in (0, 1, 2):
        result = train(tmp_path / "data", tmp_path / f"run{seed}", TrainConfig(epochs=10, seed=seed, select_on="test"),
                       device="cpu", progress=False)
        best.append([max(epoch["test"][name] for epoch in result.history) for name in ("HR@20", "MRR@20")])
    mean_hr, mean_mrr = np.mean(best, axis=0)
    assert 6.0 <= mean_hr <= 20.0 and 1.5 <= mean_mrr <= 8.0, best
