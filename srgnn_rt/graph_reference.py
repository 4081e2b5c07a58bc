"""Session graphs in plain Python and numpy: the specification of the compiled builder.

Written for clarity, one session at a time; ``srgnn_rt.graph.build_graphs(...,
backend="python")`` runs it on validated input, and tests compare the compiled
kernel against it.

A session's graph (SR-GNN, Wu et al. 2019, as in the authors' code):

- nodes: the distinct item ids of the session, ascending (``np.unique``);
- edges: every pair of consecutive clicks ``u -> v`` (``u -> u`` included);
  ``w(u -> v)`` is 1 for ``"binary"`` (an edge counts once however often it
  repeats) or its number of occurrences for ``"count"``;
- ``A_in[j, i] = w(i -> j) / sum_k w(k -> j)``: row j holds the edges j receives;
- ``A_out[i, j] = w(i -> j) / sum_k w(i -> k)``: row i holds the edges i sends;
- rows without edges stay 0; ``adjacency = [A_in | A_out]``;
- alias: the node index of each click.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def session_graph(clicks: np.ndarray, edge_weight: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Graph of one session of item ids ``clicks: int64[L]`` (L >= 1).

    Returns ``nodes: int64[n]`` ascending, ``adjacency: float32[n, 2n]`` =
    ``[A_in | A_out]`` and ``alias: int64[L]`` (node index of each click).
    """
    nodes = np.unique(clicks)
    node_of_item = {int(item): index for index, item in enumerate(nodes)}
    alias = np.array([node_of_item[int(item)] for item in clicks], dtype=np.int64)

    n = len(nodes)
    weight = np.zeros((n, n))  # weight[i, j] = w(i -> j)
    for sender, receiver in zip(alias[:-1], alias[1:]):
        if edge_weight == "count":
            weight[sender, receiver] += 1.0
        else:
            weight[sender, receiver] = 1.0

    a_in = np.zeros((n, n))
    a_out = np.zeros((n, n))
    for node in range(n):
        received = weight[:, node]
        if received.sum() > 0:
            a_in[node, :] = received / received.sum()
        sent = weight[node, :]
        if sent.sum() > 0:
            a_out[node, :] = sent / sent.sum()
    adjacency = np.concatenate([a_in, a_out], axis=1).astype(np.float32)
    return nodes, adjacency, alias


def stack_padded(
    graphs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], n_node_cols: int, n_click_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pad the graphs of ``session_graph`` to N = n_node_cols nodes and T = n_click_cols clicks.

    Returns ``items: int64[B, N]`` (0-padded), ``adjacency: float32[B, N, 2N]``
    (A_in in columns :N, A_out in columns N:), ``alias: int64[B, T]`` and
    ``mask: float32[B, T]``, all 0 in padding.
    """
    batch, width = len(graphs), n_node_cols
    items = np.zeros((batch, width), dtype=np.int64)
    adjacency = np.zeros((batch, width, 2 * width), dtype=np.float32)
    alias = np.zeros((batch, n_click_cols), dtype=np.int64)
    mask = np.zeros((batch, n_click_cols), dtype=np.float32)
    for b, (nodes, session_adjacency, session_alias) in enumerate(graphs):
        n, length = len(nodes), len(session_alias)
        items[b, :n] = nodes
        adjacency[b, :n, :n] = session_adjacency[:, :n]
        adjacency[b, :n, width : width + n] = session_adjacency[:, n:]
        alias[b, :length] = session_alias
        mask[b, :length] = 1.0
    return items, adjacency, alias, mask
