"""A micro-batcher for services: concurrent single-session requests -> one batched model call.

Each request (one session of raw item ids, a k and keyword options of
``Recommender.recommend``) waits in a bounded queue; a worker thread takes
batches of them, waiting at most ``max_wait_ms`` after the oldest arrived for more
to come, and answers each batch with one ``recommend`` call per distinct (k,
options) among it, so that onnxruntime sees batched runs instead of many small
concurrent ones.

A batch holds at most ``max_batch`` requests and costs at most ``max_batch_cost``,
its cost being its number of requests times the cost of its costliest one (the
clicks the model works on once the batch is padded to its longest session). A
request's cost is ``recommender.request_cost(session)`` when the recommender has
it (the clicks kept after its cut), else ``len(session)``; one that cannot be
measured counts as over the budget. Requests that do not fit a batch wait for the
next one. A request that costs more than ``max_batch_cost`` by itself goes to a
second worker thread, which answers such requests one at a time: so a huge
session never makes short ones pay its padding, nor wait for its run, and hostile
huge requests delay only each other. (The recommender is called from these two
threads, at most one call each at a time: it must be thread-safe, as
``Recommender`` is.)

Threads use ``submit`` (a ``concurrent.futures.Future``), asyncio code ``await
recommend(...)``. When a batched call fails, its requests are split in halves and
retried, down to one request per call (``recommend_each``), so an error reaches the
caller whose request caused it and no other. ``close`` stops intake and answers
everything already accepted.

Every accepted request completes. Should a worker stop on something it cannot
answer after (a ``BaseException`` such as ``SystemExit`` raised inside
``recommend``, or a bug here), every request it holds and every waiting one fails
with ``BatcherBrokenError``, and the batcher refuses new ones with that error;
``close`` raises it too. An unreferenced batcher is closed by a finalizer (its
workers hold no reference to it), and one left open at interpreter exit does not
delay the exit.
"""

from __future__ import annotations

import asyncio
import collections
import numbers
import operator
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Protocol

from .validation import positive_int
from .vocab import RawId

__all__ = ["BatcherBrokenError", "BatcherClosedError", "MicroBatcher", "QueueFullError", "recommend_each"]

MAX_WAIT_MS = 3_600_000.0
"""Largest ``max_wait_ms`` (an hour): a longer wait for a batch is a mistake, not a setting."""
DEFAULT_MAX_BATCH_COST = 4096
"""Default ``max_batch_cost``: 64 sessions of up to 64 clicks, or fewer longer ones."""
_LOOKAHEAD = 256  # requests that do not fit the batch being formed, skipped before it is cut
_FINALIZER_JOIN_S = 1.0  # how long a finalizer waits for an idle worker to end


class QueueFullError(RuntimeError):
    """The micro-batcher's queue holds ``max_queue`` requests: the service is overloaded."""


class BatcherClosedError(RuntimeError):
    """A request was submitted after ``MicroBatcher.close``."""


class BatcherBrokenError(BatcherClosedError):
    """The micro-batcher's worker stopped on an error (its ``__cause__``): the requests it held
    failed with this error, and it accepts no new ones."""


class _BatchRecommender(Protocol):
    def recommend(self, sessions: Sequence[Sequence[RawId]], k: int = 20, **options: Any) -> Sequence[Any]: ...


@dataclass(eq=False)
class _Request:
    session: Sequence[RawId]
    k: Any
    options: dict[str, Any]
    group: tuple[Any, ...]  # requests with equal groups (same k and options, types included) share a call
    cost: int  # >= 1; above max_batch_cost: runs alone, on the solo lane
    arrival: float  # time.monotonic() at submit
    future: Future = field(default_factory=Future)


class _Lane:
    """Requests waiting for one worker thread, and the batch it is answering."""

    def __init__(self, lock: threading.RLock):
        self.wake = threading.Condition(lock)
        self.pending: collections.deque[_Request] = collections.deque()
        self.pending_cost = 0  # sum of the pending requests' costs
        self.in_flight: list[_Request] = []

    def idle(self) -> bool:
        return not self.pending and all(request.future.done() for request in self.in_flight)


