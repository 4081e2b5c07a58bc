"""ONNX export: the graph's interface, really dynamic axes, verification that catches a wrong
export, and atomic bundle writes."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import srgnn_rt_torch.onnx_export as onnx_export
from srgnn_rt.bundle import Bundle, GraphBuilderOptions
from srgnn_rt.dataset import PreparedDataset
from srgnn_rt.graph import build_graphs
from srgnn_rt.runtime import DEFAULT_MAX_LENGTH
from srgnn_rt.vocab import Vocab
from srgnn_rt_torch.model import SRGNN, ModelConfig
from srgnn_rt_torch.onnx_export import (
    OPSET,
    SCORE_TOLERANCE,
    ExportVerificationError,
    export_bundle,
    export_onnx,
    export_run,
    verify_onnx,
)
from srgnn_rt_torch.run import load_run, load_run_config

N_ITEMS, D = 40, 8


def _random_model(config: ModelConfig, seed: int = 0) -> SRGNN:
    """N(0, 0.5^2) weights: larger than the init, so the nonlinearities matter."""
    torch.manual_seed(seed)
    model = SRGNN(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def exported():
    """(model, serialized ONNX model, onnxruntime CPU session) of a random SRGNN with 40 items, d = 8."""
    model = _random_model(ModelConfig(n_items=N_ITEMS, hidden_size=D))
    onnx_model = export_onnx(model)
    return model, onnx_model, onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_graph_interface(exported):
    _, onnx_model, _ = exported
    proto = onnx.load_model_from_string(onnx_model)
    inputs = {i.name: (i.type.tensor_type.elem_type, _dims(i)) for i in proto.graph.input}
    outputs = {o.name: (o.type.tensor_type.elem_type, _dims(o)) for o in proto.graph.output}
    int64, float32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT
    assert inputs == {
        "items": (int64, ["batch", "nodes"]),
        "adjacency": (float32, ["batch", "nodes", "2*nodes"]),
        "alias": (int64, ["batch", "clicks"]),
        "mask": (float32, ["batch", "clicks"]),
        "k": (int64, [1]),
    }
    assert outputs == {
        "scores": (float32, ["batch", "k"]),
        "item_ids": (int64, ["batch", "k"]),
        "session_embedding": (float32, ["batch", D]),
    }
    assert [o.name for o in proto.graph.output] == ["scores", "item_ids", "session_embedding"]
    assert {op.domain: op.version for op in proto.opset_import}[""] == OPSET
    assert proto.ir_version <= 10  # onnxruntime 1.31 reads IR <= 13; 10 is what the exporter writes
    assert "TopK" in {node.op_type for node in proto.graph.node}
    tables = {init.name: list(init.dims) for init in proto.graph.initializer}
    assert tables["item_table_t"] == [D, N_ITEMS]
    assert {p.key: p.value for p in proto.metadata_props} == {
        "srgnn_rt.n_items": str(N_ITEMS), "srgnn_rt.embedding_size": str(D)
    }


def _torch_scores(model: SRGNN, graphs) -> np.ndarray:
    with torch.no_grad():
        arrays = (graphs.items, graphs.adjacency, graphs.alias, graphs.mask)
        return model(*(torch.from_numpy(a) for a in arrays)).numpy()


_sessions = st.lists(st.lists(st.integers(1, N_ITEMS), min_size=1, max_size=30), min_size=1, max_size=40)


@given(sessions=_sessions, k=st.integers(1, N_ITEMS), edge_weight=st.sampled_from(["binary", "count"]))
@settings(max_examples=40, deadline=None)
def test_any_shape_matches_torch(exported, sessions, k, edge_weight):
    """B, N and T unlike the export example's (3, 5, 7), and any k, give torch's top-k."""
    model, _, session = exported
    graphs = build_graphs(sessions, n_items=N_ITEMS, edge_weight=edge_weight)
    scores, ids, s_h = session.run(None, {"items": graphs.items, "adjacency": graphs.adjacency,
                                          "alias": graphs.alias, "mask": graphs.mask, "k": np.array([k])})
    expected = _torch_scores(model, graphs)
    assert scores.shape == ids.shape == (len(sessions), k) and s_h.shape == (len(sessions), D)
    ranked = -np.sort(-expected, axis=1)[:, :k]
    np.testing.assert_allclose(scores, ranked, rtol=0, atol=SCORE_TOLERANCE)
    np.testing.assert_allclose(np.take_along_axis(expected, ids - 1, axis=1), scores, rtol=0, atol=SCORE_TOLERANCE)
    assert all(len(set(row)) == k for row in ids.tolist())


def test_verify_reports_shapes(exported):
    model, onnx_model, _ = exported
    batches = [build_graphs([[1]]), build_graphs([[3, 4, 3, 5]] * 2 + [[7]])]
    report = verify_onnx(model, onnx_model, batches)
    assert report["shapes"] == [[1, 1, 1], [3, 3, 4]]
    assert 0 <= report["max_abs_score_diff"] <= SCORE_TOLERANCE == report["tolerance"]


def test_verify_rejects_another_model(exported):
    model, onnx_model, _ = exported
    other = _random_model(model.config)
    with torch.no_grad():
        other.w3.bias.add_(0.01)
    with pytest.raises(ExportVerificationError, match=r"disagree on batch 0 \(\(B, N, T\) = \(1, 1, 1\)"):
        verify_onnx(other, onnx_model, [build_graphs([[2]])])


def _scaled_scores(self, items, adjacency, alias, mask, k):
    s_h = self.model.session_embedding(items, adjacency, alias, mask) * 1.001
    top_scores, top_index = torch.topk(torch.matmul(s_h, self.item_table_t), k[0].item(), dim=1)
    return top_scores, top_index + 1, s_h


def _ids_off_by_one(self, items, adjacency, alias, mask, k):
    s_h = self.model.session_embedding(items, adjacency, alias, mask)
    top_scores, top_index = torch.topk(torch.matmul(s_h, self.item_table_t), k[0].item(), dim=1)
    return top_scores, top_index, s_h


@pytest.mark.parametrize("broken_forward", [_scaled_scores, _ids_off_by_one])
def test_broken_export_writes_nothing(tmp_path, monkeypatch, broken_forward):
    monkeypatch.setattr(onnx_export._ServingGraph, "forward", broken_forward)
    model = _random_model(ModelConfig(n_items=N_ITEMS, hidden_size=D))
    counts = np.arange(N_ITEMS + 1, dtype=np.int64)
    with pytest.raises(ExportVerificationError, match="nothing was written|outside 1"):
        export_bundle(model, tmp_path / "bundle", vocab=Vocab(range(N_ITEMS)), item_counts=counts)
    assert os.listdir(tmp_path) == []


def test_fixed_dimension_is_caught(exported):
    proto = onnx.load_model_from_string(exported[1])
    dim = proto.graph.input[2].type.tensor_type.shape.dim[1]
    dim.dim_value = 7  # as if the exporter had kept the example's T
    with pytest.raises(ExportVerificationError, match=r"'alias' came out with fixed dimension\(s\) \[1\]"):
        onnx_export._check_dynamic(proto)


def test_other_configs_export(tmp_path):
    """Two GNN steps, no hybrid embedding, a max_length cut and count edge weights."""
    model = _random_model(ModelConfig(n_items=30, hidden_size=D, step=2, nonhybrid=True), seed=1)
    vocab = Vocab([f"sku-{i}" for i in range(30)])
    builder = GraphBuilderOptions(max_length=4, edge_weight="count")
    bundle = export_bundle(model, tmp_path / "b", vocab=vocab, item_counts=np.zeros(31, dtype=np.int64),
                           builder=builder)
    assert bundle.graph_builder == builder and bundle.manifest["model"]["step"] == 2
    assert bundle.manifest["verification"]["shapes"][1][2] == 4  # the long session was cut to max_length
    assert Bundle.load(tmp_path / "b").vocab == vocab


def test_export_bundle_checks_vocab(tmp_path, exported):
    with pytest.raises(ValueError, match=f"vocabulary holds 3 items but the model scores {N_ITEMS}"):
        export_bundle(exported[0], tmp_path / "b", vocab=Vocab([1, 2, 3]),
                      item_counts=np.zeros(4, dtype=np.int64))
    assert os.listdir(tmp_path) == []


def test_export_run_bundle(synthetic_run, synthetic_dataset, synthetic_bundle):
    bundle = Bundle.load(synthetic_bundle)
    run_config = load_run_config(synthetic_run)
    dataset = PreparedDataset.load(synthetic_dataset)
    model = load_run(synthetic_run)
    manifest = bundle.manifest
    assert manifest["model"] == run_config["model"]
    # a run trained without a cut is served with the default one, recorded in the bundle
    assert manifest["graph_builder"] == {"max_length": run_config["train"]["max_length"] or DEFAULT_MAX_LENGTH,
                                         "edge_weight": run_config["train"]["edge_weight"]}
    assert manifest["onnx"]["opset"] == OPSET and manifest["onnx"]["exporter"] == "torch.onnx.export(dynamo=True)"
    assert set(manifest["library_versions"]) == {"srgnn_rt", "torch", "onnx", "onnxscript", "onnxruntime", "numpy"}
    report = manifest["verification"]
    assert report["max_abs_score_diff"] <= SCORE_TOLERANCE and [1, 1, 1] in report["shapes"]
    assert len(report["shapes"]) == 7  # 4 random batches + 3 of real test prefixes
    assert bundle.vocab == dataset.vocab
    np.testing.assert_array_equal(bundle.item_counts, dataset.item_counts)
    np.testing.assert_array_equal(bundle.item_embeddings(), model.embedding.weight.detach()[1:].numpy())
    assert json.loads((synthetic_bundle / "manifest.json").read_text()) == manifest


def test_export_run_without_its_dataset(tmp_path, synthetic_run):
    with pytest.raises(FileNotFoundError, match="pass data_dir"):
        export_run(synthetic_run, tmp_path / "b", data_dir=tmp_path / "moved")
    assert os.listdir(tmp_path) == []


def test_export_run_refuses_existing_bundle(tmp_path, synthetic_run):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_run(synthetic_run, tmp_path / "b")
    assert os.listdir(tmp_path / "b") == ["keep.txt"] and os.listdir(tmp_path) == ["b"]
