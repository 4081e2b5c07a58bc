"""The bundle format: atomic writes, checksums, format version and consistency checks (no torch)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import threading

import numpy as np
import onnx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import srgnn_rt.atomic as atomic
import srgnn_rt.bundle as bundle_module
from srgnn_rt.bundle import (
    BUNDLE_FILES,
    FORMAT_VERSION,
    Bundle,
    BundleError,
    GraphBuilderOptions,
    write_bundle,
)
from srgnn_rt.onnx_wire import external_tensors
from srgnn_rt.runtime import Recommender
from srgnn_rt.vocab import Vocab

N_ITEMS, D = 6, 4


def _onnx_model(weights: np.ndarray | None = None) -> onnx.ModelProto:
    """A tiny valid ONNX model (y = x + w): the bundle format checks model.onnx's protobuf, not its graph."""
    weights = np.arange(8, dtype=np.float32) if weights is None else weights
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])], "tiny",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [len(weights)])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [len(weights)])],
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10)


MODEL = _onnx_model().SerializeToString()


def _manifest(n_items: int = N_ITEMS, d: int = D, **builder) -> dict:
    return {
        "n_items": n_items,
        "embedding_size": d,
        "model": {"n_items": n_items, "hidden_size": d, "step": 1, "nonhybrid": False},
        "graph_builder": GraphBuilderOptions(**builder).to_dict(),
        "onnx": {"opset": 18},
    }


def _write(path, raw_ids=None, **kwargs):
    raw_ids = list(range(101, 101 + N_ITEMS)) if raw_ids is None else raw_ids
    n = len(raw_ids)
    rng = np.random.default_rng(0)
    counts = np.concatenate([[0], rng.integers(0, 50, size=n)]).astype(np.int64)
    options = dict(
        model=MODEL,
        vocab=Vocab(raw_ids),
        item_counts=counts,
        item_embeddings=rng.normal(size=(n, D)).astype(np.float32),
        manifest=_manifest(n),
    )
    options.update(kwargs)
    return write_bundle(path, **options)


def _replace(bundle_dir, name: str, content: bytes) -> None:
    """Overwrite a bundle file and record its new sha256 and size, as a careless tool would."""
    (bundle_dir / name).write_bytes(content)
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    manifest_path.write_text(json.dumps(manifest))


def _edit_manifest(bundle_dir, **changes) -> None:
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(changes)
    manifest_path.write_text(json.dumps(manifest))


def _npy_bytes(array: np.ndarray, tmp_path, allow_pickle: bool = False) -> bytes:
    path = tmp_path / "array.npy"
    np.save(path, array, allow_pickle=allow_pickle)
    return path.read_bytes()


def test_round_trip(tmp_path):
    written = _write(tmp_path / "b", manifest=_manifest(max_length=12, edge_weight="count"))
    loaded = Bundle.load(tmp_path / "b")
    assert loaded.path == written.path == (tmp_path / "b").absolute()
    assert loaded.n_items == N_ITEMS and loaded.embedding_size == D
    assert loaded.vocab == Vocab(range(101, 101 + N_ITEMS))
    assert loaded.item_counts.dtype == np.int64 and loaded.item_counts.shape == (N_ITEMS + 1,)
    assert loaded.graph_builder == GraphBuilderOptions(max_length=12, edge_weight="count")
    assert loaded.item_embeddings().shape == (N_ITEMS, D)
    assert loaded.model_bytes == MODEL == loaded.model_path.read_bytes()
    manifest = loaded.manifest
    assert manifest["format"] == "srgnn-rt-bundle" and manifest["format_version"] == FORMAT_VERSION
    for name in BUNDLE_FILES:
        assert manifest["files"][name]["sha256"] == hashlib.sha256((tmp_path / "b" / name).read_bytes()).hexdigest()
    assert sorted(os.listdir(tmp_path)) == ["b"]