class _Worker:
    """The queues and the worker loops of one ``MicroBatcher``.

    Two threads run ``serve_forever``: one on the ``batches`` lane, one on the ``solo``
    lane (requests that cost more than a batch may, one at a time). They hold this
    object, never the ``MicroBatcher``, so that an unreferenced batcher can be finalized.
    """

    def __init__(self, recommender: _BatchRecommender, max_batch: int, max_batch_cost: int, max_wait: float,
                 max_queue: int):
        self.recommender = recommender
        self.max_batch = max_batch
        self.max_batch_cost = max_batch_cost
        self.max_wait = max_wait
        self.max_queue = max_queue
        # Reentrant: a finalizer may run on a worker thread (a garbage collection there) while it holds the lock.
        self.lock = threading.RLock()
        self.batches = _Lane(self.lock)
        self.solo = _Lane(self.lock)
        self.closed = False
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self.batches.pending) + len(self.solo.pending)

    def accept(self, request: _Request) -> None:
        with self.lock:
            if self.failure is not None:
                raise self.broken_error() from self.failure
            if self.closed:
                raise BatcherClosedError("MicroBatcher is closed; it accepts no new requests")
            if len(self) >= self.max_queue:
                raise QueueFullError(
                    f"MicroBatcher queue is full: {len(self)} requests are waiting (max_queue = "
                    f"{self.max_queue}); the service is overloaded, retry later or raise max_queue"
                )
            lane = self.solo if request.cost > self.max_batch_cost else self.batches
            lane.pending.append(request)
            cost_before = lane.pending_cost
            lane.pending_cost += request.cost
            waiting = len(lane.pending)
            # A worker waits for the first request, then for a full batch or its deadline.
            if waiting == 1 or waiting == self.max_batch or cost_before < self.max_batch_cost <= lane.pending_cost:
                lane.wake.notify()

    def close(self) -> bool:
        """Stop intake; True when the workers have nothing left to answer (they end at once)."""
        with self.lock:
            self.closed = True
            for lane in (self.batches, self.solo):
                lane.wake.notify()
            return self.batches.idle() and self.solo.idle()

    def broken_error(self) -> BatcherBrokenError:
        failure = self.failure
        return BatcherBrokenError(
            f"MicroBatcher is broken: its worker stopped on {type(failure).__name__}: {failure}; "
            "it accepts no new requests (create a new one)"
        )

    def serve_forever(self, lane: _Lane) -> None:
        try:
            while (batch := self._next_batch(lane)) is not None:
                self._run(batch)
        except BaseException as exc:  # anything: answer every request held, then refuse new ones
            self._break_down(exc, lane)

    def _next_batch(self, lane: _Lane) -> list[_Request] | None:
        """The lane's next batch (see ``_take``; one request on the solo lane) once it is full, the
        oldest request's wait is over or the batcher is closing; None when closed and nothing is left."""
        with self.lock:
            lane.in_flight = []
            while not lane.pending:
                if self.closed:
                    return None
                lane.wake.wait()
            if lane is self.solo:
                request = lane.pending.popleft()
                lane.pending_cost -= request.cost
                lane.in_flight = [request]
                return lane.in_flight
            deadline = lane.pending[0].arrival + self.max_wait
            while (not self.closed and len(lane.pending) < self.max_batch
                   and lane.pending_cost < self.max_batch_cost):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                lane.wake.wait(remaining)
            lane.in_flight = self._take(lane)
            return lane.in_flight

    def _take(self, lane: _Lane) -> list[_Request]:
        """Pending requests, oldest first, that fit one batch: at most ``max_batch``, count x
        largest cost <= ``max_batch_cost``. Those that do not fit stay at the front, in order."""
        batch: list[_Request] = []
        skipped: list[_Request] = []
        largest = 0
        while lane.pending and len(batch) < self.max_batch and len(skipped) < _LOOKAHEAD:
            if (len(batch) + 1) * largest > self.max_batch_cost:
                break  # nothing more can fit
            request = lane.pending.popleft()
            cost = max(largest, request.cost)
            if (len(batch) + 1) * cost <= self.max_batch_cost:  # always true for the oldest
                batch.append(request)
                largest = cost
            else:
                skipped.append(request)
        lane.pending.extendleft(reversed(skipped))
        lane.pending_cost -= sum(request.cost for request in batch)
        return batch

    def _run(self, batch: list[_Request]) -> None:
        groups: dict[tuple[Any, ...], list[_Request]] = {}
        for request in batch:
            if not request.future.set_running_or_notify_cancel():  # cancelled while waiting
                continue
            try:
                groups.setdefault(request.group, []).append(request)
            except Exception as exc:  # an option whose __eq__ / __hash__ raises
                request.future.set_exception(exc)
        for requests in groups.values():
            self._answer(requests)

    def _answer(self, requests: list[_Request]) -> None:
        """Requests of one group, answered by ``recommend_each``."""
        first = requests[0]
        answers = recommend_each(self.recommender, [request.session for request in requests], first.k, first.options)
        for request, answer in zip(requests, answers):
            if isinstance(answer, Exception):
                request.future.set_exception(answer)
            else:
                request.future.set_result(answer)

    def _break_down(self, cause: BaseException, lane: _Lane) -> None:
        """Mark the batcher broken; fail every request waiting and those of ``lane``'s batch with
        ``BatcherBrokenError`` (the other lane's batch is answered as usual, then its thread ends)."""
        with self.lock:
            self.failure = cause
            self.closed = True
            held = lane.in_flight + list(self.batches.pending) + list(self.solo.pending)
            lane.in_flight = []
            for each in (self.batches, self.solo):
                each.pending.clear()
                each.pending_cost = 0
                each.wake.notify()
        for request in held:
            if request.future.done():
                continue
            error = self.broken_error()
            error.__cause__ = cause
            try:
                request.future.set_exception(error)
            except InvalidStateError:  # cancelled meanwhile
                pass


