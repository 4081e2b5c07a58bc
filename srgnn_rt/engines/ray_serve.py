"""A Ray Serve deployment of a bundle: JSON over HTTP, concurrent requests batched with ``@serve.batch``.

``app(bundle, ...)`` builds the Serve application; ``srgnn-rt serve BUNDLE`` runs it
on a local Ray (or a running cluster with ``--address``); ``build(args)`` is the
``import_path`` of a Serve config file for ``serve deploy``. Each replica loads
the bundle once with ``srgnn_rt.Recommender.load`` and answers a batch with
``srgnn_rt.engines.answers.answer`` in a worker thread, off the event loop.

Two ways in: Serve's HTTP proxy (``run`` returns its URL; it routes to every
replica), and, when Serve runs in its throughput-optimised mode (a local start
turns it on, see ``srgnn_rt.local_ray``), each replica's own HTTP port
(``replica_urls``), which skips the proxy's Ray actor call: put a load balancer
(Ray's HAProxy mode, ``RAY_SERVE_ENABLE_HA_PROXY=1``, or your own) in front of them.

HTTP API (route prefix ``/`` by default):
``POST /`` with ``{"session": [raw ids], "k": 20, "exclude_seen": false}`` → 200
``{"items": [...], "scores": [...], "n_unknown": int, "fallback": bool}``, or 400
``{"error": "..."}`` for a malformed request (that request alone); ``GET /health``
→ 200 ``{"status": "ok", "provider": ..., "n_items": ..., "in_flight": requests
accepted and not answered yet, "batches": batches this replica ran,
"batched_requests": requests in them}``.

Batches are sized by cost, not count, so one long session cannot stall a batch:
a request costs ``recommender.request_cost(session)`` where the runtime has it,
else its number of clicks, at least 1 and at most ``max_batch_cost``; a batch
closes when its cost would pass ``max_batch_cost`` or ``batch_wait_ms`` has
passed since its first request. That wait applies only while a batch is in the
model: a request reaching an idle replica runs at once (on 2 cores, 1 client:
508 against 176 requests/s with a fixed 2 ms wait; 64 clients: 1,652 against
1,294, as batches grow from 13 to 35 requests). The runtime then splits large
batches into buckets of similar length.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

try:
    from ray import serve
    from starlette.requests import Request as HTTPRequest
    from starlette.responses import JSONResponse
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise ModuleNotFoundError(f"the Ray Serve deployment needs ray[serve] ({exc.name} is missing): "
                              "pip install 'srgnn-rt[ray]'") from None

from ..runtime import Recommender
from ..validation import positive_int
from .answers import Request, answer

DEFAULT_MAX_BATCH_COST = 1024
DEFAULT_BATCH_WAIT_MS = 2.0


def _batch_cost(requests: list[tuple[Request, int]]) -> int:
    return sum(cost for _, cost in requests)


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=256)
class RecommenderDeployment:
    """One replica: a ``Recommender`` over ``bundle`` behind the HTTP API of this module."""

    def __init__(self, bundle: str, *, device: str = "cpu", threads: int | None = None, retrieval: str = "exact",
                 max_batch_cost: int = DEFAULT_MAX_BATCH_COST, batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS):
        # The event loop serves HTTP beside the model's threads: idle onnxruntime threads must not spin.
        self.recommender = Recommender.load(bundle, device=device, threads=threads, retrieval=retrieval,
                                            spin_wait=False)
        self._cost = getattr(self.recommender, "request_cost", len)
        self._max_cost = positive_int(max_batch_cost, "max_batch_cost")
        self._batched.set_max_batch_size(self._max_cost)
        self._wait_s = float(batch_wait_ms) / 1000.0
        self._running = 0  # batches in the model now
        self._in_flight = 0  # requests accepted and not answered yet
        self._batches = 0  # batches run
        self._batched_requests = 0  # requests in them

    async def __call__(self, http: HTTPRequest) -> JSONResponse:
        if http.method == "GET" and http.url.path.rstrip("/").endswith("/health"):
            return JSONResponse({"status": "ok", "provider": self.recommender.provider,
                                 "n_items": self.recommender.n_items, "in_flight": self._in_flight,
                                 "batches": self._batches, "batched_requests": self._batched_requests})
        if http.method != "POST":
            return JSONResponse({"error": f"{http.method} is not supported: POST a session"}, status_code=405)
        try:
            request = _parse(await http.body())
            cost = min(max(int(self._cost(request.session)), 1), self._max_cost)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        self._in_flight += 1
        # Serve closes a batch batch_wait_ms after its first request. Waiting pays only while the model
        # is busy (the batch could not run yet anyway); an idle replica runs the request at once.
        self._batched.set_batch_wait_timeout_s(self._wait_s if self._running else 0.0)
        try:
            result = await self._batched((request, cost))
        finally:
            self._in_flight -= 1
        if isinstance(result, Exception):
            return JSONResponse({"error": f"{type(result).__name__}: {result}"}, status_code=400)
        return JSONResponse(result.to_dict())

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH_COST, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_MS / 1000.0,
                 batch_size_fn=_batch_cost)
    async def _batched(self, items: list[tuple[Request, int]]) -> list:
        self._batches += 1
        self._batched_requests += len(items)
        self._running += 1
        try:
            return await asyncio.to_thread(answer, self.recommender, [request for request, _ in items])
        finally:
            self._running -= 1


def _parse(body: bytes) -> Request:
    """The ``Request`` of a JSON body; ValueError / TypeError naming what is wrong."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict) or "session" not in data:
        raise ValueError('the body must be a JSON object with "session" (a list of raw item ids)')
    unknown = set(data) - {"session", "k", "exclude_seen"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; the fields are session, k, exclude_seen")
    session = data["session"]
    if not isinstance(session, list):
        raise TypeError(f"session must be a list of raw item ids, got {type(session).__name__}")
    k = data.get("k", 20)
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {k!r}")
    exclude_seen = data.get("exclude_seen", False)
    if not isinstance(exclude_seen, bool):
        raise TypeError(f"exclude_seen must be true or false, got {exclude_seen!r}")
    return Request(session, k, exclude_seen)


def app(
    bundle: str | os.PathLike,
    *,
    replicas: int | None = None,
    autoscaling: dict[str, Any] | None = None,
    device: str = "cpu",
    threads: int | None = None,
    retrieval: str = "exact",
    max_batch_cost: int = DEFAULT_MAX_BATCH_COST,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    num_cpus: float = 1.0,
    access_log: bool = False,
) -> serve.Application:
    """The Serve application of ``bundle`` (a path every Ray node can read; made absolute).

    ``replicas``: a fixed number of replicas (default 1), or ``autoscaling``: Ray Serve's
    ``autoscaling_config`` (e.g. ``{"min_replicas": 1, "max_replicas": 4,
    "target_ongoing_requests": 32}``); ``num_cpus``: CPUs Ray reserves per replica;
    ``device``/``threads``/``retrieval``: as ``Recommender.load`` (``retrieval="index"``
    serves from the bundle's index; a retrieval-only bundle needs it); ``access_log``:
    Serve's log line per request (off by default: about 6 % of a replica's CPU here).
    """
    if replicas is not None and autoscaling is not None:
        raise ValueError("give either replicas or autoscaling, not both")
    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": num_cpus},
                               "logging_config": {"enable_access_log": bool(access_log)}}
    if autoscaling is None:
        options["num_replicas"] = 1 if replicas is None else positive_int(replicas, "replicas")
    else:
        options["autoscaling_config"] = dict(autoscaling)
    path = os.path.abspath(os.fspath(bundle))
    return RecommenderDeployment.options(**options).bind(
        path, device=device, threads=threads, retrieval=retrieval, max_batch_cost=max_batch_cost,
        batch_wait_ms=batch_wait_ms,
    )


