"""Whole sessions rebuilt from a prepared split's prefixes.

A prepared split stores, for each session ``s`` of length L, the prefixes
``s[:-1] -> s[-1]``, ``s[:-2] -> s[-2]``, ..., ``s[:1] -> s[1]`` in that order
(longest first; see ``srgnn_rt_torch.prepare``). The baselines need the sessions
themselves, and the confidence intervals need to know which prefixes share a
session. Prefix ``i`` continues the session of prefix ``i - 1`` when it is that
prefix without its last click and its target is that last click; a session is
its longest prefix plus that prefix's target. Every session ends with its
one-click prefix, which no prefix of the next session can continue, so the
sessions come back exactly; with ``prepare --fraction`` the oldest kept
session may have lost its longest prefixes, and what comes back is the part
its remaining prefixes show.

Sessions keep the date order of the split (index 0 = oldest), which is the only
notion of time a prepared dataset keeps.
"""

from __future__ import annotations

import numpy as np

from srgnn_rt.dataset import PrefixSplit
from srgnn_rt.graph import CSRSessions

__all__ = ["prefix_sessions", "ranges", "rebuild_sessions"]


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """int64 indices ``starts[i], ..., starts[i] + lengths[i] - 1`` for every i, concatenated."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    index = np.repeat(np.asarray(starts, dtype=np.int64) - offsets, lengths)
    index += np.arange(len(index), dtype=np.int64)
    return index


def prefix_sessions(split: PrefixSplit) -> np.ndarray:
    """Index of the session each prefix belongs to, 0..S-1 in split order: int64[P]."""
    n = len(split)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = np.diff(split.offsets)
    starts = split.offsets[:-1]
    continues = np.zeros(n, dtype=bool)
    # one click shorter than the previous prefix, and its target is that prefix's last click
    candidate = 1 + np.flatnonzero(
        (lengths[1:] == lengths[:-1] - 1) & (split.targets[1:] == split.items[split.offsets[1:-1] - 1])
    )
    if candidate.size:
        size = lengths[candidate]
        same = split.items[ranges(starts[candidate], size)] == split.items[ranges(starts[candidate - 1], size)]
        matches = np.add.reduceat(same.astype(np.int64), np.cumsum(size) - size)
        continues[candidate] = matches == size
    return np.cumsum(~continues) - 1


def rebuild_sessions(split: PrefixSplit) -> tuple[CSRSessions, np.ndarray]:
    """The whole sessions behind ``split`` (date order) and the session of each prefix (int64[P])."""
    owner = prefix_sessions(split)
    if len(split) == 0:
        return CSRSessions(np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)), owner
    first = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
    longest = split.offsets[first + 1] - split.offsets[first]
    offsets = np.zeros(len(first) + 1, dtype=np.int64)
    np.cumsum(longest + 1, out=offsets[1:])
    items = np.empty(offsets[-1], dtype=np.int64)
    items[ranges(offsets[:-1], longest)] = split.items[ranges(split.offsets[first], longest)]
    items[offsets[1:] - 1] = split.targets[first]
    return CSRSessions(items, offsets), owner