def recommend_each(
    recommender: _BatchRecommender, sessions: Sequence[Sequence[RawId]], k: Any, options: Mapping[str, Any]
) -> list[Any]:
    """``recommender.recommend(sessions, k, **options)`` where a bad session fails alone.

    Element i is session i's result, or the ``Exception`` that ``recommend`` raises
    for session i alone (results themselves must not be exceptions). A call that
    fails is retried on each half of its sessions, so one bad session among n costs
    about 2 log2(n) more calls, not n.
    """
    try:
        results = list(recommender.recommend(sessions, k, **options))
        if len(results) != len(sessions):
            raise RuntimeError(
                f"{type(recommender).__name__}.recommend returned {len(results)} results for {len(sessions)} sessions"
            )
        return results
    except Exception as exc:
        if len(sessions) == 1:
            return [exc]
        half = len(sessions) // 2
        return (recommend_each(recommender, sessions[:half], k, options)
                + recommend_each(recommender, sessions[half:], k, options))


def _release(worker: _Worker, threads: tuple[threading.Thread, ...]) -> None:
    """Finalizer of a ``MicroBatcher`` (unreferenced, or still open at interpreter exit): stop
    intake; the workers answer what they hold, then end. Waits (briefly) only for idle workers,
    so that exit is never held up by a long call."""
    if worker.close() and threading.current_thread() not in threads:
        for thread in threads:
            thread.join(_FINALIZER_JOIN_S)


