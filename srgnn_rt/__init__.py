"""srgnn_rt: SR-GNN session-based recommendation, served without torch.

The runtime half of the project: numpy + onnxruntime only. The torch half
(training, ONNX export) is the ``srgnn_rt_torch`` package, installed with the
``train`` extra.
"""

from .graph import CSRSessions, SessionGraphs, build_graphs
from .synthetic import generate_click_log, generate_sessions
from .vocab import Vocab

__version__ = "0.1.0"

# The serving classes pull in onnxruntime: imported on first use, so that
# ``import srgnn_rt`` for the graph builder alone stays light.
_LAZY = {
    "Recommender": "runtime",
    "Recommendation": "runtime",
    "MicroBatcher": "batcher",
    "QueueFullError": "batcher",
    "BatcherClosedError": "batcher",
    "BatcherBrokenError": "batcher",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatcherBrokenError",
    "BatcherClosedError",
    "CSRSessions",
    "MicroBatcher",
    "QueueFullError",
    "Recommendation",
    "Recommender",
    "SessionGraphs",
    "Vocab",
    "__version__",
    "build_graphs",
    "generate_click_log",
    "generate_sessions",
]
