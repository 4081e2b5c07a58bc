"""The torch-free runtime: parity with torch through raw ids, request handling, devices, threads."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from srgnn_rt.bundle import Bundle, BundleError, GraphBuilderOptions, write_bundle
from srgnn_rt.dataset import PreparedDataset
from srgnn_rt.graph import build_graphs
from srgnn_rt.runtime import Recommendation, Recommender
from srgnn_rt.vocab import Vocab
from srgnn_rt_torch.model import SRGNN
from srgnn_rt_torch.onnx_export import SCORE_TOLERANCE, export_bundle, export_run
from srgnn_rt_torch.run import load_run

UNKNOWN_RAW_ID = -1  # synthetic raw ids are >= 100000, the Diginetica sample's >= 1


@pytest.fixture(scope="module")
def recommender(synthetic_bundle) -> Recommender:
    return Recommender.load(synthetic_bundle, device="cpu")


@pytest.fixture(scope="module")
def raw_ids(recommender) -> list[int]:
    return recommender.bundle.vocab.raw_ids


def _cuda_loads(model_path) -> bool:
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return False
    session = onnxruntime.InferenceSession(str(model_path), providers=["CUDAExecutionProvider"])
    return session.get_providers()[0] == "CUDAExecutionProvider"


@pytest.fixture(scope="module")
def cuda_works(synthetic_bundle) -> bool:
    return _cuda_loads(synthetic_bundle / "model.onnx")


# --- parity with torch, raw ids in and out ------------------------------------------------------


def _assert_parity(recommender: Recommender, model: SRGNN, internal_sessions, k: int = 20) -> None:
    """The runtime's top-k of raw sessions is torch's top-k: scores within the tolerance,
    ids the same except where torch's scores tie within it."""
    vocab = recommender.bundle.vocab
    raw_sessions = [vocab.decode(np.asarray(s)).tolist() for s in internal_sessions]
    results = recommender.recommend(raw_sessions, k)
    builder = recommender.bundle.graph_builder
    graphs = build_graphs(internal_sessions, n_items=model.config.n_items, max_length=builder.max_length,
                          edge_weight=builder.edge_weight)
    with torch.no_grad():
        arrays = (graphs.items, graphs.adjacency, graphs.alias, graphs.mask)
        expected = model(*(torch.from_numpy(a) for a in arrays)).numpy()
    order = np.argsort(-expected, axis=1, kind="stable")[:, :k]
    for row, result in enumerate(results):
        assert not result.fallback and result.n_unknown == 0 and len(result.items) == k
        ids = np.array([vocab.internal_id(raw) for raw in result.items])
        assert ids.min() >= 1
        np.testing.assert_allclose(result.scores, expected[row, order[row]], rtol=0, atol=SCORE_TOLERANCE)
        np.testing.assert_allclose(expected[row, ids - 1], result.scores, rtol=0, atol=SCORE_TOLERANCE)
        differ = ids != order[row] + 1
        ties = np.abs(expected[row, ids[differ] - 1] - expected[row, order[row][differ]])
        assert np.all(ties <= SCORE_TOLERANCE), f"row {row}: ids differ from torch's without a tie"


def _prefix_sessions(dataset: PreparedDataset, split: str, start: int, size: int) -> list[np.ndarray]:
    prefixes = getattr(dataset, split)
    offsets = prefixes.offsets
    return [prefixes.items[offsets[i]: offsets[i + 1]] for i in range(start, min(start + size, len(prefixes)))]


@pytest.mark.parametrize("size", [1, 7, 64, 512])
def test_parity_synthetic(recommender, synthetic_run, synthetic_dataset, size):
    dataset = PreparedDataset.load(synthetic_dataset)
    _assert_parity(recommender, load_run(synthetic_run), _prefix_sessions(dataset, "test", 100, size))


def test_parity_diginetica(diginetica_sample, tmp_path_factory):
    """Real data: the Diginetica sample prepared as the paper does, one epoch, exported and served."""
    from srgnn_rt_torch.prepare import prepare
    from srgnn_rt_torch.train import TrainConfig, train

    root = tmp_path_factory.mktemp("diginetica")
    prepare(diginetica_sample, root / "data", format="diginetica")
    train(root / "data", root / "run", TrainConfig(epochs=1, hidden_size=32), device="cpu", threads=1,
          progress=False)
    export_run(root / "run", root / "bundle")
    recommender = Recommender.load(root / "bundle", device="cpu")
    dataset = PreparedDataset.load(root / "data")
    model = load_run(root / "run")
    for split, start, size in (("test", 0, 1), ("test", 0, len(dataset.test)), ("train", 0, 512), ("train", 600, 7)):
        _assert_parity(recommender, model, _prefix_sessions(dataset, split, start, size))


