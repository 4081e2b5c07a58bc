"""The Ray Serve deployment against a real local Ray (on 127.0.0.1), over HTTP.

One Ray and one Serve per test session: the app ``srgnn`` (one replica, the
shared synthetic bundle) serves every test; ``test_shutdown_drains`` deploys
and deletes a second app of its own. Answers are compared with the in-process
``Recommender``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from loopback import off_loopback, process_tree, tcp_sockets

from srgnn_rt import Recommender

pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install 'srgnn-rt[ray]'")

from srgnn_rt.engines import ray_serve  # noqa: E402
from srgnn_rt.engines.triton_server import free_port  # noqa: E402


@pytest.fixture(scope="module")
def serve_url(local_ray, synthetic_bundle):
    """Serve on the session's Ray for this module; shut down after it, so that its replicas free
    their CPUs for the other Ray tests."""
    from ray import serve

    url = ray_serve.run(ray_serve.app(synthetic_bundle, threads=1, batch_wait_ms=20),
                        name="srgnn", port=free_port(), route_prefix="/srgnn")
    yield url
    serve.shutdown()


@pytest.fixture(scope="session")
def recommender(synthetic_bundle) -> Recommender:
    return Recommender.load(synthetic_bundle, device="cpu", threads=1)


def _post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(text)
        except json.JSONDecodeError:
            return exc.code, {"error": text}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _post_all(url: str, bodies: list) -> list[tuple[int, dict]]:
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: _post(url, body), bodies))


def _assert_same(answer: dict, expected) -> None:
    assert answer["items"] == expected.items
    np.testing.assert_allclose(answer["scores"], expected.scores, rtol=1e-5, atol=1e-6)
    assert (answer["n_unknown"], answer["fallback"]) == (expected.n_unknown, expected.fallback)


def _batched(url: str) -> tuple[int, int]:
    """(batches, requests in them) the replica behind ``url`` has run."""
    health = _get(url + "/health")
    return health["batches"], health["batched_requests"]


def _concurrent_bodies(recommender: Recommender, n: int, seed: int) -> tuple[list[dict], list]:
    """``n`` request bodies of varied sessions and options (some with an unknown id), and their answers."""
    raw = recommender.bundle.vocab.raw_ids
    rng = np.random.default_rng(seed)
    bodies, expected = [], []
    for i in range(n):
        session = [raw[j] for j in rng.integers(0, len(raw), size=1 + i % 11)] + ([-7] if i % 9 == 4 else [])
        body = {"session": session, "k": (3, 20)[i % 2], "exclude_seen": i % 4 == 0}
        bodies.append(body)
        expected.append(recommender.recommend([session], body["k"], exclude_seen=body["exclude_seen"])[0])
    return bodies, expected


@pytest.mark.parametrize("way_in", ["proxy", "replica"])
def test_concurrent_sessions_equal_recommend_and_batch(serve_url, recommender, way_in):
    """Through Serve's proxy and through the replica's own port (direct ingress, which a local start
    turns on): every answer equals ``recommend``, and requests were batched."""
    if way_in == "replica":
        urls = ray_serve.replica_urls("srgnn")
        assert len(urls) == 1 and urls[0].startswith("http://127.0.0.1:") and urls[0].endswith("/srgnn"), urls
        url = urls[0]
    else:
        url = serve_url
    bodies, expected = _concurrent_bodies(recommender, 64, seed=1 if way_in == "proxy" else 2)
    batches_before, requests_before = _batched(url)
    for (status, answer), want in zip(_post_all(url, bodies), expected):
        assert status == 200, answer
        _assert_same(answer, want)
    batches, requests = (after - before for after, before in zip(_batched(url), (batches_before, requests_before)))
    assert requests == len(bodies)
    assert batches < requests, (batches, requests)


def test_bad_requests_get_400_alone(serve_url, recommender):
    raw = recommender.bundle.vocab.raw_ids
    good = [{"session": [raw[i], raw[i + 3]], "k": 4} for i in range(24)]
    bad = [b"not json", {"session": "abc"}, {"session": [1.5]}, {"session": [raw[0]], "k": 0},
           {"session": [raw[0]], "extra": 1}, {"session": [str(raw[0])]}]
    answers = _post_all(serve_url, good[:12] + bad + good[12:])
    for status, answer in answers[12:12 + len(bad)]:
        assert 400 <= status < 500 and answer["error"], (status, answer)
    for (status, answer), body in zip(answers[:12] + answers[12 + len(bad):], good):
        assert status == 200, answer
        _assert_same(answer, recommender.recommend_one(body["session"], 4))


def test_health(serve_url, recommender):
    health = _get(serve_url + "/health")
    assert health["status"] == "ok" and health["n_items"] == recommender.n_items
    assert health["provider"] == "CPUExecutionProvider"


def test_traffic_stays_on_loopback(serve_url, recommender):
    """Every connection of the Ray processes is loopback at both ends; the only listener on all
    interfaces is the replica's inter-deployment gRPC port, which Ray Serve 2.60 binds to [::]."""
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(_post_all, serve_url, [{"session": [recommender.bundle.vocab.raw_ids[0]]}] * 16)
        sockets = tcp_sockets(process_tree(os.getpid()))
        assert all(status == 200 for status, _ in busy.result())
    assert {state for state, *_ in sockets} >= {"ESTAB", "LISTEN"}, sockets
    wrong = [s for s in off_loopback(sockets) if not (s[0] == "LISTEN" and s[3].startswith("ray::ServeRepli"))]
    assert not wrong, wrong


