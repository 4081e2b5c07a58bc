"""Scoring on a Ray cluster with Ray Data: Parquet sessions in, an actor pool of Recommenders, Parquet out.

``recommend_dataset`` maps a ``ray.data.Dataset`` holding a list column of raw item
ids through ``map_batches`` with an actor class that loads the bundle once per
actor (``compute=ActorPoolStrategy(size=actors)``). Each actor answers its batches
with ``answer_batch``, the code path of the single-machine scorer, and returns
fixed-width columns (ragged list outputs hit Ray Data bugs, ray#54186 and #44235):
``items`` and ``scores`` are fixed-size lists of k, padded with nulls and NaN
where fewer than k items remain (``exclude_seen``, error rows), and ``length``
says how many are real. ``score_ray`` reads a Parquet file or directory, writes
a directory of Parquet files atomically, and starts a local Ray on 127.0.0.1
when none is running and no address is given.
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from ..atomic import staging_directory
from ..local_ray import start_ray
from ..validation import positive_int
from .batches import answer_batch
from .local import ScoreSummary
from .tables import answer_columns, arrow_item_type, is_list_type, require, sessions_of_list_table

__all__ = ["recommend_dataset", "score_ray"]


class _RecommendBatches:
    """Ray Data actor: loads the bundle once; pyarrow table of sessions -> table of answers."""

    def __init__(self, bundle: str, k: int, exclude_seen: bool, key: str | None, items: str, device: str,
                 threads: int, retrieval: str):
        from ..runtime import Recommender

        self._recommender = Recommender.load(bundle, device=device, threads=threads, retrieval=retrieval)
        self._item_type = arrow_item_type(self._recommender.raw_id_type)
        self._k, self._exclude_seen, self._key, self._items = k, exclude_seen, key, items

    def __call__(self, table):
        pa = require("pyarrow", "arrow")
        batch = sessions_of_list_table(table, self._key, self._items, first_row=None)
        answers = answer_batch(self._recommender, batch, self._k, self._exclude_seen)
        columns = answer_columns(answers, self._item_type, width=self._k)
        if self._key is not None:
            columns = {self._key: table.column(self._key), **columns}
        return pa.table(columns)


def recommend_dataset(
    dataset: Any,
    bundle: str | os.PathLike,
    *,
    k: int = 20,
    exclude_seen: bool = False,
    session_column: str | None = None,
    items_column: str = "items",
    batch_size: int = 512,
    actors: int = 2,
    device: Literal["auto", "cpu", "cuda"] = "cpu",
    threads: int = 1,
    actor_cpus: float | None = None,
    retrieval: Literal["exact", "index"] = "exact",
) -> Any:
    """``dataset`` (a ``ray.data.Dataset`` with a list column ``items_column`` of raw item ids and,
    optionally, a key column ``session_column``) -> a Dataset of answers, lazily: the key,
    ``items`` (fixed-size list of k raw ids), ``scores`` (fixed-size list of k float32),
    ``length`` (int32, real entries), ``n_unknown``, ``fallback``, ``error`` (null or why).

    ``actors`` actors each load ``bundle`` (a path every node can read) once, run
    ``threads`` onnxruntime threads, reserve ``actor_cpus`` CPUs (default ``threads``) and
    answer ``batch_size`` sessions a call, in the ``retrieval`` mode of ``Recommender.load``.
    """
    ray_data = require("ray.data", "ray")
    k, batch_size = positive_int(k, "k"), positive_int(batch_size, "batch_size")
    actors, threads = positive_int(actors, "actors"), positive_int(threads, "threads")
    names = dataset.schema().names
    for name in (items_column, session_column):
        if name is not None and name not in names:
            raise ValueError(f"the dataset has no column {name!r} (columns: {', '.join(names)})")
    return dataset.map_batches(
        _RecommendBatches,
        fn_constructor_kwargs=dict(bundle=os.path.abspath(bundle), k=k, exclude_seen=exclude_seen,
                                   key=session_column, items=items_column, device=device, threads=threads,
                                   retrieval=retrieval),
        batch_size=batch_size, batch_format="pyarrow", zero_copy_batch=True,
        compute=ray_data.ActorPoolStrategy(size=actors), num_cpus=threads if actor_cpus is None else actor_cpus,
    )


def score_ray(
    bundle: str | os.PathLike,
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    k: int = 20,
    exclude_seen: bool = False,
    session_column: str | None = None,
    items_column: str | None = None,
    batch_size: int = 512,
    actors: int | None = None,
    address: str | None = None,
    device: Literal["auto", "cpu", "cuda"] = "cpu",
    threads: int = 1,
    retrieval: Literal["exact", "index"] = "exact",
) -> ScoreSummary:
    """``recommend_dataset`` from the Parquet file or directory ``input`` (a list column of raw ids;
    long format needs grouping first) to a directory ``output`` of Parquet files, which appears
    complete or not at all; rows keep the input order within Ray's blocks (``preserve_order``).

    Uses the running Ray, else connects to ``address``, else starts a local Ray bound to
    127.0.0.1 and shuts it down at the end. ``actors``: default, the cluster's CPUs / ``threads``.
    ``session_column`` defaults to ``session`` when present, ``items_column`` to ``items``;
    ``retrieval``: as ``Recommender.load``.
    """
    ray = require("ray", "ray")
    pa = require("pyarrow", "arrow")
    pq = require("pyarrow.parquet", "arrow")
    started_here = start_ray(address)
    try:
        started = time.perf_counter()
        # Reading and writing take no CPU of the budget, so that the actors get the CPUs.
        dataset = ray.data.read_parquet(os.fspath(input), num_cpus=0)
        schema = dataset.schema()
        items_column = items_column or "items"
        if items_column in schema.names and not is_list_type(pa, schema.base_schema.field(items_column).type):
            raise ValueError(f"input {os.fspath(input)!r}: column {items_column!r} is not a list of raw item ids; "
                             "the ray engine reads one session per row (group long-format clicks first, or "
                             "use the local engine)")
        if session_column is None and "session" in schema.names and items_column != "session":
            session_column = "session"
        cpus = ray.cluster_resources().get("CPU", 1)
        if actors is None:
            actors = max(1, int(cpus) // threads)
        # Ray Data lists the input files in a task of 1 CPU: leave it one, or it waits on the actors forever.
        actor_cpus = min(float(threads), max(cpus - 1, 0.1 * actors) / actors)
        dataset.context.execution_options.preserve_order = True
        answers = recommend_dataset(dataset, bundle, k=k, exclude_seen=exclude_seen, session_column=session_column,
                                    items_column=items_column, batch_size=batch_size, actors=actors, device=device,
                                    threads=threads, actor_cpus=actor_cpus, retrieval=retrieval)
        with staging_directory(output) as staging:
            answers.write_parquet(os.fspath(staging), ray_remote_args={"num_cpus": 0})
        errors = pq.read_table(os.fspath(output), columns=["error"]).column("error")
        return ScoreSummary(sessions=len(errors), errors=len(errors) - errors.null_count,
                            seconds=time.perf_counter() - started)
    finally:
        if started_here:
            ray.shutdown()
