"""Scoring a table of sessions on one machine: in this process, or in N worker processes.

The input streams in batches of ``batch_size`` sessions (``tables``); each batch is
answered by ``answer_batch`` and written in input order to a staging file that
replaces OUTPUT only when every session is written (``srgnn_rt.atomic``). With
``workers`` > 1 a pool of spawned processes, each loading the bundle once, answers
the batches while this process reads and writes; at most ``2 * workers`` batches
are in flight, so memory stays bounded by the batch size whatever the input size.
Batches are cut the same way for any number of workers, so the answers are the same.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Literal

from ..atomic import staging_file
from ..runtime import Recommender
from ..validation import positive_int
from .batches import answer_batch
from .tables import Answers, OUTPUT_FORMATS, Sessions, format_of, open_sessions, open_sink, rebatch, require

__all__ = ["ScoreSummary", "score_file"]


@dataclass(frozen=True)
class ScoreSummary:
    """What ``score_file`` did: ``sessions`` written (one row each), ``errors`` among them, ``seconds``
    from the first batch read to the last written (after the bundle is loaded and the files opened;
    worker processes' start included)."""

    sessions: int
    errors: int
    seconds: float

    @property
    def sessions_per_second(self) -> float:
        return self.sessions / self.seconds if self.seconds > 0 else float("inf")


def score_file(
    bundle: str | os.PathLike,
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    k: int = 20,
    exclude_seen: bool = False,
    session_column: str | None = None,
    items_column: str | None = None,
    batch_size: int = 512,
    workers: int = 1,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    threads: int | None = None,
    retrieval: Literal["exact", "index"] = "exact",
    fail_fast: bool = False,
    progress: bool = True,
) -> ScoreSummary:
    """Recommend ``k`` items for every session of ``input`` into ``output`` (formats: see
    ``srgnn_rt.scoring.tables``), one row per session in input order.

    ``session_column``: the key column (default ``session`` for Parquet / CSV when
    present; none for JSON lines); ``items_column``: the raw ids (default ``items``
    or ``item`` for Parquet, ``item`` for CSV, the ``session`` field of JSON objects).
    A session that cannot be read or that ``recommend`` refuses gets an error row,
    or with ``fail_fast`` stops the run with ValueError. ``workers``: processes
    answering batches (each loads the bundle; ``threads``: onnxruntime threads of
    each, default all cores over ``workers``). ``retrieval``: as ``Recommender.load``
    (``"index"``: the bundle's index proposes candidates). ``progress``: a tqdm bar on stderr.
    OUTPUT appears complete or not at all.
    """
    batch_size = positive_int(batch_size, "batch_size")
    workers = positive_int(workers, "workers")
    if threads is None and workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
    format_of(output, OUTPUT_FORMATS, "output")
    recommender = Recommender.load(bundle, device=device, threads=threads, retrieval=retrieval)
    k = _checked_k(k, recommender.n_items)
    source = open_sessions(input, raw_id_type=recommender.raw_id_type, session_column=session_column,
                           items_column=items_column, chunk_rows=batch_size)
    bar = _progress_bar(source.total) if progress else None
    written = failed = 0
    batches = rebatch(source.chunks, batch_size)
    with staging_file(output) as staging:
        os.chmod(staging, 0o644)  # mkstemp makes it 0600; the answers are read by whoever uses them
        sink = open_sink(os.fspath(output), staging, source, recommender.raw_id_type)
        started = time.perf_counter()  # the bundle is loaded, the input and output open
        if workers == 1:
            answered = ((batch, answer_batch(recommender, batch, k, exclude_seen)) for batch in batches)
        else:
            del recommender  # the workers load their own; free this one's memory
            answered = _answer_in_workers(bundle, batches, k, exclude_seen, workers, device, threads, retrieval)
        try:
            for batch, answers in answered:
                errors = [error for error in answers.errors if error is not None]
                if errors and fail_fast:
                    raise ValueError(f"{errors[0]} (--fail-fast)")
                sink.write(batch, answers)
                written += len(batch)
                failed += len(errors)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            answered.close()
            sink.close()
            if bar is not None:
                bar.close()
    return ScoreSummary(sessions=written, errors=failed, seconds=time.perf_counter() - started)


def _checked_k(k, n_items: int) -> int:
    k = positive_int(k, "k")
    if k > n_items:
        raise ValueError(f"k must be in 1..{n_items} (the model's number of items), got {k}")
    return k


def _progress_bar(total: int | None):
    tqdm = require("tqdm", "arrow")
    return tqdm.tqdm(total=total, unit=" sessions", unit_scale=True, dynamic_ncols=True, smoothing=0.1)


# --- worker processes --------------------------------------------------------------------------------

_worker_recommender: Recommender | None = None


def _start_worker(bundle: str, device: str, threads: int | None, retrieval: str, parent: int) -> None:
    """Pool initializer: load the bundle once; exit when the parent process is gone (killed)."""
    global _worker_recommender
    _worker_recommender = Recommender.load(bundle, device=device, threads=threads, retrieval=retrieval)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _answer_in_worker(batch: Sessions, k: int, exclude_seen: bool) -> Answers:
    return answer_batch(_worker_recommender, batch, k, exclude_seen)


def _answer_in_workers(
    bundle, batches: Iterator[Sessions], k: int, exclude_seen: bool, workers: int, device: str, threads: int | None,
    retrieval: str,
) -> Iterator[tuple[Sessions, Answers]]:
    """(batch, answers) in input order, from a pool of ``workers`` spawned processes; the keys stay
    here; at most ``2 * workers`` batches are in flight."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_start_worker,
                               initargs=(os.fspath(bundle), device, threads, retrieval, os.getpid()))
    in_flight: deque[tuple[Sessions, Future]] = deque()
    try:
        for batch in batches:
            shipped = Sessions(sessions=batch.sessions, errors=batch.errors, lines=batch.lines, place=batch.place,
                               keys=batch.keys if batch.lines is None else None)
            in_flight.append((batch, pool.submit(_answer_in_worker, shipped, k, exclude_seen)))
            if len(in_flight) >= 2 * workers:
                batch, future = in_flight.popleft()
                yield batch, future.result()
        while in_flight:
            batch, future = in_flight.popleft()
            yield batch, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
