"""The model bundle: one directory holding everything the runtime needs to serve.

Layout::

    model.onnx           graph arrays + k -> top-k scores, item ids, session embedding
                         (absent from a retrieval-only bundle, see below)
    vocab.json           raw item id of each internal id (see srgnn_rt.vocab)
    item_counts.npy      int64[n_items + 1]: training clicks per internal id (popularity fallback)
    item_embeddings.npy  float32[n_items, d]: embedding of items 1..n (for ANN retrieval)
    encoder.onnx         (optional) node embeddings + graph arrays -> session embedding s_h
    item_index.faiss     (optional) inner-product index over item_embeddings.npy (srgnn_rt.retrieval)
    manifest.json        format, model config, sizes, ONNX facts, graph-builder options,
                         library versions, and the size and sha256 of every other file

A **retrieval-only** bundle (manifest ``"retrieval_only": true``) has no model.onnx
and must have encoder.onnx: the exact model of a catalog of millions of items holds
the item table twice and passes protobuf's 2 GB limit, and a bundle never keeps
tensors as ONNX external data. It serves in retrieval mode only (``Recommender.load(
path, retrieval="index")`` after ``srgnn-rt index``); ``model_bytes`` says so.

Loading (``Bundle.load``) reads each file once, into memory, checks its size and
sha256 against the manifest, and builds everything from those verified bytes: the
model is handed to onnxruntime as bytes (``Bundle.model_bytes``), arrays are views
of them. All files come from one version of the directory (see
``srgnn_rt.atomic.DirectoryVersion``), so a load concurrent with ``export
--overwrite`` returns the old bundle or the new one, never a mix. A loaded bundle
therefore holds every file in memory: model.onnx and item_embeddings.npy are each
about ``4 * n_items * d`` bytes (400 MB each for 1 M items at d = 100); the rest
is small. The load also checks the format version, that the files agree with each
other, that model.onnx keeps no tensor outside itself (ONNX external data would
reach the model unverified), and raises ``BundleError`` naming the file and the
problem for anything else. Everything is data: JSON, ``.npy`` headers parsed
before any array is made, nothing executes on load. Writing (``write_bundle``)
is atomic: the files go to a temporary sibling directory that is checked like a
loaded bundle and then takes the place of the old one in one step; the item table
is written straight from the array and hashed from the written file (no in-memory
copy of a multi-GB table).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import DirectoryVersion, read_consistently, staging_directory
from .onnx_wire import external_tensors
from .vocab import VOCAB_FILENAME, Vocab

__all__ = [
    "BUNDLE_FILES",
    "FORMAT",
    "FORMAT_VERSION",
    "OPTIONAL_FILES",
    "Bundle",
    "BundleError",
    "GraphBuilderOptions",
    "require_exact_model",
    "write_bundle",
]

FORMAT = "srgnn-rt-bundle"
FORMAT_VERSION = 1
MANIFEST_FILENAME = "manifest.json"
MODEL_FILENAME = "model.onnx"
ITEM_COUNTS_FILENAME = "item_counts.npy"
ITEM_EMBEDDINGS_FILENAME = "item_embeddings.npy"
BUNDLE_FILES = (MODEL_FILENAME, VOCAB_FILENAME, ITEM_COUNTS_FILENAME, ITEM_EMBEDDINGS_FILENAME)
"""Files every bundle has, each listed in the manifest with its size and sha256."""
ENCODER_FILENAME = "encoder.onnx"
INDEX_FILENAME = "item_index.faiss"
OPTIONAL_FILES = (ENCODER_FILENAME, INDEX_FILENAME)
"""Files a bundle may have (retrieval mode, see srgnn_rt.retrieval); when the manifest lists one,
it is read and verified as the others."""
EDGE_WEIGHTS = ("binary", "count")
MAX_MANIFEST_BYTES = 1 << 24
_HASH_CHUNK = 1 << 24

_INT64_MAX = 2**63 - 1


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
    """A loaded and checked bundle.

    ``path``: the directory it was read from; ``manifest``: the parsed ``manifest.json``;
    ``vocab``: its ``Vocab``; ``item_counts: int64[n_items + 1]`` (index 0, the padding id,
    is 0; read-only); ``files``: the verified bytes of every file the manifest lists, but
    those named in ``skipped`` (see ``load``).
    """

    path: Path
    manifest: dict[str, Any]
    vocab: Vocab
    item_counts: np.ndarray
    files: dict[str, bytes] = dataclasses.field(repr=False, compare=False)
    skipped: frozenset[str] = frozenset()

    @property
    def n_items(self) -> int:
        return int(self.manifest["n_items"])

    @property
    def embedding_size(self) -> int:
        return int(self.manifest["embedding_size"])

    @property
    def retrieval_only(self) -> bool:
        """Whether the bundle was exported without model.onnx (it serves in retrieval mode only)."""
        return bool(self.manifest.get("retrieval_only", False))

    @property
    def model_path(self) -> Path:
        """Where model.onnx was read from; serve ``model_bytes``, which were verified."""
        return self.path / MODEL_FILENAME

    @property
    def model_bytes(self) -> bytes:
        """The serialized ONNX model, exactly the bytes whose sha256 the manifest holds;
        BundleError when the bundle is retrieval-only or was loaded with ``skip=(MODEL_FILENAME,)``."""
        if self.retrieval_only:
            raise _retrieval_only(self.path)
        if MODEL_FILENAME in self.skipped:
            raise BundleError(f"bundle {self.path} was loaded without {MODEL_FILENAME} (skip); load it again "
                              f"without skip to serve the exact model")
        return self.files[MODEL_FILENAME]

    @property
    def graph_builder(self) -> GraphBuilderOptions:
        return GraphBuilderOptions(**self.manifest["graph_builder"])

    def has_file(self, name: str) -> bool:
        """Whether the manifest lists ``name`` (one of ``OPTIONAL_FILES``; the others always are)."""
        return name in self.manifest["files"]

    def item_embeddings(self) -> np.ndarray:
        """float32[n_items, d]: row ``i`` is the embedding of internal id ``i + 1`` (read-only,
        a view of the verified file bytes)."""
        return _npy_array(self.files[ITEM_EMBEDDINGS_FILENAME], f"bundle {self.path}: {ITEM_EMBEDDINGS_FILENAME}",
                          np.float32, (self.n_items, self.embedding_size))

    @classmethod
    def load(cls, path: str | os.PathLike, *, skip: Collection[str] = ()) -> Bundle:
        """Read and check the bundle directory ``path``.

        ``skip``: files not to read, only ``(MODEL_FILENAME,)`` (retrieval mode serves
        ``encoder.onnx`` and never needs the exact model, about twice the item table):
        a skipped file must exist with the manifest's size, but is not hashed; every
        other file is still read and verified.

        Raises FileNotFoundError when ``path`` is not a directory, and BundleError
        (a ValueError) naming the file and the problem for anything else: missing
        files, a size or checksum mismatch, an unsupported format version, files that
        disagree on the number of items or the embedding size, ONNX external data.
        A directory replaced while it is read is read again (see ``read_consistently``).
        """
        directory = Path(path)
        skipped = frozenset(skip) if not isinstance(skip, str) else frozenset((skip,))
        if not skipped <= {MODEL_FILENAME}:
            raise ValueError(f"skip may only name {MODEL_FILENAME!r}, got {sorted(skipped)}")
        try:
            return read_consistently(directory, lambda version: cls._read(version, directory, skipped))
        except (FileNotFoundError, NotADirectoryError):
            if not directory.is_dir():
                raise FileNotFoundError(f"bundle directory {directory} does not exist") from None
            raise

    @classmethod
    def _read(cls, version: DirectoryVersion, directory: Path, skipped: frozenset[str]) -> Bundle:
        """Read every file (but ``skipped``) of one version of the bundle directory, verify it, parse it."""
        manifest = _parse_manifest(_read_file(version, directory, MANIFEST_FILENAME, MAX_MANIFEST_BYTES),
                                   f"bundle {directory}: {MANIFEST_FILENAME}")
        names = _listed_files(manifest)
        for name in skipped & set(names):  # not read, but a bundle that lacks it is still broken
            _check_size(version, directory, name, manifest["files"][name])
        files = {name: _read_verified(version, directory, name, manifest["files"][name])
                 for name in names if name not in skipped}
        n_items, d = manifest["n_items"], manifest["embedding_size"]
        external = [] if MODEL_FILENAME not in files else _external_tensors(files[MODEL_FILENAME],
                                                                            f"bundle {directory}: {MODEL_FILENAME}")
        if external:
            raise BundleError(
                f"bundle {directory}: {MODEL_FILENAME} keeps tensors {external[:5]} as ONNX external data "
                f"(outside the file, beyond any checksum); export the model with its tensors inside"
            )
        try:
            vocab = Vocab.from_json(files[VOCAB_FILENAME], f"bundle {directory}: {VOCAB_FILENAME}")
        except (TypeError, ValueError) as exc:
            raise BundleError(str(exc)) from None
        if len(vocab) != n_items:
            raise BundleError(
                f"bundle {directory}: {VOCAB_FILENAME} holds {len(vocab)} raw ids but the model "
                f"scores n_items = {n_items} items (manifest.json)"
            )
        item_counts = _npy_array(files[ITEM_COUNTS_FILENAME], f"bundle {directory}: {ITEM_COUNTS_FILENAME}",
                                 np.int64, (n_items + 1,))
        if item_counts[0] != 0 or item_counts.min() < 0:
            raise BundleError(
                f"bundle {directory}: {ITEM_COUNTS_FILENAME} must hold counts >= 0 with entry 0 "
                f"(the padding id) equal to 0; got entry 0 = {item_counts[0]}, minimum {item_counts.min()}"
            )
        _npy_array(files[ITEM_EMBEDDINGS_FILENAME], f"bundle {directory}: {ITEM_EMBEDDINGS_FILENAME}",
                   np.float32, (n_items, d))
        return cls(path=directory, manifest=manifest, vocab=vocab, item_counts=item_counts, files=files,
                   skipped=skipped)


def require_exact_model(path: str | os.PathLike) -> None:
    """Raise BundleError when the bundle at ``path`` is retrieval-only (has no model.onnx), as
    ``Bundle.model_bytes`` would, after reading and checking manifest.json alone (not a
    multi-GB item table); FileNotFoundError when ``path`` is not a directory."""
    directory = Path(path)
    try:
        manifest = read_consistently(directory, lambda version: _parse_manifest(
            _read_file(version, directory, MANIFEST_FILENAME, MAX_MANIFEST_BYTES),
            f"bundle {directory}: {MANIFEST_FILENAME}"))
    except (FileNotFoundError, NotADirectoryError):
        if not directory.is_dir():
            raise FileNotFoundError(f"bundle directory {directory} does not exist") from None
        raise
    if manifest.get("retrieval_only"):
        raise _retrieval_only(directory)


def _retrieval_only(directory: Path) -> BundleError:
    return BundleError(
        f"bundle {directory} is retrieval-only (exported without {MODEL_FILENAME}: its exact model would not fit "
        f"in one ONNX file); serve it with Recommender.load(path, retrieval='index') (CLI: --retrieval index) "
        f"after adding an index with `srgnn-rt index {directory}`"
    )


def write_bundle(
    path: str | os.PathLike,
    *,
    model: bytes | None,
    vocab: Vocab,
    item_counts: np.ndarray,
    item_embeddings: np.ndarray,
    manifest: Mapping[str, Any],
    overwrite: bool = False,
    optional_files: Mapping[str, bytes] | None = None,
) -> Bundle:
    """Write a bundle directory atomically and return it loaded.

    ``model``: the serialized ONNX model, or None for a retrieval-only bundle (the
    manifest then says ``"retrieval_only": true``; ``optional_files`` must hold
    encoder.onnx); ``item_counts: int64[n_items + 1]``;
    ``item_embeddings: float32[n_items, d]``; ``manifest``: the manifest's fields
    except ``format``, ``format_version``, ``retrieval_only`` and ``files``, which are filled in here
    (it must hold ``n_items``, ``embedding_size``, ``model``, ``graph_builder`` and
    ``onnx``); ``optional_files``: contents of files named in ``OPTIONAL_FILES``. The
    files go to a temporary sibling directory, are checked with
    ``Bundle.load``, and the directory takes the place of ``path``: a failure leaves
    neither a partial bundle nor the temporary directory. An existing non-empty
    ``path`` is replaced only with ``overwrite=True`` (FileExistsError otherwise).
    """
    if model is not None and not isinstance(model, bytes):
        raise TypeError(f"model must be the serialized ONNX model (bytes) or None, not {type(model).__name__}")
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a srgnn_rt.vocab.Vocab, not {type(vocab).__name__}")
    reserved = {"format", "format_version", "retrieval_only", "files"} & set(manifest)
    if reserved:
        raise ValueError(f"manifest fields {sorted(reserved)} are filled in by write_bundle; leave them out")
    optional_files = dict(optional_files or {})
    unknown = set(optional_files) - set(OPTIONAL_FILES)
    if unknown:
        raise ValueError(f"optional_files may name {OPTIONAL_FILES}, got {sorted(unknown)}")
    if model is None and ENCODER_FILENAME not in optional_files:
        raise ValueError(f"a retrieval-only bundle (model=None) needs {ENCODER_FILENAME} in optional_files")
    contents = {
        **({} if model is None else {MODEL_FILENAME: model}),
        VOCAB_FILENAME: vocab.to_json(),
        ITEM_COUNTS_FILENAME: np.asarray(item_counts),
        ITEM_EMBEDDINGS_FILENAME: np.asarray(item_embeddings),
        **optional_files,
    }
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
            **({"retrieval_only": True} if model is None else {})}
    with staging_directory(path, overwrite=overwrite) as staging:
        for name, data in contents.items():
            if isinstance(data, np.ndarray):
                np.save(staging / name, data, allow_pickle=False)  # streamed from the array, no bytes copy
            else:
                (staging / name).write_bytes(data)
        full["files"] = {name: _file_entry(staging / name) for name in contents}
        checked = _write_manifest_and_check(staging, full)
    return dataclasses.replace(checked, path=Path(path).absolute())


def add_to_bundle(
    path: str | os.PathLike | Bundle, name: str, write: Callable[[Path], None], manifest_fields: Mapping[str, Any]
) -> Bundle:
    """Add (or replace) the optional file ``name`` of the bundle at ``path`` atomically; return it loaded.

    ``path`` may be the bundle already loaded (and checked), whose verified bytes are then copied.
    ``write(file_path)`` writes the file; ``manifest_fields`` are set in the manifest
    beside its new checksum. The bundle is first loaded and checked; the new one is
    assembled in a temporary sibling (the other files hard-linked, or copied where
    links fail), checked, and takes the place of ``path`` in one step: readers see the
    old bundle or the new one, and a failure leaves the old one as it was.
    """
    if name not in OPTIONAL_FILES:
        raise ValueError(f"only the optional files {OPTIONAL_FILES} can be added to a bundle, got {name!r}")
    reserved = {"format", "format_version", "files"} & set(manifest_fields)
    if reserved:
        raise ValueError(f"manifest fields {sorted(reserved)} are kept by add_to_bundle; leave them out")
    current = path if isinstance(path, Bundle) else Bundle.load(path)
    if current.skipped:
        raise ValueError(f"bundle {current.path} was loaded without {sorted(current.skipped)}; load it whole")
    with staging_directory(current.path, overwrite=True) as staging:
        for existing, data in current.files.items():
            if existing != name:
                (staging / existing).write_bytes(data)  # the verified bytes, not the files as they are now
        write(staging / name)
        full = {**current.manifest, **manifest_fields}
        full["files"] = {**current.manifest["files"], name: _file_entry(staging / name)}
        checked = _write_manifest_and_check(staging, full)
    return dataclasses.replace(checked, path=current.path)


def _file_entry(path: Path) -> dict[str, Any]:
    """The manifest entry (sha256, bytes) of a file, read in chunks (a multi-GB table is never held twice)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "bytes": size}