def test_session_embeddings_match_torch_and_scores(recommender, synthetic_run, raw_ids):
    model = load_run(synthetic_run)
    sessions = [raw_ids[:4], raw_ids[10:11], raw_ids[20:40:3]]
    s_h = recommender.session_embeddings(sessions)
    internal = [[recommender.bundle.vocab.internal_id(r) for r in s] for s in sessions]
    graphs = build_graphs(internal)
    with torch.no_grad():
        arrays = (graphs.items, graphs.adjacency, graphs.alias, graphs.mask)
        expected = model.session_embedding(*(torch.from_numpy(a) for a in arrays)).numpy()
    assert s_h.dtype == np.float32 and s_h.shape == (3, 16)
    np.testing.assert_allclose(s_h, expected, rtol=0, atol=1e-5)
    # Retrieval over item_embeddings.npy ranks as the model does.
    scores = s_h @ np.asarray(recommender.bundle.item_embeddings()).T
    for row, result in enumerate(recommender.recommend(sessions, k=5)):
        np.testing.assert_allclose(np.sort(scores[row])[::-1][:5], result.scores, rtol=0, atol=1e-4)
    assert recommender.session_embeddings([]).shape == (0, 16)
    with pytest.raises(ValueError, match="session 1 has no known item"):
        recommender.session_embeddings([raw_ids[:2], [UNKNOWN_RAW_ID]])


# --- torch-free -------------------------------------------------------------------------------

_NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test (import {name})")
            return None

    sys.meta_path.insert(0, NoTorch())
    import srgnn_rt
    from srgnn_rt.runtime import Recommender

    recommender = Recommender.load(sys.argv[1], device="cpu")
    raw = recommender.bundle.vocab.raw_ids
    results = recommender.recommend([raw[:3], [raw[5], -1], []], k=5, exclude_seen=True)
    print(json.dumps({"results": [r.to_dict() for r in results], "torch_loaded": "torch" in sys.modules}))
    """
)


def test_runtime_never_imports_torch(synthetic_bundle, recommender, raw_ids):
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, str(synthetic_bundle)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["torch_loaded"] is False
    expected = recommender.recommend([raw_ids[:3], [raw_ids[5], -1], []], k=5, exclude_seen=True)
    assert report["results"] == [json.loads(json.dumps(r.to_dict())) for r in expected]


# --- devices ----------------------------------------------------------------------------------


def test_cpu_device(recommender):
    assert recommender.provider == "CPUExecutionProvider"


def test_auto_falls_back_to_cpu_with_one_warning(synthetic_bundle, cuda_works):
    if cuda_works:
        pytest.skip("onnxruntime's CUDA provider loads here, so 'auto' does not fall back")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recommender = Recommender.load(synthetic_bundle, device="auto")
    ours = [w for w in caught if "srgnn_rt" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
    assert "running on the CPU" in str(ours[0].message)
    assert recommender.provider == "CPUExecutionProvider"


def test_cuda_without_provider_raises(synthetic_bundle, cuda_works):
    if cuda_works:
        pytest.skip("onnxruntime's CUDA provider loads here")
    with pytest.raises(ValueError, match="device='cuda' was asked for but"):
        Recommender.load(synthetic_bundle, device="cuda")


@pytest.mark.cuda
def test_cuda_matches_cpu(synthetic_bundle, cuda_works, recommender, raw_ids):
    if not cuda_works:
        pytest.skip("onnxruntime's CUDA provider does not load here (no GPU or no CUDA libraries)")
    on_cuda = Recommender.load(synthetic_bundle, device="cuda")
    assert on_cuda.provider == "CUDAExecutionProvider"
    sessions = [raw_ids[i: i + 1 + i % 9] for i in range(64)]
    for got, want in zip(on_cuda.recommend(sessions, k=10), recommender.recommend(sessions, k=10)):
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=SCORE_TOLERANCE)


def test_io_binding_path(synthetic_bundle, recommender, raw_ids):
    """The IO-binding code that CUDA uses, run with CPU memory, gives the plain path's answers."""
    bound = Recommender.load(synthetic_bundle, device="cpu")
    bound._io_device = "cpu"
    sessions = [raw_ids[:5], raw_ids[7:8], []]
    for got, want in zip(bound.recommend(sessions, k=7, exclude_seen=True),
                         recommender.recommend(sessions, k=7, exclude_seen=True)):
        assert got.items == want.items and np.array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(bound.session_embeddings(sessions[:2]), recommender.session_embeddings(sessions[:2]))


