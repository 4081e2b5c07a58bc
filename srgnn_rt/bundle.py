"""The model bundle: one directory holding everything the runtime needs to serve.

Layout::

    model.onnx           graph arrays + k -> top-k scores, item ids, session embedding
    vocab.json           raw item id of each internal id (see srgnn_rt.vocab)
    item_counts.npy      int64[n_items + 1]: training clicks per internal id (popularity fallback)
    item_embeddings.npy  float32[n_items, d]: embedding of items 1..n (for ANN retrieval)
    encoder.onnx         (optional) node embeddings + graph arrays -> session embedding s_h
    item_index.faiss     (optional) inner-product index over item_embeddings.npy (srgnn_rt.retrieval)
    manifest.json        format, model config, sizes, ONNX facts, graph-builder options,
                         library versions, and the sha256 of every other file

Loading (``Bundle.load``) checks the format version, every checksum and that the
files agree with each other, and raises ``BundleError`` saying which file is wrong
and how. Everything is data: JSON, and ``.npy`` read with ``allow_pickle=False``;
nothing executes on load. Writing (``write_bundle``) is atomic: the files go to a
temporary sibling directory that is checked like a loaded bundle and then renamed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import staging_directory
from .vocab import VOCAB_FILENAME, Vocab

__all__ = [
    "BUNDLE_FILES",
    "FORMAT",
    "FORMAT_VERSION",
    "OPTIONAL_FILES",
    "Bundle",
    "BundleError",
    "GraphBuilderOptions",
    "add_to_bundle",
    "write_bundle",
]

FORMAT = "srgnn-rt-bundle"
FORMAT_VERSION = 1
MANIFEST_FILENAME = "manifest.json"
MODEL_FILENAME = "model.onnx"
ITEM_COUNTS_FILENAME = "item_counts.npy"
ITEM_EMBEDDINGS_FILENAME = "item_embeddings.npy"
BUNDLE_FILES = (MODEL_FILENAME, VOCAB_FILENAME, ITEM_COUNTS_FILENAME, ITEM_EMBEDDINGS_FILENAME)
ENCODER_FILENAME = "encoder.onnx"
INDEX_FILENAME = "item_index.faiss"
OPTIONAL_FILES = (ENCODER_FILENAME, INDEX_FILENAME)
"""Checked like the others when the manifest lists them (retrieval mode, see srgnn_rt.retrieval)."""
EDGE_WEIGHTS = ("binary", "count")

_CHUNK = 1 << 20


class BundleError(ValueError):
    """A bundle directory is incomplete, corrupted, or from an unsupported format."""


@dataclasses.dataclass(frozen=True)
class GraphBuilderOptions:
    """How the model's training batches were built; serving must build graphs the same way.

    ``max_length``: sessions are cut to their last ``max_length`` clicks (None: no cut);
    ``edge_weight``: ``"binary"`` or ``"count"`` (see ``srgnn_rt.graph.build_graphs``).
    """

    max_length: int | None = None
    edge_weight: str = "binary"

    def __post_init__(self):
        if self.max_length is not None and (
            isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1
        ):
            raise ValueError(f"graph builder max_length must be None or an int >= 1, got {self.max_length!r}")
        if self.edge_weight not in EDGE_WEIGHTS:
            raise ValueError(f"graph builder edge_weight must be one of {EDGE_WEIGHTS}, got {self.edge_weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "edge_weight": self.edge_weight}


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A loaded and checked bundle directory.

    ``manifest``: the parsed ``manifest.json``; ``vocab``: its ``Vocab``;
    ``item_counts: int64[n_items + 1]`` (index 0, the padding id, is 0).
    """

    path: Path
    manifest: dict[str, Any]
    vocab: Vocab
    item_counts: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.manifest["n_items"])

    @property
    def embedding_size(self) -> int:
        return int(self.manifest["embedding_size"])

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILENAME

    @property
    def graph_builder(self) -> GraphBuilderOptions:
        return GraphBuilderOptions(**self.manifest["graph_builder"])

    def has_file(self, name: str) -> bool:
        """Whether the manifest lists ``name`` (one of ``OPTIONAL_FILES``; the others always are)."""
        return name in self.manifest["files"]

    def item_embeddings(self) -> np.ndarray:
        """float32[n_items, d]: row ``i`` is the embedding of internal id ``i + 1`` (memory-mapped, read-only)."""
        return np.load(self.path / ITEM_EMBEDDINGS_FILENAME, mmap_mode="r", allow_pickle=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Bundle:
        """Read and check the bundle directory ``path``.

        Raises FileNotFoundError when ``path`` is not a directory, and BundleError
        (a ValueError) naming the file and the problem for anything else: missing
        files, a checksum mismatch, an unsupported format version, or files that
        disagree on the number of items or the embedding size.
        """
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"bundle directory {directory} does not exist")
        manifest = _read_manifest(directory)
        for name in BUNDLE_FILES + tuple(name for name in OPTIONAL_FILES if name in manifest["files"]):
            _check_file(directory, name, manifest["files"][name])
        n_items, d = manifest["n_items"], manifest["embedding_size"]
        try:
            vocab = Vocab.load(directory)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"bundle {directory}: {VOCAB_FILENAME} is invalid: {exc}") from None
        if len(vocab) != n_items:
            raise BundleError(
                f"bundle {directory}: {VOCAB_FILENAME} holds {len(vocab)} raw ids but the model "
                f"scores n_items = {n_items} items (manifest.json)"
            )
        item_counts = _read_npy(directory, ITEM_COUNTS_FILENAME, np.int64, (n_items + 1,))
        if item_counts[0] != 0 or item_counts.min() < 0:
            raise BundleError(
                f"bundle {directory}: {ITEM_COUNTS_FILENAME} must hold counts >= 0 with entry 0 "
                f"(the padding id) equal to 0; got entry 0 = {item_counts[0]}, minimum {item_counts.min()}"
            )
        _read_npy(directory, ITEM_EMBEDDINGS_FILENAME, np.float32, (n_items, d), mmap=True)
        return cls(path=directory, manifest=manifest, vocab=vocab, item_counts=item_counts)


