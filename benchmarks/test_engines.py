"""The service path through the inference servers: N concurrent clients against Triton and Ray Serve.

Same rounds and measurements as ``test_service`` (whose rows these join in the
report as modes ``triton`` and ``ray-serve``): each client thread sends one
session, waits for its top-20, sends the next. ``triton``: a local tritonserver
(nvidia-pytriton's binary, Python backend, one instance, ``srgnn-rt triton``
defaults) over gRPC with tritonclient; ``ray-serve``: one replica of the Ray Serve
deployment (default batching) over HTTP/1.1 keep-alive. Each server is started
once per run on 127.0.0.1; ``extra_info["mean_batch"]`` is the mean batch the
server formed. Server and clients share the machine's cores.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import platform
import threading

import numpy as np
import pytest
from bundles import requests
from test_service import _Clients

CLIENTS = (1, 16, 64)
MODES = ("triton", "ray-serve")
REQUESTS_PER_ROUND = 1024
ROUNDS = 3
K = 20


@pytest.fixture(scope="module")
def triton_url(bench_bundle, bench_threads, tmp_path_factory):
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip(f"nvidia-pytriton's tritonserver runs on Linux x86-64 only, not {platform.platform()}")
    if importlib.util.find_spec("pytriton") is None:  # only its server binary is used: not imported
        pytest.skip("nvidia-pytriton (the local tritonserver) is not installed")
    pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed: pip install 'srgnn-rt[triton]'")
    from srgnn_rt.engines.triton import write_repository
    from srgnn_rt.engines.triton_server import LocalTritonServer, server_python_path

    repo = tmp_path_factory.mktemp("bench-triton") / "models"
    write_repository(bench_bundle, repo, threads=bench_threads, python_path=server_python_path())
    with LocalTritonServer(repo) as server:
        yield server.grpc_url


@pytest.fixture(scope="module")
def ray_url(bench_bundle, bench_threads):
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install 'srgnn-rt[ray]'")
    import ray
    from ray import serve

    from srgnn_rt.engines import ray_serve
    from srgnn_rt.engines.triton_server import free_port
    from srgnn_rt.local_ray import start_ray

    started_here = start_ray(num_cpus=2)
    url = ray_serve.run(ray_serve.app(str(bench_bundle.path), threads=bench_threads), name="srgnn-bench",
                        port=free_port(), route_prefix="/srgnn-bench")
    yield url
    serve.delete("srgnn-bench")
    if started_here:
        serve.shutdown()
        ray.shutdown()


def _triton_call(url: str, raw_id_type):
    import tritonclient.grpc as grpcclient

    local = threading.local()
    dtype = "BYTES" if raw_id_type is str else "INT64"

    def call(session):
        if not hasattr(local, "client"):
            local.client = grpcclient.InferenceServerClient(url)
        array = np.array([session], dtype=np.object_ if dtype == "BYTES" else np.int64)
        inputs = [grpcclient.InferInput("session", list(array.shape), dtype),
                  grpcclient.InferInput("k", [1, 1], "INT64")]
        inputs[0].set_data_from_numpy(array)
        inputs[1].set_data_from_numpy(np.array([[K]], dtype=np.int64))
        return local.client.infer("srgnn", inputs).as_numpy("items")

    return call


def _ray_call(url: str):
    host_port, _, path = url.removeprefix("http://").partition("/")
    local = threading.local()

    def call(session):
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(host_port, timeout=60)
        local.connection.request("POST", "/" + path, json.dumps({"session": session, "k": K}),
                                 {"Content-Type": "application/json"})
        response = local.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        return body

    return call


def _batches(mode: str, url: str) -> tuple[int, int]:
    """(requests, batches) the server has run so far."""
    if mode == "triton":
        import tritonclient.grpc as grpcclient

        with grpcclient.InferenceServerClient(url) as client:
            stats = client.get_inference_statistics("srgnn", as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))
    from ray import serve

    sizes = serve.get_app_handle("srgnn-bench").batch_sizes.remote().result()
    return sum(sizes), len(sizes)


@pytest.mark.parametrize("clients", CLIENTS)
@pytest.mark.parametrize("mode", MODES)
def test_engine(benchmark, request, bench_bundle, runtime_recommender, smoke, mode, clients):
    url = request.getfixturevalue("triton_url" if mode == "triton" else "ray_url")
    call = _triton_call(url, runtime_recommender.raw_id_type) if mode == "triton" else _ray_call(url)
    per_client = 2 if smoke else max(1, REQUESTS_PER_ROUND // clients)
    rounds = 1 if smoke else ROUNDS
    sessions = requests(bench_bundle, 64 if smoke else 4096, seed=1)
    benchmark.group = f"service {clients} clients"
    pool = _Clients(clients, call, sessions, per_client)
    try:
        pool.run_round()  # warm-up, not timed
        pool.reset()
        before = _batches(mode, url)
        benchmark.pedantic(pool.run_round, rounds=rounds, iterations=1)
        after = _batches(mode, url)
    finally:
        pool.close()
    assert not pool.errors, pool.errors[:3]
    latencies = np.concatenate([np.asarray(x) for x in pool.latencies]) * 1000.0
    assert len(latencies) == clients * per_client * rounds
    info = dict(suite="service", path=f"service-{mode}", mode=mode, clients=clients, n_items=bench_bundle.n_items,
                requests_per_round=clients * per_client, p50_ms=float(np.percentile(latencies, 50)),
                p99_ms=float(np.percentile(latencies, 99)),
                mean_batch=(after[0] - before[0]) / max(after[1] - before[1], 1))
    if benchmark.stats:  # None with --benchmark-disable
        info["throughput_rps"] = clients * per_client / benchmark.stats.stats.median
    benchmark.extra_info.update(info)