@pytest.mark.parametrize("options, error, message", [
    ({"device": "gpu"}, ValueError, "device must be one of"),
    ({"threads": 0}, ValueError, "threads must be None or an int >= 1"),
    ({"spin_wait": "no"}, TypeError, "spin_wait must be True or False, got 'no'"),
])
def test_load_options(synthetic_bundle, options, error, message):
    with pytest.raises(error, match=message):
        Recommender.load(synthetic_bundle, **options)


def test_threads_option(synthetic_bundle, recommender, raw_ids):
    single = Recommender.load(synthetic_bundle, device="cpu", threads=1)
    got, want = single.recommend_one(raw_ids[:6]), recommender.recommend_one(raw_ids[:6])
    assert got.items == want.items


def test_spin_wait_option(synthetic_bundle, recommender, raw_ids):
    quiet = Recommender.load(synthetic_bundle, device="cpu", threads=2, spin_wait=False)
    assert recommender.spin_wait and not quiet.spin_wait
    assert quiet._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    got, want = quiet.recommend([raw_ids[:6], raw_ids[2:3]], k=9), recommender.recommend([raw_ids[:6], raw_ids[2:3]], k=9)
    assert [r.items for r in got] == [r.items for r in want]


# --- requests ---------------------------------------------------------------------------------


def test_result(recommender, raw_ids):
    result = recommender.recommend_one(raw_ids[3:8], k=10)
    assert isinstance(result, Recommendation)
    assert len(result.items) == 10 and all(type(item) is int for item in result.items)
    assert set(result.items) <= set(raw_ids)
    assert result.scores.dtype == np.float32 and result.scores.shape == (10,)
    assert np.all(np.diff(result.scores) <= 0)
    assert (result.n_unknown, result.fallback) == (0, False)
    assert json.loads(json.dumps(result.to_dict()))["items"] == result.items
    assert recommender.recommend([], k=10) == []


def test_unknown_ids_are_dropped_and_counted(recommender, raw_ids):
    clean = recommender.recommend_one(raw_ids[:4])
    noisy = recommender.recommend_one([UNKNOWN_RAW_ID, raw_ids[0], raw_ids[1], 99, raw_ids[2], raw_ids[3], 98])
    assert noisy.n_unknown == 3 and not noisy.fallback
    assert noisy.items == clean.items and np.array_equal(noisy.scores, clean.scores)
    with pytest.raises(ValueError, match="session 1 has unknown item id 99 at position 2"):
        recommender.recommend([raw_ids[:2], [raw_ids[0], raw_ids[1], 99]], unknown="error")


def test_sessions_without_known_items_fall_back_to_popularity(recommender, raw_ids):
    counts = recommender.bundle.item_counts
    order = np.lexsort((np.arange(1, len(counts)), -counts[1:])) + 1  # most clicks first, ties by id
    expected = recommender.bundle.vocab.decode(order[:15]).tolist()
    for session, n_unknown in (([], 0), ([UNKNOWN_RAW_ID, 7], 2)):
        result = recommender.recommend_one(session, k=15)
        assert result.fallback and result.n_unknown == n_unknown
        assert result.items == expected
        np.testing.assert_array_equal(result.scores, counts[order[:15]].astype(np.float32))
    with pytest.raises(ValueError, match=r"session 1 has no known item \(1 unknown ids\)"):
        recommender.recommend([raw_ids[:2], [UNKNOWN_RAW_ID]], empty="error")
    with pytest.raises(ValueError, match=r"session 0 has no known item \(0 unknown ids\)"):
        recommender.recommend_one([], empty="error")


def test_bad_k(recommender, raw_ids):
    n = recommender.n_items
    for k, error, message in (
        (0, ValueError, rf"k must be in 1\.\.{n} \(the model's number of items\), got 0"),
        (-3, ValueError, rf"k must be in 1\.\.{n}"),
        (n + 1, ValueError, rf"k must be in 1\.\.{n} \(the model's number of items\), got {n + 1}"),
        (2.0, TypeError, "k must be an int, got 2.0 of type float"),
        (True, TypeError, "k must be an int, got True"),
        ("5", TypeError, "k must be an int"),
    ):
        with pytest.raises(error, match=message):
            recommender.recommend_one(raw_ids[:2], k=k)