def write_bundle(
    path: str | os.PathLike,
    *,
    model: bytes,
    vocab: Vocab,
    item_counts: np.ndarray,
    item_embeddings: np.ndarray,
    manifest: Mapping[str, Any],
    optional_files: Mapping[str, bytes] | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Write a bundle directory atomically and return it loaded.

    ``model``: the serialized ONNX model; ``item_counts: int64[n_items + 1]``;
    ``item_embeddings: float32[n_items, d]``; ``manifest``: the manifest's fields
    except ``format``, ``format_version`` and ``files``, which are filled in here
    (it must hold ``n_items``, ``embedding_size``, ``model``, ``graph_builder`` and
    ``onnx``); ``optional_files``: contents of files named in ``OPTIONAL_FILES``. The
    files go to a temporary sibling directory, are checked with ``Bundle.load``, and the directory is renamed to ``path``: a failure leaves
    neither a partial bundle nor the temporary directory. An existing non-empty
    ``path`` is replaced only with ``overwrite=True`` (FileExistsError otherwise).
    """
    if not isinstance(model, bytes):
        raise TypeError(f"model must be the serialized ONNX model (bytes), not {type(model).__name__}")
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a srgnn_rt.vocab.Vocab, not {type(vocab).__name__}")
    reserved = {"format", "format_version", "files"} & set(manifest)
    if reserved:
        raise ValueError(f"manifest fields {sorted(reserved)} are filled in by write_bundle; leave them out")
    optional_files = dict(optional_files or {})
    unknown = set(optional_files) - set(OPTIONAL_FILES)
    if unknown:
        raise ValueError(f"optional_files may name {OPTIONAL_FILES}, got {sorted(unknown)}")
    with staging_directory(path, overwrite=overwrite) as staging:
        (staging / MODEL_FILENAME).write_bytes(model)
        vocab.save(staging)
        np.save(staging / ITEM_COUNTS_FILENAME, np.asarray(item_counts), allow_pickle=False)
        np.save(staging / ITEM_EMBEDDINGS_FILENAME, np.asarray(item_embeddings), allow_pickle=False)
        for name, content in optional_files.items():
            (staging / name).write_bytes(content)
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
        full["files"] = {name: _file_entry(staging / name) for name in BUNDLE_FILES + tuple(optional_files)}
        checked = _write_manifest_and_check(staging, full)
    return dataclasses.replace(checked, path=Path(path).absolute())


def add_to_bundle(
    path: str | os.PathLike, name: str, write: Callable[[Path], None], manifest_fields: Mapping[str, Any]
) -> Bundle:
    """Add (or replace) the optional file ``name`` of the bundle at ``path`` atomically; return it loaded.

    ``write(file_path)`` writes the file; ``manifest_fields`` are set in the manifest
    beside its new checksum. The bundle is first loaded and checked; the new one is
    assembled in a temporary sibling (the other files hard-linked, or copied where
    links fail), checked, and renamed over ``path``: readers see the old bundle or
    the new one, and a failure leaves the old one as it was.
    """
    if name not in OPTIONAL_FILES:
        raise ValueError(f"only the optional files {OPTIONAL_FILES} can be added to a bundle, got {name!r}")
    reserved = {"format", "format_version", "files"} & set(manifest_fields)
    if reserved:
        raise ValueError(f"manifest fields {sorted(reserved)} are kept by add_to_bundle; leave them out")
    current = Bundle.load(path)
    with staging_directory(current.path, overwrite=True) as staging:
        for source in current.path.iterdir():
            if source.is_file() and source.name not in (name, MANIFEST_FILENAME):
                try:
                    os.link(source, staging / source.name)
                except OSError:
                    shutil.copy2(source, staging / source.name)
        write(staging / name)
        full = {**current.manifest, **manifest_fields}
        full["files"] = {**current.manifest["files"], name: _file_entry(staging / name)}
        checked = _write_manifest_and_check(staging, full)
    return dataclasses.replace(checked, path=current.path)


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": _sha256(path), "bytes": path.stat().st_size}


def _write_manifest_and_check(directory: Path, manifest: Mapping[str, Any]) -> Bundle:
    with open(directory / MANIFEST_FILENAME, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return Bundle.load(directory)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_count(value: Any, minimum: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _read_manifest(directory: Path) -> dict[str, Any]:
    """Parse ``manifest.json`` and check its format version and the types of its fields."""
    path = directory / MANIFEST_FILENAME
    where = f"bundle {directory}: {MANIFEST_FILENAME}"
    if not path.is_file():
        raise BundleError(f"bundle {directory} lacks {MANIFEST_FILENAME}; is it a bundle directory?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{where} does not describe an srgnn-rt bundle (its 'format' is not {FORMAT!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        newer = _is_count(version) and version > FORMAT_VERSION
        hint = "; it was written by a newer srgnn-rt, upgrade to read it" if newer else ""
        raise BundleError(f"{where}: format_version is {version!r} but this srgnn-rt reads {FORMAT_VERSION}{hint}")
    for key in ("n_items", "embedding_size"):
        if not _is_count(manifest.get(key)):
            raise BundleError(f"{where}: {key} must be an int >= 1, got {manifest.get(key)!r}")
    model = manifest.get("model")
    if not isinstance(model, dict) or model.get("n_items") != manifest["n_items"] \
            or model.get("hidden_size") != manifest["embedding_size"]:
        raise BundleError(
            f"{where}: model config {model!r} disagrees with n_items = {manifest['n_items']} "
            f"and embedding_size = {manifest['embedding_size']}"
        )
    builder = manifest.get("graph_builder")
    if not isinstance(builder, dict):
        raise BundleError(f"{where}: graph_builder must be an object, got {builder!r}")
    try:
        GraphBuilderOptions(**builder)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: graph_builder {builder!r} is invalid: {exc}") from None
    if not isinstance(manifest.get("onnx"), dict) or not _is_count(manifest["onnx"].get("opset")):
        raise BundleError(f"{where}: onnx must be an object with an int opset, got {manifest.get('onnx')!r}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{where}: files must map file names to their sha256, got {files!r}")
    for name in BUNDLE_FILES + tuple(name for name in OPTIONAL_FILES if name in files):
        entry = files.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(f"{where}: files has no sha256 for {name}")
    return manifest


def _check_file(directory: Path, name: str, entry: Mapping[str, Any]) -> None:
    """The file exists and its sha256 is the manifest's."""
    path = directory / name
    if not path.is_file():
        raise BundleError(f"bundle {directory} lacks {name}")
    actual = _sha256(path)
    if actual != entry["sha256"]:
        raise BundleError(
            f"bundle {directory}: {name} is corrupted or was changed after export: its sha256 is "
            f"{actual}, manifest.json says {entry['sha256']}"
        )


def _read_npy(directory: Path, name: str, dtype: type, shape: tuple[int, ...], mmap: bool = False) -> np.ndarray:
    """A plain (never pickled) ``.npy`` array with the given dtype and shape."""
    try:
        array = np.load(directory / name, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BundleError(f"bundle {directory}: {name} cannot be read as a plain .npy array: {exc}") from None
    if array.dtype != dtype or array.shape != shape:
        raise BundleError(
            f"bundle {directory}: {name} is {array.dtype}{list(array.shape)}, "
            f"expected {np.dtype(dtype)}{list(shape)}"
        )
    return array
