"""Tests of the SR-GNN torch model against the float64 numpy oracle (tests/srgnn_numpy.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from srgnn_numpy import srgnn_scores
from srgnn_rt_torch.model import (
    REFERENCE_NAMES,
    SRGNN,
    ModelConfig,
    from_reference_state_dict,
    to_reference_state_dict,
)

# The authors' SessionGraph state dict (pytorch_code/model.py of CRIPAC-DIG/SR-GNN), for
# n_node = n_items + 1 and hiddenSize = d, in their registration order.
_REFERENCE_KEYS = [
    ("embedding.weight", lambda n, d: (n + 1, d)),
    ("gnn.w_ih", lambda n, d: (3 * d, 2 * d)),
    ("gnn.w_hh", lambda n, d: (3 * d, d)),
    ("gnn.b_ih", lambda n, d: (3 * d,)),
    ("gnn.b_hh", lambda n, d: (3 * d,)),
    ("gnn.b_iah", lambda n, d: (d,)),
    ("gnn.b_oah", lambda n, d: (d,)),
    ("gnn.linear_edge_in.weight", lambda n, d: (d, d)),
    ("gnn.linear_edge_in.bias", lambda n, d: (d,)),
    ("gnn.linear_edge_out.weight", lambda n, d: (d, d)),
    ("gnn.linear_edge_out.bias", lambda n, d: (d,)),
    ("gnn.linear_edge_f.weight", lambda n, d: (d, d)),
    ("gnn.linear_edge_f.bias", lambda n, d: (d,)),
    ("linear_one.weight", lambda n, d: (d, d)),
    ("linear_one.bias", lambda n, d: (d,)),
    ("linear_two.weight", lambda n, d: (d, d)),
    ("linear_two.bias", lambda n, d: (d,)),
    ("linear_three.weight", lambda n, d: (1, d)),
    ("linear_transform.weight", lambda n, d: (d, 2 * d)),
    ("linear_transform.bias", lambda n, d: (d,)),
]


def _random_model(config: ModelConfig, seed: int, scale: float = 0.5) -> SRGNN:
    """A model with N(0, scale^2) weights, larger than the init so the nonlinearities matter."""
    torch.manual_seed(seed)
    model = SRGNN(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model.eval()


def _random_graphs(rng: np.random.Generator, n_items: int, batch: int, n_pad: int = 0, t_pad: int = 0):
    """Random valid graph arrays: per session k distinct items (k <= min(L, n_items)),
    L left-aligned clicks over all k nodes, non-negative adjacency on the k x k blocks only.
    ``n_pad`` / ``t_pad`` add extra all-padding nodes / click positions."""
    lengths = rng.integers(1, 7, size=batch)
    nodes = [int(rng.integers(1, min(L, n_items) + 1)) for L in lengths]
    big_n, big_t = max(nodes) + n_pad, int(lengths.max()) + t_pad
    items = np.zeros((batch, big_n), np.int64)
    adjacency = np.zeros((batch, big_n, 2 * big_n), np.float32)
    alias = np.zeros((batch, big_t), np.int64)
    mask = np.zeros((batch, big_t), np.float32)
    for b, (L, k) in enumerate(zip(lengths, nodes)):
        items[b, :k] = rng.choice(np.arange(1, n_items + 1), size=k, replace=False)
        clicks = np.concatenate([rng.permutation(k), rng.integers(0, k, size=L - k)])
        alias[b, :L] = rng.permutation(clicks)
        mask[b, :L] = 1.0
        adjacency[b, :k, :k] = rng.uniform(0, 1, (k, k)) * (rng.uniform(size=(k, k)) < 0.6)
        adjacency[b, :k, big_n:big_n + k] = rng.uniform(0, 1, (k, k)) * (rng.uniform(size=(k, k)) < 0.6)
    return items, adjacency, alias, mask


def _torch_scores(model: SRGNN, graphs) -> np.ndarray:
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in graphs)).numpy()


def _assert_close_to_scale(actual: np.ndarray, expected: np.ndarray, tol: float = 1e-5):
    """|actual - expected| <= tol * max |expected| (float32 vs float64)."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    step=st.sampled_from([1, 2]),
    nonhybrid=st.booleans(),
    n_items=st.integers(1, 30),
    hidden_size=st.integers(1, 12),
    batch=st.integers(1, 6),
    n_pad=st.integers(0, 2),
    t_pad=st.integers(0, 2),
)
def test_matches_numpy_oracle(seed, step, nonhybrid, n_items, hidden_size, batch, n_pad, t_pad):
    config = ModelConfig(n_items=n_items, hidden_size=hidden_size, step=step, nonhybrid=nonhybrid)
    model = _random_model(config, seed)
    graphs = _random_graphs(np.random.default_rng(seed), n_items, batch, n_pad, t_pad)
    expected = srgnn_scores(to_reference_state_dict(model), *graphs, step=step, nonhybrid=nonhybrid)
    actual = _torch_scores(model, graphs)
    assert actual.shape == (batch, n_items) and actual.dtype == np.float32
    _assert_close_to_scale(actual, expected)


