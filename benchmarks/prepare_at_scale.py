"""Prepare a Yoochoose-sized click log: wall time and peak memory of ``srgnn-rt prepare``.

Writes a synthetic ``yoochoose-clicks.dat`` of the real file's shape into WORK_DIR
(default 33,003,944 rows in ~9.2 M sessions over 52,739 items with Zipf popularity,
~6 months of ISO-8601 timestamps and a category column; ~1.4 GB, streamed in
blocks), runs ``prepare(format="yoochoose")`` on it in a child process, prints
the child's wall time and peak RSS, and deletes what it wrote (``--keep`` keeps it)::

    nice python benchmarks/prepare_at_scale.py /tmp/yoochoose-scale [--rows 2000000] [--fraction 4] [--keep]
    nice python benchmarks/prepare_at_scale.py /tmp/yoochoose-scale --reuse   # the same log again
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROWS = 33_003_944
MEAN_SESSION_LENGTH = ROWS / 9_249_729
N_ITEMS = 52_739
ZIPF_EXPONENT = 1.1
START = np.datetime64("2014-04-01T00:00:00", "s").astype(np.int64)
SPAN_SECONDS = 183 * 86400
SESSIONS_PER_BLOCK = 250_000
_FILLER = 0  # byte marking unused leading positions; removed before writing
_CATEGORIES = [b"0", b"S", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9", b"10", b"11", b"12"]
_CATEGORY_WEIGHTS = np.array([0.6, 0.15] + [0.25 / 12] * 12)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """uint8[n, width]: decimal digits of non-negative ``values``, right-aligned, filler in front."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (values[:, None] // powers % 10 + 48).astype(np.uint8)
    digits[(values[:, None] < powers) & (powers > 1)] = _FILLER
    return digits


def _fixed(values: np.ndarray, width: int) -> np.ndarray:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers % 10 + 48).astype(np.uint8)


def _literal(n: int, text: bytes) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (n, len(text)))


def _timestamps(milliseconds: np.ndarray) -> np.ndarray:
    """uint8[n, 24]: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` of UTC epoch milliseconds."""
    seconds = milliseconds // 1000
    days = (seconds // 86400).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    year = years.astype(np.int64) + 1970
    month = (months - years).astype(np.int64) + 1
    day = (days - months).astype(np.int64) + 1
    second_of_day = seconds % 86400
    n = len(milliseconds)
    parts = [
        _fixed(year, 4), _literal(n, b"-"), _fixed(month, 2), _literal(n, b"-"), _fixed(day, 2), _literal(n, b"T"),
        _fixed(second_of_day // 3600, 2), _literal(n, b":"), _fixed(second_of_day // 60 % 60, 2), _literal(n, b":"),
        _fixed(second_of_day % 60, 2), _literal(n, b"."), _fixed(milliseconds % 1000, 3), _literal(n, b"Z"),
    ]
    return np.hstack(parts)


def write_click_log(path: Path, rows: int, seed: int = 0) -> tuple[int, int]:
    """Write the synthetic log; returns (rows, sessions) written."""
    rng = np.random.default_rng(seed)
    item_ids = rng.choice(np.arange(214_500_000, 214_900_000), N_ITEMS, replace=False)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** ZIPF_EXPONENT
    cumulative = np.cumsum(popularity / popularity.sum())
    category_bytes = np.zeros((len(_CATEGORIES), 2), dtype=np.uint8)
    for index, category in enumerate(_CATEGORIES):
        category_bytes[index, 2 - len(category):] = np.frombuffer(category, dtype=np.uint8)
    expected_sessions = rows / MEAN_SESSION_LENGTH
    written = sessions = 0
    with open(path, "wb") as f:
        while written < rows:
            lengths = np.minimum(rng.geometric(1 / MEAN_SESSION_LENGTH, SESSIONS_PER_BLOCK), 200)
            lengths = lengths[: np.searchsorted(np.cumsum(lengths), rows - written, side="left") + 1]
            lengths[-1] -= max(int(lengths.sum()) - (rows - written), 0)
            n_sessions = len(lengths)
            session_ids = np.arange(sessions + 1, sessions + n_sessions + 1, dtype=np.int64)
            progress = (session_ids / expected_sessions).clip(0, 1)
            starts = START * 1000 + (progress * SPAN_SECONDS * 1000).astype(np.int64)
            starts += rng.integers(0, 3_600_000, n_sessions)
            owner = np.repeat(np.arange(n_sessions), lengths)
            gaps = rng.exponential(60_000, len(owner)).astype(np.int64)
            first_click = np.cumsum(lengths) - lengths
            within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first_click] - gaps[first_click], lengths)
            clicked = np.minimum(np.searchsorted(cumulative, rng.random(len(owner))), N_ITEMS - 1)
            category = np.searchsorted(np.cumsum(_CATEGORY_WEIGHTS), rng.random(len(owner)) * 0.999999)
            n = len(owner)
            table = np.hstack([
                _digits(session_ids[owner], 8), _literal(n, b","), _timestamps(starts[owner] + within),
                _literal(n, b","), _digits(item_ids[clicked], 9), _literal(n, b","),
                category_bytes[category], _literal(n, b"\n"),
            ])
            f.write(table[table != _FILLER].tobytes())
            written += n
            sessions += n_sessions
    return written, sessions


_CHILD = """
import json, sys, time
from srgnn_rt_torch.prepare import prepare
started = time.perf_counter()
dataset = prepare(sys.argv[1], sys.argv[2], format="yoochoose", fraction=int(sys.argv[3]))
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time(),
                  "manifest": dataset.manifest}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path, help="directory for the generated file and the output")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--fraction", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the generated log and the prepared dataset")
    parser.add_argument("--reuse", action="store_true",
                        help="prepare the log already in WORK_DIR (from an earlier --keep run) instead of a new one")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    log_path = args.work_dir / "yoochoose-clicks.dat"
    out_dir = args.work_dir / "prepared"
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        if not args.reuse:
            started = time.perf_counter()
            rows, sessions = write_click_log(log_path, args.rows, args.seed)
            print(f"generated {rows:,} rows, {sessions:,} sessions, {log_path.stat().st_size / 1e9:.2f} GB "
                  f"in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(log_path), str(out_dir), str(args.fraction)],
            capture_output=True, text=True,
        )
        wall = time.perf_counter() - started
        if child.returncode:
            sys.exit(f"prepare failed:\n{child.stderr}")
        report = json.loads(child.stdout.strip().splitlines()[-1])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
        manifest = report["manifest"]
        counts = {key: manifest[key] for key in
                  ("train_sessions", "test_sessions", "train_prefixes", "test_prefixes", "n_items")}
        print(f"prepare: {report['seconds']:.1f} s inside the child ({wall:.1f} s with start-up, "
              f"{report['cpu_seconds']:.1f} s of CPU), peak RSS {peak / 2**30:.2f} GiB")
        print(f"counts: {counts}, average session length {manifest['average_session_length']:.3f}, "
              f"malformed rows {manifest['malformed_rows']}")
    finally:
        if not args.keep:
            log_path.unlink(missing_ok=True)
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
