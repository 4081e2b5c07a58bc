"""``srgnn-rt quickstart``: the whole product end to end on built-in synthetic data.

Generate a click log -> prepare it as the reference does -> train a few epochs ->
evaluate beside most-popular -> export a verified ONNX bundle -> serve sessions
through the torch-free runtime and time it. No download; about 30 s on two
cores with the defaults.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srgnn_rt.runtime import Recommender
from srgnn_rt.synthetic import SyntheticConfig, generate_click_log

from .evaluate import evaluate_run
from .onnx_export import export_run
from .prepare import prepare
from .train import TrainConfig, train

_MARKER = ".srgnn-quickstart"


@dataclass(frozen=True)
class QuickstartOptions:
    """Sizes of the quickstart run (defaults: about 30 s on two cores)."""

    sessions: int = 20_000
    items: int = 3_000
    epochs: int = 2
    hidden_size: int = 64
    seed: int = 0
    device: str = "auto"
    threads: int | None = None


def _fresh_workdir(workdir: Path) -> None:
    """Create ``workdir``; an earlier quickstart's directory is replaced, anything else refused."""
    if workdir.exists():
        if not (workdir / _MARKER).exists():
            if workdir.is_dir() and not any(workdir.iterdir()):
                workdir.rmdir()
            else:
                raise FileExistsError(f"{workdir} exists and was not made by quickstart; choose another --workdir")
        else:
            shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / _MARKER).write_text("made by srgnn-rt quickstart; safe to delete\n")


def _median_ms(call, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1e3)
    return statistics.median(timings)


def quickstart(workdir: str | os.PathLike, options: QuickstartOptions = QuickstartOptions(), *, progress=True) -> dict:
    """Run the whole pipeline in ``workdir``; print what happens and return a summary dict."""
    say = print if progress else (lambda *args, **kwargs: None)
    workdir = Path(workdir)
    _fresh_workdir(workdir)
    clicks, data_dir, run_dir, bundle_dir = (workdir / name for name in ("clicks.csv", "data", "run", "bundle"))

    started = time.perf_counter()
    log = generate_click_log(options.sessions, seed=options.seed, config=SyntheticConfig(n_items=options.items))
    log.write_csv(clicks)
    say(f"[1/5] synthetic click log: {len(log):,} clicks, {options.sessions:,} sessions, "
        f"{options.items:,} items -> {clicks}")

    dataset = prepare(clicks, data_dir, format="csv", session_column="session", item_column="item",
                      time_column="time")
    counts = dataset.manifest
    say(f"[2/5] prepared (reference pipeline): {counts['train_prefixes']:,} train / {counts['test_prefixes']:,} "
        f"test prefixes, {counts['n_items']:,} items -> {data_dir}")

    config = TrainConfig(epochs=options.epochs, hidden_size=options.hidden_size, seed=options.seed)
    result = train(data_dir, run_dir, config, device=options.device, threads=options.threads, progress=progress)
    prefixes_per_s = statistics.median(epoch["prefixes_per_second"] for epoch in result.history)
    say(f"[3/5] trained {len(result.history)} epochs ({prefixes_per_s:,.0f} prefixes/s) -> {run_dir}")
    chosen = result.best[result.selection["split"]][result.selection["metric"]]
    say(f"      checkpoint: epoch {result.best['epoch']}, chosen by {result.selection['metric']} "
        f"{chosen:.2f} on the {result.selection['split']} split ({result.selection['prefixes']:,} prefixes)")

    report = evaluate_run(run_dir, data_dir, device=options.device)
    model, popular = report["model"], report["most_popular"]
    say(f"      test metrics (%):   HR@20 {model['HR@20']:6.2f}   MRR@20 {model['MRR@20']:6.2f}   "
        f"NDCG@20 {model['NDCG@20']:6.2f}")
    say(f"      most-popular (%):   HR@20 {popular['HR@20']:6.2f}   MRR@20 {popular['MRR@20']:6.2f}   "
        f"NDCG@20 {popular['NDCG@20']:6.2f}")

    export_run(run_dir, bundle_dir)
    say(f"[4/5] exported and verified ONNX bundle -> {bundle_dir}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        recommender = Recommender.load(bundle_dir, device=options.device, threads=options.threads)
    for warning in caught:
        say(f"      note: {warning.message}")
    # The log's sessions in raw ids (the log is sorted by session, clicks in time order).
    sessions = np.split(log.item_id, np.flatnonzero(np.diff(log.session_id)) + 1)
    examples = [session[:-1].tolist() for session in sessions if 3 <= len(session) <= 9][:3]
    batch = [session.tolist() for session in sessions[:100]]
    say(f"[5/5] serving on {recommender.provider}")
    for session in examples:
        top = recommender.recommend_one(session, k=5)
        say(f"      session {session} -> top 5 {top.items}")
    one_ms = _median_ms(lambda: recommender.recommend_one(examples[0], k=20), repeats=200)
    batch_ms = _median_ms(lambda: recommender.recommend(batch, k=20), repeats=20)
    say(f"      latency (median): 1 session {one_ms:.2f} ms, batch of 100 {batch_ms:.2f} ms "
        f"({100 / batch_ms * 1e3:,.0f} sessions/s)")
    elapsed = time.perf_counter() - started
    say(f"done in {elapsed:.0f} s; bundle at {bundle_dir}")
    return {
        "workdir": str(workdir),
        "counts": {key: counts[key] for key in ("train_prefixes", "test_prefixes", "n_items")},
        "selection": result.selection,
        "checkpoint_epoch": result.best["epoch"],
        "test": model,
        "most_popular": popular,
        "provider": recommender.provider,
        "latency_ms": {"one_session": one_ms, "batch_100": batch_ms},
        "seconds": elapsed,
    }