@given(raw_ids=st.lists(st.one_of(st.integers(-(2**62), 2**62), st.text(max_size=8)), min_size=1, max_size=20,
                        unique=True))
@settings(max_examples=30, deadline=None)
def test_any_raw_ids_round_trip(tmp_path_factory, raw_ids):
    path = tmp_path_factory.mktemp("ids") / "b"
    _write(path, raw_ids=raw_ids)
    assert Bundle.load(path).vocab.raw_ids == raw_ids


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_missing_file(tmp_path, name):
    _write(tmp_path / "b")
    (tmp_path / "b" / name).unlink()
    with pytest.raises(BundleError, match=f"lacks {name}"):
        Bundle.load(tmp_path / "b")


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_flipped_byte(tmp_path, name):
    _write(tmp_path / "b")
    path = tmp_path / "b" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} is corrupted or was changed after export"):
        Bundle.load(tmp_path / "b")


def test_missing_manifest_and_directory(tmp_path):
    _write(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").unlink()
    with pytest.raises(BundleError, match="lacks manifest.json"):
        Bundle.load(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Bundle.load(tmp_path / "nowhere")


def test_manifest_not_json(tmp_path):
    _write(tmp_path / "b")
    (tmp_path / "b" / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(tmp_path / "b")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": FORMAT_VERSION + 1}, "newer srgnn-rt"),
        ({"format_version": 0}, f"format_version is 0 but this srgnn-rt reads {FORMAT_VERSION}"),
        ({"format_version": "1"}, "format_version is '1'"),
        ({"format": "something-else"}, "does not describe an srgnn-rt bundle"),
        ({"n_items": 0}, "n_items must be an int >= 1"),
        ({"embedding_size": D + 1}, "disagrees with n_items"),
        ({"graph_builder": {"max_length": 0, "edge_weight": "binary"}}, "graph_builder .* is invalid"),
        ({"graph_builder": {"edge_weight": "binary", "window": 3}}, "graph_builder .* is invalid"),
        ({"onnx": {}}, "int opset"),
        ({"files": {}}, "no sha256 and size \\(bytes\\) for model.onnx"),
    ],
)
def test_bad_manifest(tmp_path, changes, message):
    _write(tmp_path / "b")
    _edit_manifest(tmp_path / "b", **changes)
    with pytest.raises(BundleError, match=message):
        Bundle.load(tmp_path / "b")


def test_vocab_disagrees_with_n_items(tmp_path):
    _write(tmp_path / "b")
    _replace(tmp_path / "b", "vocab.json", json.dumps(list(range(N_ITEMS - 1))).encode())
    with pytest.raises(BundleError, match=f"vocab.json holds {N_ITEMS - 1} raw ids but the model scores "
                                          f"n_items = {N_ITEMS}"):
        Bundle.load(tmp_path / "b")


def test_invalid_vocab(tmp_path):
    _write(tmp_path / "b")
    _replace(tmp_path / "b", "vocab.json", json.dumps([1, 2, 2, 3, 4, 5]).encode())
    with pytest.raises(BundleError, match="vocab.json is invalid: vocab has raw id 2 twice"):
        Bundle.load(tmp_path / "b")


@pytest.mark.parametrize(
    "name, array, message",
    [
        ("item_counts.npy", np.zeros(N_ITEMS, dtype=np.int64), r"int64\[6\], expected int64\[7\]"),
        ("item_counts.npy", np.zeros(N_ITEMS + 1, dtype=np.int32), r"int32\[7\], expected int64\[7\]"),
        ("item_counts.npy", np.array([3] + [1] * N_ITEMS, dtype=np.int64), "entry 0 = 3"),
        ("item_counts.npy", np.array([0, -1] + [1] * (N_ITEMS - 1), dtype=np.int64), "minimum -1"),
        ("item_embeddings.npy", np.zeros((N_ITEMS, D + 1), dtype=np.float32), r"float32\[6, 5\]"),
        ("item_embeddings.npy", np.zeros((N_ITEMS, D), dtype=np.float64), r"float64\[6, 4\]"),
    ],
)
def test_array_disagrees(tmp_path, name, array, message):
    _write(tmp_path / "b")
    _replace(tmp_path / "b", name, _npy_bytes(array, tmp_path))
    with pytest.raises(BundleError, match=message):
        Bundle.load(tmp_path / "b")


def test_pickled_array_is_refused(tmp_path):
    _write(tmp_path / "b")
    pickled = _npy_bytes(np.array([0] + [object()] * N_ITEMS, dtype=object), tmp_path, allow_pickle=True)
    _replace(tmp_path / "b", "item_counts.npy", pickled)
    with pytest.raises(BundleError, match=r"item_counts.npy is object\[7\], expected int64\[7\]"):
        Bundle.load(tmp_path / "b")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module.json, "dump", broken_save)  # the manifest: written last, in staging
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "b")
    assert os.listdir(tmp_path) == []