def test_shutdown_drains_accepted_requests(serve_url, synthetic_bundle, recommender):
    """A replica whose model takes ``model_s`` per batch (the real deployment, its recommender slowed
    down): a lone request runs at once, without the batch wait; requests arriving while a batch is in
    the model wait for the next one, and a delete then answers all of them before the replica ends."""
    from ray import serve

    model_s, wait_s = 1.0, 6.0

    class SlowModel(ray_serve.RecommenderDeployment.func_or_class):  # pickled by value into the replica
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            recommend = self.recommender.recommend

            def slow(*call_args, **call_kwargs):
                time.sleep(model_s)
                return recommend(*call_args, **call_kwargs)

            self.recommender.recommend = slow

    url = serve_url.rsplit("/", 1)[0] + "/drain"
    deployment = serve.deployment(SlowModel, ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
    serve.run(deployment.bind(str(synthetic_bundle), threads=1, batch_wait_ms=wait_s * 1000), name="drain",
              route_prefix="/drain")
    sessions = [[raw] for raw in recommender.bundle.vocab.raw_ids[:8]]
    began = time.monotonic()
    assert _post(url, {"session": sessions[0]})[0] == 200
    assert time.monotonic() - began < wait_s, "a request reaching an idle replica waited for a batch"
    results: list = []
    clients = threading.Thread(target=lambda: results.extend(_post_all(url, [{"session": s} for s in sessions])))
    clients.start()
    deadline = time.monotonic() + 60
    # The first request runs at once; those arriving during its model_s wait for the next batch.
    while _get(url + "/health")["in_flight"] < 2:
        assert time.monotonic() < deadline, "the requests never reached the replica"
        time.sleep(0.02)
    serve.delete("drain")  # waits for the replica's graceful shutdown
    clients.join()
    for (status, answer), session in zip(results, sessions):
        assert status == 200, results
        _assert_same(answer, recommender.recommend_one(session, 20))
    assert _post(url, {"session": sessions[0]})[0] == 404


def test_app_needs_one_scaling_mode(synthetic_bundle):
    with pytest.raises(ValueError, match="either replicas or autoscaling, not both"):
        ray_serve.app(synthetic_bundle, replicas=2, autoscaling={"min_replicas": 1, "max_replicas": 2})
    with pytest.raises(ValueError, match="must name the bundle"):
        ray_serve.build({"replicas": 1})


def test_replica_loads_the_bundle_in_the_retrieval_mode_asked(retrieval_only_indexed_bundle):
    """The replica object Serve would build from the application's bound arguments, built here without
    Serve: a retrieval-only bundle loads only when retrieval="index" reaches ``Recommender.load``."""
    application = ray_serve.build({"bundle": str(retrieval_only_indexed_bundle), "threads": 1, "retrieval": "index"})
    bound = application._bound_deployment  # Serve's private handle on the bound deployment and its arguments
    replica = ray_serve.RecommenderDeployment.func_or_class(*bound.init_args, **bound.init_kwargs)
    assert replica.recommender.retrieval == "index"


def test_replica_threads_do_not_spin(synthetic_bundle):
    """The replica's event loop shares its cores with onnxruntime's threads: idle ones must not spin
    (on 2 cores, spinning threads took the replica from 822 to 1,898 us of CPU per request)."""
    application = ray_serve.build({"bundle": str(synthetic_bundle), "threads": 2})
    bound = application._bound_deployment
    replica = ray_serve.RecommenderDeployment.func_or_class(*bound.init_args, **bound.init_kwargs)
    assert not replica.recommender.spin_wait


def test_config_builder_and_cli_checks(synthetic_bundle, capsys):
    from ray import serve

    from srgnn_rt.cli import main

    application = ray_serve.build({"bundle": str(synthetic_bundle), "autoscaling": {"min_replicas": 1,
                                                                                    "max_replicas": 3}})
    assert isinstance(application, serve.Application)
    assert main(["serve", str(synthetic_bundle), "--autoscale", "3:1"]) == 2
    assert "--autoscale takes MIN:MAX" in capsys.readouterr().err
