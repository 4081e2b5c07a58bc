"""Retrieval mode on a large catalog, in fresh processes: build cost, load time, latency, peak RSS, recall.

    python benchmarks/retrieval_at_scale.py --items 1000000 [--mode index|exact] [--threads 2]
    python benchmarks/retrieval_at_scale.py --items 10000000 --nprobe 64 128 256   # a retrieval-only bundle
    python benchmarks/retrieval_at_scale.py --trained      # the trained model of bundles.trained_bundle

Builds (once, cached) the synthetic bundle of ``--items`` items (see ``bundles.synthetic_bundle``;
above about 2.4 M items at d = 100 it is retrieval-only: no exact model.onnx) and then
its default index (``srgnn_rt.retrieval.add_index``), each in a child process whose
time and peak resident set are recorded in ``<bundle>.build.json`` beside the cached
bundle. Then, in a new process so that the peak resident set is the server's own:
loads it in ``--mode``, serves B = 1 and B = 100 requests of synthetic sessions
(median of ``--repeats``) at the stored nprobe and at each ``--nprobe``, records the
peak resident set, then measures recall@20 of the index against exact scoring on 500
sessions at those nprobe and x4, x16 the stored one, and prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundles import (  # noqa: E402
    BUNDLE_CACHE,
    DEFAULT_HIDDEN_SIZE,
    requests,
    synthetic_bundle,
    trained_bundle,
)


def _median_ms(recommender, batches: list, repeats: int) -> float:
    """Median time (ms) of ``repeats`` requests of top-20, cycling through ``batches``, after one warm-up."""
    recommender.recommend(batches[0], 20)
    times = []
    for repeat in range(repeats):
        start = time.perf_counter()
        recommender.recommend(batches[repeat % len(batches)], 20)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def _serve(path: str, mode: str, threads: int, repeats: int, nprobes: list[int]) -> dict:
    from srgnn_rt import retrieval
    from srgnn_rt.runtime import Recommender

    began = time.perf_counter()
    recommender = Recommender.load(path, device="cpu", threads=threads, retrieval=mode)
    report = {"mode": mode, "n_items": recommender.n_items, "load_s": time.perf_counter() - began}
    bundle = recommender.bundle
    report["retrieval_only"] = bundle.retrieval_only
    n_batches = min(repeats, 20)  # one call: each builds the synthetic world of n_items (seconds at 10 M)
    sessions = requests(bundle, n_batches * 101 + 500)
    batches = {1: [sessions[i:i + 1] for i in range(n_batches)],
               100: [sessions[n_batches + 100 * i:n_batches + 100 * (i + 1)] for i in range(n_batches)]}
    for size in (1, 100):
        report[f"median_ms_b{size}"] = _median_ms(recommender, batches[size], repeats)
    if mode == "index":
        session = recommender._session  # the same encoder session, with another nprobe for the index
        report["by_nprobe"] = []
        for nprobe in nprobes:
            variant = Recommender(bundle, session, retriever=recommender.retriever.with_parameters(nprobe=nprobe))
            medians = {f"median_ms_b{size}": _median_ms(variant, batches[size], repeats) for size in (1, 100)}
            report["by_nprobe"].append({"nprobe": nprobe, **medians})
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before recall's scoring
    if mode == "index":
        s_h = recommender.session_embeddings(sessions[-500:])
        section = bundle.manifest["retrieval"]
        report["index"] = {key: section[key] for key in ("lists", "nprobe", "candidates", "build_seconds")}
        swept = sorted({min(section["lists"], p) for p in [section["nprobe"] * f for f in (1, 4, 16)] + nprobes})
        report["recall_sweep"] = retrieval.recall_sweep(recommender.retriever, bundle.item_embeddings(), s_h, 20,
                                                        swept)
        report["recall_at_20"] = next(r["recall"] for r in report["recall_sweep"] if r["nprobe"] == section["nprobe"])
    return report


def _build(step: str, path: str, items: int) -> None:
    """In a child process: export the synthetic bundle of ``items`` items, or add the default index to ``path``."""
    if step == "export":
        synthetic_bundle(items)
    else:
        from srgnn_rt import retrieval

        retrieval.add_index(path)


def _built(items: int, trained: bool) -> Path:
    """The cached bundle with its index, each built first (timed, in a child process) when missing."""
    from srgnn_rt.bundle import INDEX_FILENAME, MANIFEST_FILENAME

    path = trained_bundle() if trained else BUNDLE_CACHE / f"synthetic-items{items}-d{DEFAULT_HIDDEN_SIZE}-seed0"
    record = path.with_name(path.name + ".build.json")
    costs = json.loads(record.read_text()) if record.is_file() else {}
    for step, done in (("export", lambda: (path / MANIFEST_FILENAME).is_file()),
                       ("index", lambda: INDEX_FILENAME in json.loads((path / MANIFEST_FILENAME).read_text())["files"])):
        if trained and step == "export" or done():
            continue
        began = time.perf_counter()
        child = subprocess.Popen([sys.executable, __file__, "--build", step, str(path), "--items", str(items)])
        _, status, usage = os.wait4(child.pid, 0)
        if status:
            raise SystemExit(f"building the {step} of {path} failed (status {status})")
        costs[step] = {"seconds": round(time.perf_counter() - began, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}
        record.write_text(json.dumps(costs, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--trained", action="store_true", help="the trained bundle instead of --items")
    parser.add_argument("--mode", choices=("index", "exact"), default="index")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--nprobe", type=int, nargs="*", default=[],
                        help="also serve and measure recall at these nprobe")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the bundle path, in the child process
    parser.add_argument("--build", nargs=2, help=argparse.SUPPRESS)  # step and bundle path, in a child process
    args = parser.parse_args()
    if args.build:
        _build(*args.build, args.items)
        return
    if args.serve:
        print(json.dumps(_serve(args.serve, args.mode, args.threads, args.repeats, args.nprobe)))
        return
    path = _built(args.items, args.trained)
    completed = subprocess.run(
        [sys.executable, __file__, "--serve", str(path), "--mode", args.mode, "--threads", str(args.threads),
         "--repeats", str(args.repeats), "--nprobe", *map(str, args.nprobe)], capture_output=True, text=True,
        check=True,
    )
    report = json.loads(completed.stdout)
    record = path.with_name(path.name + ".build.json")
    report["build"] = {**(json.loads(record.read_text()) if record.is_file() else {}),
                       "bundle_mb": round(sum(f.stat().st_size for f in path.iterdir()) / 1e6)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
