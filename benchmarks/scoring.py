"""Offline scoring: ``srgnn-rt score`` sessions/s and peak memory beside ``recommend`` on batches of 512.

Writes SESSIONS synthetic sessions of the benchmark bundle's raw ids (Diginetica-like
lengths, keys 0..n-1) to a Parquet file in WORK_DIR, 100,000 at a time, then measures:

- ``recommend loop``: ``Recommender.recommend`` on batches of 512 in a loop, in this
  process, over the first 100,000 sessions held as Python lists (reading, writing nothing);
- ``score, W workers``: ``srgnn-rt score BUNDLE in.parquet out.parquet`` in a child
  process for each W of ``--workers``; its own timing (after the bundle is loaded,
  workers' start included) and the peak RSS of its whole process tree (workers
  included), sampled every 20 ms from /proc;
- with ``--ray``: ``srgnn-rt score --engine ray --actors 2`` (a local Ray started by
  the command; the tree's RSS includes Ray's own processes).

It prints both throughputs and their ratio, and deletes WORK_DIR (``--keep`` keeps it)::

    python -m benchmarks.scoring /tmp/scoring [--sessions 100000] [--items 43097] [--workers 1 2] [--ray]
    python -m benchmarks.scoring /tmp/scoring --sessions 2000000 --items 2000   # memory at scale
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.bundles import DEFAULT_ITEMS, requests, synthetic_bundle

BATCH = 512
LOOP_SESSIONS = 100_000
_WRITE_SESSIONS = 100_000
_PAGE = os.sysconf("SC_PAGE_SIZE")


def write_sessions(bundle_path: Path, path: Path, n_sessions: int) -> None:
    """``n_sessions`` sessions (``session`` int64 key, ``items`` list of raw ids) into a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from srgnn_rt.bundle import Bundle

    bundle = Bundle.load(bundle_path)
    with pq.ParquetWriter(path, pa.schema([("session", pa.int64()), ("items", pa.list_(pa.int64()))])) as writer:
        for start in range(0, n_sessions, _WRITE_SESSIONS):
            size = min(_WRITE_SESSIONS, n_sessions - start)
            sessions = requests(bundle, size, seed=start)
            writer.write_table(pa.table({"session": list(range(start, start + size)), "items": sessions}))


def loop_rate(bundle_path: Path, n_sessions: int, threads: int | None) -> float:
    """Sessions/s of ``recommend`` on batches of ``BATCH`` over ``n_sessions`` in-memory sessions."""
    from srgnn_rt.bundle import Bundle
    from srgnn_rt.runtime import Recommender

    bundle = Bundle.load(bundle_path)
    recommender = Recommender.load(bundle, device="cpu", threads=threads)
    sessions = requests(bundle, n_sessions, seed=0)
    recommender.recommend(sessions[:BATCH], 20)  # warm-up
    started = time.perf_counter()
    for start in range(0, len(sessions), BATCH):
        recommender.recommend(sessions[start:start + BATCH], 20)
    return len(sessions) / (time.perf_counter() - started)


def _tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, MiB (Linux /proc)."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            for task in os.listdir(f"/proc/{pid}/task"):
                pending += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total * _PAGE / (1 << 20)


def run_score(command: list[str]) -> tuple[float, float, str]:
    """(sessions/s as the command reports it, peak RSS MiB of its process tree, its summary line)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0

    def sample():
        nonlocal peak
        while process.poll() is None:
            peak = max(peak, _tree_rss_mb(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{err[-3000:]}")
    line = out.strip().splitlines()[-1]
    rate = float(re.search(r"([\d,]+) sessions/s", line).group(1).replace(",", ""))
    return rate, peak, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scoring", description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS, help="catalog of the synthetic bundle")
    parser.add_argument("--bundle", type=Path, help="your own bundle instead of the synthetic one")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: all cores over workers)")
    parser.add_argument("--ray", action="store_true", help="also score with --engine ray --actors 2")
    parser.add_argument("--no-loop", action="store_true", help="skip the recommend loop")
    parser.add_argument("--keep", action="store_true", help="keep WORK_DIR")
    args = parser.parse_args(argv)
    bundle = args.bundle or synthetic_bundle(args.items)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    source = args.work_dir / "sessions.parquet"
    try:
        started = time.perf_counter()
        write_sessions(bundle, source, args.sessions)
        print(f"{args.sessions:,} sessions -> {source} ({source.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - started:.0f} s; bundle {bundle}", flush=True)
        loop = None
        if not args.no_loop:
            loop = loop_rate(bundle, min(args.sessions, LOOP_SESSIONS), args.threads)
            print(f"recommend loop, batches of {BATCH}: {loop:,.0f} sessions/s", flush=True)
        runs = [(f"score, {w} worker{'s' if w > 1 else ''}", ["--workers", str(w)]) for w in args.workers]
        if args.ray:
            runs.append(("score, ray, 2 actors", ["--engine", "ray", "--actors", "2"]))
        for label, extra in runs:
            output = args.work_dir / ("ray-out" if "ray" in extra else "out.parquet")
            command = [sys.executable, "-m", "srgnn_rt.cli", "score", str(bundle), str(source), str(output),
                       "--batch-size", str(BATCH), "--device", "cpu", "--quiet", *extra,
                       *(["--threads", str(args.threads)] if args.threads else [])]
            rate, peak, _ = run_score(command)
            ratio = f", {rate / loop:.2f}x the loop" if loop else ""
            print(f"{label}: {rate:,.0f} sessions/s{ratio}, peak RSS {peak:,.0f} MiB", flush=True)
            shutil.rmtree(output, ignore_errors=True) if output.is_dir() else output.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
