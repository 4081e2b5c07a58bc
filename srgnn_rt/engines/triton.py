"""A Triton Inference Server model repository for a bundle (Python backend).

``write_repository(bundle, repo_dir)`` (``srgnn-rt triton``) writes::

    repo_dir/<name>/config.pbtxt     inputs, outputs, dynamic batching, instance group
    repo_dir/<name>/1/model.py       the adapter (srgnn_rt/engines/triton_model.py)
    repo_dir/<name>/1/bundle/        the bundle, copied and its checksums verified
    repo_dir/<name>/1/sys_path.pth   only with ``python_path``: directories the adapter
                                     puts first on the server Python's ``sys.path``

Triton then loads ``repo_dir`` as is (``tritonserver --model-repository repo_dir``).
Why the Python backend and not Triton's onnxruntime one: requests of different
session lengths give graphs of different node and click counts that its batcher
cannot stack, and the id mapping and graph building run before the model anyway.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..atomic import staging_directory
from ..bundle import INDEX_FILENAME, MANIFEST_FILENAME, Bundle
from ..runtime import RETRIEVALS
from ..validation import positive_int

KINDS = ("cpu", "gpu")
MODEL_TEMPLATE = Path(__file__).with_name("triton_model.py")
SYS_PATH_FILENAME = "sys_path.pth"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def write_repository(
    bundle: str | os.PathLike | Bundle,
    repo_dir: str | os.PathLike,
    *,
    name: str = "srgnn",
    max_batch: int = 64,
    max_queue_delay_us: int = 1000,
    instances: int | None = None,
    kind: str = "cpu",
    threads: int | None = None,
    retrieval: str = "exact",
    python_path: Sequence[str | os.PathLike] = (),
    overwrite: bool = False,
) -> Path:
    """Write the model ``name`` of a Triton repository at ``repo_dir``; returns the model directory.

    ``max_batch``: most requests (sessions) Triton's dynamic batcher hands to one
    ``execute``; ``max_queue_delay_us``: how long it waits to fill a batch;
    ``instances``: model instances (each loads the bundle; on ``kind="gpu"`` one per
    GPU listed, default 1; on ``"cpu"`` processes sharing the cores, default 2);
    ``threads``: onnxruntime intra-op threads per instance (default on CPU: the server's
    cores divided among the instances, at least 1; on a GPU onnxruntime's choice).
    On 2 cores, 2 CPU instances of 1 thread and 1 instance of 2 threads answered alike at
    64 clients (2,578 and 2,593 requests/s; benchmarks/test_engines.py's clients).
    ``retrieval``: as ``Recommender.load``; ``"index"`` needs the bundle's index
    (``srgnn-rt index``), and a retrieval-only bundle is served only with it.
    ``python_path``: directories (absolute) for the adapter's ``sys.path`` when
    srgnn_rt or a numpy < 2 is not installed in the server's Python. Other
    models of ``repo_dir`` are left alone; an existing ``name`` is replaced only
    with ``overwrite``. The bundle's raw ids must all be ints or all strings.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"name must be letters, digits, '_', '-' or '.', got {name!r}")
    max_batch = positive_int(max_batch, "max_batch")
    instances = positive_int((2 if kind == "cpu" else 1) if instances is None else instances, "instances")
    if threads is not None:
        threads = positive_int(threads, "threads")
    if isinstance(max_queue_delay_us, bool) or not isinstance(max_queue_delay_us, int) or max_queue_delay_us < 0:
        raise ValueError(f"max_queue_delay_us must be an int >= 0, got {max_queue_delay_us!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if retrieval not in RETRIEVALS:
        raise ValueError(f"retrieval must be one of {RETRIEVALS}, got {retrieval!r}")
    directories = [Path(entry) for entry in python_path]
    for directory in directories:
        if not directory.is_absolute() or not directory.is_dir():
            raise ValueError(f"python_path entries must be existing absolute directories, got {str(directory)!r}")
    if not isinstance(bundle, Bundle):
        bundle = Bundle.load(bundle)
    id_type = _raw_id_type(bundle)
    # The server would load the model only at start-up and fail there: refuse now.
    if retrieval == "exact" and bundle.retrieval_only:
        raise ValueError(f"bundle {bundle.path} is retrieval-only (no model.onnx): pass retrieval='index' "
                         f"(CLI: --retrieval index) after adding an index with `srgnn-rt index {bundle.path}`")
    if retrieval == "index" and not bundle.has_file(INDEX_FILENAME):
        raise ValueError(f"bundle {bundle.path} has no {INDEX_FILENAME} for retrieval='index': add one with "
                         f"`srgnn-rt index {bundle.path}`")

    with staging_directory(Path(repo_dir) / name, overwrite=overwrite) as model_dir:
        version = model_dir / "1"
        version.mkdir()
        shutil.copyfile(MODEL_TEMPLATE, version / "model.py")
        (version / "bundle").mkdir()
        for filename, data in bundle.files.items():  # the verified bytes, every file the manifest lists
            (version / "bundle" / filename).write_bytes(data)
        (version / "bundle" / MANIFEST_FILENAME).write_text(json.dumps(bundle.manifest, indent=2) + "\n")
        Bundle.load(version / "bundle")  # the copy is checked like any bundle
        if directories:
            (version / SYS_PATH_FILENAME).write_text("".join(f"{d}\n" for d in directories))
        (model_dir / "config.pbtxt").write_text(
            _config(name, id_type, max_batch, max_queue_delay_us, instances, kind, threads, retrieval)
        )
    return Path(repo_dir).absolute() / name


def _raw_id_type(bundle: Bundle) -> str:
    """Triton's data type of the bundle's raw ids: TYPE_INT64 or TYPE_STRING (BYTES)."""
    kinds = {type(raw) for raw in bundle.vocab.raw_ids}
    if kinds == {int}:
        return "TYPE_INT64"
    if kinds == {str}:
        return "TYPE_STRING"
    raise ValueError(f"{bundle.path}: raw item ids mix {sorted(k.__name__ for k in kinds)}; a Triton input has "
                     "one type, so re-export the bundle with ids of one type")


def _config(name: str, id_type: str, max_batch: int, delay_us: int, instances: int, kind: str,
            threads: int | None, retrieval: str) -> str:
    parameters = "" if threads is None else (
        f'parameters: {{ key: "threads" value: {{ string_value: "{threads}" }} }}\n'
    )
    parameters += f'parameters: {{ key: "retrieval" value: {{ string_value: "{retrieval}" }} }}\n'
    return f"""\
# Written by srgnn-rt triton. One request = one session of raw item ids.
name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [
  {{ name: "session" data_type: {id_type} dims: [ -1 ] allow_ragged_batch: true }},
  {{ name: "k" data_type: TYPE_INT64 dims: [ 1 ] optional: true }},
  {{ name: "exclude_seen" data_type: TYPE_BOOL dims: [ 1 ] optional: true }}
]
output [
  {{ name: "items" data_type: {id_type} dims: [ -1 ] }},
  {{ name: "scores" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "n_unknown" data_type: TYPE_INT64 dims: [ 1 ] }},
  {{ name: "fallback" data_type: TYPE_BOOL dims: [ 1 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}
instance_group [ {{ count: {instances} kind: KIND_{kind.upper()} }} ]
{parameters}"""
