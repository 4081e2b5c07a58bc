"""Mini-batches of graph tensors for training and evaluation."""

from __future__ import annotations

import math

import numpy as np
import torch

from srgnn_rt.dataset import PrefixSplit
from srgnn_rt.graph import CSRSessions, build_graphs


class BatchLoader:
    """Mini-batches of graph tensors from a prefix split.

    Yields ``(items int64[B, N], adjacency float32[B, N, 2N], alias int64[B, T],
    mask float32[B, T], targets int64[B])`` on ``device``; targets are internal
    ids 1..n. ``order`` picks the prefixes and their order (a permutation for
    training); default: all, in order.
    """

    def __init__(
        self,
        split: PrefixSplit,
        *,
        n_items: int,
        batch_size: int,
        device: torch.device,
        max_length: int | None = None,
        edge_weight: str = "binary",
    ):
        self.sessions = CSRSessions(split.items, split.offsets)
        self.targets = split.targets
        self.n_items = n_items
        self.batch_size = batch_size
        self.device = device
        self.max_length = max_length
        self.edge_weight = edge_weight

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)

    def batches(self, order: np.ndarray | None = None):
        order = np.arange(len(self.targets)) if order is None else order
        for start in range(0, len(order), self.batch_size):
            yield self.batch(order[start : start + self.batch_size])

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The tensors of prefixes ``index: int64[B]`` (B >= 1), in that order."""
        graphs = build_graphs(
            self.sessions.take(index),
            n_items=self.n_items,
            max_length=self.max_length,
            edge_weight=self.edge_weight,
        )
        arrays = (graphs.items, graphs.adjacency, graphs.alias, graphs.mask, self.targets[index])
        return tuple(torch.from_numpy(a).to(self.device) for a in arrays)
