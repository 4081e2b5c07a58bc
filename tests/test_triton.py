"""The Triton model repository against a real ``tritonserver`` (the binary nvidia-pytriton ships).

One server per test session serves three models written by ``write_repository``:
``srgnn`` (the shared synthetic bundle, int ids), ``srgnn_str`` (string ids,
BYTES tensors) and ``srgnn_index`` (a retrieval-only bundle, ``retrieval="index"``).
Answers are compared with the in-process ``Recommender``.
"""

from __future__ import annotations

import importlib.util
import platform
import queue
from pathlib import Path

import numpy as np
import pytest
from loopback import off_loopback, process_tree, tcp_sockets

from srgnn_rt import Recommender
from srgnn_rt.bundle import Bundle
from srgnn_rt.engines.triton import write_repository

tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed: "
                                        "pip install 'srgnn-rt[triton]'")

MAX_QUEUE_DELAY_US = 20_000  # long enough that concurrent requests surely share batches on 2 busy cores


def _server_available() -> str | None:
    """Why the local Triton server cannot run here, or None."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"the tritonserver binary of nvidia-pytriton runs on Linux x86-64 only, not {platform.platform()}"
    if importlib.util.find_spec("pytriton") is None:
        return "nvidia-pytriton (which ships tritonserver) is not installed: pip install --no-deps nvidia-pytriton"
    return None


@pytest.fixture(scope="session")
def string_bundle(synthetic_bundle, tmp_path_factory) -> Path:
    """``synthetic_bundle`` with string raw ids: "sku-<raw id>"."""
    from srgnn_rt.bundle import write_bundle
    from srgnn_rt.vocab import Vocab

    bundle = Bundle.load(synthetic_bundle)
    manifest = {key: value for key, value in bundle.manifest.items()
                if key not in ("format", "format_version", "files")}
    path = tmp_path_factory.mktemp("string-bundle") / "bundle"
    vocab = Vocab([f"sku-{raw}" for raw in bundle.vocab.raw_ids])
    write_bundle(path, model=bundle.model_path.read_bytes(), vocab=vocab, item_counts=bundle.item_counts,
                 item_embeddings=np.asarray(bundle.item_embeddings()), manifest=manifest)
    return path


@pytest.fixture(scope="session")
def triton_server(synthetic_bundle, string_bundle, retrieval_only_indexed_bundle, tmp_path_factory):
    reason = _server_available()
    if reason:
        pytest.skip(reason)
    from srgnn_rt.engines.triton_server import LocalTritonServer, server_python_path

    repo = tmp_path_factory.mktemp("triton") / "models"
    python_path = server_python_path()
    write_repository(synthetic_bundle, repo, name="srgnn", max_batch=32, max_queue_delay_us=MAX_QUEUE_DELAY_US,
                     threads=1, python_path=python_path)
    write_repository(string_bundle, repo, name="srgnn_str", python_path=python_path)  # defaults: 2 instances
    write_repository(retrieval_only_indexed_bundle, repo, name="srgnn_index", instances=1, threads=1,
                     retrieval="index", python_path=python_path)
    server = LocalTritonServer(repo)
    with server:
        yield server
        assert server.stop() == 0, server.log[-3000:]


@pytest.fixture(scope="session")
def recommender(synthetic_bundle) -> Recommender:
    return Recommender.load(synthetic_bundle, device="cpu", threads=1)


def _inputs(session, k=None, exclude_seen=None, dtype="INT64"):
    array = np.array([session], dtype=np.object_ if dtype == "BYTES" else np.int64).reshape(1, len(session))
    tensors = [tritonclient_grpc.InferInput("session", list(array.shape), dtype)]
    tensors[0].set_data_from_numpy(array)
    if k is not None:
        tensors.append(tritonclient_grpc.InferInput("k", [1, 1], "INT64"))
        tensors[-1].set_data_from_numpy(np.array([[k]], dtype=np.int64))
    if exclude_seen is not None:
        tensors.append(tritonclient_grpc.InferInput("exclude_seen", [1, 1], "BOOL"))
        tensors[-1].set_data_from_numpy(np.array([[exclude_seen]], dtype=np.bool_))
    return tensors


def _send_all(url: str, model: str, requests: list[list]) -> list:
    """Send every request at once (async gRPC) and return, in order, each result or the exception."""
    answers: queue.Queue = queue.Queue()
    client = tritonclient_grpc.InferenceServerClient(url)
    try:
        for index, inputs in enumerate(requests):
            client.async_infer(model, inputs, callback=lambda result, error, i=index: answers.put((i, result, error)))
        results = [None] * len(requests)
        for _ in requests:
            index, result, error = answers.get(timeout=60)
            results[index] = error if error is not None else result
        return results
    finally:
        client.close()


def _statistics(url: str, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) of ``model``: requests answered, and batches run."""
    with tritonclient_grpc.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def _assert_same(result, expected) -> None:
    assert result.as_numpy("items")[0].tolist() == expected.items
    np.testing.assert_allclose(result.as_numpy("scores")[0], expected.scores, rtol=1e-5, atol=1e-6)
    assert result.as_numpy("n_unknown")[0, 0] == expected.n_unknown
    assert result.as_numpy("fallback")[0, 0] == expected.fallback