def test_inconsistent_input_is_not_written(tmp_path):
    with pytest.raises(BundleError, match="vocab.json holds 3 raw ids"):
        _write(tmp_path / "b", vocab=Vocab([1, 2, 3]))
    assert os.listdir(tmp_path) == []


def test_existing_directory(tmp_path):
    _write(tmp_path / "b", raw_ids=list(range(N_ITEMS)))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _write(tmp_path / "b")
    assert Bundle.load(tmp_path / "b").vocab.raw_ids == list(range(N_ITEMS))
    _write(tmp_path / "b", overwrite=True)
    assert Bundle.load(tmp_path / "b").vocab.raw_ids == list(range(101, 101 + N_ITEMS))
    assert sorted(os.listdir(tmp_path)) == ["b"]
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty")
    Bundle.load(tmp_path / "empty")


def test_write_arguments(tmp_path):
    with pytest.raises(TypeError, match="serialized ONNX model"):
        _write(tmp_path / "b", model="model.onnx")
    with pytest.raises(ValueError, match=r"\['files'\] are filled in by write_bundle"):
        _write(tmp_path / "b", manifest={**_manifest(), "files": {}})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "options, message",
    [({"max_length": 0}, "max_length"), ({"max_length": 2.5}, "max_length"), ({"max_length": True}, "max_length"),
     ({"edge_weight": "weighted"}, "edge_weight")],
)
def test_graph_builder_options(options, message):
    with pytest.raises(ValueError, match=message):
        GraphBuilderOptions(**options)


def test_failed_write_keeps_the_old_bundle(tmp_path, monkeypatch):
    _write(tmp_path / "b", raw_ids=list(range(N_ITEMS)))
    monkeypatch.setattr(bundle_module.json, "dump", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError, match="full"):
        _write(tmp_path / "b", overwrite=True)
    assert Bundle.load(tmp_path / "b").vocab.raw_ids == list(range(N_ITEMS))
    assert os.listdir(tmp_path) == ["b"]


def test_overwrite_without_an_atomic_exchange(tmp_path, monkeypatch):
    """Where the system cannot exchange two directories, the old one is moved aside and replaced."""
    monkeypatch.setattr(atomic, "_exchange", lambda first, second: False)
    _write(tmp_path / "b", raw_ids=list(range(N_ITEMS)))
    _write(tmp_path / "b", overwrite=True)
    assert Bundle.load(tmp_path / "b").vocab.raw_ids == list(range(101, 101 + N_ITEMS))
    assert os.listdir(tmp_path) == ["b"]


# --- a load concurrent with an overwrite gets one whole bundle ---------------------------------


def _contents(bundle: Bundle) -> tuple:
    return (bundle.vocab.raw_ids, bundle.item_counts.tolist(), bundle.item_embeddings().tobytes(), bundle.model_bytes,
            bundle.manifest["files"])