def test_k_limits(recommender, raw_ids):
    assert len(recommender.recommend_one(raw_ids[:2], k=np.int64(1)).items) == 1
    everything = recommender.recommend_one(raw_ids[:2], k=recommender.n_items)
    assert sorted(everything.items) == sorted(raw_ids)


@pytest.mark.parametrize("session, message", [
    ([1.5], "session 0 has 1.5 of type float at position 0; raw item ids are int or str"),
    ([None], "session 0 has None of type NoneType"),
    ([True], "session 0 has True of type bool"),
    (["100123"], r"session 0 has '100123' \(str\) at position 0, but this model's raw item ids are all int"),
    ("100123", "session 0 must be a sequence of raw item ids, got str"),
    (100123, "session 0 must be a sequence of raw item ids, got int"),
    (np.array([[1, 2]]), "session 0 must be a 1-D array"),
])
def test_bad_raw_ids(recommender, session, message):
    with pytest.raises(TypeError, match=message):
        recommender.recommend([session])


def test_bad_batches_and_options(recommender, raw_ids):
    with pytest.raises(TypeError, match="session 0 must be a sequence of raw item ids, got int .*recommend_one"):
        recommender.recommend(raw_ids[:3])
    with pytest.raises(TypeError, match="sessions must be a list of sessions"):
        recommender.recommend("abc")
    with pytest.raises(ValueError, match="unknown must be one of"):
        recommender.recommend_one(raw_ids[:2], unknown="ignore")
    with pytest.raises(ValueError, match="empty must be one of"):
        recommender.recommend_one(raw_ids[:2], empty="zeros")
    with pytest.raises(TypeError, match="exclude_seen must be a bool"):
        recommender.recommend_one(raw_ids[:2], exclude_seen=1)


def test_numpy_ids_are_accepted(recommender, raw_ids):
    plain = recommender.recommend_one(raw_ids[:5])
    for session in (np.array(raw_ids[:5]), [np.int32(r) for r in raw_ids[:5]]):
        assert recommender.recommend_one(session).items == plain.items


def test_exclude_seen(recommender, raw_ids):
    session = [raw_ids[0], raw_ids[1], raw_ids[0], raw_ids[5]]
    n = recommender.n_items
    everything = recommender.recommend_one(session, k=n)
    unseen = [item for item in everything.items if item not in session]
    result = recommender.recommend_one(session, k=20, exclude_seen=True)
    assert result.items == unseen[:20] and len(result.items) == 20
    np.testing.assert_array_equal(result.scores, everything.scores[[everything.items.index(i) for i in unseen[:20]]])
    # Fewer than k remain: all of them.
    rest = recommender.recommend_one(session, k=n - 1, exclude_seen=True)
    assert rest.items == unseen and len(rest.items) == n - 3


@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_batch_answers_are_per_session_answers(recommender, raw_ids, data):
    """A session's answer does not depend on the batch around it; unknown ids change nothing;
    exclude_seen is the full ranking without the session's items."""
    known = st.sampled_from(raw_ids)
    session = st.lists(st.one_of(known, known, known, st.integers(-50, -1)), max_size=12)
    sessions = data.draw(st.lists(session, min_size=1, max_size=8))
    k = data.draw(st.integers(1, 30))
    exclude_seen = data.draw(st.booleans())
    batch = recommender.recommend(sessions, k, exclude_seen=exclude_seen)
    for session, result in zip(sessions, batch):
        cleaned = [raw for raw in session if raw >= 0]
        assert result.n_unknown == len(session) - len(cleaned) and result.fallback == (not cleaned)
        alone = recommender.recommend_one(cleaned, k, exclude_seen=exclude_seen)
        np.testing.assert_allclose(result.scores, alone.scores, rtol=0, atol=1e-5)
        if exclude_seen and cleaned:
            full = recommender.recommend_one(cleaned, recommender.n_items)
            assert alone.items == [item for item in full.items if item not in cleaned][:k]
            assert not set(result.items) & set(cleaned)


