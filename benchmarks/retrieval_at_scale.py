"""Retrieval mode on a large catalog, in one fresh process: load time, latency, peak RSS, recall.

    python benchmarks/retrieval_at_scale.py --items 1000000 [--mode index|exact] [--threads 2]
    python benchmarks/retrieval_at_scale.py --trained      # the trained model of bundles.trained_bundle

Builds (once, cached) the synthetic bundle of ``--items`` items with its default index
(see ``bundles.indexed_bundle``; at 1 M items the export takes minutes and about 5 GB),
then, in a new process so that the peak resident set is the server's own: loads it in
``--mode``, serves B = 1 and B = 100 requests of synthetic sessions (median of
``--repeats``), records the peak resident set, then measures recall@20 of the index
against exact scoring on 500 sessions at nprobe x1, x4, x16, and prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundles import indexed_bundle, requests  # noqa: E402


def _serve(path: str, mode: str, threads: int, repeats: int) -> dict:
    from srgnn_rt import retrieval
    from srgnn_rt.runtime import Recommender

    began = time.perf_counter()
    recommender = Recommender.load(path, device="cpu", threads=threads, retrieval=mode)
    report = {"mode": mode, "n_items": recommender.n_items, "load_s": time.perf_counter() - began}
    bundle = recommender.bundle
    for batch_size in (1, 100):
        batches = [requests(bundle, batch_size, seed=seed) for seed in range(min(repeats, 20))]
        recommender.recommend(batches[0], 20)
        times = []
        for repeat in range(repeats):
            start = time.perf_counter()
            recommender.recommend(batches[repeat % len(batches)], 20)
            times.append(time.perf_counter() - start)
        report[f"median_ms_b{batch_size}"] = 1e3 * float(np.median(times))
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before recall's scoring
    if mode == "index":
        s_h = recommender.session_embeddings(requests(bundle, 500, seed=7))
        report["index"] = {key: bundle.manifest["retrieval"][key]
                           for key in ("lists", "nprobe", "candidates", "build_seconds")}
        nprobes = sorted({min(bundle.manifest["retrieval"]["lists"], bundle.manifest["retrieval"]["nprobe"] * f)
                          for f in (1, 4, 16)})
        report["recall_sweep"] = retrieval.recall_sweep(recommender.retriever, bundle.item_embeddings(), s_h, 20,
                                                        nprobes)
        report["recall_at_20"] = report["recall_sweep"][0]["recall"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--trained", action="store_true", help="the trained bundle instead of --items")
    parser.add_argument("--mode", choices=("index", "exact"), default="index")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the bundle path, in the child process
    args = parser.parse_args()
    if args.serve:
        print(json.dumps(_serve(args.serve, args.mode, args.threads, args.repeats)))
        return
    path = indexed_bundle(args.items, trained=args.trained)
    completed = subprocess.run(
        [sys.executable, __file__, "--serve", str(path), "--mode", args.mode, "--threads", str(args.threads),
         "--repeats", str(args.repeats)], capture_output=True, text=True, check=True,
    )
    print(completed.stdout.strip())


if __name__ == "__main__":
    main()