class MicroBatcher:
    """Batches concurrent ``recommend`` requests for one recommender (usually a ``srgnn_rt.Recommender``).

    ``max_batch``: most requests per batch; ``max_batch_cost``: most a batch may cost
    (requests x the costliest one's clicks, see the module docstring); ``max_wait_ms``:
    longest time (0 to an hour) the oldest waiting request is held back for more to
    arrive (a full batch goes at once); ``max_queue``: most requests waiting at once,
    beyond which ``submit`` raises ``QueueFullError``. Use as a context manager, or
    call ``close``.
    """

    def __init__(
        self,
        recommender: _BatchRecommender,
        *,
        max_batch: int = 64,
        max_batch_cost: int = DEFAULT_MAX_BATCH_COST,
        max_wait_ms: float = 2.0,
        max_queue: int = 10_000,
    ):
        if not callable(getattr(recommender, "recommend", None)):
            raise TypeError(f"recommender must have a recommend(sessions, k, **options) method, got {recommender!r}")
        request_cost = getattr(recommender, "request_cost", None)
        self._measure: Callable[[Any], Any] = request_cost if callable(request_cost) else len
        self._worker = _Worker(
            recommender,
            max_batch=positive_int(max_batch, "max_batch"),
            max_batch_cost=positive_int(max_batch_cost, "max_batch_cost"),
            max_wait=_milliseconds(max_wait_ms, "max_wait_ms") / 1000.0,
            max_queue=positive_int(max_queue, "max_queue"),
        )
        self._threads = tuple(
            threading.Thread(target=self._worker.serve_forever, args=(lane,), name=name, daemon=True)
            for lane, name in ((self._worker.batches, "srgnn-rt-micro-batcher"),
                               (self._worker.solo, "srgnn-rt-micro-batcher-solo"))
        )
        for thread in self._threads:
            thread.start()
        weakref.finalize(self, _release, self._worker, self._threads)

    @property
    def max_batch(self) -> int:
        return self._worker.max_batch

    @property
    def max_batch_cost(self) -> int:
        return self._worker.max_batch_cost

    @property
    def max_wait_ms(self) -> float:
        return self._worker.max_wait * 1000.0

    @property
    def max_queue(self) -> int:
        return self._worker.max_queue

    @property
    def closed(self) -> bool:
        """True after ``close`` and once broken."""
        return self._worker.closed

    @property
    def failure(self) -> BaseException | None:
        """What stopped the worker when the batcher is broken, else None."""
        return self._worker.failure

    def __len__(self) -> int:
        """Requests accepted and not yet taken into a batch."""
        return len(self._worker)

    def submit(self, session: Sequence[RawId], k: int = 20, **options: Any) -> Future:
        """Queue one session of raw item ids; the Future's result is its ``Recommendation``.

        ``options`` are keyword arguments of the recommender's ``recommend`` (e.g.
        ``exclude_seen=True``); their values must be hashable. Invalid sessions, k or
        options are reported through the Future (as ``recommend`` raises them).
        Raises ``QueueFullError`` when ``max_queue`` requests are waiting,
        ``BatcherClosedError`` after ``close`` and ``BatcherBrokenError`` once broken.
        """
        # Types are part of the group, so that k=1 and k=True are never answered by one call.
        group = (type(k), k, *[(name, type(options[name]), options[name]) for name in sorted(options)])
        try:
            hash(group)
        except Exception:
            named = {"k": k, **options}
            unhashable = [name for name, value in named.items() if not _hashable(value)]
            raise TypeError(
                f"MicroBatcher.submit: {', '.join(unhashable)} must be hashable (requests are grouped by k and options)"
            ) from None
        request = _Request(session, k, options, group, self._cost(session), time.monotonic())
        self._worker.accept(request)
        return request.future

    async def recommend(self, session: Sequence[RawId], k: int = 20, **options: Any) -> Any:
        """``submit`` for asyncio: await the ``Recommendation`` of one session.

        Cancelling the awaiting task withdraws the request if it has not started.
        """
        return await asyncio.wrap_future(self.submit(session, k, **options))

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting requests and wait until every accepted one is answered.

        Requests still waiting are batched and answered as usual, none is dropped.
        Raises ``TimeoutError`` when that takes longer than ``timeout`` seconds (None or
        inf: no limit; the worker goes on answering them), and ``BatcherBrokenError``
        when a worker stopped on an error. Closing twice is harmless. Called on a
        worker thread (from a Future's done-callback) it does not wait.
        """
        timeout = _timeout(timeout)
        self._worker.close()
        if threading.current_thread() not in self._threads:
            deadline = None if timeout is None else time.monotonic() + timeout
            for thread in self._threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if any(thread.is_alive() for thread in self._threads):
                raise TimeoutError(
                    f"MicroBatcher.close: {len(self)} requests still waiting after {timeout} s; "
                    "they are still being answered"
                )
        if self._worker.failure is not None:
            raise self._worker.broken_error() from self._worker.failure

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _cost(self, session: Any) -> int:
        """The request's cost (>= 1); one that cannot be measured is likely invalid and runs alone,
        so that its error is its own."""
        try:
            return max(1, operator.index(self._measure(session)))
        except Exception:
            return self._worker.max_batch_cost + 1


def _milliseconds(value: Any, name: str) -> float:
    """``value`` as a float in [0, MAX_WAIT_MS]: TypeError for non-numbers (bools included),
    ValueError for NaN, infinities and values out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of milliseconds, got {value!r}")
    try:
        milliseconds = float(value)
    except (OverflowError, ValueError):
        milliseconds = float("nan")
    if not 0 <= milliseconds <= MAX_WAIT_MS:  # NaN fails too
        raise ValueError(f"{name} must be in 0..{MAX_WAIT_MS:.0f} (an hour), got {value!r}")
    return milliseconds


def _timeout(value: Any) -> float | None:
    """A join timeout: None (or inf, or beyond what threads can wait) for no limit, else seconds >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"timeout must be None or a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int or fraction beyond floats
        seconds = float("inf") if value > 0 else float("-inf")
    if not seconds >= 0:
        raise ValueError(f"timeout must be None or >= 0 seconds, got {value!r}")
    return None if seconds > threading.TIMEOUT_MAX else seconds


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except Exception:
        return False
    return True