def test_large_batches_run_in_length_buckets_without_changing_answers(recommender, raw_ids, monkeypatch):
    """Buckets of at most BUCKET_SIZE (4 here) return each session's own answer, in order."""
    import srgnn_rt.runtime

    rng = np.random.default_rng(3)
    sessions = [rng.choice(raw_ids, size=int(length)).tolist() for length in rng.integers(1, 40, size=23)]
    monkeypatch.setattr(srgnn_rt.runtime, "BUCKET_SIZE", 4)
    for exclude_seen in (False, True):
        batch = recommender.recommend(sessions, 10, exclude_seen=exclude_seen)
        for session, result in zip(sessions, batch):
            alone = recommender.recommend_one(session, 10, exclude_seen=exclude_seen)
            assert result.items == alone.items
            np.testing.assert_allclose(result.scores, alone.scores, rtol=0, atol=1e-5)
    embeddings = recommender.session_embeddings(sessions)
    for row, session in zip(embeddings, sessions):
        np.testing.assert_allclose(row, recommender.session_embeddings([session])[0], rtol=0, atol=1e-5)


# --- bundles of other kinds -------------------------------------------------------------------


def _rewrite(source: Bundle, target, **changes) -> Bundle:
    """A copy of ``source`` as a new bundle, with some of write_bundle's arguments changed."""
    manifest = {key: value for key, value in source.manifest.items() if key not in ("format", "format_version",
                                                                                    "files")}
    arguments = dict(model=source.model_path.read_bytes(), vocab=source.vocab, item_counts=source.item_counts,
                     item_embeddings=np.asarray(source.item_embeddings()), manifest=manifest)
    arguments.update(changes)
    return write_bundle(target, **arguments)


def test_string_raw_ids(tmp_path, recommender, raw_ids):
    source = recommender.bundle
    names = Vocab([f"sku-{raw}" for raw in source.vocab.raw_ids])
    strings = Recommender.load(_rewrite(source, tmp_path / "b", vocab=names), device="cpu")
    assert strings.raw_id_type is str and recommender.raw_id_type is int
    result = strings.recommend_one([f"sku-{raw}" for raw in raw_ids[:4]] + ["sku-unknown"])
    assert result.items == [f"sku-{raw}" for raw in recommender.recommend_one(raw_ids[:4]).items]
    assert result.n_unknown == 1
    with pytest.raises(TypeError, match="this model's raw item ids are all str"):
        strings.recommend_one([raw_ids[0]])


def test_mixed_raw_ids(tmp_path, recommender, raw_ids):
    source = recommender.bundle
    mixed = Vocab([raw if i % 2 else str(raw) for i, raw in enumerate(source.vocab.raw_ids)])
    served = Recommender.load(_rewrite(source, tmp_path / "b", vocab=mixed), device="cpu")
    assert served.raw_id_type is None
    session = [str(raw_ids[0]), raw_ids[1], raw_ids[0]]  # raw_ids[0] is stored as a str: the int is unknown
    result = served.recommend_one(session)
    assert result.n_unknown == 1 and len(result.items) == 20


def test_model_and_vocab_disagree_on_n_items(tmp_path, recommender):
    source = recommender.bundle
    n = source.n_items - 1
    manifest = {key: value for key, value in source.manifest.items() if key not in ("format", "format_version",
                                                                                    "files")}
    manifest.update(n_items=n, model={**manifest["model"], "n_items": n})
    smaller = _rewrite(source, tmp_path / "b", vocab=Vocab(source.vocab.raw_ids[:n]),
                       item_counts=source.item_counts[:-1], item_embeddings=np.asarray(source.item_embeddings())[:-1],
                       manifest=manifest)
    with pytest.raises(BundleError, match=f"model.onnx was exported for n_items = {n + 1} but manifest.json "
                                          f"and the vocabulary say {n}"):
        Recommender.load(smaller, device="cpu")


def test_bad_bundle_is_refused(tmp_path, recommender):
    bundle = _rewrite(recommender.bundle, tmp_path / "b")
    with open(bundle.model_path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match="model.onnx is corrupted"):
        Recommender.load(tmp_path / "b")


