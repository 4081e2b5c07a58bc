"""A micro-batcher for services: concurrent single-session requests -> one batched model call.

Each request (one session of raw item ids, a k and keyword options of
``Recommender.recommend``) waits in a bounded queue; one worker thread takes up to
``max_batch`` of them at a time, waiting at most ``max_wait_ms`` after the oldest
arrived for more to come, and answers them with one ``recommend`` call per
distinct (k, options) among them. The worker is the only thread that calls the
recommender, so onnxruntime sees one batched run at a time instead of many small
concurrent ones.

Threads use ``submit`` (a ``concurrent.futures.Future``), asyncio code ``await
recommend(...)``. When a batched call fails, its requests are retried one by one,
so an error reaches the caller whose request caused it and no other. ``close``
stops intake and answers everything already accepted.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from .validation import positive_int
from .vocab import RawId

__all__ = ["BatcherClosedError", "MicroBatcher", "QueueFullError"]


class QueueFullError(RuntimeError):
    """The micro-batcher's queue holds ``max_queue`` requests: the service is overloaded."""


class BatcherClosedError(RuntimeError):
    """A request was submitted after ``MicroBatcher.close``."""


class _BatchRecommender(Protocol):
    def recommend(self, sessions: Sequence[Sequence[RawId]], k: int = 20, **options: Any) -> Sequence[Any]: ...


@dataclass(eq=False)
class _Request:
    session: Sequence[RawId]
    k: Any
    options: dict[str, Any]
    group: tuple[Any, ...]  # requests with equal groups (same k and options, types included) share a call
    arrival: float  # time.monotonic() at submit
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """Batches concurrent ``recommend`` requests for one recommender (usually a ``srgnn_rt.Recommender``).

    ``max_batch``: most sessions per model call; ``max_wait_ms``: longest time the
    oldest waiting request is held back for more to arrive (a full batch goes at
    once); ``max_queue``: most requests waiting at once, beyond which ``submit``
    raises ``QueueFullError``. Use as a context manager, or call ``close``.
    """

    def __init__(
        self, recommender: _BatchRecommender, *, max_batch: int = 64, max_wait_ms: float = 2.0, max_queue: int = 10_000
    ):
        if not callable(getattr(recommender, "recommend", None)):
            raise TypeError(f"recommender must have a recommend(sessions, k, **options) method, got {recommender!r}")
        self._max_batch = positive_int(max_batch, "max_batch")
        self._max_queue = positive_int(max_queue, "max_queue")
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)):
            raise TypeError(f"max_wait_ms must be a number of milliseconds, got {max_wait_ms!r}")
        if not max_wait_ms >= 0:  # NaN fails too
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self._max_wait = max_wait_ms / 1000.0
        self._recommender = recommender
        self._pending: collections.deque[_Request] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._worker = threading.Thread(target=self._serve_forever, name="srgnn-rt-micro-batcher", daemon=True)
        self._worker.start()

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def max_wait_ms(self) -> float:
        return self._max_wait * 1000.0

    @property
    def max_queue(self) -> int:
        return self._max_queue

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """Requests accepted and not yet taken into a batch."""
        return len(self._pending)

    def submit(self, session: Sequence[RawId], k: int = 20, **options: Any) -> Future:
        """Queue one session of raw item ids; the Future's result is its ``Recommendation``.

        ``options`` are keyword arguments of the recommender's ``recommend`` (e.g.
        ``exclude_seen=True``); their values must be hashable. Invalid sessions, k or
        options are reported through the Future (as ``recommend`` raises them).
        Raises ``QueueFullError`` when ``max_queue`` requests are waiting and
        ``BatcherClosedError`` after ``close``.
        """
        # Types are part of the group, so that k=1 and k=True are never answered by one call.
        group = tuple((name, type(value), value) for name, value in sorted({"k": k, **options}.items()))
        try:
            hash(group)
        except TypeError:
            unhashable = [name for name, _, value in group if not _hashable(value)]
            raise TypeError(
                f"MicroBatcher.submit: {', '.join(unhashable)} must be hashable (requests are grouped by k and options)"
            ) from None
        request = _Request(session, k, options, group, time.monotonic())
        with self._lock:
            if self._closed:
                raise BatcherClosedError("MicroBatcher is closed; it accepts no new requests")
            if len(self._pending) >= self._max_queue:
                raise QueueFullError(
                    f"MicroBatcher queue is full: {len(self._pending)} requests are waiting (max_queue = "
                    f"{self._max_queue}); the service is overloaded, retry later or raise max_queue"
                )
            self._pending.append(request)
            waiting = len(self._pending)
            # The worker waits for the first request, then for a full batch or its deadline.
            if waiting == 1 or waiting == self._max_batch:
                self._wake.notify()
        return request.future

    async def recommend(self, session: Sequence[RawId], k: int = 20, **options: Any) -> Any:
        """``submit`` for asyncio: await the ``Recommendation`` of one session.

        Cancelling the awaiting task withdraws the request if it has not started.
        """
        return await asyncio.wrap_future(self.submit(session, k, **options))

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting requests and wait until every accepted one is answered.

        Requests still waiting are batched and answered as usual, none is dropped.
        Raises ``TimeoutError`` when that takes longer than ``timeout`` seconds (the
        worker goes on answering them). Closing twice is harmless.
        """
        with self._lock:
            self._closed = True
            self._wake.notify()
        self._worker.join(timeout)
        if self._worker.is_alive():
            raise TimeoutError(
                f"MicroBatcher.close: {len(self._pending)} requests still waiting after {timeout} s; "
                "they are still being answered"
            )

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _serve_forever(self) -> None:
        while (batch := self._next_batch()) is not None:
            groups: dict[tuple[Any, ...], list[_Request]] = {}
            for request in batch:
                if request.future.set_running_or_notify_cancel():  # False: cancelled while waiting
                    groups.setdefault(request.group, []).append(request)
            for requests in groups.values():
                self._answer(requests)

    def _next_batch(self) -> list[_Request] | None:
        """Up to ``max_batch`` requests, oldest first, once the batch is full, the oldest one's
        wait is over or the batcher is closing; None when closed and nothing is left."""
        with self._lock:
            while not self._pending:
                if self._closed:
                    return None
                self._wake.wait()
            deadline = self._pending[0].arrival + self._max_wait
            while len(self._pending) < self._max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.wait(remaining)
            size = min(len(self._pending), self._max_batch)
            return [self._pending.popleft() for _ in range(size)]

    def _answer(self, requests: list[_Request]) -> None:
        """One ``recommend`` call for requests of one group; one call each if it fails."""
        first = requests[0]
        try:
            results = self._recommender.recommend([request.session for request in requests], first.k, **first.options)
            if len(results) != len(requests):
                raise RuntimeError(
                    f"{type(self._recommender).__name__}.recommend returned {len(results)} results "
                    f"for {len(requests)} sessions"
                )
        except Exception as exc:
            if len(requests) == 1:
                requests[0].future.set_exception(exc)
                return
            for request in requests:
                self._answer([request])
            return
        for request, result in zip(requests, results):
            request.future.set_result(result)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