def run(application: serve.Application, *, name: str = "srgnn", host: str = "127.0.0.1", port: int = 8000,
        route_prefix: str = "/") -> str:
    """Start Serve's HTTP proxy on ``host:port`` (when Serve is not running yet) and deploy
    ``application`` as ``name`` at ``route_prefix``; returns its URL (on the proxy that
    really runs) once every replica is ready."""
    from ray.serve.context import _get_global_client

    serve.start(http_options={"host": host, "port": port})
    http = _get_global_client().http_config  # a running Serve keeps its own host and port
    serve.run(application, name=name, route_prefix=route_prefix)
    return f"http://{http.host}:{http.port}{route_prefix}"


def replica_urls(name: str = "srgnn") -> list[str]:
    """The URLs of the application ``name`` on each of its running ingress replicas' own HTTP
    ports (Serve's direct ingress); empty when Serve does not run in that mode."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()  # the controller's view, as Serve's REST API gives it
    return [f"http://{target['ip']}:{target['port']}{group['route_prefix']}"
            for group in details.get("target_groups") or ()
            if group.get("app_name") == name and group.get("protocol") == "HTTP"
            for target in group.get("targets") or ()]


def build(args: dict[str, Any]) -> serve.Application:
    """Application builder for a Serve config file: ``import_path: srgnn_rt.engines.ray_serve:build``,
    ``args``: ``bundle`` and any keyword of ``app``."""
    args = dict(args)
    if "bundle" not in args:
        raise ValueError("the Serve config's args must name the bundle: args: {bundle: /path/to/bundle}")
    return app(args.pop("bundle"), **args)