def test_loads_during_overwrites_see_one_whole_bundle(tmp_path):
    """Threads load while another thread overwrites the directory again and again with one of
    two different bundles: every load is one of the two, complete, and none fails."""
    first = _write(tmp_path / "first", raw_ids=list(range(N_ITEMS)))
    second = _write(tmp_path / "second", raw_ids=[f"sku-{i}" for i in range(N_ITEMS)],
                    item_counts=np.arange(N_ITEMS + 1),
                    model=_onnx_model(np.ones(8, dtype=np.float32)).SerializeToString())
    expected = [_contents(first), _contents(second)]
    arguments = [
        dict(vocab=b.vocab, item_counts=b.item_counts, item_embeddings=b.item_embeddings(), model=b.model_bytes)
        for b in (first, second)
    ]
    target = tmp_path / "served"
    _write(target, **arguments[0])
    done = threading.Event()
    outcomes: list[list] = [[] for _ in range(3)]

    def overwrite():
        try:
            for round_ in range(40):
                _write(target, **arguments[round_ % 2], overwrite=True)
        finally:
            done.set()

    def load(outcome):
        while not done.is_set() or not outcome:
            try:
                outcome.append(expected.index(_contents(Bundle.load(target))))
            except Exception as exc:  # noqa: BLE001 - every error is a failure here
                outcome.append(exc)

    threads = [threading.Thread(target=overwrite)] + [threading.Thread(target=load, args=(o,)) for o in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    results = [result for outcome in outcomes for result in outcome]
    errors = [result for result in results if not isinstance(result, int)]
    assert not errors, f"{len(errors)} of {len(results)} loads failed, e.g. {errors[0]!r}"
    assert len(results) >= 3
    assert sorted(os.listdir(tmp_path)) == ["first", "second", "served"]


def test_a_directory_replaced_during_a_read_is_read_again(tmp_path, monkeypatch):
    """A load whose directory is replaced (and the old one removed) between two of its file
    reads starts again on the new directory instead of reporting a missing file."""
    _write(tmp_path / "b", raw_ids=list(range(N_ITEMS)))
    replacement = _write(tmp_path / "new")
    opened = []
    real_open = atomic.DirectoryVersion.open

    def open_and_replace(self, name):
        opened.append(name)
        if len(opened) == 2:  # after the manifest: swap the directory and remove the old one
            os.rename(tmp_path / "b", tmp_path / "old")
            os.rename(tmp_path / "new", tmp_path / "b")
            shutil.rmtree(tmp_path / "old")
        return real_open(self, name)

    monkeypatch.setattr(atomic.DirectoryVersion, "open", open_and_replace)
    assert _contents(Bundle.load(tmp_path / "b")) == _contents(replacement)
    assert opened.count("manifest.json") == 2


# --- no unverified byte reaches the model ------------------------------------------------------


def _external(model: onnx.ModelProto, directory) -> bytes:
    """``model`` saved with its tensors as ONNX external data in ``directory``/weights.bin."""
    onnx.save_model(model, str(directory / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    return (directory / "model.onnx").read_bytes()


def test_external_data_is_refused(tmp_path):
    (tmp_path / "saved").mkdir()
    model = _external(_onnx_model(), tmp_path / "saved")
    with pytest.raises(BundleError, match=r"model.onnx keeps tensors \['w'\] as ONNX external data"):
        _write(tmp_path / "b", model=model)
    assert os.listdir(tmp_path) == ["saved"]
    # The same model slipped into a bundle with its weights file beside it, manifest re-signed.
    _write(tmp_path / "b")
    _replace(tmp_path / "b", "model.onnx", model)
    shutil.copy(tmp_path / "saved" / "weights.bin", tmp_path / "b")
    with pytest.raises(BundleError, match="model.onnx keeps tensors .* as ONNX external data"):
        Bundle.load(tmp_path / "b")


def _tensor(name: str, external: bool) -> onnx.TensorProto:
    tensor = onnx.numpy_helper.from_array(np.arange(3, dtype=np.float32), name)
    if external:
        onnx.external_data_helper.set_external_data(tensor, location="weights.bin")
        tensor.ClearField("raw_data")
    return tensor


def _graph(draw, depth: int, flags: list) -> onnx.GraphProto:
    """A graph whose initializers, sparse initializers and Constant / If attributes hold tensors,
    each external or not (recorded in ``flags``), nested ``depth`` levels of subgraphs deep."""
    def tensor():
        external = draw(st.booleans())
        flags.append(external)
        return _tensor(f"t{len(flags)}", external)

    initializers = [tensor() for _ in range(draw(st.integers(0, 2)))]
    nodes = [onnx.helper.make_node("Constant", [], [f"c{len(flags)}"], value=tensor())
             for _ in range(draw(st.integers(0, 2)))]
    sparse = [onnx.helper.make_sparse_tensor(tensor(), _tensor("i", False), [3])
              for _ in range(draw(st.integers(0, 1)))]
    if depth > 0 and draw(st.booleans()):
        nodes.append(onnx.helper.make_node("If", ["cond"], ["out"], then_branch=_graph(draw, depth - 1, flags),
                                           else_branch=_graph(draw, depth - 1, flags)))
    graph = onnx.helper.make_graph(nodes, "g", [], [], initializers)
    graph.sparse_initializer.extend(sparse)
    return graph


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_external_tensors_are_found_anywhere(data):
    """onnx_wire.external_tensors finds every external tensor, wherever a model can hold one
    (onnx's own ``_get_all_tensors`` misses sparse initializers)."""
    flags: list[bool] = []
    model = onnx.helper.make_model(_graph(data.draw, 3, flags))
    found = external_tensors(model.SerializeToString())
    assert sorted(found) == sorted(f"t{i + 1}" for i, external in enumerate(flags) if external)


def test_external_tensors_refuses_malformed_protobuf():
    for garbage, message in [(b"\x00\x01", "field number 0"), (b"\x3a\x7f\x00", "runs past"),
                             (b"\x0b", "wire type 3"), (b"\x08\xff\xff", "truncated or overlong varint")]:
        with pytest.raises(ValueError, match=message):
            external_tensors(garbage)
    tags = [0x3a] + [0x0a, 0x2a, 0x32] * 40  # model -> graph -> node -> attribute -> graph -> ...
    nested = b""
    for tag in reversed(tags):
        nested = bytes([tag]) + _varint_bytes(len(nested)) + nested
    with pytest.raises(ValueError, match="nested deeper"):
        external_tensors(nested)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


# --- hostile files: a BundleError naming the file, nothing else --------------------------------


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """The header of an .npy file of ``dtype`` and ``shape``, without its data."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": dtype, "fortran_order": False, "shape": shape})
    return stream.getvalue()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("manifest.json", b'{"format": "srgnn-rt-bundle", "format_version": 1, "n_items": ' + b"9" * 5000 + b"}",
         "manifest.json is not valid JSON: .*integer"),
        ("manifest.json", b'{"format": "srgnn-rt-bundle", "format_version": 1, "n_items": 18446744073709551616}',
         "manifest.json is not valid JSON: the integer 18446744073709551616 is outside the int64 range"),
        ("manifest.json", b"[" * 200_000 + b"]" * 200_000, "manifest.json is not valid JSON"),
        ("manifest.json", b"\xff\xfe{", "manifest.json is not valid JSON"),
        ("vocab.json", b"[" * 200_000 + b"]" * 200_000, "vocab.json is not valid JSON"),
        ("vocab.json", b"[1, 2, 3, 4, 5, 18446744073709551616]", "18446744073709551616, outside the int64 range"),
        ("vocab.json", b"[1, 2, 3, 4, 5, " + b"7" * 5000 + b"]", "vocab.json is not valid JSON"),
        ("vocab.json", b"[1, 2, 3, 4, 5, NaN]", "vocab.json is invalid: vocab entry 5 .* is nan"),
        ("item_counts.npy", _npy_header("<i8", (2**45,)), r"item_counts.npy is int64\[35184372088832\], expected"),
        ("item_counts.npy", _npy_header("<i8", (N_ITEMS + 1,)) + b"\x00" * 8,
         "item_counts.npy holds 8 bytes of array data; its header .* needs 56"),
        ("item_embeddings.npy", _npy_header("<f4", (2**40, 2**40)), r"item_embeddings.npy is float32\[1099511627776"),
        ("item_embeddings.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',}", "item_embeddings.npy cannot be read"),
        ("item_embeddings.npy", b"\x93NUMPY\x03\x00", "item_embeddings.npy cannot be read as a plain .npy array"),
        ("model.onnx", b"\x00" * 64, "model.onnx is not a valid ONNX model"),
    ],
)
def test_hostile_file(tmp_path, name, content, message):
    """Hostile content, re-signed in the manifest: a BundleError naming the file, never a raw
    ValueError / RecursionError / OverflowError / MemoryError, never the claimed allocation."""
    _write(tmp_path / "b")
    if name == "manifest.json":
        (tmp_path / "b" / name).write_bytes(content)
    else:
        _replace(tmp_path / "b", name, content)
    with pytest.raises(BundleError, match=message) as caught:
        Bundle.load(tmp_path / "b")
    assert f"bundle {tmp_path / 'b'}: {name}" in str(caught.value)


def test_oversized_files_are_not_read(tmp_path):
    _write(tmp_path / "b")
    with open(tmp_path / "b" / "manifest.json", "r+b") as f:
        f.truncate(bundle_module.MAX_MANIFEST_BYTES + 1)  # sparse: nothing is written, nothing may be read
    with pytest.raises(BundleError, match="manifest.json holds 16777217 bytes, more than the 16777216"):
        Bundle.load(tmp_path / "b")
    _write(tmp_path / "c")
    with open(tmp_path / "c" / "item_embeddings.npy", "r+b") as f:
        f.truncate(1 << 40)
    with pytest.raises(BundleError, match="item_embeddings.npy holds 1099511627776 bytes, more than the"):
        Bundle.load(tmp_path / "c")


def test_optional_files_are_verified_like_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_module, "OPTIONAL_FILES", ("extra.bin",))
    _write(tmp_path / "b")
    assert "extra.bin" not in Bundle.load(tmp_path / "b").files
    _replace(tmp_path / "b", "extra.bin", b"retrieval index")
    assert Bundle.load(tmp_path / "b").files["extra.bin"] == b"retrieval index"
    (tmp_path / "b" / "extra.bin").write_bytes(b"retrieval indeX")
    with pytest.raises(BundleError, match="extra.bin is corrupted or was changed after export"):
        Bundle.load(tmp_path / "b")


def test_loaded_arrays_are_read_only_views_of_verified_bytes(tmp_path):
    bundle = _write(tmp_path / "b")
    for array in (bundle.item_counts, bundle.item_embeddings()):
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    (tmp_path / "b" / "item_embeddings.npy").write_bytes(b"changed after the load")
    assert bundle.item_embeddings().shape == (N_ITEMS, D)  # what was verified, not what is there now
    copy = pickle.loads(pickle.dumps(bundle))  # e.g. sent to a worker process
    assert _contents(copy) == _contents(bundle)


# --- fuzz: a mutated bundle loads as its files say, or fails with a BundleError naming a file ----


_FILE_NAMES = BUNDLE_FILES + ("manifest.json",)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


def _mutate_json(value, draw):
    """``value`` with one node (chosen by ``draw``) replaced by a random JSON value."""
    if isinstance(value, (dict, list)) and value and draw(st.booleans()):
        keys = sorted(value) if isinstance(value, dict) else range(len(value))
        key = draw(st.sampled_from(list(keys)))
        value[key] = _mutate_json(value[key], draw)
        return value
    return draw(_JSON_VALUES)


@st.composite
def _mutations(draw):
    name = draw(st.sampled_from(_FILE_NAMES))
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "json"] if name.endswith(".json")
                                else ["flip", "truncate", "insert"]))
    resign = name != "manifest.json" and draw(st.booleans())
    return name, kind, resign, draw


@given(mutation=_mutations())
@settings(max_examples=100, deadline=None)
def test_fuzzed_bundle(tmp_path_factory, mutation):
    """Byte flips, truncations, insertions and JSON edits of any file, with or without the checksum
    re-signed: the load either gives exactly what the files say (parsed here independently) or
    raises a BundleError naming a bundle file; never another exception."""
    name, kind, resign, draw = mutation
    directory = tmp_path_factory.mktemp("fuzz") / "b"
    _write(directory)
    original = (directory / name).read_bytes()
    if kind == "json":
        content = json.dumps(_mutate_json(json.loads(original), draw)).encode()
    else:  # a position counted from the start (headers) or from the end (data), alike
        position = draw(st.integers(0, len(original) - 1))
        position = len(original) - 1 - position if draw(st.booleans()) else position
    if kind == "flip":
        flipped = bytes([original[position] ^ draw(st.integers(1, 255))])
        content = original[:position] + flipped + original[position + 1:]
    elif kind == "truncate":
        content = original[:position]
    elif kind == "insert":
        content = original[:position] + draw(st.binary(min_size=1, max_size=8)) + original[position:]
    if resign:
        _replace(directory, name, content)
    else:
        (directory / name).write_bytes(content)
    try:
        bundle = Bundle.load(directory)
    except BundleError as exc:
        assert any(file in str(exc) for file in _FILE_NAMES), str(exc)
        event(f"{name}: BundleError")
        return
    event(f"{name}: loaded")
    assert resign or name == "manifest.json" or content == original, "a changed file passed its checksum"
    manifest = json.loads((directory / "manifest.json").read_bytes())
    assert bundle.manifest == manifest
    assert bundle.vocab.raw_ids == json.loads((directory / "vocab.json").read_bytes())
    assert bundle.model_bytes == (directory / "model.onnx").read_bytes()
    counts = np.load(directory / "item_counts.npy", allow_pickle=False)
    embeddings = np.load(directory / "item_embeddings.npy", allow_pickle=False)
    assert np.array_equal(bundle.item_counts, counts) and counts.dtype == np.int64
    assert np.array_equal(bundle.item_embeddings(), embeddings, equal_nan=True) and embeddings.dtype == np.float32


@pytest.mark.parametrize("model", [b"", b"\x08\x01", b"\x3a\x00", b"\x08\x0a\x3a\x02\x0a\x00"])
def test_model_onnxruntime_refuses_is_a_bundle_error(tmp_path, model):
    """Well-formed protobuf that onnxruntime cannot load (no graph, an empty node, ...):
    BundleError naming model.onnx, not onnxruntime's InvalidProtobuf / Fail."""
    _write(tmp_path / "b")
    _replace(tmp_path / "b", "model.onnx", model)
    with pytest.raises(BundleError, match="model.onnx cannot be loaded by onnxruntime"):
        Recommender.load(tmp_path / "b", device="cpu")


@given(position=st.integers(0, len(MODEL) - 1), xor=st.integers(1, 255), cut=st.booleans())
@settings(max_examples=60, deadline=None)
def test_fuzzed_model(tmp_path_factory, position, xor, cut):
    """A re-signed model.onnx with a flipped byte or cut short: Recommender.load raises a
    BundleError naming model.onnx (the tiny model never has the runtime's inputs), nothing else."""
    directory = tmp_path_factory.mktemp("fuzz-model") / "b"
    _write(directory)
    model = MODEL[:position] if cut else MODEL[:position] + bytes([MODEL[position] ^ xor]) + MODEL[position + 1:]
    _replace(directory, "model.onnx", model)
    with pytest.raises(BundleError, match="model.onnx"):
        Recommender.load(directory, device="cpu")
