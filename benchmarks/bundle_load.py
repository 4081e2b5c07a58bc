"""Load a catalog-sized bundle: wall time and memory of ``Bundle.load`` (verified bytes in memory).

Writes a bundle of N_ITEMS items at embedding size D into WORK_DIR, whose model.onnx
holds an N_ITEMS x D float32 initializer as an exported SR-GNN model does (its graph
is a stand-in: ``Bundle.load`` checks the protobuf, not the graph), then loads it in
a child process and prints the load's wall time, the child's resident memory after
the load beyond what it held before it, and its peak (Linux: read from /proc)::

    python benchmarks/bundle_load.py /tmp/bundle-load [--items 1000000] [--dim 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

_CHILD = """
import json, sys, time
from srgnn_rt.bundle import Bundle

def memory(field):  # bytes; VmHWM (the peak) starts afresh at exec, unlike getrusage's ru_maxrss
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

before = memory("VmRSS")
start = time.perf_counter()
bundle = Bundle.load(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "held_bytes": memory("VmRSS") - before,
                  "file_bytes": sum(map(len, bundle.files.values())), "peak_rss_bytes": memory("VmHWM")}))
"""


def write(directory: Path, n_items: int, dim: int) -> None:
    import onnx

    from srgnn_rt.bundle import write_bundle
    from srgnn_rt.vocab import Vocab

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(n_items, dim)).astype(np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["table"], ["scores"])], "stand-in", [],
        [onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [n_items, dim])],
        [onnx.numpy_helper.from_array(embeddings, "table")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10)
    manifest = {"n_items": n_items, "embedding_size": dim,
                "model": {"n_items": n_items, "hidden_size": dim},
                "graph_builder": {"max_length": None, "edge_weight": "binary"}, "onnx": {"opset": 18}}
    counts = np.concatenate([[0], rng.integers(0, 1000, size=n_items)]).astype(np.int64)
    write_bundle(directory, model=model.SerializeToString(), vocab=Vocab(range(10**9, 10**9 + n_items)),
                 item_counts=counts, item_embeddings=embeddings, manifest=manifest, overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the bundle written")
    args = parser.parse_args()
    bundle_dir = args.work_dir / "bundle"
    try:
        write(bundle_dir, args.items, args.dim)
        out = subprocess.run([sys.executable, "-c", _CHILD, str(bundle_dir)], check=True, capture_output=True,
                             text=True).stdout
        result = json.loads(out)
        print(f"{args.items:,} items x {args.dim}: Bundle.load {result['seconds']:.2f} s, "
              f"holds {result['held_bytes'] / 2**20:,.0f} MiB (files {result['file_bytes'] / 2**20:,.0f} MiB), "
              f"peak RSS {result['peak_rss_bytes'] / 2**20:,.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(args.work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
