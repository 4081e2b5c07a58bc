"""The item vocabulary: raw item ids (what users have) <-> internal ids 1..n.

Internal id ``i`` (``1 <= i <= n_items``) stands for ``raw_ids[i - 1]``; 0 is the
padding id and stands for no item. Raw ids are ints or strings, kept exactly as
given (the JSON file preserves the type), so ``123`` and ``"123"`` are different
items.

On disk the vocabulary is ``vocab.json``: a JSON array of the raw ids in
internal-id order. It is data only; loading it executes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Union

import numpy as np

RawId = Union[int, str]

VOCAB_FILENAME = "vocab.json"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Vocab:
    """Bidirectional map between raw item ids and internal ids 1..n."""

    __slots__ = ("_raw", "_index", "_raw_array")

    def __init__(self, raw_ids: Iterable[RawId]):
        raw = list(raw_ids)
        index: dict[RawId, int] = {}
        for position, raw_id in enumerate(raw):
            if isinstance(raw_id, bool) or not isinstance(raw_id, (int, str, np.integer)):
                raise TypeError(
                    f"vocab entry {position} (internal id {position + 1}) is {raw_id!r} "
                    f"of type {type(raw_id).__name__}; raw item ids must be int or str"
                )
            if isinstance(raw_id, np.integer):
                raw_id = int(raw_id)
                raw[position] = raw_id
            if isinstance(raw_id, int) and not _INT64_MIN <= raw_id <= _INT64_MAX:
                raise ValueError(
                    f"vocab entry {position} (internal id {position + 1}) is {raw_id}, outside the int64 range "
                    f"of raw item ids"
                )
            if raw_id in index:
                raise ValueError(
                    f"vocab has raw id {raw_id!r} twice: internal ids {index[raw_id]} and {position + 1}"
                )
            index[raw_id] = position + 1
        if not raw:
            raise ValueError("vocab is empty: a model needs at least one item")
        self._raw = raw
        self._index = index
        all_int = all(isinstance(r, int) for r in raw)
        # decode() gathers from this array: int64 when every raw id is an int.
        self._raw_array = np.array(raw, dtype=np.int64 if all_int else object)

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._raw == other._raw

    def __repr__(self) -> str:
        return f"Vocab(n_items={len(self)})"

    @property
    def n_items(self) -> int:
        return len(self._raw)

    @property
    def raw_ids(self) -> list[RawId]:
        """Raw ids in internal-id order (a copy)."""
        return list(self._raw)

    def internal_id(self, raw_id: RawId) -> int:
        """Internal id of ``raw_id``, or 0 when the vocabulary does not hold it."""
        return self._index.get(raw_id, 0)

    def encode(self, session: Sequence[RawId]) -> list[int]:
        """Internal ids of a session's raw ids; unknown raw ids become 0."""
        get = self._index.get
        return [get(raw_id, 0) for raw_id in session]

    def decode(self, internal_ids: np.ndarray) -> np.ndarray:
        """Raw ids of internal ids (any shape, values in 1..n).

        Returns int64 when every raw id is an int, else an object array.
        """
        internal_ids = np.asarray(internal_ids)
        if internal_ids.size and (internal_ids.min() < 1 or internal_ids.max() > len(self._raw)):
            bad = internal_ids[(internal_ids < 1) | (internal_ids > len(self._raw))].flat[0]
            raise ValueError(f"internal id {bad} is outside 1..{len(self._raw)}")
        return self._raw_array[internal_ids - 1]

    def to_json(self) -> bytes:
        """The content of ``vocab.json``: a compact JSON array of the raw ids, UTF-8."""
        return json.dumps(self._raw, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str, where: str = VOCAB_FILENAME) -> Vocab:
        """The vocabulary held by the JSON text ``data``; ValueError / TypeError naming ``where``
        (e.g. the file) when it is not a JSON array of distinct int64 or str raw ids."""
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, 4,300+ digit ints, deep nesting
            raise ValueError(f"{where} is not valid JSON: {str(exc) or type(exc).__name__}") from None
        if not isinstance(raw, list):
            raise ValueError(f"{where} must hold a JSON array of raw item ids, not {type(raw).__name__}")
        try:
            return cls(raw)
        except TypeError as exc:
            raise TypeError(f"{where} is invalid: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{where} is invalid: {exc}") from None

    def save(self, directory: str | os.PathLike) -> str:
        """Write ``vocab.json`` into ``directory``; returns its path."""
        path = os.path.join(directory, VOCAB_FILENAME)
        with open(path, "wb") as f:
            f.write(self.to_json())
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Vocab:
        """Read ``vocab.json`` from ``directory``."""
        path = os.path.join(directory, VOCAB_FILENAME)
        with open(path, "rb") as f:
            return cls.from_json(f.read(), path)
