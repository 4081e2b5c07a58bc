"""Retrieval-only bundles (no model.onnx, for catalogs whose exact model passes ONNX's 2 GB): export, checks, serving."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from srgnn_rt.bundle import (
    ENCODER_FILENAME,
    INDEX_FILENAME,
    ITEM_COUNTS_FILENAME,
    ITEM_EMBEDDINGS_FILENAME,
    MANIFEST_FILENAME,
    MODEL_FILENAME,
    Bundle,
    BundleError,
)
from srgnn_rt.cli import main
from srgnn_rt.runtime import Recommender

pytest.importorskip("faiss")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def retrieval_only_bundle(synthetic_run, tmp_path_factory):
    """``srgnn-rt export --retrieval-only`` of the shared run, before ``srgnn-rt index``."""
    path = tmp_path_factory.mktemp("retrieval-only") / "bundle"
    main(["export", str(synthetic_run), str(path), "--retrieval-only"])
    return path


@pytest.fixture(scope="module")
def indexed_retrieval_only(retrieval_only_bundle, tmp_path_factory):
    """A copy of it with ``srgnn-rt index`` that searches every item (nprobe = lists, C = n_items)."""
    path = tmp_path_factory.mktemp("retrieval-only-indexed") / "bundle"
    shutil.copytree(retrieval_only_bundle, path)
    n_items = Bundle.load(path).n_items
    main(["index", str(path), "--lists", "4", "--nprobe", "4", "--candidates", str(n_items),
          "--recall-sessions", "50"])
    return path


def _copy(bundle, tmp_path):
    path = tmp_path / "bundle"
    shutil.copytree(bundle, path)
    return path


def test_export_writes_no_exact_model(retrieval_only_bundle, synthetic_bundle):
    bundle = Bundle.load(retrieval_only_bundle)
    assert bundle.retrieval_only and not (retrieval_only_bundle / MODEL_FILENAME).exists()
    assert MODEL_FILENAME not in bundle.manifest["files"] and bundle.has_file(ENCODER_FILENAME)
    full = Bundle.load(synthetic_bundle)
    assert not full.retrieval_only
    assert bundle.manifest["files"][ITEM_EMBEDDINGS_FILENAME] == full.manifest["files"][ITEM_EMBEDDINGS_FILENAME]
    report = bundle.manifest["verification"]  # s_h x table against torch, on the small batches
    assert report["max_abs_score_diff"] <= report["tolerance"] and [1, 1, 1] in report["shapes"]
    assert all(shape[0] <= 16 for shape in report["shapes"])


def test_serves_in_index_mode_as_exact_mode_of_the_full_bundle(indexed_retrieval_only, synthetic_bundle):
    from test_retrieval import _assert_same

    index = Recommender.load(indexed_retrieval_only, device="cpu", retrieval="index")
    exact = Recommender.load(synthetic_bundle, device="cpu")
    raw = exact.bundle.vocab.raw_ids
    rng = np.random.default_rng(1)
    sessions = [[raw[i] for i in rng.integers(0, len(raw), rng.integers(1, 30))] for _ in range(100)]
    sessions += [[-1, raw[3], -2], [-1], []]
    for k, exclude_seen in ((1, False), (20, True), (exact.n_items, False)):
        _assert_same(exact.recommend(sessions, k, exclude_seen=exclude_seen),
                     index.recommend(sessions, k, exclude_seen=exclude_seen))


def test_exact_mode_refuses_it_clearly(retrieval_only_bundle, indexed_retrieval_only, capsys):
    for path in (retrieval_only_bundle, indexed_retrieval_only):
        for source in (path, Bundle.load(path)):  # from the manifest alone, or from the loaded bundle
            with pytest.raises(BundleError, match=r"retrieval-only.*retrieval='index'.*srgnn-rt index"):
                Recommender.load(source, device="cpu")
    with pytest.raises(BundleError, match="srgnn-rt index"):  # no index yet
        Recommender.load(retrieval_only_bundle, device="cpu", retrieval="index")
    assert main(["recommend", str(retrieval_only_bundle)]) != 0
    assert "retrieval-only" in capsys.readouterr().err


@pytest.mark.parametrize("name", [ENCODER_FILENAME, ITEM_EMBEDDINGS_FILENAME, ITEM_COUNTS_FILENAME, INDEX_FILENAME])
def test_tampered_or_missing_file_is_refused(indexed_retrieval_only, tmp_path, name):
    path = _copy(indexed_retrieval_only, tmp_path)
    data = bytearray((path / name).read_bytes())
    data[-1] ^= 1
    (path / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} is corrupted"):
        Recommender.load(path, device="cpu", retrieval="index")
    (path / name).unlink()
    with pytest.raises(BundleError, match=f"lacks {name}"):
        Recommender.load(path, device="cpu", retrieval="index")


def _rewrite_manifest(path, change):
    manifest = json.loads((path / MANIFEST_FILENAME).read_text())
    change(manifest)
    (path / MANIFEST_FILENAME).write_text(json.dumps(manifest))


def test_manifest_must_agree_with_the_files(indexed_retrieval_only, tmp_path):
    path = _copy(indexed_retrieval_only, tmp_path)
    _rewrite_manifest(path, lambda m: m.update(retrieval_only=False))  # then model.onnx is required
    with pytest.raises(BundleError, match=f"files has no sha256 and size \\(bytes\\) for {MODEL_FILENAME}"):
        Bundle.load(path)
    _rewrite_manifest(path, lambda m: m.update(retrieval_only="yes"))
    with pytest.raises(BundleError, match="retrieval_only must be true or false"):
        Bundle.load(path)
    _rewrite_manifest(path, lambda m: (m.update(retrieval_only=True), m["files"].pop(ENCODER_FILENAME)))
    with pytest.raises(BundleError, match=f"lists {ENCODER_FILENAME} and not {MODEL_FILENAME}"):
        Bundle.load(path)


def test_a_full_bundle_without_model_onnx_is_refused(synthetic_bundle, tmp_path):
    path = _copy(synthetic_bundle, tmp_path)
    (path / MODEL_FILENAME).unlink()
    for skip in ((), (MODEL_FILENAME,)):  # index mode does not read it, but it must be there
        with pytest.raises(BundleError, match=f"lacks {MODEL_FILENAME}"):
            Bundle.load(path, skip=skip)
    (path / MODEL_FILENAME).write_bytes(b"short")
    with pytest.raises(BundleError, match=f"{MODEL_FILENAME} is corrupted.*5 bytes"):
        Bundle.load(path, skip=(MODEL_FILENAME,))


def test_export_turns_retrieval_only_when_the_exact_model_is_too_large(synthetic_run, tmp_path, monkeypatch,
                                                                       caplog):
    from srgnn_rt_torch import onnx_export

    monkeypatch.setattr(onnx_export, "MAX_EXACT_MODEL_BYTES", 1000)
    with caplog.at_level(logging.WARNING, logger=onnx_export.__name__):
        bundle = onnx_export.export_run(synthetic_run, tmp_path / "bundle")
    assert bundle.retrieval_only and not (tmp_path / "bundle" / MODEL_FILENAME).exists()
    assert "writing a retrieval-only bundle" in caplog.text and "srgnn-rt index" in caplog.text
    with pytest.raises(BundleError, match="retrieval-only"):
        _ = bundle.model_bytes


def test_table_check_catches_a_table_that_is_not_the_model_s(synthetic_run):
    from srgnn_rt.bundle import GraphBuilderOptions
    from srgnn_rt_torch import onnx_export
    from srgnn_rt_torch.run import load_run

    model = load_run(synthetic_run)
    n_items = model.config.n_items
    batches = onnx_export._random_batches(n_items, GraphBuilderOptions(max_length=20), seed=0)
    encoder = onnx_export.export_encoder_onnx(model)
    table = model.embedding.weight.detach().numpy()
    report = onnx_export.verify_table_scores(model, encoder, table[1:], batches)
    assert report["max_abs_score_diff"] <= report["tolerance"]
    with pytest.raises(onnx_export.ExportVerificationError, match="s_h times the item table and torch disagree"):
        onnx_export.verify_table_scores(model, encoder, table[:-1], batches)  # off by one row: the padding row first
