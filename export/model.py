"""The SR-GNN model (Wu et al., AAAI 2019) in PyTorch, written as the paper's equations.

Inputs are the graph arrays of ``srgnn_rt.build_graphs`` for a batch of B sessions,
each padded to N nodes and T clicks:

- ``items: int64[B, N]``: the distinct item ids (1..n_items) of each session, 0-padded;
- ``adjacency: float32[B, N, 2N]``: ``[A_in | A_out]``, rows and columns of padded
  nodes all zero;
- ``alias: int64[B, T]``: node index (into ``items``) of every click, 0 at padding;
- ``mask: float32[B, T]``: 1.0 for a real click, 0.0 for padding; clicks are
  left-aligned, so the last click is at position ``mask.sum(1) - 1``.

The forward pass, with v the item embeddings of a session's nodes:

1. gated GNN, ``step`` times (paper eqs. 1-5)::

       a   = [A_in (H_in v + b_in) + b_iah ,  A_out (H_out v + b_out) + b_oah]
       i_r, i_z, i_n = chunk3(a w_ih^T + b_ih);  h_r, h_z, h_n = chunk3(v w_hh^T + b_hh)
       r   = sigmoid(i_r + h_r);  z = sigmoid(i_z + h_z)
       n   = tanh(i_n + r * h_n)
       v  <- (1 - z) * n + z * v

2. soft attention over the real clicks, v_n the last click (eq. 6)::

       alpha_i = q^T sigmoid(W1 v_n + b1 + W2 v_i + b2);   s_g = sum_i mask_i alpha_i v_i

3. hybrid embedding (eq. 7): ``s_h = W3 [s_g ; v_n] + b3``, or ``s_h = s_g`` with
   ``nonhybrid``;
4. scores (eq. 8, before the softmax): ``s_h^T v_j`` for items j = 1..n_items, never
   the padding row 0.

Where the paper and the authors' code (``pytorch_code/model.py`` of CRIPAC-DIG/SR-GNN)
differ, this module follows the code, so that weights carry over exactly:
the GRU update keeps the old state with weight ``z`` (the paper's ``z`` is our
``1 - z``); the reset gate multiplies ``U_o v + b`` rather than ``v``
(``h_n`` above, as ``torch.nn.GRUCell``); the attention has two biases whose sum is the
paper's ``c``; and there is no softmax over ``alpha``.

``REFERENCE_NAMES`` maps every parameter onto the authors' ``SessionGraph`` names;
``to_reference_state_dict`` / ``from_reference_state_dict`` convert in both directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType

import torch
from torch import Tensor, nn

__all__ = [
    "REFERENCE_NAMES",
    "SRGNN",
    "ModelConfig",
    "from_reference_state_dict",
    "to_reference_state_dict",
]


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters that fix the model's shapes and forward pass.

    ``n_items``: number of real items (ids 1..n_items; the embedding has n_items + 1
    rows); ``hidden_size``: d; ``step``: GNN propagation steps; ``nonhybrid``: use
    s_g alone as the session embedding (no W3).
    """

    n_items: int
    hidden_size: int = 100
    step: int = 1
    nonhybrid: bool = False

    def __post_init__(self):
        for name in ("n_items", "hidden_size", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.nonhybrid, bool):
            raise TypeError(f"ModelConfig.nonhybrid must be a bool, got {self.nonhybrid!r}")

    def to_dict(self) -> dict[str, int | bool]:
        """Plain JSON-ready dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "ModelConfig":
        """Inverse of ``to_dict``; unknown keys and a missing ``n_items`` raise ValueError."""
        if not isinstance(d, Mapping):
            raise TypeError(f"model config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model config has unknown keys {unknown}; known keys are {sorted(known)}")
        if "n_items" not in d:
            raise ValueError("model config lacks 'n_items'")
        return cls(**d)


class _GatedGraphCell(nn.Module):
    """One step of the gated session-graph network (paper eqs. 1-5)."""

    def __init__(self, d: int):
        super().__init__()
        self.h_in = nn.Linear(d, d)
        self.h_out = nn.Linear(d, d)
        self.b_iah = nn.Parameter(torch.empty(d))
        self.b_oah = nn.Parameter(torch.empty(d))
        self.w_ih = nn.Parameter(torch.empty(3 * d, 2 * d))
        self.w_hh = nn.Parameter(torch.empty(3 * d, d))
        self.b_ih = nn.Parameter(torch.empty(3 * d))
        self.b_hh = nn.Parameter(torch.empty(3 * d))

    def forward(self, adjacency: Tensor, v: Tensor) -> Tensor:
        """adjacency: float32[B, N, 2N], v: float32[B, N, d] -> new v: float32[B, N, d]."""
        n = adjacency.shape[1]
        a_in = torch.matmul(adjacency[:, :, :n], self.h_in(v)) + self.b_iah
        a_out = torch.matmul(adjacency[:, :, n:], self.h_out(v)) + self.b_oah
        a = torch.cat([a_in, a_out], dim=2)
        i_r, i_z, i_n = nn.functional.linear(a, self.w_ih, self.b_ih).chunk(3, dim=2)
        h_r, h_z, h_n = nn.functional.linear(v, self.w_hh, self.b_hh).chunk(3, dim=2)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        new = torch.tanh(i_n + r * h_n)
        return new + z * (v - new)


class SRGNN(nn.Module):
    """SR-GNN: session graph -> session embedding s_h -> scores over items 1..n_items.

    Parameters (paper symbol in brackets): ``embedding`` [v, row 0 = padding],
    ``gnn.h_in``/``gnn.h_out`` [H_in, b_in / H_out, b_out], ``gnn.b_iah``/``gnn.b_oah``,
    ``gnn.w_ih``/``w_hh``/``b_ih``/``b_hh`` [GRU gates r, z, n in that chunk order],
    ``w1`` [W1, b1], ``w2`` [W2, b2], ``q`` [q, no bias], ``w3`` [W3, b3; absent when
    ``nonhybrid``]. All are initialised uniform(-1/sqrt(d), 1/sqrt(d)), as the authors do.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"SRGNN needs a ModelConfig, got {type(config).__name__}")
        self.config = config
        d = config.hidden_size
        self.embedding = nn.Embedding(config.n_items + 1, d)
        self.gnn = _GatedGraphCell(d)
        self.w1 = nn.Linear(d, d)
        self.w2 = nn.Linear(d, d)
        self.q = nn.Linear(d, 1, bias=False)
        self.w3 = None if config.nonhybrid else nn.Linear(2 * d, d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every parameter from uniform(-1/sqrt(d), 1/sqrt(d))."""
        bound = 1.0 / math.sqrt(self.config.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    def session_embedding(self, items: Tensor, adjacency: Tensor, alias: Tensor, mask: Tensor) -> Tensor:
        """Graph arrays (see the module docstring) -> s_h: float32[B, d].

        A row with no real click gets a finite but meaningless s_h (its "last click"
        is taken at position 0).
        """
        v = self.embedding(items)  # [B, N, d]
        for _ in range(self.config.step):
            v = self.gnn(adjacency, v)
        d = v.shape[2]
        clicks = torch.gather(v, 1, alias.unsqueeze(2).expand(-1, -1, d))  # [B, T, d]
        last = (mask.sum(dim=1).to(torch.int64) - 1).clamp(min=0)  # [B]
        v_n = torch.gather(clicks, 1, last.view(-1, 1, 1).expand(-1, 1, d)).squeeze(1)  # [B, d]
        alpha = self.q(torch.sigmoid(self.w1(v_n).unsqueeze(1) + self.w2(clicks)))  # [B, T, 1]
        s_g = torch.sum(alpha * clicks * mask.unsqueeze(2), dim=1)  # [B, d]
        if self.w3 is None:
            return s_g
        return self.w3(torch.cat([s_g, v_n], dim=1))

    def score(self, s_h: Tensor) -> Tensor:
        """s_h: float32[B, d] -> scores float32[B, n_items]; column j is item id j + 1."""
        return torch.matmul(s_h, self.embedding.weight[1:].t())

    def forward(self, items: Tensor, adjacency: Tensor, alias: Tensor, mask: Tensor) -> Tensor:
        """Graph arrays -> scores float32[B, n_items] (logits; column j is item id j + 1)."""
        return self.score(self.session_embedding(items, adjacency, alias, mask))


REFERENCE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "embedding.weight": "embedding.weight",
        "gnn.w_ih": "gnn.w_ih",
        "gnn.w_hh": "gnn.w_hh",
        "gnn.b_ih": "gnn.b_ih",
        "gnn.b_hh": "gnn.b_hh",
        "gnn.b_iah": "gnn.b_iah",
        "gnn.b_oah": "gnn.b_oah",
        "gnn.h_in.weight": "gnn.linear_edge_in.weight",
        "gnn.h_in.bias": "gnn.linear_edge_in.bias",
        "gnn.h_out.weight": "gnn.linear_edge_out.weight",
        "gnn.h_out.bias": "gnn.linear_edge_out.bias",
        "w1.weight": "linear_one.weight",
        "w1.bias": "linear_one.bias",
        "w2.weight": "linear_two.weight",
        "w2.bias": "linear_two.bias",
        "q.weight": "linear_three.weight",
        "w3.weight": "linear_transform.weight",
        "w3.bias": "linear_transform.bias",
    }
)
"""Our state-dict name -> the name in the authors' ``SessionGraph`` (pytorch_code/model.py).

The authors' model also holds ``gnn.linear_edge_f.weight/bias`` (d x d, d), which its
forward pass never uses, and keeps ``linear_transform`` even with ``nonhybrid``; the
converters below fill those with zeros and ignore them on the way back.
"""

_UNUSED_REFERENCE = ("gnn.linear_edge_f.weight", "gnn.linear_edge_f.bias")
_HYBRID_ONLY = ("w3.weight", "w3.bias")


def _reference_shapes(n_items: int, d: int) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor in the authors' state dict, in their registration order."""
    return {
        "embedding.weight": (n_items + 1, d),
        "gnn.w_ih": (3 * d, 2 * d),
        "gnn.w_hh": (3 * d, d),
        "gnn.b_ih": (3 * d,),
        "gnn.b_hh": (3 * d,),
        "gnn.b_iah": (d,),
        "gnn.b_oah": (d,),
        "gnn.linear_edge_in.weight": (d, d),
        "gnn.linear_edge_in.bias": (d,),
        "gnn.linear_edge_out.weight": (d, d),
        "gnn.linear_edge_out.bias": (d,),
        "gnn.linear_edge_f.weight": (d, d),
        "gnn.linear_edge_f.bias": (d,),
        "linear_one.weight": (d, d),
        "linear_one.bias": (d,),
        "linear_two.weight": (d, d),
        "linear_two.bias": (d,),
        "linear_three.weight": (1, d),
        "linear_transform.weight": (d, 2 * d),
        "linear_transform.bias": (d,),
    }


def to_reference_state_dict(model: SRGNN) -> dict[str, Tensor]:
    """State dict under the authors' names, loadable with ``strict=True`` into their
    ``SessionGraph(opt, n_node=n_items + 1)`` (``opt.hiddenSize = d``, same ``step`` and
    ``nonhybrid``), which then computes the same scores.

    Their unused ``gnn.linear_edge_f.*``, and ``linear_transform.*`` of a nonhybrid model,
    are zeros. Tensors are detached copies, on the model's device and dtype.
    """
    if not isinstance(model, SRGNN):
        raise TypeError(f"to_reference_state_dict needs an SRGNN, got {type(model).__name__}")
    ours = model.state_dict()
    ref = {REFERENCE_NAMES[name]: t.detach().clone() for name, t in ours.items()}
    weight = ours["embedding.weight"]
    shapes = _reference_shapes(model.config.n_items, model.config.hidden_size)
    for name in _UNUSED_REFERENCE + tuple(REFERENCE_NAMES[n] for n in _HYBRID_ONLY):
        ref.setdefault(name, torch.zeros(shapes[name], dtype=weight.dtype, device=weight.device))
    return {name: ref[name] for name in shapes}


def from_reference_state_dict(
    state_dict: Mapping[str, Tensor], *, step: int = 1, nonhybrid: bool = False
) -> SRGNN:
    """SRGNN holding the weights of a state dict of the authors' ``SessionGraph``.

    ``n_items`` and ``hidden_size`` come from the shape of ``embedding.weight``
    ([n_items + 1, d]); ``step`` and ``nonhybrid`` leave no trace in the weights, so pass
    the values the model was trained with (defaults: the authors' defaults). The key set
    must be exactly theirs and every shape must match, else ValueError.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    embedding = state_dict.get("embedding.weight")
    if not isinstance(embedding, Tensor) or embedding.dim() != 2 or embedding.shape[0] < 2:
        shape = tuple(embedding.shape) if isinstance(embedding, Tensor) else embedding
        raise ValueError(
            f"reference 'embedding.weight' must be a [n_items + 1, d] tensor with n_items >= 1, got {shape!r}"
        )
    config = ModelConfig(
        n_items=embedding.shape[0] - 1, hidden_size=embedding.shape[1], step=step, nonhybrid=nonhybrid
    )
    shapes = _reference_shapes(config.n_items, config.hidden_size)
    missing = sorted(set(shapes) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(shapes))
    if missing or unexpected:
        raise ValueError(f"reference state dict: missing keys {missing}, unexpected keys {unexpected}")
    for name, shape in shapes.items():
        tensor = state_dict[name]
        if not isinstance(tensor, Tensor) or tuple(tensor.shape) != shape:
            got = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise ValueError(f"reference '{name}' must have shape {shape}, got {got}")
    model = SRGNN(config)
    wanted = model.state_dict().keys()
    ours = {name: state_dict[ref] for name, ref in REFERENCE_NAMES.items() if name in wanted}
    model.load_state_dict(ours, strict=True)
    return model