# --- the repository, without a server -----------------------------------------------------------

def test_repository_layout(synthetic_bundle, tmp_path):
    model_dir = write_repository(synthetic_bundle, tmp_path / "repo", name="recs", max_batch=8, instances=2,
                                 kind="gpu", python_path=[tmp_path])
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt"]
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["bundle", "model.py", "sys_path.pth"]
    assert Bundle.load(model_dir / "1" / "bundle").n_items == Bundle.load(synthetic_bundle).n_items
    config = (model_dir / "config.pbtxt").read_text()
    for line in ('name: "recs"', 'backend: "python"', "max_batch_size: 8", "allow_ragged_batch: true",
                 'name: "session" data_type: TYPE_INT64', "count: 2 kind: KIND_GPU"):
        assert line in config
    assert (model_dir / "1" / "sys_path.pth").read_text() == f"{tmp_path}\n"
    with pytest.raises(FileExistsError):
        write_repository(synthetic_bundle, tmp_path / "repo", name="recs")
    default = (write_repository(synthetic_bundle, tmp_path / "repo", name="plain") / "config.pbtxt").read_text()
    assert "count: 2 kind: KIND_CPU" in default and "threads" not in default  # each instance takes its share


def test_adapter_loads_its_share_of_the_cores(synthetic_bundle, tmp_path, monkeypatch):
    """``model.py``'s ``initialize``, run here with the arguments Triton gives a CPU instance (the
    backend's utilities are only used by ``execute``): each of 2 instances takes half the cores, and
    idle onnxruntime threads do not spin, as the instances share the cores with the server."""
    import json
    import os
    import sys
    import types

    model_dir = write_repository(synthetic_bundle, tmp_path / "repo", name="recs")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location("srgnn_triton_adapter", model_dir / "1" / "model.py")
    adapter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adapter)
    model = adapter.TritonPythonModel()
    config = {"instance_group": [{"count": 2, "kind": "KIND_CPU"}],
              "parameters": {"retrieval": {"string_value": "exact"}}}
    model.initialize({"model_config": json.dumps(config), "model_instance_kind": "CPU",
                      "model_instance_device_id": "0"})
    assert model.recommender._session.get_session_options().intra_op_num_threads == max(1, (os.cpu_count() or 1) // 2)
    assert not model.recommender.spin_wait


@pytest.mark.parametrize("option, value, message", [
    ("name", "a/b", "name must be"), ("kind", "tpu", "kind must be"), ("max_batch", 0, "max_batch must be"),
    ("max_queue_delay_us", -1, "max_queue_delay_us must be"), ("python_path", ["relative"], "python_path"),
])
def test_repository_rejects_bad_options(synthetic_bundle, tmp_path, option, value, message):
    with pytest.raises(ValueError, match=message):
        write_repository(synthetic_bundle, tmp_path / "repo", **{option: value})
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_repository_serves_in_the_retrieval_mode_asked(synthetic_bundle, retrieval_only_indexed_bundle, tmp_path,
                                                       capsys):
    from srgnn_rt.cli import main

    model_dir = write_repository(retrieval_only_indexed_bundle, tmp_path / "repo", name="ann", retrieval="index")
    assert 'key: "retrieval" value: { string_value: "index" }' in (model_dir / "config.pbtxt").read_text()
    assert Bundle.load(model_dir / "1" / "bundle").retrieval_only
    assert main(["triton", str(retrieval_only_indexed_bundle), str(tmp_path / "repo"), "--name", "cli",
                 "--retrieval", "index"]) == 0
    assert 'string_value: "index"' in (tmp_path / "repo" / "cli" / "config.pbtxt").read_text()
    # Refused up front, not when the server loads the model: nothing is written.
    with pytest.raises(ValueError, match="retrieval-only.*retrieval='index'"):
        write_repository(retrieval_only_indexed_bundle, tmp_path / "repo", name="exact")
    assert main(["triton", str(retrieval_only_indexed_bundle), str(tmp_path / "repo"), "--name", "exact"]) == 2
    assert "--retrieval index" in capsys.readouterr().err
    with pytest.raises(ValueError, match="has no item_index.faiss"):
        write_repository(synthetic_bundle, tmp_path / "repo", name="noindex", retrieval="index")
    with pytest.raises(ValueError, match="retrieval must be one of"):
        write_repository(synthetic_bundle, tmp_path / "repo", name="typo", retrieval="ann")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["ann", "cli"]
    default = (write_repository(synthetic_bundle, tmp_path / "repo", name="plain") / "config.pbtxt").read_text()
    assert 'key: "retrieval" value: { string_value: "exact" }' in default


# --- the real server ----------------------------------------------------------------------------

def test_concurrent_sessions_equal_recommend_and_batch(triton_server, recommender):
    raw = recommender.bundle.vocab.raw_ids
    rng = np.random.default_rng(0)
    requests, expected = [], []
    for n in range(96):
        session = [raw[i] for i in rng.integers(0, len(raw), size=1 + n % 13)]
        if n % 10 == 3:
            session.append(-5)  # unknown, dropped and counted
        if n % 24 == 7:
            session = [-1, -2]  # nothing known: the most popular items
        k = (5, 20)[n % 2]
        exclude_seen = n % 3 == 0
        requests.append(_inputs(session, k, exclude_seen))
        expected.append(recommender.recommend([session], k, exclude_seen=exclude_seen)[0])
    before = _statistics(triton_server.grpc_url, "srgnn")
    results = _send_all(triton_server.grpc_url, "srgnn", requests)
    for result, want in zip(results, expected):
        assert not isinstance(result, Exception), result
        _assert_same(result, want)
    after = _statistics(triton_server.grpc_url, "srgnn")
    requests_served, batches_run = after[0] - before[0], after[1] - before[1]
    assert requests_served == len(requests)
    assert batches_run < requests_served, "no server-side batch held more than one request"


def test_default_k_is_20(triton_server, recommender):
    session = list(recommender.bundle.vocab.raw_ids[:3])
    (result,) = _send_all(triton_server.grpc_url, "srgnn", [_inputs(session)])
    _assert_same(result, recommender.recommend_one(session, 20))


def test_malformed_request_fails_alone(triton_server, recommender):
    raw = recommender.bundle.vocab.raw_ids
    good = [[raw[i], raw[i + 1]] for i in range(0, 40, 2)]
    too_many = _inputs(good[0], k=recommender.n_items + 1)
    zero = _inputs(good[1], k=0)
    two_ks = _inputs(good[0])  # refused by Triton itself: k has dims [1]
    two_ks.append(tritonclient_grpc.InferInput("k", [1, 2], "INT64"))
    two_ks[-1].set_data_from_numpy(np.array([[3, 4]], dtype=np.int64))
    requests = [_inputs(s, 5) for s in good[:10]] + [too_many, zero, two_ks] + [_inputs(s, 5) for s in good[10:]]
    results = _send_all(triton_server.grpc_url, "srgnn", requests)
    bad = results[10:13]
    assert all(isinstance(r, tritonclient_grpc.InferenceServerException) for r in bad), bad
    assert f"got {recommender.n_items + 1}" in str(bad[0]) and "got 0" in str(bad[1])
    assert "unexpected shape for input 'k'" in str(bad[2])
    for result, session in zip(results[:10] + results[13:], good):
        assert not isinstance(result, Exception), result
        _assert_same(result, recommender.recommend_one(session, 5))


def test_string_ids_travel_as_bytes(triton_server, string_bundle):
    recommender = Recommender.load(string_bundle, device="cpu", threads=1)
    raw = [f"{item}" for item in recommender.bundle.vocab.raw_ids[:5]]
    sessions = [[raw[0], raw[1], raw[0]], [raw[4]], [raw[2], "unknown-sku"]]
    requests = [_inputs([s.encode() for s in session], 4, dtype="BYTES") for session in sessions]
    for result, session in zip(_send_all(triton_server.grpc_url, "srgnn_str", requests), sessions):
        assert not isinstance(result, Exception), result
        expected = recommender.recommend_one(session, 4)
        assert [item.decode() for item in result.as_numpy("items")[0]] == expected.items
        np.testing.assert_allclose(result.as_numpy("scores")[0], expected.scores, rtol=1e-5, atol=1e-6)
        assert result.as_numpy("n_unknown")[0, 0] == expected.n_unknown


def test_index_mode_model_answers_as_the_index_mode_recommender(triton_server, retrieval_only_indexed_bundle):
    recommender = Recommender.load(retrieval_only_indexed_bundle, device="cpu", threads=1, retrieval="index")
    raw = recommender.bundle.vocab.raw_ids
    sessions = [[raw[i], raw[(7 * i) % len(raw)]] for i in range(12)] + [[-1, -2]]
    results = _send_all(triton_server.grpc_url, "srgnn_index", [_inputs(s, 10, i % 2 == 0)
                                                                for i, s in enumerate(sessions)])
    for index, (result, session) in enumerate(zip(results, sessions)):
        assert not isinstance(result, Exception), result
        _assert_same(result, recommender.recommend_one(session, 10, exclude_seen=index % 2 == 0))


def test_server_uses_loopback_only(triton_server):
    client = tritonclient_grpc.InferenceServerClient(triton_server.grpc_url)
    try:
        assert client.is_model_ready("srgnn")  # one connection open while the sockets are listed
        sockets = tcp_sockets(process_tree(triton_server.pid))
    finally:
        client.close()
    assert {state for state, *_ in sockets} >= {"ESTAB", "LISTEN"}, sockets
    assert not off_loopback(sockets), sockets


def test_cli_writes_the_repository(synthetic_bundle, tmp_path, capsys):
    from srgnn_rt.cli import main

    assert main(["triton", str(synthetic_bundle), str(tmp_path / "repo"), "--name", "m", "--max-batch", "16",
                 "--instances", "2", "--threads", "1", "--python-path", str(tmp_path)]) == 0
    config = (tmp_path / "repo" / "m" / "config.pbtxt").read_text()
    assert "max_batch_size: 16" in config and "count: 2 kind: KIND_CPU" in config
    assert 'key: "threads" value: { string_value: "1" }' in config
    assert "tritonserver --model-repository" in capsys.readouterr().out
    assert main(["triton", str(synthetic_bundle), str(tmp_path / "repo"), "--name", "m"]) == 2
    assert "exists" in capsys.readouterr().err
