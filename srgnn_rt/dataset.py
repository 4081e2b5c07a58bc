"""The prepared-dataset directory: prefix splits, vocabulary and manifest (numpy only).

Layout of a dataset directory::

    train.npz      items int64[M], offsets int64[S+1], targets int64[S], item_counts int64[n_items + 1]
    test.npz       items int64[M], offsets int64[S+1], targets int64[S]
    vocab.json     raw item ids in internal-id order (see srgnn_rt.vocab)
    manifest.json  format version, source, options, split date, counts, malformed-row report

A split holds S prefixes in CSR form: prefix ``i`` is ``items[offsets[i]:offsets[i + 1]]``
(at least one item) and its target (the next click) is ``targets[i]``; every id is an
internal id in 1..n_items. ``item_counts[i]`` is the number of training clicks on item
``i`` (index 0, the padding id, is 0). The manifest holds at least ``format_version``
and the counts ``train_sessions``, ``test_sessions``, ``train_prefixes``,
``test_prefixes`` and ``n_items``. Arrays are plain ``.npz`` files read with
``allow_pickle=False``; nothing in the directory executes code when loaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import staging_directory
from .vocab import VOCAB_FILENAME, Vocab

FORMAT_VERSION = 1
MANIFEST_FILENAME = "manifest.json"
COUNT_KEYS = ("train_sessions", "test_sessions", "train_prefixes", "test_prefixes", "n_items")

_SPLIT_KEYS = ("items", "offsets", "targets")


@dataclass(frozen=True, eq=False)
class PrefixSplit:
    """S prefixes in CSR form: ``items: int64[M]``, ``offsets: int64[S+1]``, ``targets: int64[S]``."""

    items: np.ndarray
    offsets: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True, eq=False)
class PreparedDataset:
    """A prepared dataset: ``train`` and ``test`` prefix splits, ``vocab``,
    ``item_counts: int64[n_items + 1]`` (training clicks per internal id) and ``manifest``."""

    train: PrefixSplit
    test: PrefixSplit
    vocab: Vocab
    item_counts: np.ndarray
    manifest: dict[str, Any]

    @property
    def n_items(self) -> int:
        return len(self.vocab)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PreparedDataset:
        """Read and check the dataset directory ``path``; ValueError says what is wrong."""
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"prepared dataset directory {directory} does not exist")
        for name in ("train.npz", "test.npz", VOCAB_FILENAME, MANIFEST_FILENAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} is not a prepared dataset: {name} is missing")
        manifest_path = directory / MANIFEST_FILENAME
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, 4,300+ digit ints, deep nesting
            raise ValueError(f"{manifest_path} is not valid JSON: {str(exc) or type(exc).__name__}") from None
        train_arrays = _read_npz(directory / "train.npz", (*_SPLIT_KEYS, "item_counts"))
        test_arrays = _read_npz(directory / "test.npz", _SPLIT_KEYS)
        dataset = cls(
            train=PrefixSplit(*(train_arrays[key] for key in _SPLIT_KEYS)),
            test=PrefixSplit(*(test_arrays[key] for key in _SPLIT_KEYS)),
            vocab=Vocab.load(directory),
            item_counts=train_arrays["item_counts"],
            manifest=manifest,
        )
        dataset.check(where=str(directory))
        return dataset

    def check(self, where: str = "dataset") -> None:
        """Raise ValueError naming the first inconsistency (dtypes, shapes, offsets, ids, counts)."""
        n_items = len(self.vocab)
        for name, split in (("train", self.train), ("test", self.test)):
            _check_split(split, n_items, f"{where}: {name}")
        _check_array(self.item_counts, f"{where}: train item_counts")
        if self.item_counts.shape != (n_items + 1,):
            raise ValueError(
                f"{where}: train item_counts has {len(self.item_counts)} entries; "
                f"expected n_items + 1 = {n_items + 1}"
            )
        if self.item_counts[0] != 0:
            raise ValueError(f"{where}: train item_counts[0] (the padding id) is {self.item_counts[0]}, not 0")
        if self.item_counts.min() < 0:
            position = int(np.argmin(self.item_counts))
            raise ValueError(f"{where}: train item_counts[{position}] is negative ({self.item_counts[position]})")
        _check_manifest(self.manifest, n_items, len(self.train), len(self.test), where)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the dataset into directory ``path`` atomically; returns the path.

        The files go to a temporary sibling directory renamed into place, so a
        failure leaves nothing half-written. An existing non-empty ``path`` is
        replaced only when ``overwrite`` is true (FileExistsError otherwise).
        """
        self.check(where="dataset to save")
        with staging_directory(path, overwrite=overwrite) as staging:
            np.savez(staging / "train.npz", **_split_arrays(self.train), item_counts=self.item_counts)
            np.savez(staging / "test.npz", **_split_arrays(self.test))
            self.vocab.save(staging)
            with open(staging / MANIFEST_FILENAME, "w", encoding="utf-8") as f:
                json.dump(self.manifest, f, indent=2)
                f.write("\n")
        target = Path(path).absolute()
        return target