def test_long_sessions_are_cut_to_max_length(tmp_path, synthetic_run, synthetic_dataset, raw_ids):
    dataset = PreparedDataset.load(synthetic_dataset)
    export_bundle(load_run(synthetic_run), tmp_path / "b", vocab=dataset.vocab, item_counts=dataset.item_counts,
                  builder=GraphBuilderOptions(max_length=3))
    cut = Recommender.load(tmp_path / "b", device="cpu")
    assert cut.max_length == 3
    long = [raw_ids[i] for i in (4, 9, 4, 17, 30, 2, 9)]
    got, want = cut.recommend([long, long[-3:]], k=10)
    assert got.items == want.items and np.array_equal(got.scores, want.scores)
    # exclude_seen leaves out the items of the kept clicks: the cut ones are not part of the session.
    everything = cut.recommend_one(long, k=cut.n_items)
    assert cut.recommend_one(long, k=10, exclude_seen=True).items == [
        item for item in everything.items if item not in long[-3:]][:10]


# --- bounds: one session must not cost everyone ------------------------------------------------

CAP = 6


@pytest.fixture(scope="module")
def capped(synthetic_bundle) -> Recommender:
    """The synthetic bundle served with a cut at CAP known clicks and at most 40 raw clicks a session."""
    return Recommender.load(synthetic_bundle, device="cpu", max_length=CAP, max_clicks=40)


def _cut_reference(vocab: Vocab, session: list, cap: int) -> tuple[list, int]:
    """The documented cut, spelled out: the last ``cap`` known raw ids, and the unknown ids from the
    first of them on (every unknown id when the session holds at most ``cap`` known ones)."""
    known_at = [position for position, raw in enumerate(session) if vocab.internal_id(raw)]
    start = known_at[-cap] if len(known_at) > cap else 0
    tail = session[start:]
    return [raw for raw in tail if vocab.internal_id(raw)], sum(not vocab.internal_id(raw) for raw in tail)


def test_bundles_record_a_cut_and_old_ones_get_the_default(recommender, synthetic_bundle, tmp_path):
    from srgnn_rt.runtime import DEFAULT_MAX_LENGTH

    # export_run of a run trained without a cut records the default.
    assert recommender.bundle.graph_builder.max_length == DEFAULT_MAX_LENGTH == recommender.max_length
    old = _rewrite(recommender.bundle, tmp_path / "old", manifest={
        **{key: value for key, value in recommender.bundle.manifest.items() if key not in ("format", "format_version",
                                                                                           "files")},
        "graph_builder": {"max_length": None, "edge_weight": "binary"}})
    assert old.graph_builder.max_length is None
    assert Recommender.load(old.path, device="cpu").max_length == DEFAULT_MAX_LENGTH
    assert Recommender.load(old.path, device="cpu", max_length=7).max_length == 7


@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_cut_keeps_the_last_known_clicks(capped, recommender, raw_ids, data):
    """The cut walks back to the CAP-th last known click; within the cap nothing changes; a session's
    answer is the answer to its kept clicks, whatever the batch around it."""
    known = st.sampled_from(raw_ids[:30])
    session = st.lists(st.one_of(known, known, st.integers(-5, -1)), max_size=20)
    sessions = data.draw(st.lists(session, min_size=1, max_size=6))
    k = data.draw(st.integers(1, 10))
    vocab = capped.bundle.vocab
    for session, result in zip(sessions, capped.recommend(sessions, k)):
        kept, n_unknown = _cut_reference(vocab, session, CAP)
        assert result.n_unknown == n_unknown
        alone = recommender.recommend_one(kept, k)  # no cut needed: at most CAP clicks
        assert result.items == alone.items and result.fallback == alone.fallback
        np.testing.assert_allclose(result.scores, alone.scores, rtol=0, atol=1e-5)
        if len(session) <= CAP:  # within the cap: exactly what the uncut runtime answers
            uncut = recommender.recommend_one(session, k)
            assert (result.items, result.n_unknown) == (uncut.items, uncut.n_unknown)


class _Watched(list):
    """A session that records which positions were read."""

    def __init__(self, values):
        super().__init__(values)
        self.read = set()

    def __getitem__(self, position):
        self.read.add(position)
        return super().__getitem__(position)


