"""Retrieval mode (srgnn_rt.retrieval): the index against exact scoring, and the bundle's checks on it."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srgnn_rt import retrieval
from srgnn_rt.bundle import (
    INDEX_FILENAME,
    ITEM_EMBEDDINGS_FILENAME,
    MANIFEST_FILENAME,
    MODEL_FILENAME,
    Bundle,
    BundleError,
)
from srgnn_rt.cli import main
from srgnn_rt.runtime import Recommender

pytest.importorskip("faiss")

RECALL_FLOOR = 0.8
"""recall@20 of a quarter of the cells (lists 8, nprobe 2) on the one-epoch synthetic model (measured 0.846
with the validation-selected checkpoint; seeded training and k-means, so deterministic here)."""


@pytest.fixture(scope="module")
def recommenders(indexed_bundle):
    """(exact, index) recommenders of the same bundle."""
    return (Recommender.load(indexed_bundle, device="cpu"),
            Recommender.load(indexed_bundle, device="cpu", retrieval="index"))


def _assert_same(exact, approximate):
    assert len(exact) == len(approximate)
    for a, b in zip(exact, approximate):
        assert (a.fallback, a.n_unknown) == (b.fallback, b.n_unknown)
        np.testing.assert_allclose(b.scores, a.scores, rtol=1e-5, atol=1e-4)
        close = np.isclose(a.scores[:, None], a.scores[None, :], rtol=0, atol=1e-4).sum(axis=1) > 1
        assert [x for x, tie in zip(a.items, close) if not tie] == [x for x, tie in zip(b.items, close) if not tie]


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_full_search_equals_exact(recommenders, exclude_seen):
    exact, index = recommenders
    assert exact.spin_wait and not index.spin_wait  # faiss's threads search right after each encoder run
    raw = exact.bundle.vocab.raw_ids
    rng = np.random.default_rng(0)
    sessions = [[raw[i] for i in rng.integers(0, len(raw), rng.integers(1, 30))] for _ in range(150)]
    sessions += [[-1, raw[3], -2], [-1], []]  # unknown ids counted; no known item falls back
    for k in (1, 20, exact.n_items):
        _assert_same(exact.recommend(sessions, k, exclude_seen=exclude_seen),
                     index.recommend(sessions, k, exclude_seen=exclude_seen))
    assert index.retrieval == "index" and exact.retrieval == "exact"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_full_search_equals_exact_property(recommenders, data):
    exact, index = recommenders
    n_raw = len(exact.bundle.vocab.raw_ids)
    sessions = data.draw(st.lists(st.lists(st.integers(0, n_raw - 1), min_size=1, max_size=40), min_size=1,
                                  max_size=70))
    sessions = [[exact.bundle.vocab.raw_ids[i] for i in session] for session in sessions]
    k = data.draw(st.integers(1, exact.n_items))
    exclude_seen = data.draw(st.booleans())
    _assert_same(exact.recommend(sessions, k, exclude_seen=exclude_seen),
                 index.recommend(sessions, k, exclude_seen=exclude_seen))


def test_recall_of_a_partial_search_on_a_trained_model(indexed_bundle):
    retriever = Recommender.load(indexed_bundle, device="cpu", retrieval="index").retriever
    bundle = Bundle.load(indexed_bundle)
    parameters = retrieval.IndexParameters(lists=8, nprobe=2, candidates=100)  # a quarter of the cells
    partial = retrieval.Retriever(retrieval.build_index(bundle.item_embeddings(), parameters),
                                  bundle.item_embeddings(), parameters)
    recommender = Recommender.load(indexed_bundle, device="cpu")
    sessions = [bundle.vocab.decode(s).tolist() for s in retrieval.synthetic_sessions(bundle.n_items, 500)]
    s_h = recommender.session_embeddings(sessions)
    recall = retrieval.recall_at_k(partial, bundle.item_embeddings(), s_h, 20)
    assert RECALL_FLOOR <= recall <= 1.0
    assert retrieval.recall_at_k(retriever, bundle.item_embeddings(), s_h, 20) == 1.0


def test_exact_top_k_matches_a_full_sort():
    rng = np.random.default_rng(1)
    table, s_h = rng.standard_normal((70_000, 4), dtype=np.float32), rng.standard_normal((3, 4), dtype=np.float32)
    expected = np.argsort(-(s_h @ table.T), axis=1)[:, :7] + 1
    assert np.array_equal(np.sort(retrieval.exact_top_k(table, s_h, 7), axis=1), np.sort(expected, axis=1))


def test_bundle_without_index_loads_and_index_mode_fails_clearly(synthetic_bundle):
    Recommender.load(synthetic_bundle, device="cpu")
    with pytest.raises(BundleError, match="has no item index; add one with `srgnn-rt index"):
        Recommender.load(synthetic_bundle, device="cpu", retrieval="index")
    with pytest.raises(ValueError, match="retrieval must be one of"):
        Recommender.load(synthetic_bundle, device="cpu", retrieval="ann")


def _copy(bundle, tmp_path):
    path = tmp_path / "bundle"
    shutil.copytree(bundle, path)
    return path


def _rewrite_manifest(path, change):
    manifest = json.loads((path / MANIFEST_FILENAME).read_text())
    change(manifest)
    (path / MANIFEST_FILENAME).write_text(json.dumps(manifest))


def test_tampered_index_is_rejected(indexed_bundle, tmp_path):
    path = _copy(indexed_bundle, tmp_path)
    data = bytearray((path / INDEX_FILENAME).read_bytes())
    data[-5] ^= 1
    (path / INDEX_FILENAME).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{INDEX_FILENAME} is corrupted"):
        Bundle.load(path)


def test_index_of_another_table_is_rejected(indexed_bundle, tmp_path):
    import faiss

    path = _copy(indexed_bundle, tmp_path)
    bundle = Bundle.load(path)
    other = retrieval.build_index(bundle.item_embeddings()[:-1], retrieval.IndexParameters(4, 4, 10))
    faiss.write_index(other, str(path / INDEX_FILENAME))
    data = (path / INDEX_FILENAME).read_bytes()
    _rewrite_manifest(path, lambda m: m["files"][INDEX_FILENAME].update(sha256=hashlib.sha256(data).hexdigest(),
                                                                         bytes=len(data)))
    with pytest.raises(BundleError, match="does not match the item table"):
        Recommender.load(path, device="cpu", retrieval="index")
    _rewrite_manifest(path, lambda m: m["retrieval"].update(item_embeddings_sha256="0" * 64))
    with pytest.raises(BundleError, match="built from another item table"):
        Recommender.load(path, device="cpu", retrieval="index")


def test_failed_index_build_leaves_the_bundle_as_it_was(indexed_bundle, tmp_path):
    path = _copy(indexed_bundle, tmp_path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(ValueError, match="lists .* must be at most the number of items"):
        retrieval.add_index(path, retrieval.IndexParameters(10_000, 1, 10))
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_without_faiss_exact_mode_works_and_index_mode_says_what_to_install(indexed_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    exact = Recommender.load(indexed_bundle, device="cpu")
    assert len(exact.recommend_one([exact.bundle.vocab.raw_ids[0]], 5).items) == 5
    with pytest.raises(ImportError, match=r"pip install 'srgnn-rt\[faiss\]'"):
        Recommender.load(indexed_bundle, device="cpu", retrieval="index")


def test_cli_index_adds_an_index_and_prints_recall(synthetic_bundle, tmp_path, capsys):
    path = _copy(synthetic_bundle, tmp_path)
    assert main(["index", str(path), "--lists", "5", "--nprobe", "2", "--recall-sessions", "200"]) == 0
    out = capsys.readouterr().out
    assert "added IVFPQFastScan index" in out and "lists = 5, nprobe = 2, candidates = 200" in out
    assert "<- stored" in out
    stored = next(line.split() for line in out.splitlines() if line.endswith("<- stored"))
    assert stored[0] == "2" and 0.5 <= float(stored[2]) <= 1.0
    assert Recommender.load(path, device="cpu", retrieval="index").retriever.parameters.nprobe == 2
    session = json.dumps(Bundle.load(path).vocab.raw_ids[:3])
    (tmp_path / "sessions.jsonl").write_text(session + "\n")
    assert main(["recommend", str(path), str(tmp_path / "sessions.jsonl"), "-k", "3", "--retrieval", "index"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3
    assert main(["index", str(path), "--lists", "5", "--nprobe", "6"]) == 2
    assert "nprobe (6) must be at most lists (5)" in capsys.readouterr().err


def test_default_parameters_grow_with_the_catalog():
    small, large = retrieval.IndexParameters.default(200), retrieval.IndexParameters.default(1_000_000)
    assert (small.lists, small.nprobe) == (5, 5)
    assert (large.lists, large.nprobe, large.candidates) == (2000, 500, 200)
    assert (large.kind, large.subquantizers) == ("IVFPQFastScan", None)  # d / 2 at build time


def test_index_records_its_kind_and_codes(indexed_bundle):
    bundle = Bundle.load(indexed_bundle)
    section = bundle.manifest["retrieval"]
    assert (section["kind"], section["subquantizers"], section["metric"]) == (
        "IVFPQFastScan", bundle.embedding_size // 2, "inner_product")


def test_ivfflat_index_still_serves_and_full_search_is_exact(synthetic_bundle, recommenders, tmp_path):
    path = _copy(synthetic_bundle, tmp_path)
    n_items = Bundle.load(path).n_items
    retrieval.add_index(path, retrieval.IndexParameters(lists=4, nprobe=4, candidates=n_items, kind="IVFFlat"))
    flat = Recommender.load(path, device="cpu", retrieval="index")
    exact, _ = recommenders
    sessions = [list(exact.bundle.vocab.raw_ids[i:i + 3]) for i in range(0, 60, 3)]
    for got, want in zip(flat.recommend(sessions, 10, exclude_seen=True),
                         exact.recommend(sessions, 10, exclude_seen=True)):
        assert got.items == want.items


def test_index_kind_that_does_not_match_the_file_is_rejected(indexed_bundle, tmp_path):
    path = _copy(indexed_bundle, tmp_path)
    _rewrite_manifest(path, lambda m: m["retrieval"].update(kind="IVFFlat", subquantizers=None))
    with pytest.raises(BundleError, match="does not match the item table"):
        Recommender.load(path, device="cpu", retrieval="index")
    _rewrite_manifest(path, lambda m: m["retrieval"].update(kind="HNSW"))
    with pytest.raises(BundleError, match="'retrieval' section is invalid"):
        Recommender.load(path, device="cpu", retrieval="index")


def test_index_mode_does_not_read_the_exact_model(indexed_bundle, tmp_path):
    path = _copy(indexed_bundle, tmp_path)
    size = (path / MODEL_FILENAME).stat().st_size
    (path / MODEL_FILENAME).write_bytes(b"x" * size)  # would fail its checksum if it were read
    recommender = Recommender.load(path, device="cpu", retrieval="index")
    assert len(recommender.recommend_one([recommender.bundle.vocab.raw_ids[0]], 5).items) == 5
    with pytest.raises(BundleError, match=f"loaded without {MODEL_FILENAME}"):
        _ = recommender.bundle.model_bytes
    with pytest.raises(BundleError, match="corrupted|size|sha256"):
        Bundle.load(path)
    (path / ITEM_EMBEDDINGS_FILENAME).write_bytes(b"x")  # files that are used are still verified
    with pytest.raises(BundleError):
        Recommender.load(path, device="cpu", retrieval="index")
    with pytest.raises(ValueError, match="skip may only name"):
        Bundle.load(path, skip=(ITEM_EMBEDDINGS_FILENAME,))
