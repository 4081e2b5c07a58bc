"""The micro-batcher: results equal direct calls, errors stay with their request, nothing is lost.

Most tests use ``_EchoRecommender``, a reference recommender whose answer to a
session is the session itself with the k and options it was asked with, and which
can hold the worker inside a call (``gate``) so that batches form deterministically.
One test serves a real bundle.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import threading
import weakref
from concurrent.futures import CancelledError

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srgnn_rt import batcher as batcher_module
from srgnn_rt.batcher import BatcherBrokenError, BatcherClosedError, MicroBatcher, QueueFullError


def _echo(session, k, options) -> tuple:
    return tuple(session), k, tuple(sorted(options.items()))


class _EchoRecommender:
    """Answers each session with ``_echo(session, k, options)``; an item id < 1 raises ValueError
    naming the session's index in the call. Records every call; while ``gate`` is clear, calls
    wait for it (``entered`` is set once the first call has started)."""

    def __init__(self, *, gated: bool = False):
        self.calls: list[tuple[list[tuple], object, dict]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def recommend(self, sessions, k=20, **options):
        self.calls.append(([tuple(s) for s in sessions], k, options))
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        for index, session in enumerate(sessions):
            for position, item in enumerate(session):
                if item < 1:
                    raise ValueError(f"session {index} has item id {item} at position {position}")
        return [_echo(session, k, options) for session in sessions]

    @property
    def batch_sizes(self) -> list[int]:
        return [len(sessions) for sessions, _, _ in self.calls]


class _CostedRecommender(_EchoRecommender):
    """An ``_EchoRecommender`` whose requests cost their clicks, at most ``cut`` (as a recommender
    that keeps the last ``cut`` clicks); a session holding 999 cannot be measured."""

    def __init__(self, *, cut: int, gated: bool = False):
        super().__init__(gated=gated)
        self.cut = cut

    def request_cost(self, session) -> int:
        if 999 in session:
            raise ValueError("unmeasurable")
        return min(len(session), self.cut)


class _Exploding(_EchoRecommender):
    """An ``_EchoRecommender`` that raises ``error`` on any batch holding the item 999."""

    def __init__(self, error: BaseException, *, gated: bool = False):
        super().__init__(gated=gated)
        self.error = error

    def recommend(self, sessions, k=20, **options):
        answers = super().recommend(sessions, k, **options)
        if any(999 in session for session in sessions):
            raise self.error
        return answers


class _Unsized:
    """The session [7, 8] without a len()."""

    def __iter__(self):
        return iter([7, 8])


def _worker_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("srgnn-rt-micro-batcher")}


def _hold_worker(batcher: MicroBatcher, recommender: _EchoRecommender) -> None:
    """Submit one request and wait until the worker is inside its call, held by the gate."""
    batcher.submit([1])
    assert recommender.entered.wait(5)


def test_results_are_those_of_direct_calls_in_submission_order():
    recommender = _EchoRecommender()
    sessions = [[i, i + 1, i % 7 + 1] for i in range(1, 300)]
    with MicroBatcher(recommender, max_batch=16, max_wait_ms=1.0) as batcher:
        futures = [batcher.submit(session, k=5) for session in sessions]
        assert [f.result(timeout=10) for f in futures] == [_echo(s, 5, {}) for s in sessions]
    assert max(recommender.batch_sizes) <= 16


def test_waiting_requests_form_batches_of_at_most_max_batch():
    recommender = _EchoRecommender(gated=True)
    with MicroBatcher(recommender, max_batch=4, max_wait_ms=0.0) as batcher:
        _hold_worker(batcher, recommender)
        futures = [batcher.submit([i]) for i in range(1, 11)]
        recommender.gate.set()
        assert [f.result(timeout=10) for f in futures] == [_echo([i], 20, {}) for i in range(1, 11)]
    assert recommender.batch_sizes == [1, 4, 4, 2]


def test_requests_are_grouped_by_k_and_options_with_their_types():
    recommender = _EchoRecommender(gated=True)
    requests = [([1], 5, {}), ([2], 10, {}), ([3], 5, {"exclude_seen": True}), ([4], 5, {}),
                ([5], 1, {}), ([6], True, {}), ([7], 10, {"exclude_seen": True})]
    with MicroBatcher(recommender) as batcher:
        _hold_worker(batcher, recommender)
        futures = [batcher.submit(session, k, **options) for session, k, options in requests]
        recommender.gate.set()
        for future, (session, k, options) in zip(futures, requests):
            result = future.result(timeout=10)
            assert result == _echo(session, k, options) and type(result[1]) is type(k)
    calls = sorted((sessions, repr(k), sorted(options.items())) for sessions, k, options in recommender.calls[1:])
    assert calls == sorted([
        ([(1,), (4,)], "5", []), ([(2,)], "10", []), ([(3,)], "5", [("exclude_seen", True)]),
        ([(5,)], "1", []), ([(6,)], "True", []), ([(7,)], "10", [("exclude_seen", True)]),
    ])


def test_an_error_reaches_only_the_request_that_caused_it():
    recommender = _EchoRecommender(gated=True)
    sessions = [[1, 2], [3, 0], [4], [-5, 6], [7]]
    with MicroBatcher(recommender) as batcher:
        _hold_worker(batcher, recommender)
        futures = [batcher.submit(session) for session in sessions]
        recommender.gate.set()
        assert futures[0].result(timeout=10) == _echo([1, 2], 20, {})
        assert futures[2].result(timeout=10) == _echo([4], 20, {})
        assert futures[4].result(timeout=10) == _echo([7], 20, {})
        # Retried in halves down to one, the bad session is session 0 of its call, as for a direct call.
        with pytest.raises(ValueError, match="session 0 has item id 0 at position 1"):
            futures[1].result(timeout=10)
        with pytest.raises(ValueError, match="session 0 has item id -5 at position 0"):
            futures[3].result(timeout=10)
    assert recommender.batch_sizes == [1, 5, 2, 1, 1, 3, 1, 2, 1, 1]


def test_a_wrong_number_of_results_is_an_error_for_each_request():
    class Short:
        def recommend(self, sessions, k=20):
            return []

    with MicroBatcher(Short()) as batcher:
        with pytest.raises(RuntimeError, match="returned 0 results for 1 sessions"):
            batcher.submit([1]).result(timeout=10)


def test_close_answers_every_accepted_request():
    recommender = _EchoRecommender()
    batcher = MicroBatcher(recommender, max_batch=1000, max_wait_ms=60_000)
    futures = [batcher.submit([i]) for i in range(1, 101)]
    batcher.close(timeout=10)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [_echo([i], 20, {}) for i in range(1, 101)]
    assert batcher.closed
    with pytest.raises(BatcherClosedError, match="closed"):
        batcher.submit([1])
    batcher.close()


def test_close_times_out_while_a_call_runs_and_still_drains():
    recommender = _EchoRecommender(gated=True)
    batcher = MicroBatcher(recommender)
    _hold_worker(batcher, recommender)
    waiting = [batcher.submit([i]) for i in range(2, 6)]
    with pytest.raises(TimeoutError, match="4 requests still waiting"):
        batcher.close(timeout=0.05)
    recommender.gate.set()
    batcher.close(timeout=10)
    assert [f.result() for f in waiting] == [_echo([i], 20, {}) for i in range(2, 6)]


def test_a_full_queue_rejects_at_submit_and_loses_nothing():
    recommender = _EchoRecommender(gated=True)
    with MicroBatcher(recommender, max_queue=3) as batcher:
        _hold_worker(batcher, recommender)
        accepted = [batcher.submit([i]) for i in range(2, 5)]
        assert len(batcher) == 3
        with pytest.raises(QueueFullError, match=r"3 requests are waiting \(max_queue = 3\)"):
            batcher.submit([9])
        recommender.gate.set()
        assert [f.result(timeout=10) for f in accepted] == [_echo([i], 20, {}) for i in range(2, 5)]
        assert batcher.submit([9]).result(timeout=10) == _echo([9], 20, {})


def test_a_cancelled_request_is_never_run():
    recommender = _EchoRecommender(gated=True)
    with MicroBatcher(recommender) as batcher:
        _hold_worker(batcher, recommender)
        cancelled, kept = batcher.submit([2]), batcher.submit([3])
        assert cancelled.cancel()
        recommender.gate.set()
        assert kept.result(timeout=10) == _echo([3], 20, {})
        with pytest.raises(CancelledError):
            cancelled.result()
    assert [(2,)] not in [sessions for sessions, _, _ in recommender.calls]


def test_asyncio_callers_get_results_and_their_own_errors():
    recommender = _EchoRecommender()

    async def serve(batcher: MicroBatcher):
        good = [batcher.recommend([i, i + 1], k=3) for i in range(1, 51)]
        bad = batcher.recommend([0], k=3)
        return await asyncio.gather(*good, bad, return_exceptions=True)

    with MicroBatcher(recommender, max_wait_ms=5.0) as batcher:
        results = asyncio.run(serve(batcher))
    assert results[:50] == [_echo([i, i + 1], 3, {}) for i in range(1, 51)]
    assert isinstance(results[50], ValueError)


def test_many_threads_each_get_their_own_results():
    recommender = _EchoRecommender()
    answers: dict[int, list] = {}

    def client(number: int):
        sessions = [[number, j] for j in range(1, 41)]
        answers[number] = [(batcher.submit(s, k=number).result(timeout=30), s) for s in sessions]

    with MicroBatcher(recommender, max_batch=8, max_wait_ms=1.0) as batcher:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(1, 17)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert sorted(answers) == list(range(1, 17))
    for number, pairs in answers.items():
        assert all(result == _echo(session, number, {}) for result, session in pairs)
    assert sum(recommender.batch_sizes) == 16 * 40


@settings(max_examples=40, deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.lists(st.integers(-1, 5), min_size=1, max_size=4), st.sampled_from([1, 2, 20]), st.booleans()),
        min_size=1, max_size=30,
    ),
    max_batch=st.integers(1, 8),
)
def test_batched_answers_equal_one_direct_call_per_request(requests, max_batch):
    reference = _EchoRecommender()

    def direct(session, k, exclude_seen):
        try:
            return reference.recommend([session], k, exclude_seen=exclude_seen)[0]
        except ValueError as exc:
            return str(exc)

    recommender = _EchoRecommender(gated=True)
    with MicroBatcher(recommender, max_batch=max_batch, max_wait_ms=0.0) as batcher:
        _hold_worker(batcher, recommender)
        futures = [batcher.submit(session, k, exclude_seen=flag) for session, k, flag in requests]
        recommender.gate.set()
        answers = [f.result(timeout=10) if f.exception(timeout=10) is None else str(f.exception()) for f in futures]
    assert answers == [direct(*request) for request in requests]
    assert max(recommender.batch_sizes) <= max_batch


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_batch": 0}, ValueError, "max_batch must be >= 1, got 0"),
        ({"max_batch": 2.5}, TypeError, "max_batch must be an int"),
        ({"max_queue": True}, TypeError, "max_queue must be an int"),
        ({"max_batch_cost": 0}, ValueError, "max_batch_cost must be >= 1, got 0"),
        ({"max_batch_cost": np.bool_(True)}, TypeError, "max_batch_cost must be an int"),
        ({"max_wait_ms": -1}, ValueError, r"max_wait_ms must be in 0..3600000 \(an hour\), got -1"),
        ({"max_wait_ms": float("nan")}, ValueError, "max_wait_ms must be in 0..3600000 .*, got nan"),
        ({"max_wait_ms": float("inf")}, ValueError, "max_wait_ms must be in 0..3600000 .*, got inf"),
        ({"max_wait_ms": 9.3e12}, ValueError, "max_wait_ms must be in 0..3600000 .*, got 9300000000000.0"),
        ({"max_wait_ms": 10**400}, ValueError, "max_wait_ms must be in 0..3600000"),
        ({"max_wait_ms": True}, TypeError, "max_wait_ms must be a number of milliseconds, got True"),
        ({"max_wait_ms": "2"}, TypeError, "max_wait_ms must be a number of milliseconds, got '2'"),
        ({"max_wait_ms": None}, TypeError, "max_wait_ms must be a number of milliseconds, got None"),
    ],
)
def test_bad_settings_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        MicroBatcher(_EchoRecommender(), **kwargs)


def test_numpy_settings_and_close_timeouts_are_accepted():
    batcher = MicroBatcher(_EchoRecommender(), max_batch=np.int64(8), max_wait_ms=np.float32(1.5))
    assert (batcher.max_batch, batcher.max_wait_ms) == (8, 1.5)
    for bad, error in (("1", TypeError), (True, TypeError), (-1, ValueError), (float("nan"), ValueError)):
        with pytest.raises(error, match="timeout must be None or"):
            batcher.close(timeout=bad)
    assert not batcher.closed
    assert batcher.submit([1]).result(timeout=10) == _echo([1], 20, {})
    batcher.close(timeout=float("inf"))
    batcher.close(timeout=10**400)


def test_bad_recommender_and_unhashable_options_are_rejected():
    with pytest.raises(TypeError, match="must have a recommend"):
        MicroBatcher(object())
    with MicroBatcher(_EchoRecommender()) as batcher:
        with pytest.raises(TypeError, match="exclude_seen must be hashable"):
            batcher.submit([1], exclude_seen=[True])
        with pytest.raises(TypeError, match="k must be hashable"):
            batcher.submit([1], k=[20])


def _same_ranking(got, expected) -> bool:
    """Equal scores (float32 tolerance) and equal ids, except for the order of near-tied items."""
    if not np.allclose(got.scores, expected.scores, rtol=1e-5, atol=1e-5):
        return False
    tied = np.isclose(expected.scores[:, None], expected.scores[None, :], rtol=1e-5, atol=1e-5)
    return all(got.items[i] == expected.items[i] or tied[i].sum() > 1 for i in range(len(expected.items)))


def test_serving_a_bundle_matches_direct_calls(synthetic_bundle):
    from srgnn_rt.runtime import Recommender

    recommender = Recommender.load(synthetic_bundle, device="cpu", threads=1)
    raw_ids = recommender.bundle.vocab.raw_ids
    rng = np.random.default_rng(0)
    requests = [
        ([raw_ids[i] for i in rng.integers(0, len(raw_ids), size=rng.integers(1, 12))], int(k), bool(flag))
        for k, flag in zip(rng.choice([5, 20], size=120), rng.integers(0, 2, size=120))
    ]
    with MicroBatcher(recommender, max_batch=16, max_wait_ms=2.0) as batcher:
        futures = [batcher.submit(session, k, exclude_seen=flag) for session, k, flag in requests]
        unknown = batcher.submit([raw_ids[0], -12345], unknown="error")
        answers = [f.result(timeout=60) for f in futures]
        with pytest.raises(ValueError, match="unknown item id -12345 at position 1"):
            unknown.result(timeout=60)
    for answer, (session, k, flag) in zip(answers, requests):
        direct = recommender.recommend_one(session, k, exclude_seen=flag)
        assert _same_ranking(answer, direct)


def test_a_costly_request_runs_alone_and_short_ones_do_not_wait_for_it():
    long_gate = threading.Event()

    class SlowOnLong(_EchoRecommender):
        def recommend(self, sessions, k=20, **options):
            if any(len(session) > 100 for session in sessions):
                assert long_gate.wait(10), "test gate never opened"
            return super().recommend(sessions, k, **options)

    recommender = SlowOnLong()
    with MicroBatcher(recommender, max_batch=15, max_batch_cost=64, max_wait_ms=60_000) as batcher:
        huge = batcher.submit(list(range(1, 1001)))
        small = [batcher.submit([i, i + 1, i + 2]) for i in range(1, 16)]
        assert [f.result(timeout=10) for f in small] == [_echo([i, i + 1, i + 2], 20, {}) for i in range(1, 16)]
        assert not huge.done()  # still running, alone
        long_gate.set()
        assert huge.result(timeout=10) == _echo(list(range(1, 1001)), 20, {})
    assert sorted(recommender.batch_sizes) == [1, 15]
    assert [tuple(range(1, 1001))] in [sessions for sessions, _, _ in recommender.calls]


def test_batches_are_cut_by_count_times_the_costliest_request():
    recommender = _EchoRecommender(gated=True)
    lengths = [3, 3, 10, 3, 3, 3, 3, 20, 3, 3]
    with MicroBatcher(recommender, max_batch=8, max_batch_cost=40, max_wait_ms=0.0) as batcher:
        _hold_worker(batcher, recommender)
        futures = [batcher.submit([n] * n) for n in lengths]
        recommender.gate.set()
        assert [f.result(timeout=10) for f in futures] == [_echo([n] * n, 20, {}) for n in lengths]
    # [3, 3, 10, 3] costs 4 x 10; 20 clicks fit beside at most one other: the 3s behind it go first.
    assert [[len(s) for s in sessions] for sessions, _, _ in recommender.calls[1:]] == [
        [3, 3, 10, 3], [3, 3, 3, 3, 3], [20]]


def test_the_recommenders_request_cost_is_used_and_an_unmeasurable_request_runs_alone():
    recommender = _CostedRecommender(cut=4, gated=True)
    with MicroBatcher(recommender, max_batch=64, max_batch_cost=64, max_wait_ms=0.0) as batcher:
        _hold_worker(batcher, recommender)
        long = [batcher.submit(list(range(1, 101))) for _ in range(16)]  # cost 4 each: one batch
        odd = batcher.submit([1, 999])
        recommender.gate.set()
        assert all(f.result(timeout=10) == _echo(list(range(1, 101)), 20, {}) for f in long)
        assert odd.result(timeout=10) == _echo([1, 999], 20, {})
    assert sorted(recommender.batch_sizes) == [1, 1, 16]

    plain = _EchoRecommender(gated=True)  # no request_cost: a request costs its len()
    with MicroBatcher(plain, max_batch=64, max_batch_cost=64, max_wait_ms=0.0) as batcher:
        _hold_worker(batcher, plain)
        futures = [batcher.submit(list(range(1, 33))) for _ in range(4)] + [batcher.submit(_Unsized())]
        plain.gate.set()
        assert all(f.result(timeout=10) == _echo(list(range(1, 33)), 20, {}) for f in futures[:4])
        assert futures[4].result(timeout=10) == _echo([7, 8], 20, {})  # no len(): alone
    assert sorted(plain.batch_sizes) == [1, 1, 2, 2]


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=40),
    max_batch=st.integers(1, 8),
    max_batch_cost=st.integers(1, 60),
)
def test_every_batch_fits_its_bounds_or_holds_one_request(lengths, max_batch, max_batch_cost):
    sessions = [[index + 1] * n for index, n in enumerate(lengths)]  # request i holds only the item i + 1
    recommender = _EchoRecommender(gated=True)
    with MicroBatcher(recommender, max_batch=max_batch, max_batch_cost=max_batch_cost, max_wait_ms=0.0) as batcher:
        _hold_worker(batcher, recommender)
        futures = [batcher.submit(session) for session in sessions]
        recommender.gate.set()
        assert [f.result(timeout=10) for f in futures] == [_echo(s, 20, {}) for s in sessions]
    calls = [[session[0] - 1 for session in call] for call, _, _ in recommender.calls[1:]]
    assert sorted(index for call in calls for index in call) == list(range(len(lengths)))
    for call in calls:
        costs = [lengths[index] for index in call]
        assert len(call) == 1 or (len(call) <= max_batch and len(call) * max(costs) <= max_batch_cost)
        assert len(call) == 1 or max(costs) <= max_batch_cost  # a request over the budget runs alone
    assert all(call == sorted(call) for call in calls)  # a batch keeps its requests' order of arrival


def test_a_failed_batch_is_retried_in_halves():
    recommender = _EchoRecommender(gated=True)
    sessions = [[i] for i in range(1, 65)]
    sessions[40] = [0]
    with MicroBatcher(recommender, max_batch=64, max_wait_ms=0.0) as batcher:
        _hold_worker(batcher, recommender)
        futures = [batcher.submit(session) for session in sessions]
        recommender.gate.set()
        for future, session in zip(futures, sessions):
            if session == [0]:
                with pytest.raises(ValueError, match="session 0 has item id 0"):
                    future.result(timeout=10)
            else:
                assert future.result(timeout=10) == _echo(session, 20, {})
    # Each failing call splits in two: 13 calls where one call per request would take 65.
    assert recommender.batch_sizes[1:] == [64, 32, 32, 16, 8, 8, 4, 2, 1, 1, 2, 4, 16]


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()], ids=type)
def test_a_base_exception_in_recommend_breaks_the_batcher_and_fails_every_request_it_held(error):
    recommender = _Exploding(error, gated=True)
    batcher = MicroBatcher(recommender, max_batch=2, max_wait_ms=0.0)
    _hold_worker(batcher, recommender)
    first, fatal, waiting = batcher.submit([2]), batcher.submit([999]), batcher.submit([3])
    recommender.gate.set()
    for future in (first, fatal, waiting):
        with pytest.raises(BatcherBrokenError, match=f"worker stopped on {type(error).__name__}") as caught:
            future.result(timeout=10)
        assert caught.value.__cause__ is error
    assert batcher.failure is error and batcher.closed
    with pytest.raises(BatcherBrokenError, match="accepts no new requests"):
        batcher.submit([4])
    with pytest.raises(BatcherBrokenError):
        batcher.close(timeout=10)
    assert not any(thread.is_alive() for thread in batcher._threads)


def test_a_bug_in_the_batcher_fails_every_accepted_request_instead_of_stranding_it(monkeypatch):
    def broken_take(self, lane):
        raise RuntimeError("a bug in the batcher")

    monkeypatch.setattr(batcher_module._Worker, "_take", broken_take)
    batcher = MicroBatcher(_EchoRecommender(), max_wait_ms=50.0)
    futures = [batcher.submit([i]) for i in range(1, 6)]
    for future in futures:
        with pytest.raises(BatcherBrokenError, match="RuntimeError: a bug in the batcher"):
            future.result(timeout=10)
    with pytest.raises(BatcherBrokenError):
        batcher.submit([1])
    with pytest.raises(BatcherBrokenError, match="a bug in the batcher"):
        with batcher:
            pass


def test_close_from_a_done_callback_on_the_worker_thread_does_not_deadlock():
    recommender = _EchoRecommender(gated=True)
    batcher = MicroBatcher(recommender)
    _hold_worker(batcher, recommender)
    future = batcher.submit([2])
    called = threading.Event()
    future.add_done_callback(lambda _: (batcher.close(), called.set()))
    recommender.gate.set()
    assert called.wait(10) and future.result() == _echo([2], 20, {})
    with pytest.raises(BatcherClosedError):
        batcher.submit([3])
    batcher.close(timeout=10)


def test_dropped_batchers_leave_no_thread_and_free_their_recommenders():
    before = _worker_threads()
    recommenders = []
    for i in range(50):
        recommender = _EchoRecommender()
        batcher = MicroBatcher(recommender)
        assert batcher.submit([i + 1]).result(timeout=10) == _echo([i + 1], 20, {})
        recommenders.append(weakref.ref(recommender))
    del batcher, recommender
    gc.collect()
    assert _worker_threads() == before
    assert all(ref() is None for ref in recommenders)


def test_a_dropped_batcher_still_answers_what_it_accepted():
    before = _worker_threads()
    recommender = _EchoRecommender(gated=True)
    batcher = MicroBatcher(recommender, max_batch=2, max_wait_ms=0.0)
    _hold_worker(batcher, recommender)
    futures = [batcher.submit([i]) for i in range(2, 7)]
    del batcher
    gc.collect()
    recommender.gate.set()
    assert [f.result(timeout=10) for f in futures] == [_echo([i], 20, {}) for i in range(2, 7)]
    for thread in _worker_threads() - before:
        thread.join(10)
        assert not thread.is_alive()


def test_batchers_left_open_do_not_hold_up_interpreter_exit():
    script = """if True:
        import threading
        from srgnn_rt.batcher import MicroBatcher

        class Stuck:  # a recommender call that never returns
            def recommend(self, sessions, k=20):
                threading.Event().wait()

        class Echo:
            def recommend(self, sessions, k=20):
                return list(sessions)

        stuck = MicroBatcher(Stuck())
        stuck.submit([1]), stuck.submit([2])
        idle = MicroBatcher(Echo())
        assert idle.submit([3]).result(timeout=10) == [3]
        waiting = MicroBatcher(Echo(), max_batch=1000, max_wait_ms=3_600_000)
        waiting.submit([4])
        print("leaving", flush=True)
    """
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "leaving\n", "")
