"""Test oracle: the SR-GNN forward pass in plain float64 numpy, one session at a time.

Written straight from the equations (see the docstring of ``srgnn_rt_torch.model``)
on weights named as in the authors' ``SessionGraph`` (``to_reference_state_dict``), so
agreement with the torch model checks the model and the name mapping together. Slow
and simple on purpose: no batching, each session cut to its real nodes and clicks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _session_embedding(w: Mapping[str, np.ndarray], v: np.ndarray, a_in: np.ndarray,
                       a_out: np.ndarray, clicks: np.ndarray, step: int, nonhybrid: bool) -> np.ndarray:
    """One session: v float64[n, d] node embeddings, a_in/a_out float64[n, n],
    clicks int[L] node index of each click -> s_h float64[d]."""
    d = v.shape[1]
    for _ in range(step):
        # eq. 1: messages along in- and out-edges
        h_in, b_in = w["gnn.linear_edge_in.weight"], w["gnn.linear_edge_in.bias"]
        h_out, b_out = w["gnn.linear_edge_out.weight"], w["gnn.linear_edge_out.bias"]
        m_in = a_in @ (v @ h_in.T + b_in) + w["gnn.b_iah"]
        m_out = a_out @ (v @ h_out.T + b_out) + w["gnn.b_oah"]
        a = np.concatenate([m_in, m_out], axis=1)
        # eqs. 2-5: GRU-style gates; rows of w_ih / w_hh are [reset; update; new]
        gi = a @ w["gnn.w_ih"].T + w["gnn.b_ih"]
        gh = v @ w["gnn.w_hh"].T + w["gnn.b_hh"]
        r = _sigmoid(gi[:, :d] + gh[:, :d])
        z = _sigmoid(gi[:, d:2 * d] + gh[:, d:2 * d])
        new = np.tanh(gi[:, 2 * d:] + r * gh[:, 2 * d:])
        v = (1.0 - z) * new + z * v
    # eq. 6: soft attention of every click against the last one
    v_clicks = v[clicks]
    v_last = v_clicks[-1]
    c = w["linear_one.bias"] + w["linear_two.bias"]
    q = w["linear_three.weight"][0]
    s_g = np.zeros(d)
    for v_i in v_clicks:
        alpha = q @ _sigmoid(w["linear_one.weight"] @ v_last + w["linear_two.weight"] @ v_i + c)
        s_g += alpha * v_i
    if nonhybrid:
        return s_g
    # eq. 7: hybrid embedding
    return w["linear_transform.weight"] @ np.concatenate([s_g, v_last]) + w["linear_transform.bias"]


def srgnn_scores(reference_weights: Mapping[str, object], items: np.ndarray, adjacency: np.ndarray,
                 alias: np.ndarray, mask: np.ndarray, *, step: int, nonhybrid: bool) -> np.ndarray:
    """Scores float64[B, n_items] (column j is item j + 1) from the authors'-named weights
    (numpy arrays or tensors) and the graph arrays items int64[B, N], adjacency
    float[B, N, 2N], alias int64[B, T], mask float[B, T].

    Assumes real nodes come first in ``items`` and real clicks first in ``mask``.
    """
    w = {name: np.asarray(value, dtype=np.float64) for name, value in reference_weights.items()}
    items = np.asarray(items)
    adjacency = np.asarray(adjacency, dtype=np.float64)
    big_n = items.shape[1]
    item_vectors = w["embedding.weight"][1:]  # eq. 8 scores real items only
    rows = []
    for b in range(items.shape[0]):
        n = int(np.count_nonzero(items[b]))
        length = int(np.asarray(mask[b]).sum())
        v = w["embedding.weight"][items[b, :n]]
        a_in = adjacency[b, :n, :n]
        a_out = adjacency[b, :n, big_n:big_n + n]
        s_h = _session_embedding(w, v, a_in, a_out, np.asarray(alias[b, :length]), step, nonhybrid)
        rows.append(item_vectors @ s_h)
    return np.stack(rows)