def test_cut_reads_only_the_tail(capped, raw_ids):
    """Clicks before the cut are not looked at: not read, type-checked or counted."""
    session = _Watched([2.5] + [raw_ids[0]] * 30 + [-1, raw_ids[1], -2] + raw_ids[2:7])
    result = capped.recommend_one(session)
    assert session.read == set(range(len(session) - 9, len(session)))  # up to the 7th known click from the end
    assert result.n_unknown == 1  # -1 lies before the 6th known click from the end, -2 after it
    # A wrong type or unknown id before the start goes unseen; in the kept tail it is an error naming its position.
    assert capped.recommend_one([1.5, raw_ids[0], -1] + raw_ids[:CAP], unknown="error").n_unknown == 0
    with pytest.raises(TypeError, match="session 0 has 1.5 of type float at position 0"):
        capped.recommend_one([1.5] + raw_ids[:CAP])  # only CAP known clicks: read whole
    with pytest.raises(TypeError, match="session 0 has 1.5 of type float at position 1"):
        capped.recommend_one(raw_ids[:1] + [1.5] + raw_ids[:CAP - 1])
    with pytest.raises(ValueError, match="session 0 has unknown item id an int of 16610 bits at position 0"):
        capped.recommend_one([10**5000] + raw_ids[:CAP - 1], unknown="error")
    with pytest.raises(TypeError, match="session 1 has 'abc' \\(str\\) at position 2, but this model's raw"):
        capped.recommend([raw_ids[:3], raw_ids[:2] + ["abc"]])


def test_hard_limit_and_request_cost(capped, recommender, raw_ids):
    long = raw_ids[:1] * 41
    with pytest.raises(ValueError, match="session 1 has 41 clicks, more than max_clicks=40"):
        capped.recommend([raw_ids[:3], long])
    with pytest.raises(ValueError, match="session 0 has 41 clicks, more than max_clicks=40"):
        capped.session_embeddings([np.array(long)])
    assert capped.max_clicks == 40 and recommender.max_clicks == 20_000
    # The default refuses a 5 M-id session by its length, before reading it.
    with pytest.raises(ValueError, match="session 0 has 5000000 clicks, more than max_clicks=20000"):
        recommender.recommend_one(_Watched([0]) * 5_000_000)
    assert [capped.request_cost(s) for s in ([], raw_ids[:2], [-1] * 30, np.array(raw_ids[:9]))] == [0, 2, CAP, CAP]
    assert recommender.request_cost(raw_ids[:1] * 10_000) == recommender.max_length
    with pytest.raises(ValueError, match="41 clicks, more than max_clicks=40"):
        capped.request_cost(long)
    with pytest.raises(TypeError, match="must be a sequence of raw item ids, got int"):
        capped.request_cost(5)
    for bad, error in ((0, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="max_clicks"):
            Recommender.load(recommender.bundle, device="cpu", max_clicks=bad)
        with pytest.raises(error, match="max_length"):
            Recommender.load(recommender.bundle, device="cpu", max_length=bad)
    assert Recommender.load(recommender.bundle, device="cpu", max_clicks=None).max_clicks is None


@given(
    sizes=st.lists(st.tuples(st.integers(1, 300), st.integers(0, 300)), min_size=1, max_size=200),
    max_size=st.integers(1, 80),
)
@settings(max_examples=100, deadline=None)
def test_cost_buckets_bound_padding(sizes, max_size):
    """Every session in exactly one bucket; no bucket over max_size; padding at most doubles a run's
    graph arrays (or the run is small)."""
    from srgnn_rt.runtime import SMALL_FEED_BYTES, cost_buckets, graph_bytes

    n_nodes = np.array([n for n, _ in sizes])
    lengths = n_nodes + np.array([extra for _, extra in sizes])  # a session has at least as many clicks as nodes
    buckets = cost_buckets(n_nodes, lengths, max_size)
    assert sorted(np.concatenate(buckets).tolist()) == list(range(len(sizes)))
    for bucket in buckets:
        assert 1 <= len(bucket) <= max_size
        padded = len(bucket) * graph_bytes(n_nodes[bucket].max(), lengths[bucket].max())
        assert padded <= max(2 * graph_bytes(n_nodes[bucket], lengths[bucket]).sum(), SMALL_FEED_BYTES)


def _feeds_of(recommender: Recommender, sessions) -> tuple[list[dict], list[Recommendation]]:
    """The graph arrays of every model run of ``recommend(sessions)``, and its answers."""
    feeds = []
    run = recommender._run

    def spy(feed, outputs):
        feeds.append({name: array.shape for name, array in feed.items()})
        return run(feed, outputs)

    recommender._run = spy
    try:
        return feeds, recommender.recommend(sessions, 20)
    finally:
        del recommender._run


def _cells(feed: dict) -> int:
    batch, nodes, columns = feed["adjacency"]
    return batch * nodes * columns


def test_one_long_session_does_not_pad_the_others(recommender, raw_ids):
    """63 three-click sessions plus one of 10,000 clicks: the 63 run exactly as they do alone, the long
    one (cut to max_length) runs on its own, and answers match one-by-one."""
    rng = np.random.default_rng(8)
    short = [rng.choice(raw_ids, size=3).tolist() for _ in range(63)]
    long = rng.choice(raw_ids, size=10_000).tolist()
    alone_feeds, alone = _feeds_of(recommender, short)
    mixed_feeds, mixed = _feeds_of(recommender, short + [long])
    assert len(alone_feeds) == 1 and alone_feeds[0] in mixed_feeds
    _, long_alone = _feeds_of(recommender, [long])
    (long_feed,) = [feed for feed in mixed_feeds if feed != alone_feeds[0]]
    assert long_feed["items"][0] == 1 and long_feed["alias"][1] <= recommender.max_length
    # The largest run holds at most 2x the adjacency cells of the largest run of either part alone.
    assert max(map(_cells, mixed_feeds)) <= 2 * max(_cells(alone_feeds[0]), _cells(long_feed))
    for got, want in zip(mixed, alone + long_alone):
        assert got.items == want.items
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-5)


