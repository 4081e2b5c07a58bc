"""``srgnn-rt export``: a trained SR-GNN -> a verified ONNX model -> a serving bundle.

The ONNX graph (exporter ``torch.onnx.export(dynamo=True)``, opset ``OPSET``):

- inputs ``items int64[B, N]``, ``adjacency float32[B, N, 2N]``, ``alias int64[B, T]``,
  ``mask float32[B, T]`` (the arrays of ``srgnn_rt.graph.build_graphs``) and
  ``k int64[1]``; B, N and T are dynamic;
- outputs ``scores float32[B, k]`` and ``item_ids int64[B, k]`` (internal ids 1..n,
  best first; the top-k runs inside the graph, so one file serves every k) and
  ``session_embedding float32[B, d]`` (s_h, for retrieval with an ANN index over
  ``item_embeddings.npy``). Equal scores keep the lower id first (ONNX TopK).

The bundle also holds ``encoder.onnx``, the same model up to s_h for retrieval mode
(``srgnn_rt.retrieval``): inputs ``node_embeddings float32[B, N, d]`` (the item
table's rows of ``items``, gathered by the runtime from the memory-mapped
``item_embeddings.npy``), ``adjacency``, ``alias``, ``mask``; output
``session_embedding float32[B, d]``. It holds no item table, so a retrieval-mode
server keeps the table once (memory-mapped) besides the index's own copy.

The scoring product uses the transposed item table ``E[1:]^T`` as an initializer
of its own (``item_table_t``), so it can be quantised later.

A catalog of millions of items makes the exact model too large for one ONNX file
(protobuf's 2 GB limit; it holds the item table twice, and bundles refuse ONNX
external data): ``export_bundle(..., exact=False)`` (``srgnn-rt export
--retrieval-only``, and automatically above ``MAX_EXACT_MODEL_BYTES``) writes a
retrieval-only bundle, without model.onnx (see ``srgnn_rt.bundle``). Its encoder is
verified as always, and the scores a retrieval-mode server computes (the encoder's
s_h times the bundle's item table) are checked against torch's on small batches.

Before anything is written the model is verified: onnxruntime (CPU) against torch
on random sessions and, when given, real ones, at several shapes unlike the export
example (B=1, N=1, T=1 included) and several k. The check is that every ONNX score
is within ``SCORE_TOLERANCE`` of torch's score of the same item and of torch's
score at the same rank, so ids differ from torch's only where scores tie within
the tolerance. A failure raises ``ExportVerificationError`` and writes nothing.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import Tensor, nn

import srgnn_rt
from srgnn_rt.atomic import check_target
from srgnn_rt.bundle import ENCODER_FILENAME, Bundle, GraphBuilderOptions, write_bundle
from srgnn_rt.dataset import PreparedDataset
from srgnn_rt.graph import CSRSessions, SessionGraphs, build_graphs
from srgnn_rt.runtime import DEFAULT_MAX_LENGTH
from srgnn_rt.vocab import Vocab

from .model import SRGNN
from .run import load_run, load_run_config

__all__ = [
    "EXPORTER",
    "MAX_EXACT_MODEL_BYTES",
    "OPSET",
    "SCORE_TOLERANCE",
    "ExportVerificationError",
    "export_bundle",
    "export_encoder_onnx",
    "export_onnx",
    "export_run",
    "verify_encoder",
    "verify_onnx",
    "verify_table_scores",
]

OPSET = 18
EXPORTER = "torch.onnx.export(dynamo=True)"
SCORE_TOLERANCE = 1e-4
INPUT_NAMES = ("items", "adjacency", "alias", "mask", "k")
OUTPUT_NAMES = ("scores", "item_ids", "session_embedding")
ENCODER_INPUT_NAMES = ("node_embeddings", "adjacency", "alias", "mask")
ENCODER_OUTPUT_NAMES = ("session_embedding",)
METADATA_N_ITEMS = "srgnn_rt.n_items"
METADATA_EMBEDDING_SIZE = "srgnn_rt.embedding_size"
MAX_EXACT_MODEL_BYTES = 1_900_000_000
"""Largest estimated exact model exported (protobuf's 2 GiB limit less room for the graph); above it
``export_bundle`` writes a retrieval-only bundle."""
_TABLE_CHECK_BATCH = 16  # largest batch whose full scores verify_table_scores compares (B x n_items floats)

_log = logging.getLogger(__name__)

# Example sizes for tracing: distinct and all > 1, or the exporter fixes a dimension.
_EXAMPLE_B, _EXAMPLE_N, _EXAMPLE_T = 3, 5, 7
_VERIFY_K = 20


class ExportVerificationError(ValueError):
    """The ONNX model does not compute what the torch model computes."""


class _ServingGraph(nn.Module):
    """SRGNN + top-k: graph arrays and k -> (scores, internal item ids, s_h)."""

    def __init__(self, model: SRGNN):
        super().__init__()
        self.model = model
        self.register_buffer("item_table_t", model.embedding.weight.detach()[1:].t().contiguous())

    def forward(self, items: Tensor, adjacency: Tensor, alias: Tensor, mask: Tensor, k: Tensor):
        s_h = self.model.session_embedding(items, adjacency, alias, mask)
        scores = torch.matmul(s_h, self.item_table_t)
        top_k = k[0].item()
        torch._check(top_k >= 1)
        torch._check(top_k <= scores.shape[1])
        top_scores, top_index = torch.topk(scores, top_k, dim=1)
        return top_scores, top_index + 1, s_h


class _Identity(nn.Module):
    """Stands in for the embedding lookup of an encoder: its input already is the node embeddings."""

    def forward(self, node_embeddings: Tensor) -> Tensor:
        return node_embeddings


def _encoder_copy(model: SRGNN) -> SRGNN:
    """An eval-mode CPU copy of ``model`` whose ``session_embedding`` takes node embeddings
    float32[B, N, d] in place of item ids (the item table is not copied)."""
    if not isinstance(model, SRGNN):
        raise TypeError(f"expected an SRGNN model, got {type(model).__name__}")
    return copy.deepcopy(model, memo={id(model.embedding): _Identity()}).to("cpu").eval()


class _EncoderGraph(nn.Module):
    """SRGNN up to s_h: node embeddings and graph arrays -> s_h."""

    def __init__(self, model: SRGNN):
        super().__init__()
        self.model = _encoder_copy(model)

    def forward(self, node_embeddings: Tensor, adjacency: Tensor, alias: Tensor, mask: Tensor) -> Tensor:
        return self.model.session_embedding(node_embeddings, adjacency, alias, mask)


def _cpu_copy(model: SRGNN) -> SRGNN:
    """An eval-mode copy of ``model`` on the CPU (the caller's model is left as it is); a CPU
    item table is shared, not copied (nothing here writes to it; 4 GB at 10 M items, d = 100)."""
    if not isinstance(model, SRGNN):
        raise TypeError(f"expected an SRGNN model, got {type(model).__name__}")
    table = model.embedding.weight
    return copy.deepcopy(model, memo={id(table): table} if table.device.type == "cpu" else {}).to("cpu").eval()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines and its warnings about optional packages."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model: SRGNN) -> bytes:
    """The serialized ONNX model of ``model`` (not yet verified; see ``verify_onnx``).

    Raises ExportVerificationError when a dimension that must be dynamic came out fixed.
    """
    model = _cpu_copy(model)
    n_items = model.config.n_items
    generator = torch.Generator().manual_seed(0)
    B, N, T = _EXAMPLE_B, _EXAMPLE_N, _EXAMPLE_T
    example = (
        torch.randint(1, n_items + 1, (B, N), generator=generator),
        torch.rand(B, N, 2 * N, generator=generator),
        torch.randint(0, N, (B, T), generator=generator),
        torch.ones(B, T),
        torch.tensor([min(_VERIFY_K, n_items)]),
    )
    batch, nodes, clicks = torch.export.Dim("batch"), torch.export.Dim("nodes"), torch.export.Dim("clicks")
    dynamic_shapes = {
        "items": {0: batch, 1: nodes},
        "adjacency": {0: batch, 1: nodes, 2: 2 * nodes},
        "alias": {0: batch, 1: clicks},
        "mask": {0: batch, 1: clicks},
        "k": None,
    }
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            _ServingGraph(model).eval(), example, dynamo=True, dynamic_shapes=dynamic_shapes,
            opset_version=OPSET, output_names=list(OUTPUT_NAMES), verbose=False, external_data=False,
        )
    proto = program.model_proto
    _name_dimensions(proto)
    _check_dynamic(proto)
    onnx.helper.set_model_props(
        proto, {METADATA_N_ITEMS: str(n_items), METADATA_EMBEDDING_SIZE: str(model.config.hidden_size)}
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def export_encoder_onnx(model: SRGNN) -> bytes:
    """The serialized ONNX encoder of ``model`` (see the module docstring; not yet verified,
    see ``verify_encoder``). Raises ExportVerificationError when B, N or T came out fixed."""
    encoder = _EncoderGraph(model)
    d = model.config.hidden_size
    generator = torch.Generator().manual_seed(0)
    B, N, T = _EXAMPLE_B, _EXAMPLE_N, _EXAMPLE_T
    example = (
        torch.randn(B, N, d, generator=generator),
        torch.rand(B, N, 2 * N, generator=generator),
        torch.randint(0, N, (B, T), generator=generator),
        torch.ones(B, T),
    )
    batch, nodes, clicks = torch.export.Dim("batch"), torch.export.Dim("nodes"), torch.export.Dim("clicks")
    dynamic_shapes = {
        "node_embeddings": {0: batch, 1: nodes},
        "adjacency": {0: batch, 1: nodes, 2: 2 * nodes},
        "alias": {0: batch, 1: clicks},
        "mask": {0: batch, 1: clicks},
    }
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            encoder, example, dynamo=True, dynamic_shapes=dynamic_shapes, opset_version=OPSET,
            input_names=list(ENCODER_INPUT_NAMES), output_names=list(ENCODER_OUTPUT_NAMES), verbose=False,
            external_data=False,
        )
    proto = program.model_proto
    _check_dynamic(proto)
    onnx.helper.set_model_props(
        proto, {METADATA_N_ITEMS: str(model.config.n_items), METADATA_EMBEDDING_SIZE: str(d)}
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def verify_encoder(model: SRGNN, encoder: bytes, batches: Sequence[SessionGraphs]) -> float:
    """The largest |s_h difference| between the ONNX encoder (onnxruntime, CPU) and torch on
    ``batches``; raises ExportVerificationError above ``SCORE_TOLERANCE``."""
    session = onnxruntime.InferenceSession(encoder, providers=["CPUExecutionProvider"])
    table = model.embedding.weight.detach().cpu().numpy()
    model = _cpu_copy(model) if next(model.parameters()).device.type != "cpu" else model
    worst = 0.0
    for index, batch in enumerate(batches):
        with torch.no_grad():
            expected = model.eval().session_embedding(
                *(torch.from_numpy(a) for a in (batch.items, batch.adjacency, batch.alias, batch.mask))
            ).numpy()
        feeds = {"node_embeddings": table[batch.items], "adjacency": batch.adjacency, "alias": batch.alias,
                 "mask": batch.mask}
        (s_h,) = session.run(list(ENCODER_OUTPUT_NAMES), feeds)
        diff = float(np.abs(s_h - expected).max()) if s_h.shape == expected.shape else float("inf")
        if not diff <= SCORE_TOLERANCE:
            raise ExportVerificationError(
                f"ONNX encoder and torch disagree on batch {index} ((B, N, T) = {_shape(batch)}): "
                f"s_h {s_h.shape} vs {expected.shape}, max |difference| {diff:.3g} > {SCORE_TOLERANCE}; "
                f"nothing was written"
            )
        worst = max(worst, diff)
    return worst


def _name_dimensions(proto: onnx.ModelProto) -> None:
    """Call the outputs' top-k dimension ``k`` (the exporter names it after a symbol)."""
    for output in proto.graph.output:
        if output.name in ("scores", "item_ids"):
            output.type.tensor_type.shape.dim[1].dim_param = "k"


def _check_dynamic(proto: onnx.ModelProto) -> None:
    """B, N and T of every graph input must be symbolic, not the example's sizes (d stays fixed)."""
    for graph_input in proto.graph.input:
        if graph_input.name == "k":
            continue
        dims = graph_input.type.tensor_type.shape.dim
        if graph_input.name == "node_embeddings":  # [B, N, d]: d is the model's
            dims = dims[:2]
        fixed = [i for i, dim in enumerate(dims) if not dim.dim_param]
        if fixed:
            raise ExportVerificationError(
                f"ONNX input {graph_input.name!r} came out with fixed dimension(s) {fixed} "
                f"({[d.dim_value for d in dims]}); B, N and T must be dynamic"
            )


def _graph_batch(sessions, n_items: int, builder: GraphBuilderOptions) -> SessionGraphs:
    return build_graphs(sessions, n_items=n_items, max_length=builder.max_length, edge_weight=builder.edge_weight)


def _shape(graphs: SessionGraphs) -> tuple[int, int, int]:
    """(B, N, T) of a batch."""
    return (*graphs.items.shape, graphs.alias.shape[1])


def _top_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """float32[B, k]: the k best scores of each row, best first."""
    if k < scores.shape[1]:
        scores = -np.partition(-scores, k - 1, axis=1)[:, :k]
    return -np.sort(-scores, axis=1)[:, :k]


def _random_batches(n_items: int, builder: GraphBuilderOptions, seed: int) -> list[SessionGraphs]:
    """Random sessions at shapes unlike the export example: one click, one long session, a mixed batch."""
    rng = np.random.default_rng(seed)
    long = builder.max_length + 5 if builder.max_length is not None else 40

    def sessions(lengths: Sequence[int]) -> list[np.ndarray]:
        return [rng.integers(1, n_items + 1, size=length) for length in lengths]

    return [
        _graph_batch(sessions([1]), n_items, builder),
        _graph_batch(sessions([long, 1]), n_items, builder),
        _graph_batch(sessions(rng.integers(1, 12, size=9)), n_items, builder),
        _graph_batch(sessions(rng.integers(1, 25, size=64)), n_items, builder),
    ]


def _real_batches(sessions: CSRSessions, n_items: int, builder: GraphBuilderOptions) -> list[SessionGraphs]:
    """Consecutive slices of 1, 17 and up to 256 real sessions."""
    n = len(sessions.offsets) - 1
    batches, start = [], 0
    for size in (1, 17, 256):
        stop = min(start + size, n)
        if stop > start:
            batches.append(_graph_batch(sessions.take(np.arange(start, stop)), n_items, builder))
        start = stop
    return batches


def _top_k_diff(scores: np.ndarray, ids: np.ndarray, expected: np.ndarray, where: str) -> float:
    """The largest difference between ``scores: float32[B, k]`` of items ``ids: int64[B, k]``
    (1..n) and torch's ``expected: float32[B, n]``, by item and by rank; ExportVerificationError
    (``where`` says what disagrees) above ``SCORE_TOLERANCE``."""
    same_item = np.abs(scores - np.take_along_axis(expected, ids - 1, axis=1)).max()
    same_rank = np.abs(scores - _top_scores(expected, scores.shape[1])).max()
    diff = float(max(same_item, same_rank))
    if not diff <= SCORE_TOLERANCE:
        raise ExportVerificationError(
            f"{where}: max |score difference| {diff:.3g} > {SCORE_TOLERANCE} (same item {same_item:.3g}, "
            f"same rank {same_rank:.3g}); the export is wrong, nothing was written"
        )
    return diff


def verify_table_scores(model: SRGNN, encoder: bytes, item_embeddings: np.ndarray,
                        batches: Sequence[SessionGraphs]) -> dict:
    """Retrieval mode's exact scores against torch's: the ONNX encoder's s_h times
    ``item_embeddings: float32[n_items, d]`` (the table the bundle will hold), top-20 by
    item and by rank, on the batches of at most 16 sessions (the full scores are B x n).
    Returns a report like ``verify_onnx``'s; raises ExportVerificationError."""
    model = _cpu_copy(model)
    n_items = model.config.n_items
    session = onnxruntime.InferenceSession(encoder, providers=["CPUExecutionProvider"])
    table = model.embedding.weight.detach().numpy()
    k = min(_VERIFY_K, n_items)
    checked, worst = [], 0.0
    for index, batch in enumerate(batches):
        if batch.items.shape[0] > _TABLE_CHECK_BATCH:
            continue
        with torch.no_grad():
            expected = model(*(torch.from_numpy(a) for a in (batch.items, batch.adjacency, batch.alias,
                                                            batch.mask))).numpy()
        (s_h,) = session.run(list(ENCODER_OUTPUT_NAMES), {"node_embeddings": table[batch.items],
                                                          "adjacency": batch.adjacency, "alias": batch.alias,
                                                          "mask": batch.mask})
        scores = s_h @ item_embeddings.T
        ids = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        worst = max(worst, _top_k_diff(np.take_along_axis(scores, ids, axis=1), ids + 1, expected,
                                       f"the encoder's s_h times the item table and torch disagree on batch "
                                       f"{index} ((B, N, T) = {_shape(batch)}, k = {k})"))
        checked.append(list(_shape(batch)))
    if not checked:
        raise ValueError(f"no batch of at most {_TABLE_CHECK_BATCH} sessions to verify the item table on")
    return {"max_abs_score_diff": worst, "tolerance": SCORE_TOLERANCE, "shapes": checked,
            "provider": "CPUExecutionProvider"}


def verify_onnx(model: SRGNN, onnx_model: bytes, batches: Sequence[SessionGraphs]) -> dict:
    """Compare onnxruntime (CPU) with torch on ``batches``; return a report, or raise.

    For each batch, k = min(20, n_items) and k = n_items (the full ranking) are checked
    on the first batch. Raises ExportVerificationError naming the batch shape, k and
    the largest difference when a score differs by more than ``SCORE_TOLERANCE``.
    Report: ``{"max_abs_score_diff", "tolerance", "shapes": [[B, N, T], ...], "provider"}``.
    """
    model = _cpu_copy(model)
    n_items = model.config.n_items
    session = onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    worst = 0.0
    for index, batch in enumerate(batches):
        with torch.no_grad():
            expected = model(*(torch.from_numpy(a) for a in (batch.items, batch.adjacency, batch.alias, batch.mask)))
        expected = expected.numpy()
        shape = _shape(batch)
        for k in sorted({min(_VERIFY_K, n_items), n_items} if index == 0 else {min(_VERIFY_K, n_items)}):
            feeds = {"items": batch.items, "adjacency": batch.adjacency, "alias": batch.alias, "mask": batch.mask,
                     "k": np.array([k], dtype=np.int64)}
            scores, ids = session.run(["scores", "item_ids"], feeds)
            if scores.shape != (shape[0], k) or ids.shape != scores.shape:
                raise ExportVerificationError(
                    f"ONNX model returned scores {scores.shape} and ids {ids.shape} for batch "
                    f"(B, N, T) = {shape} and k = {k}; expected {(shape[0], k)}"
                )
            if ids.min() < 1 or ids.max() > n_items:
                raise ExportVerificationError(f"ONNX model returned item ids outside 1..{n_items} for k = {k}")
            worst = max(worst, _top_k_diff(scores, ids, expected, f"ONNX and torch disagree on batch {index} "
                                                                   f"((B, N, T) = {shape}, k = {k})"))
    return {
        "max_abs_score_diff": worst,
        "tolerance": SCORE_TOLERANCE,
        "shapes": [list(_shape(batch)) for batch in batches],
        "provider": "CPUExecutionProvider",
    }


def _library_versions() -> dict[str, str]:
    import onnxscript

    return {
        "srgnn_rt": srgnn_rt.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def export_bundle(
    model: SRGNN,
    bundle_dir: str | os.PathLike,
    *,
    vocab: Vocab,
    item_counts: np.ndarray,
    builder: GraphBuilderOptions = GraphBuilderOptions(),
    real_sessions: CSRSessions | None = None,
    overwrite: bool = False,
    seed: int = 0,
    exact: bool | None = None,
) -> Bundle:
    """Export ``model``, verify it, and write the bundle directory ``bundle_dir`` atomically.

    ``vocab`` must hold ``model.config.n_items`` raw ids; ``item_counts: int64[n_items + 1]``
    (popularity fallback); ``builder``: the graph-builder options the model was trained
    with (a ``max_length`` of None is recorded, and verified, as ``DEFAULT_MAX_LENGTH``:
    every bundle bounds the clicks one session costs); ``real_sessions``: internal-id
    sessions to verify on besides random ones; ``exact``: write the exact model.onnx
    (True), or a retrieval-only bundle without it (False); None: exact unless the
    exact model would pass ``MAX_EXACT_MODEL_BYTES`` (then a logged warning says so).
    Raises ExportVerificationError (nothing written) when ONNX and torch disagree.
    """
    model = _cpu_copy(model)
    config = model.config
    if builder.max_length is None:
        builder = GraphBuilderOptions(max_length=DEFAULT_MAX_LENGTH, edge_weight=builder.edge_weight)
    if len(vocab) != config.n_items:
        raise ValueError(f"the vocabulary holds {len(vocab)} items but the model scores {config.n_items}")
    check_target(bundle_dir, overwrite=overwrite)
    estimate = 4 * (sum(p.numel() for p in model.parameters()) + config.n_items * config.hidden_size)
    if exact is None:
        exact = estimate <= MAX_EXACT_MODEL_BYTES
        if not exact:
            _log.warning(
                "the exact model of %d items x d = %d would take about %.1f GB, more than one ONNX file holds "
                "(%.1f GB): writing a retrieval-only bundle (no model.onnx); serve it with retrieval='index' "
                "after `srgnn-rt index %s`", config.n_items, config.hidden_size, estimate / 1e9,
                MAX_EXACT_MODEL_BYTES / 1e9, bundle_dir)
    batches = _random_batches(config.n_items, builder, seed)
    if real_sessions is not None:
        batches += _real_batches(real_sessions, config.n_items, builder)
    item_embeddings = np.asarray(model.embedding.weight.detach()[1:].numpy(), dtype=np.float32)  # a view
    encoder = export_encoder_onnx(model)
    encoder_diff = verify_encoder(model, encoder, batches)
    if exact:
        onnx_model = export_onnx(model)
        report = verify_onnx(model, onnx_model, batches)
        onnx_facts = {"ir_version": onnx.load_model_from_string(onnx_model).ir_version,
                      "inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES)}
    else:
        onnx_model = None
        report = verify_table_scores(model, encoder, item_embeddings, batches)
        onnx_facts = {"ir_version": onnx.load_model_from_string(encoder).ir_version}
    manifest = {
        "n_items": config.n_items,
        "embedding_size": config.hidden_size,
        "model": config.to_dict(),
        "graph_builder": builder.to_dict(),
        "onnx": {"opset": OPSET, "exporter": EXPORTER, **onnx_facts},
        "library_versions": _library_versions(),
        "verification": report,
        "encoder": {"inputs": list(ENCODER_INPUT_NAMES), "outputs": list(ENCODER_OUTPUT_NAMES),
                    "max_abs_diff": encoder_diff, "tolerance": SCORE_TOLERANCE},
    }
    return write_bundle(
        bundle_dir, model=onnx_model, vocab=vocab, item_counts=np.asarray(item_counts, dtype=np.int64),
        item_embeddings=item_embeddings, manifest=manifest, optional_files={ENCODER_FILENAME: encoder},
        overwrite=overwrite,
    )


def export_run(
    run_dir: str | os.PathLike,
    bundle_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    exact: bool | None = None,
) -> Bundle:
    """``srgnn-rt export RUN_DIR BUNDLE_DIR``: the best model of a training run -> a bundle.

    The vocabulary, item counts and real verification sessions (test prefixes) come
    from the prepared dataset the run was trained on (``data_dir`` overrides the path
    recorded in the run); max_length and edge_weight from the run's training config;
    ``exact`` as in ``export_bundle``.
    """
    config = load_run_config(run_dir)
    data_path = Path(data_dir) if data_dir is not None else Path(config["data"]["path"])
    if not data_path.is_dir():
        raise FileNotFoundError(
            f"the run's prepared dataset {data_path} does not exist; pass data_dir (--data) to say where it is"
        )
    dataset = PreparedDataset.load(data_path)
    train_config = config["train"]
    builder = GraphBuilderOptions(max_length=train_config.get("max_length"),
                                  edge_weight=train_config.get("edge_weight", "binary"))
    return export_bundle(
        load_run(run_dir), bundle_dir, vocab=dataset.vocab, item_counts=dataset.item_counts, builder=builder,
        real_sessions=CSRSessions(dataset.test.items, dataset.test.offsets), overwrite=overwrite, exact=exact,
    )
