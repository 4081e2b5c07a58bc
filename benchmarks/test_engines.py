"""The service path through the inference servers: N concurrent clients against Triton and Ray Serve.

Same rounds and measurements as ``test_service`` (whose rows these join in the
report as modes ``triton`` and ``ray-serve``): each client sends one session,
waits for its top-20, sends the next. The clients are asyncio tasks on one event
loop in this process (one connection each), not threads: server and clients share
the machine's cores, and 64 Python threads handing the GIL around took more CPU
than the server (the gRPC client: ~1.5 ms per request, 862 against 1,153
requests/s through the same Triton).

``triton``: a local tritonserver (nvidia-pytriton's binary, Python backend) of
``srgnn-rt triton`` with 2 instances of 1 onnxruntime thread each (on 2 cores 2x1
and 1x2 tie, 2x2 and 3x1 were slower) over gRPC with ``tritonclient.grpc.aio``;
``ray-serve``: one replica of the Ray Serve deployment (default batching) over
HTTP/1.1 keep-alive with aiohttp, on the replica's own port (Serve's direct
ingress, which a local start turns on); ``ray-serve-proxy``: the same replica
through Serve's HTTP proxy. Each server is started once per run on 127.0.0.1;
``extra_info["mean_batch"]`` is the mean batch the server formed.

Before each timed round the same clients send the same requests to an in-process
``MicroBatcher`` (default settings) over the same recommender (untimed by the
benchmark, timed here): ``extra_info["batcher_rps"]`` is its throughput over the
median of those rounds. The engine's share of it is then measured in one window of
time: on a shared machine the speed of the same code drifts by a third between runs
minutes apart.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import platform
import time

import numpy as np
import pytest
from bundles import requests

from srgnn_rt.batcher import MicroBatcher

CLIENTS = (1, 16, 64)
MODES = ("triton", "ray-serve", "ray-serve-proxy")
TRITON_INSTANCES = 2
RAY_REPLICAS = 1
REQUESTS_PER_ROUND = 1024
ROUNDS = 5
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
    write_repository(bench_bundle, repo, instances=TRITON_INSTANCES, threads=max(1, bench_threads // TRITON_INSTANCES),
                     python_path=server_python_path())
    with LocalTritonServer(repo) as server:
        yield server.grpc_url


@pytest.fixture(scope="module")
def ray_urls(bench_bundle, bench_threads) -> dict[str, str]:
    """``{"ray-serve": the replicas' own URLs, "ray-serve-proxy": [the proxy's URL]}``."""
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install 'srgnn-rt[ray]'")
    import ray
    from ray import serve

    from srgnn_rt.engines import ray_serve
    from srgnn_rt.engines.triton_server import free_port
    from srgnn_rt.local_ray import start_ray

    started_here = start_ray(num_cpus=2)
    url = ray_serve.run(ray_serve.app(str(bench_bundle.path), replicas=RAY_REPLICAS,
                                      threads=max(1, bench_threads // RAY_REPLICAS)),
                        name="srgnn-bench", port=free_port(), route_prefix="/srgnn-bench")
    direct = ray_serve.replica_urls("srgnn-bench")
    if not direct:
        pytest.skip("Ray Serve runs without direct ingress (RAY_SERVE_THROUGHPUT_OPTIMIZED=0 or Ray < 2.55)")
    yield {"ray-serve": direct, "ray-serve-proxy": [url]}
    serve.delete("srgnn-bench")
    if started_here:
        serve.shutdown()
        ray.shutdown()


class _AsyncClients:
    """``n`` clients as asyncio tasks on one event loop; ``run_round()`` lets each send ``per_client``
    requests one after another through ``await call(session)`` and returns when all are answered.
    ``open()`` makes the client state (connections) once; latencies (s) accumulate over rounds."""

    def __init__(self, n: int, open_client, sessions: list, per_client: int):
        self._n, self._sessions, self._per_client = n, sessions, per_client
        self._loop = asyncio.new_event_loop()
        self._call, self._close = self._loop.run_until_complete(open_client())
        self.latencies: list[float] = []
        self.errors: list[BaseException] = []

    async def _client(self, number: int) -> None:
        offset = number * self._per_client
        for j in range(self._per_client):
            session = self._sessions[(offset + j) % len(self._sessions)]
            began = time.perf_counter()
            try:
                await self._call(session)
            except Exception as exc:  # reported by the test, never swallowed
                self.errors.append(exc)
            self.latencies.append(time.perf_counter() - began)

    def run_round(self) -> None:
        async def round_():
            await asyncio.gather(*(self._client(i) for i in range(self._n)))

        self._loop.run_until_complete(round_())

    def reset(self) -> None:
        self.latencies.clear()

    def close(self) -> None:
        self._loop.run_until_complete(self._close())
        self._loop.close()


def _triton_client(url: str, raw_id_type):
    async def open_client():
        import tritonclient.grpc.aio as grpcclient

        client = grpcclient.InferenceServerClient(url)
        dtype = "BYTES" if raw_id_type is str else "INT64"
        k = np.array([[K]], dtype=np.int64)

        async def call(session):
            array = np.array([session], dtype=np.object_ if dtype == "BYTES" else np.int64)
            inputs = [grpcclient.InferInput("session", list(array.shape), dtype),
                      grpcclient.InferInput("k", [1, 1], "INT64")]
            inputs[0].set_data_from_numpy(array)
            inputs[1].set_data_from_numpy(k)
            return (await client.infer("srgnn", inputs)).as_numpy("items")

        return call, client.close

    return open_client


def _ray_client(urls: list[str], clients: int):
    """Clients spread over ``urls`` in turn (a client-side load balancer)."""
    async def open_client():
        import aiohttp

        session_pool = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                             timeout=aiohttp.ClientTimeout(total=60))

        turn = itertools.cycle(urls)

        async def call(session):
            async with session_pool.post(next(turn), data=json.dumps({"session": session, "k": K}),
                                         headers={"Content-Type": "application/json"}) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
                return body

        return call, session_pool.close

    return open_client


def _batcher_client(batcher: MicroBatcher):
    async def open_client():
        async def call(session):
            return await asyncio.wrap_future(batcher.submit(session, K))

        async def close():
            pass

        return call, close

    return open_client


def _batches(mode: str, url: str) -> tuple[int, int]:
    """(requests, batches) the server has run so far."""
    if mode == "triton":
        import tritonclient.grpc as grpcclient

        with grpcclient.InferenceServerClient(url) as client:
            stats = client.get_inference_statistics("srgnn", as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))
    import urllib.request

    totals = np.zeros(2, dtype=np.int64)
    for replica in url:  # the proxy's /health reaches one replica only: ask each replica's own port
        with urllib.request.urlopen(replica + "/health", timeout=30) as response:
            health = json.loads(response.read())
        totals += (health["batched_requests"], health["batches"])
    return int(totals[0]), int(totals[1])


@pytest.mark.parametrize("clients", CLIENTS)
@pytest.mark.parametrize("mode", MODES)
def test_engine(benchmark, request, bench_bundle, runtime_recommender, smoke, mode, clients):
    if mode == "triton":
        url = request.getfixturevalue("triton_url")
        open_client = _triton_client(url, runtime_recommender.raw_id_type)
    else:
        url = request.getfixturevalue("ray_urls")["ray-serve"]
        open_client = _ray_client(request.getfixturevalue("ray_urls")[mode], clients)
    per_client = 2 if smoke else max(1, REQUESTS_PER_ROUND // clients)
    rounds = 1 if smoke else ROUNDS
    sessions = requests(bench_bundle, 64 if smoke else 4096, seed=1)
    benchmark.group = f"service {clients} clients"
    batcher = MicroBatcher(runtime_recommender)
    reference = _AsyncClients(clients, _batcher_client(batcher), sessions, per_client)
    pool = _AsyncClients(clients, open_client, sessions, per_client)
    reference_s: list[float] = []

    def reference_round():
        began = time.perf_counter()
        reference.run_round()
        reference_s.append(time.perf_counter() - began)

    try:
        pool.run_round()  # warm-up, not timed
        reference.run_round()
        pool.reset()
        before = _batches(mode, url)
        benchmark.pedantic(pool.run_round, setup=reference_round, rounds=rounds, iterations=1)
        after = _batches(mode, url)
    finally:
        pool.close()
        reference.close()
        batcher.close()
    assert not pool.errors, pool.errors[:3]
    assert not reference.errors, reference.errors[:3]
    latencies = np.asarray(pool.latencies) * 1000.0
    assert len(latencies) == clients * per_client * rounds
    info = dict(suite="service", path=f"service-{mode}", mode=mode, clients=clients, n_items=bench_bundle.n_items,
                requests_per_round=clients * per_client, p50_ms=float(np.percentile(latencies, 50)),
                p99_ms=float(np.percentile(latencies, 99)),
                mean_batch=(after[0] - before[0]) / max(after[1] - before[1], 1))
    if benchmark.stats:  # None with --benchmark-disable
        info["throughput_rps"] = clients * per_client / benchmark.stats.stats.median
        info["batcher_rps"] = clients * per_client / float(np.median(reference_s))
    benchmark.extra_info.update(info)