@given(data=st.data())
@settings(max_examples=25, deadline=None)
def test_bucketed_answers_are_one_by_one_answers(capped, raw_ids, data):
    """Whatever the buckets (forced small here), each session gets its own answer, in order."""
    import srgnn_rt.runtime

    known = st.sampled_from(raw_ids)
    session = st.lists(st.one_of(known, known, known, st.just(UNKNOWN_RAW_ID)), min_size=1, max_size=40)
    sessions = data.draw(st.lists(session, min_size=1, max_size=12))
    exclude_seen = data.draw(st.booleans())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(srgnn_rt.runtime, "SMALL_FEED_BYTES", data.draw(st.sampled_from([0, 200, 1 << 16])))
        patch.setattr(srgnn_rt.runtime, "BUCKET_SIZE", data.draw(st.integers(1, 8)))
        batch = capped.recommend(sessions, 10, exclude_seen=exclude_seen)
    for session, result in zip(sessions, batch):
        alone = capped.recommend_one(session, 10, exclude_seen=exclude_seen)
        assert (result.items, result.n_unknown, result.fallback) == (alone.items, alone.n_unknown, alone.fallback)
        np.testing.assert_allclose(result.scores, alone.scores, rtol=0, atol=1e-5)


# --- threads ----------------------------------------------------------------------------------


def _requests(raw_ids, n: int, seed: int) -> list[tuple]:
    """n mixed requests: 1 to 40 sessions of 0 to 25 clicks, unknown ids, any k, exclude_seen or not."""
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(n):
        size = int(rng.choice([1, 1, 2, 5, 40]))
        sessions = []
        for _ in range(size):
            clicks = rng.choice(raw_ids, size=int(rng.integers(0, 26))).tolist()
            if rng.random() < 0.2:
                clicks.append(UNKNOWN_RAW_ID)
            sessions.append(clicks)
        requests.append((sessions, int(rng.integers(1, 51)), bool(rng.random() < 0.3)))
    return requests


def _same(got: list[Recommendation], want: list[Recommendation]) -> bool:
    return len(got) == len(want) and all(
        g.items == w.items and np.array_equal(g.scores, w.scores) and (g.n_unknown, g.fallback) == (w.n_unknown,
                                                                                                   w.fallback)
        for g, w in zip(got, want)
    )


def _concurrent_matches_sequential(recommender: Recommender, raw_ids, n_threads: int, per_thread: int) -> None:
    requests = _requests(raw_ids, 1000, seed=0)
    expected = [recommender.recommend(s, k, exclude_seen=e) for s, k, e in requests]

    def worker(thread: int) -> list[int]:
        order = np.random.default_rng(thread).permutation(len(requests))[:per_thread]
        wrong = []
        for index in order.tolist():
            sessions, k, exclude_seen = requests[index]
            if not _same(recommender.recommend(sessions, k, exclude_seen=exclude_seen), expected[index]):
                wrong.append(index)
        return wrong

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        wrong = [index for found in pool.map(worker, range(n_threads)) for index in found]
    assert wrong == []


def test_threads_give_sequential_answers(recommender, raw_ids):
    """16 threads x 1,000 mixed requests (each thread its own order) against one Recommender."""
    _concurrent_matches_sequential(recommender, raw_ids, n_threads=16, per_thread=1000)
