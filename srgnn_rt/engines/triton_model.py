"""Triton Python-backend model of an srgnn_rt bundle (copied as ``<name>/1/model.py`` by ``srgnn-rt triton``).

A thin adapter: ``initialize`` loads the bundle beside this file once per model
instance with ``srgnn_rt.Recommender.load`` (checksums verified; on CPU with the
server's cores divided among the instances unless the config sets ``threads``; in the
config's ``retrieval`` mode, default ``exact``; idle onnxruntime threads do not spin); ``execute``
answers all requests of a Triton batch through ``srgnn_rt.engines.answers`` (one
``Recommender.recommend`` call per distinct ``(k, exclude_seen)``), one response
per request. A request the runtime refuses gets a Triton error of its own; the
others are still answered.

Per request (Triton adds the leading batch dimension of 1):
inputs  ``session``: INT64[n] or BYTES[n] (the model's raw id type), ``k``: INT64[1]
        (optional, default 20), ``exclude_seen``: BOOL[1] (optional, default false);
outputs ``items``: INT64[k] or BYTES[k] (raw ids, best first), ``scores``: FP32[k],
        ``n_unknown``: INT64[1], ``fallback``: BOOL[1].

The Python backend ignores ``PYTHONPATH``: when ``sys_path.pth`` lies beside this
file, each of its lines (a directory) is put first on ``sys.path`` before
anything else is imported, so the server's Python can find srgnn_rt and a numpy
it works with (Triton 2.51's backend needs numpy < 2).
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SYS_PATH = _HERE / "sys_path.pth"
if _SYS_PATH.is_file():
    sys.path[:0] = [line.strip() for line in _SYS_PATH.read_text().splitlines() if line.strip()]

import json  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from srgnn_rt import Recommender  # noqa: E402
from srgnn_rt.engines.answers import Request, answer  # noqa: E402

_DEFAULT_K = 20


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        device = "cpu"
        if args["model_instance_kind"] == "GPU":
            # Each instance is its own process: it sees only the GPU Triton placed it on.
            os.environ["CUDA_VISIBLE_DEVICES"] = args["model_instance_device_id"]
            device = "cuda"
        if parameters.get("threads"):
            threads = int(parameters["threads"])
        elif device == "cpu":  # the instances share the server's cores, one process each
            instances = sum(group.get("count", 1) for group in config.get("instance_group", ()))
            threads = max(1, (os.cpu_count() or 1) // max(instances, 1))
        else:
            threads = None
        # Instances, the server and its stubs share the cores: idle onnxruntime threads must not spin.
        self.recommender = Recommender.load(_HERE / "bundle", device=device, threads=threads,
                                            retrieval=parameters.get("retrieval") or "exact", spin_wait=False)
        self.string_ids = self.recommender.raw_id_type is str

    def execute(self, requests):
        responses = [None] * len(requests)
        valid, batch = [], []
        for index, request in enumerate(requests):
            try:
                batch.append(self._read(request))
                valid.append(index)
            except (TypeError, ValueError) as exc:
                responses[index] = _error(exc)
        for index, result in zip(valid, answer(self.recommender, batch)):
            responses[index] = _error(result) if isinstance(result, Exception) else self._response(result)
        return responses

    def _read(self, request):
        """The ``Request`` of one Triton request; ValueError when a tensor is malformed."""
        session = pb_utils.get_input_tensor_by_name(request, "session").as_numpy()
        if session.ndim != 2 or session.shape[0] != 1:
            raise ValueError(f"session must have shape [1, n] (one session per request), got {list(session.shape)}")
        session = session[0]
        if self.string_ids:
            session = [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in session]
        else:
            session = session.tolist()
        k = _scalar(request, "k", _DEFAULT_K)
        exclude_seen = bool(_scalar(request, "exclude_seen", False))
        return Request(session, k, exclude_seen)

    def _response(self, result):
        if self.string_ids:
            items = np.array([[item.encode("utf-8") for item in result.items]], dtype=np.object_)
        else:
            items = np.array([result.items], dtype=np.int64)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("items", items),
            pb_utils.Tensor("scores", np.asarray(result.scores, dtype=np.float32)[None, :]),
            pb_utils.Tensor("n_unknown", np.array([[result.n_unknown]], dtype=np.int64)),
            pb_utils.Tensor("fallback", np.array([[result.fallback]], dtype=np.bool_)),
        ])


def _scalar(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy()
    if value.size != 1:
        raise ValueError(f"{name} must hold one value, got shape {list(value.shape)}")
    return value.reshape(-1)[0].item()


def _error(exc):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))
