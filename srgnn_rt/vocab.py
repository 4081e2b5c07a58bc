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

    def save(self, directory: str | os.PathLike) -> str:
        """Write ``vocab.json`` into ``directory``; returns its path."""
        path = os.path.join(directory, VOCAB_FILENAME)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._raw, f, separators=(",", ":"))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Vocab":
        """Read ``vocab.json`` from ``directory``."""
        path = os.path.join(directory, VOCAB_FILENAME)
        with open(path, encoding="utf-8") as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(raw, list):
            raise ValueError(f"{path} must hold a JSON array of raw item ids, not {type(raw).__name__}")
        return cls(raw)