def _split_arrays(split: PrefixSplit) -> dict[str, np.ndarray]:
    return {key: getattr(split, key) for key in _SPLIT_KEYS}


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` file ``path``, exactly those keys."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} cannot be read as a numpy .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not a .npz archive of {list(keys)}")
    with archive:
        present = set(archive.files)
        missing = [key for key in keys if key not in present]
        extra = sorted(present - set(keys))
        if missing or extra:
            raise ValueError(
                f"{path} must hold exactly the arrays {list(keys)}; missing {missing}, unexpected {extra}"
            )
        arrays = {}
        for key in keys:
            try:
                arrays[key] = archive[key]
            except (OSError, ValueError, EOFError) as exc:
                raise ValueError(f"{path} array {key!r} cannot be read without pickle: {exc}") from None
        return arrays


def _check_array(array: np.ndarray, name: str) -> None:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, not {type(array).__name__}")
    if array.dtype != np.int64 or array.ndim != 1:
        raise ValueError(f"{name} must be int64 with one dimension, not {array.dtype}{list(array.shape)}")


def _check_split(split: PrefixSplit, n_items: int, name: str) -> None:
    """Dtypes, shapes, offsets (0, strictly increasing, ending at len(items)) and ids in 1..n_items."""
    for key in _SPLIT_KEYS:
        _check_array(getattr(split, key), f"{name} {key}")
    items, offsets, targets = split.items, split.offsets, split.targets
    if len(offsets) != len(targets) + 1:
        raise ValueError(
            f"{name} has {len(targets)} targets but {len(offsets)} offsets; expected {len(targets) + 1}"
        )
    if offsets[0] != 0:
        raise ValueError(f"{name} offsets[0] is {offsets[0]}, not 0")
    if offsets[-1] != len(items):
        raise ValueError(f"{name} offsets[-1] is {offsets[-1]} but there are {len(items)} items")
    steps = np.diff(offsets)
    if steps.size and steps.min() < 1:
        prefix = int(np.argmin(steps))
        raise ValueError(
            f"{name} prefix {prefix} has {steps[prefix]} items (offsets {offsets[prefix]} -> "
            f"{offsets[prefix + 1]}); every prefix needs at least one"
        )
    for key, ids in (("items", items), ("targets", targets)):
        outside = (ids < 1) | (ids > n_items)
        if outside.any():
            position = int(np.argmax(outside))
            raise ValueError(f"{name} {key}[{position}] is {ids[position]}, outside 1..{n_items} (n_items)")


def _check_manifest(manifest: Any, n_items: int, train_prefixes: int, test_prefixes: int, where: str) -> None:
    if not isinstance(manifest, dict):
        raise ValueError(f"{where}: the manifest must be a JSON object, not {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{where}: manifest format_version is {version!r}; this code reads {FORMAT_VERSION}")
    for key in COUNT_KEYS:
        value = manifest.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{where}: manifest {key} must be a count (int >= 0), not {value!r}")
    for key, actual, what in (
        ("n_items", n_items, "the vocabulary holds"),
        ("train_prefixes", train_prefixes, "train.npz holds"),
        ("test_prefixes", test_prefixes, "test.npz holds"),
    ):
        if manifest[key] != actual:
            raise ValueError(f"{where}: manifest {key} is {manifest[key]} but {what} {actual}")