def _listed_files(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The files a bundle with this manifest must have: model.onnx (unless retrieval-only),
    vocab, counts, item table, and the optional files it lists."""
    required = tuple(name for name in BUNDLE_FILES if name != MODEL_FILENAME or not manifest.get("retrieval_only"))
    return required + tuple(name for name in OPTIONAL_FILES if name in manifest["files"])


def _write_manifest_and_check(directory: Path, manifest: Mapping[str, Any]) -> Bundle:
    with open(directory / MANIFEST_FILENAME, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return Bundle.load(directory)


def _is_count(value: Any, minimum: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _int64(text: str) -> int:
    """JSON integers of a manifest are int64 (an ``int`` of 4,300+ digits raises ValueError too)."""
    value = int(text)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValueError(f"the integer {text[:24]}{'...' if len(text) > 24 else ''} is outside the int64 range")
    return value


def _read_file(version: DirectoryVersion, directory: Path, name: str, limit: int) -> bytes:
    """The bytes of file ``name``, read once; BundleError when it holds more than ``limit``
    (checked before reading, so a huge file is never read into memory)."""
    try:
        f = version.open(name)
    except FileNotFoundError:
        raise BundleError(f"bundle {directory} lacks {name}") from None
    except OSError as exc:
        raise BundleError(f"bundle {directory}: {name} cannot be read: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise BundleError(f"bundle {directory}: {name} holds {size} bytes, more than the {limit} it may hold")
        return f.read(size)


def _check_size(version: DirectoryVersion, directory: Path, name: str, entry: Mapping[str, Any]) -> None:
    """File ``name`` exists and has the size of its manifest ``entry`` (its bytes are not read)."""
    try:
        with version.open(name) as f:
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise BundleError(f"bundle {directory} lacks {name}") from None
    except OSError as exc:
        raise BundleError(f"bundle {directory}: {name} cannot be read: {exc.strerror or exc}") from None
    if size != entry["bytes"]:
        raise BundleError(f"bundle {directory}: {name} is corrupted or was changed after export: it holds "
                          f"{size} bytes, manifest.json says {entry['bytes']}")


def _read_verified(version: DirectoryVersion, directory: Path, name: str, entry: Mapping[str, Any]) -> bytes:
    """The bytes of file ``name``, read once, with the size and sha256 of its manifest ``entry``."""
    data = _read_file(version, directory, name, entry["bytes"])
    changed = f"bundle {directory}: {name} is corrupted or was changed after export"
    if len(data) != entry["bytes"]:
        raise BundleError(f"{changed}: it holds {len(data)} bytes, manifest.json says {entry['bytes']}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry["sha256"]:
        raise BundleError(f"{changed}: its sha256 is {actual}, manifest.json says {entry['sha256']}")
    return data


def _external_tensors(model: bytes, where: str) -> list[str]:
    try:
        return external_tensors(model)
    except ValueError as exc:
        raise BundleError(f"{where} is not a valid ONNX model (protobuf): {exc}") from None


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """Parse ``manifest.json`` and check its format version and the types of its fields."""
    try:
        manifest = json.loads(data, parse_int=_int64)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, huge ints, deep nesting
        raise BundleError(f"{where} is not valid JSON: {str(exc) or type(exc).__name__}") from None
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
        raise BundleError(f"{where}: files must map file names to their size and sha256, got {files!r}")
    retrieval_only = manifest.get("retrieval_only", False)
    if not isinstance(retrieval_only, bool):
        raise BundleError(f"{where}: retrieval_only must be true or false, got {retrieval_only!r}")
    if retrieval_only and (MODEL_FILENAME in files or ENCODER_FILENAME not in files):
        raise BundleError(f"{where}: a retrieval-only bundle lists {ENCODER_FILENAME} and not {MODEL_FILENAME}; "
                          f"its files are {sorted(files)}")
    for name in _listed_files(manifest):
        entry = files.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not _is_count(entry.get("bytes"), minimum=0):
            raise BundleError(f"{where}: files has no sha256 and size (bytes) for {name}")
    return manifest


def _npy_array(data: bytes, where: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    """The plain ``.npy`` array held by ``data`` (a read-only view, never unpickled), which must
    have the given dtype and shape; the header is checked before any array is made."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f".npy format version {version} is not read here (np.save writes 1.0 or 2.0)")
        header_shape, fortran_order, header_dtype = read_header(stream)
    except Exception as exc:  # numpy's header parser: ValueError, SyntaxError, tokenize.TokenError, ...
        raise BundleError(f"{where} cannot be read as a plain .npy array: {exc}") from None
    if header_dtype != dtype or tuple(header_shape) != shape:
        raise BundleError(f"{where} is {header_dtype}{list(header_shape)}, expected {np.dtype(dtype)}{list(shape)}")
    count = math.prod(shape)
    offset = stream.tell()
    if len(data) - offset != count * header_dtype.itemsize:
        raise BundleError(
            f"{where} holds {len(data) - offset} bytes of array data; its header "
            f"({header_dtype}{list(shape)}) needs {count * header_dtype.itemsize}"
        )
    flat = np.frombuffer(data, dtype=header_dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran_order else "C")
