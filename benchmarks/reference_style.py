"""The reference path: session graphs built click by click, as the SR-GNN authors' data loader does.

Per session: ``np.unique`` for the nodes, a dense matrix as wide as the
batch's largest session, one ``np.where`` lookup per click for the edges and
again for the alias, then column and row sums to normalise. Edges are binary.
It returns the layout of ``srgnn_rt.graph.SessionGraphs`` so results compare
directly; benchmark suites time it as the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def build_graphs_per_click(
    sessions: Sequence[Sequence[int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(items int64[B, N], adjacency float32[B, N, 2N], alias int64[B, T], mask float32[B, T])``.

    sessions: B non-empty sessions of item ids >= 1 (lists of ints).
    """
    longest = max(len(session) for session in sessions)
    widest = max(len(np.unique(session)) for session in sessions)
    items, matrices, aliases, masks = [], [], [], []
    for session in sessions:
        nodes = np.unique(session)
        items.append(nodes.tolist() + [0] * (widest - len(nodes)))
        edges = np.zeros((widest, widest))
        for position in range(len(session) - 1):
            sender = np.where(nodes == session[position])[0][0]
            receiver = np.where(nodes == session[position + 1])[0][0]
            edges[sender][receiver] = 1
        received = edges.sum(axis=0)  # in-degree of each node
        received[received == 0] = 1
        sent = edges.sum(axis=1)  # out-degree of each node
        sent[sent == 0] = 1
        a_in = (edges / received).T  # row j: edges j receives, over its in-degree
        a_out = edges / sent[:, np.newaxis]  # row i: edges i sends, over its out-degree
        matrices.append(np.concatenate([a_in, a_out], axis=1))
        alias = [np.where(nodes == click)[0][0] for click in session]
        aliases.append(alias + [0] * (longest - len(session)))
        masks.append([1.0] * len(session) + [0.0] * (longest - len(session)))
    return (
        np.array(items, dtype=np.int64),
        np.array(matrices, dtype=np.float32),
        np.array(aliases, dtype=np.int64),
        np.array(masks, dtype=np.float32),
    )