@pytest.mark.parametrize("step", [1, 2])
@pytest.mark.parametrize("nonhybrid", [False, True])
def test_matches_oracle_at_paper_size(step, nonhybrid):
    """d = 100 as in the paper, with the authors' initialisation."""
    torch.manual_seed(step)
    model = SRGNN(ModelConfig(n_items=500, hidden_size=100, step=step, nonhybrid=nonhybrid)).eval()
    graphs = _random_graphs(np.random.default_rng(step), 500, batch=16, n_pad=1, t_pad=1)
    expected = srgnn_scores(to_reference_state_dict(model), *graphs, step=step, nonhybrid=nonhybrid)
    _assert_close_to_scale(_torch_scores(model, graphs), expected)


def test_session_embedding_and_score_compose():
    model = _random_model(ModelConfig(n_items=9, hidden_size=5), seed=3)
    graphs = tuple(torch.from_numpy(a) for a in _random_graphs(np.random.default_rng(3), 9, batch=4))
    with torch.no_grad():
        s_h = model.session_embedding(*graphs)
        assert s_h.shape == (4, 5) and s_h.dtype == torch.float32
        torch.testing.assert_close(model.score(s_h), model(*graphs), rtol=0, atol=0)
        # column j is item j + 1: the score of item i is s_h . embedding[i]
        torch.testing.assert_close(model.score(s_h)[:, 6], s_h @ model.embedding.weight[7])


@pytest.mark.parametrize("nonhybrid", [False, True])
def test_padding_invariance(nonhybrid):
    """A session alone, with no padding, scores the same as inside a padded batch."""
    n_items = 20
    model = _random_model(ModelConfig(n_items=n_items, hidden_size=8, step=2, nonhybrid=nonhybrid), seed=5)
    items, adjacency, alias, mask = _random_graphs(np.random.default_rng(5), n_items, batch=6, n_pad=3, t_pad=4)
    batch_scores = _torch_scores(model, (items, adjacency, alias, mask))
    big_n = items.shape[1]
    for b in range(items.shape[0]):
        k, length = int(np.count_nonzero(items[b])), int(mask[b].sum())
        alone = (
            items[b:b + 1, :k],
            np.concatenate([adjacency[b:b + 1, :k, :k], adjacency[b:b + 1, :k, big_n:big_n + k]], axis=2),
            alias[b:b + 1, :length],
            mask[b:b + 1, :length],
        )
        _assert_close_to_scale(batch_scores[b:b + 1], _torch_scores(model, alone))


def test_embedding_row_zero_is_never_used():
    model = _random_model(ModelConfig(n_items=15, hidden_size=6, step=2), seed=7)
    graphs = _random_graphs(np.random.default_rng(7), 15, batch=8, n_pad=2, t_pad=2)
    assert (graphs[0] == 0).any()  # some padded nodes look up row 0
    before = _torch_scores(model, graphs)
    assert before.shape == (8, 15)
    with torch.no_grad():
        model.embedding.weight[0] = 1e3
    np.testing.assert_array_equal(_torch_scores(model, graphs), before)


def test_initialisation_is_uniform_in_plus_minus_one_over_sqrt_d():
    d = 16
    torch.manual_seed(0)
    model = SRGNN(ModelConfig(n_items=200, hidden_size=d))
    bound = 1 / math.sqrt(d)
    for name, p in model.named_parameters():
        assert p.abs().max().item() <= bound, name
        if p.numel() >= 48:
            assert p.abs().max().item() > 0.8 * bound, name
            assert abs(p.mean().item()) < 0.25 * bound, name
    # the padding row is drawn like the others (the authors use no padding_idx)
    assert model.embedding.weight[0].abs().sum().item() > 0


def test_parameters_follow_config():
    hybrid = SRGNN(ModelConfig(n_items=7, hidden_size=4))
    nonhybrid = SRGNN(ModelConfig(n_items=7, hidden_size=4, nonhybrid=True))
    assert set(hybrid.state_dict()) == set(REFERENCE_NAMES)
    assert set(nonhybrid.state_dict()) == set(REFERENCE_NAMES) - {"w3.weight", "w3.bias"}
    assert hybrid.embedding.weight.shape == (8, 4)


@pytest.mark.parametrize("nonhybrid", [False, True])
def test_reference_state_dict_has_the_authors_keys_and_shapes(nonhybrid):
    n, d = 11, 6
    model = _random_model(ModelConfig(n_items=n, hidden_size=d, nonhybrid=nonhybrid), seed=2)
    ref = to_reference_state_dict(model)
    assert list(ref) == [name for name, _ in _REFERENCE_KEYS]
    for name, shape in _REFERENCE_KEYS:
        assert tuple(ref[name].shape) == shape(n, d), name
        assert ref[name].dtype == torch.float32 and not ref[name].requires_grad
    assert not ref["gnn.linear_edge_f.weight"].any() and not ref["gnn.linear_edge_f.bias"].any()
    assert ref["linear_transform.weight"].any() != nonhybrid
    torch.testing.assert_close(ref["linear_one.bias"], model.w1.bias.detach(), rtol=0, atol=0)
    # a copy: changing it leaves the model alone
    ref["embedding.weight"].zero_()
    assert model.embedding.weight.any()


@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("nonhybrid", [False, True])
def test_reference_round_trip_gives_identical_scores(step, nonhybrid):
    config = ModelConfig(n_items=25, hidden_size=7, step=step, nonhybrid=nonhybrid)
    model = _random_model(config, seed=11)
    back = from_reference_state_dict(to_reference_state_dict(model), step=step, nonhybrid=nonhybrid)
    assert back.config == config
    graphs = _random_graphs(np.random.default_rng(11), 25, batch=5, n_pad=1)
    np.testing.assert_array_equal(_torch_scores(back.eval(), graphs), _torch_scores(model, graphs))


def test_from_reference_loads_foreign_weights():
    """A state dict built from the key list alone (as the authors' model would give) loads,
    and the model computes what the oracle computes on those weights."""
    n, d = 13, 5
    gen = torch.Generator().manual_seed(4)
    ref = {name: torch.randn(shape(n, d), generator=gen) * 0.5 for name, shape in _REFERENCE_KEYS}
    model = from_reference_state_dict(ref, step=2).eval()
    assert model.config == ModelConfig(n_items=n, hidden_size=d, step=2)
    graphs = _random_graphs(np.random.default_rng(4), n, batch=4)
    expected = srgnn_scores(ref, *graphs, step=2, nonhybrid=False)
    _assert_close_to_scale(_torch_scores(model, graphs), expected)


def test_from_reference_rejects_bad_state_dicts():
    ref = to_reference_state_dict(SRGNN(ModelConfig(n_items=5, hidden_size=3)))
    with pytest.raises(ValueError, match=r"missing keys \['gnn.linear_edge_f.bias'\]"):
        from_reference_state_dict({k: v for k, v in ref.items() if k != "gnn.linear_edge_f.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        from_reference_state_dict({**ref, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"'gnn.w_hh' must have shape \(9, 3\), got \(9, 4\)"):
        from_reference_state_dict({**ref, "gnn.w_hh": torch.zeros(9, 4)})
    with pytest.raises(ValueError, match="embedding.weight"):
        from_reference_state_dict({**ref, "embedding.weight": torch.zeros(1, 3)})
    with pytest.raises(TypeError):
        from_reference_state_dict([("embedding.weight", ref["embedding.weight"])])


def test_config_round_trip_and_validation():
    config = ModelConfig(n_items=43097, hidden_size=100, step=2, nonhybrid=True)
    assert config.to_dict() == {"n_items": 43097, "hidden_size": 100, "step": 2, "nonhybrid": True}
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig.from_dict({"n_items": 3}) == ModelConfig(n_items=3)
    for bad in ({"n_items": 0}, {"n_items": 3, "step": 0}, {"n_items": 3, "hidden_size": 2.0},
                {"n_items": True}):
        with pytest.raises(ValueError, match="must be an int >= 1"):
            ModelConfig.from_dict(bad)
    with pytest.raises(TypeError, match="nonhybrid must be a bool"):
        ModelConfig(n_items=3, nonhybrid=1)
    with pytest.raises(ValueError, match=r"unknown keys \['hiddenSize'\]"):
        ModelConfig.from_dict({"n_items": 3, "hiddenSize": 10})
    with pytest.raises(ValueError, match="lacks 'n_items'"):
        ModelConfig.from_dict({"hidden_size": 10})
    with pytest.raises(TypeError, match="needs a ModelConfig"):
        SRGNN({"n_items": 3})


def test_no_python_loop_over_the_batch():
    """Gradients flow to every parameter through one batched pass (training path)."""
    model = _random_model(ModelConfig(n_items=30, hidden_size=8, step=2), seed=9).train()
    graphs = tuple(torch.from_numpy(a) for a in _random_graphs(np.random.default_rng(9), 30, batch=10))
    scores = model(*graphs)
    torch.nn.functional.cross_entropy(scores, torch.arange(10) % 30).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_torch_export_with_dynamic_batch_nodes_and_clicks():
    model = _random_model(ModelConfig(n_items=40, hidden_size=8, step=2), seed=13)
    example = tuple(torch.from_numpy(a) for a in _random_graphs(np.random.default_rng(13), 40, batch=3,
                                                                   n_pad=2, t_pad=3))
    b, n, t = torch.export.Dim("batch"), torch.export.Dim("nodes"), torch.export.Dim("clicks")
    dynamic_shapes = ({0: b, 1: n}, {0: b, 1: n, 2: 2 * n}, {0: b, 1: t}, {0: b, 1: t})
    exported = torch.export.export(model, example, dynamic_shapes=dynamic_shapes)
    for batch, n_pad, t_pad in ((1, 0, 0), (7, 3, 1), (2, 5, 9)):
        graphs = _random_graphs(np.random.default_rng(batch), 40, batch, n_pad, t_pad)
        with torch.no_grad():
            got = exported.module()(*(torch.from_numpy(a) for a in graphs))
        np.testing.assert_allclose(got.numpy(), _torch_scores(model, graphs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("padding", [{}, {"pad_nodes": 8, "pad_length": 9}])
def test_real_built_graphs_match_oracle(padding):
    graph = pytest.importorskip("srgnn_rt.graph", reason="srgnn_rt.graph (build_graphs) is not written yet")
    sessions = [[1, 2, 3, 2, 4], [5], [3, 3], [4, 1, 4, 2, 6, 1]]
    graphs = graph.build_graphs(sessions, **padding)
    arrays = (graphs.items, graphs.adjacency, graphs.alias, graphs.mask)
    model = _random_model(ModelConfig(n_items=6, hidden_size=5, step=2), seed=17)
    expected = srgnn_scores(to_reference_state_dict(model), *arrays, step=2, nonhybrid=False)
    _assert_close_to_scale(_torch_scores(model, arrays), expected)
