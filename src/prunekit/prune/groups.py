"""Coupled groups for structured pruning: attention heads, FFN units, gate-aware RNN units.

A `GroupSpec` is a family of n groups that are pruned as wholes; each `GroupMember` says which
slices of one tensor belong to each group (`indices[g]` along `dim`). Export code removes pruned
groups physically from exactly these slices (and the matching bias entries).

Why masking a coupled group equals removing the unit, although biases are never masked: every
unit has a producer side (the rows that compute it) and a consumer side (the columns that read
it). With the producer rows masked the unit no longer depends on the input (its value comes from
its bias alone: act(b_j) for an FFN unit, b_v for a head's values, a bias-driven recurrence for an
RNN unit); with the consumer columns masked nothing reads that value. Removing the unit deletes
exactly those rows, its bias entries and those columns, so both models compute the same function.
For RNN units the recurrent column j of weight_hh is also masked, so the unit feeds no other unit.

`find_groups(..., granularity="auto")` finds:
- heads: modules with Linear children q_proj, k_proj, v_proj, out_proj and a head size
  (`d_head`/`head_dim`, or `n_head`/`n_heads`/`num_heads`): rows of q, k, v of head h plus
  columns of out_proj of head h; with a fused projection (Hugging Face GPT-2's `c_attn`, width
  3 x E, read by `c_proj`) the q, k and v rows of head h inside it;
- FFN units: Linear (or Conv1D) pairs (fc_in, fc_out), (fc1, fc2), (c_fc, c_proj),
  (intermediate_dense, output_dense) under one parent: row j of the first plus column j of the
  second;
- conv channels (nn.Conv1d / nn.Conv2d with groups=1): output channel j plus input channel j of
  the layer that reads it (see `prunekit.prune.channels`: the next conv of a Sequential /
  ModuleList / conv block, or `consumers={conv: reader}` naming a conv, Linear or LSTM/GRU);
  BatchNorm / GroupNorm channels in between are sliced by export;
- RNN units (nn.LSTM, nn.GRU, nn.RNN, one family per layer and direction): rows g*H + j of
  weight_ih_l{k} and weight_hh_l{k} for every gate g (LSTM i, f, g, o; GRU r, z, n), column j of
  weight_hh_l{k}, and column j of the consumer: weight_ih_l{k+1} (both directions), or for the
  last layer a Linear reading the RNN output (`consumers={"rnn": "lm_head"}`, or found as a
  sibling named proj, lm_head, fc, out, output, classifier, decoder, head);
- embeddings: columns (scores averaged over the vocabulary, so no subword disappears), plus the
  matching input columns of `consumers[embedding]` when given (e.g. the LSTM reading it);
- any other tensor: output rows.
A consumer outside the scope is still masked (it is a "dependent": masked, never scored).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunekit.errors import PrunekitError
from prunekit.prune.channels import CONVS, Chain, find_chains
from prunekit.prune.masks import original
from prunekit.prune.scope import Alias, Target, _is_conv1d

FFN_PAIRS = (
    ("fc_in", "fc_out"), ("fc1", "fc2"), ("c_fc", "c_proj"), ("intermediate_dense", "output_dense")
)  # fmt: skip
CONSUMER_NAMES = ("proj", "lm_head", "fc", "out", "output", "classifier", "decoder", "head")
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


@dataclass(frozen=True)
class GroupMember:
    """The slices of one tensor that belong to each group of a family.

    Attributes:
        param: the tensor's canonical parameter name, e.g. "rnn.weight_ih_l0".
        dim: 0 = rows, 1 = columns.
        indices: indices[g] are the positions along `dim` owned by group g.
        scored: False for dependents outside the scope (masked but not scored).
    """

    param: str
    dim: int
    indices: tuple[tuple[int, ...], ...]
    scored: bool = True

    def index_tensor(self, device: torch.device | None = None) -> Tensor:
        """Return the indices as a LongTensor[n_groups, k]."""
        return torch.tensor(self.indices, dtype=torch.long, device=device)


@dataclass(frozen=True)
class GroupSpec:
    """A family of n structurally coupled groups, pruned group by group.

    Attributes:
        name: e.g. "blocks.0.attn:heads", "rnn:l1:units".
        kind: "heads", "ffn_units", "rnn_units", "conv_channels", "embedding_cols", "rows" or
            "cols".
        members: the tensors slices of each group.
    """

    name: str
    kind: str
    members: tuple[GroupMember, ...]

    @property
    def n_groups(self) -> int:
        """Number of groups in the family."""
        return len(self.members[0].indices)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able description (for export manifests)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "members": [
                {"param": m.param, "dim": m.dim, "indices": [list(i) for i in m.indices]}
                for m in self.members
            ],
        }


@dataclass
class GroupPlan:
    """What `find_groups` found: the families and the out-of-scope tensors they also mask."""

    groups: list[GroupSpec]
    dependents: list[Target]


def _units(n: int, width: int = 1, offset: int = 0) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(range(offset + g * width, offset + (g + 1) * width)) for g in range(n))


def _join(prefix: str, attr: str) -> str:
    return f"{prefix}.{attr}" if prefix else attr


def _out_dim(t: Target) -> int:
    return 1 if t.kind == "conv1d" else 0


def head_size(m: nn.Module, width: int) -> int | None:
    """Head size of attention module `m` whose projections are `width` wide, or None."""
    d = getattr(m, "d_head", None) or getattr(m, "head_dim", None)
    if not isinstance(d, int):
        n = next((getattr(m, a) for a in ("n_head", "n_heads", "num_heads") if hasattr(m, a)), 0)
        d = width // n if isinstance(n, int) and n > 0 else None
    return d if isinstance(d, int) and d > 0 and width % d == 0 else None


def fused_qkv_rows(width: int, d: int) -> tuple[tuple[int, ...], ...]:
    """Rows of a fused (q, k, v) projection of `width` per part owned by each head of size d."""
    return tuple(
        tuple(s * width + h * d + i for s in range(3) for i in range(d)) for h in range(width // d)
    )


def _linear_io(m: nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of an nn.Linear or a Conv1D, else None."""
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features
    if _is_conv1d(m):
        w = original(m, "weight")
        return int(w.shape[0]), int(w.shape[1])
    return None


class _Finder:
    """Walks a model once and builds the group families for `granularity="auto"`."""

    def __init__(self, model: nn.Module, targets: list[Target], consumers: Mapping[str, str]):
        self.model = model
        self.by_id = {id(t.param): t for t in targets}
        self.consumers = dict(consumers)
        self.groups: list[GroupSpec] = []
        self.dependents: dict[int, Target] = {}
        self.covered: set[str] = set()

    def target(self, module: nn.Module, attr: str, name: str, required: bool) -> Target | None:
        """Return the scope target of `module.attr`, a dependent if not required, or None."""
        p = original(module, attr)
        if id(p) in self.by_id:
            return self.by_id[id(p)]
        if required:
            return None
        if id(p) not in self.dependents:
            kind = "conv1d" if _is_conv1d(module) else "linear"
            if isinstance(module, nn.RNNBase):
                kind = "rnn"
            elif isinstance(module, CONVS):
                kind = "conv"
            self.dependents[id(p)] = Target(name, [Alias(name, module, attr)], kind)
        return self.dependents[id(p)]

    def add(self, name: str, kind: str, members: list[GroupMember]) -> None:
        """Record a family; its scored tensors need no row family of their own."""
        self.groups.append(GroupSpec(name, kind, tuple(members)))
        self.covered.update(m.param for m in members if m.scored)

    def member(self, t: Target, dim: int, idx: tuple[tuple[int, ...], ...]) -> GroupMember:
        """A member on `t` (scored when `t` is in the scope)."""
        return GroupMember(t.name, dim, idx, scored=id(t.param) in self.by_id)

    def heads(self, name: str, m: nn.Module) -> None:
        """Add the attention-head family of `m` if it has q/k/v/out projections in scope."""
        projs = [getattr(m, a, None) for a in ("q_proj", "k_proj", "v_proj", "out_proj")]
        if not all(isinstance(p, nn.Linear) for p in projs):
            return
        q, k, v, o = projs
        ts = [self.target(p, "weight", "", True) for p in projs]
        if any(t is None for t in ts):
            return
        width = q.out_features
        if not (k.out_features == v.out_features == o.in_features == width):
            return
        d_head = head_size(m, width)
        if d_head is None:
            return
        idx = _units(width // d_head, d_head)
        members = [self.member(t, 0, idx) for t in ts[:3]] + [self.member(ts[3], 1, idx)]
        self.add(f"{name}:heads", "heads", members)

    def fused_heads(self, name: str, m: nn.Module) -> None:
        """Add the head family of a fused q/k/v projection `c_attn` read by `c_proj` (GPT-2)."""
        c_attn, c_proj = getattr(m, "c_attn", None), getattr(m, "c_proj", None)
        io_a, io_p = _linear_io(c_attn), _linear_io(c_proj)
        if io_a is None or io_p is None or hasattr(m, "q_attn") or io_a[1] != 3 * io_p[0]:
            return
        d = head_size(m, io_p[0])
        t_a = self.target(c_attn, "weight", "", True)
        t_p = self.target(c_proj, "weight", "", True)
        if d is None or t_a is None or t_p is None:
            return
        members = [
            self.member(t_a, _out_dim(t_a), fused_qkv_rows(io_p[0], d)),
            self.member(t_p, 1 - _out_dim(t_p), _units(io_p[0] // d, d)),
        ]
        self.add(f"{name}:heads", "heads", members)

    def _readers(self, chain: Chain, idx: tuple[tuple[int, ...], ...]) -> list[GroupMember]:
        """Members on the input channels of `chain.consumer` (both directions of an RNN)."""
        c = self.model.get_submodule(chain.consumer)
        attrs = ["weight"]
        if isinstance(c, nn.RNNBase):
            attrs = [a for a in c._flat_weights_names if a.startswith("weight_ih_l0")]
        out = []
        for attr in attrs:
            t = self.target(c, attr, _join(chain.consumer, attr), False)
            out.append(self.member(t, 1 - _out_dim(t), idx))
        return out

    def channels(self, name: str, m: nn.Module, chain: Chain) -> None:
        """Add the output-channel family of conv `m`, or the column family of embedding `m`."""
        t = self.target(m, "weight", "", True)
        if t is None:
            return
        dim = 1 if isinstance(m, nn.Embedding) else 0
        idx = _units(int(t.param.shape[dim]))
        kind = "embedding_cols" if dim else "conv_channels"
        self.add(f"{name}:{'cols' if dim else 'channels'}", kind, [self.member(t, dim, idx)])
        self.groups[-1] = GroupSpec(
            self.groups[-1].name, kind, self.groups[-1].members + tuple(self._readers(chain, idx))
        )

    def ffn(self, name: str, m: nn.Module) -> None:
        """Add the hidden-unit family of the first FFN pair of `m` in scope."""
        for a, b in FFN_PAIRS:
            fc_in, fc_out = getattr(m, a, None), getattr(m, b, None)
            io_in, io_out = _linear_io(fc_in), _linear_io(fc_out)
            if io_in is None or io_out is None or io_in[1] != io_out[0]:
                continue
            t_in = self.target(fc_in, "weight", "", True)
            t_out = self.target(fc_out, "weight", "", True)
            if t_in is None or t_out is None:
                continue
            idx = _units(io_in[1])
            members = [
                self.member(t_in, _out_dim(t_in), idx),
                self.member(t_out, 1 - _out_dim(t_out), idx),
            ]
            self.add(f"{name}:units", "ffn_units", members)
            return

    def _consumer(self, name: str, rnn: nn.RNNBase, width: int) -> tuple[nn.Module, str]:
        """The Linear reading the RNN's output: from `consumers`, else a known sibling name."""
        if name in self.consumers:
            cname = self.consumers[name]
            try:
                c = self.model.get_submodule(cname)
            except AttributeError:
                c = None
            io = _linear_io(c) if c is not None else None
            if io is None or io[0] != width:
                raise PrunekitError(
                    f"method_args consumers[{name!r}]={cname!r} must name an nn.Linear with "
                    f"in_features={width} that reads the RNN output"
                )
            return c, cname
        parent_name = name.rpartition(".")[0]
        parent = self.model.get_submodule(parent_name)
        for attr in CONSUMER_NAMES:
            c = getattr(parent, attr, None)
            io = _linear_io(c) if isinstance(c, nn.Module) else None
            if io is not None and io[0] == width:
                return c, _join(parent_name, attr)
        raise PrunekitError(
            f"structured pruning of {name!r} needs the Linear that reads its last layer's output "
            f"(its input columns are masked with each unit): pass method_args="
            f"{{'consumers': {{{name!r}: '<linear module name>'}}}}"
        )

    def rnn(self, name: str, m: nn.RNNBase) -> None:
        """Add one hidden-unit family per layer and direction of `m`, all gates together."""
        if getattr(m, "proj_size", 0):
            raise PrunekitError(
                f"structured pruning of {name!r} (an LSTM with proj_size) is not supported: "
                "use method=unstructured or method_args={'granularity': 'rows'}"
            )
        H, L, G = m.hidden_size, m.num_layers, _GATES[m.mode]
        dirs = ["", "_reverse"] if m.bidirectional else [""]
        gate_rows = tuple(tuple(g * H + j for g in range(G)) for j in range(H))
        for layer in range(L):
            for d, sfx in enumerate(dirs):
                ih, hh = f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}"
                t_ih = self.target(m, ih, "", True)
                t_hh = self.target(m, hh, "", True)
                if t_ih is None or t_hh is None:
                    continue
                cols = _units(H, 1, d * H)
                members = [
                    self.member(t_ih, 0, gate_rows),
                    self.member(t_hh, 0, gate_rows),
                    self.member(t_hh, 1, _units(H)),
                ]
                if layer + 1 < L:
                    for sfx2 in dirs:
                        nxt = f"weight_ih_l{layer + 1}{sfx2}"
                        members.append(
                            self.member(self.target(m, nxt, _join(name, nxt), False), 1, cols)
                        )
                else:
                    c, cname = self._consumer(name, m, H * len(dirs))
                    t_c = self.target(c, "weight", _join(cname, "weight"), False)
                    members.append(self.member(t_c, 1 - _out_dim(t_c), cols))
                self.add(f"{name}:l{layer}{sfx}:units", "rnn_units", members)


def _per_tensor(t: Target, granularity: str) -> GroupSpec:
    """One family over the rows (or columns) of a single tensor; embeddings always by column."""
    shape = tuple(t.param.shape)
    if t.kind == "embedding":
        return GroupSpec(
            f"{t.name}:cols", "embedding_cols", (GroupMember(t.name, 1, _units(shape[1])),)
        )
    dim = _out_dim(t) if granularity in ("auto", "rows") else 1 - _out_dim(t)
    kind = "rows" if dim == _out_dim(t) else "cols"
    return GroupSpec(f"{t.name}:{kind}", kind, (GroupMember(t.name, dim, _units(shape[dim])),))


def _rnn_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]


def _check_consumer_keys(model: nn.Module, consumers: Mapping[str, str]) -> None:
    """Raise unless every `consumers` key is an RNN, a conv or an embedding of `model`."""
    ok = [n for n, m in model.named_modules() if isinstance(m, (nn.RNNBase, nn.Embedding, *CONVS))]
    for key in consumers:
        if key not in ok:
            raise PrunekitError(
                f"method_args consumers has {key!r}, which is not an RNN, conv or embedding "
                f"module of the model: use one of {ok}"
            )


def links(plan: GroupPlan) -> dict[str, str]:
    """Producer module -> the module reading its units, for every coupled family of `plan`.

    (RNN units, conv channels and embedding columns with a reader; recorded on the masks so
    that export finds the same reader.)
    """
    out = {}
    for spec in plan.groups:
        if spec.kind not in ("rnn_units", "conv_channels", "embedding_cols"):
            continue
        producer = spec.members[0].param.rpartition(".")[0]
        readers = [m.param.rpartition(".")[0] for m in spec.members[1:]]
        readers = [r for r in readers if r != producer]
        if readers:
            out[producer] = readers[-1]
    return out


def find_groups(
    model: nn.Module,
    targets: list[Target],
    granularity: str = "auto",
    consumers: Mapping[str, str] | None = None,
) -> GroupPlan:
    """Partition the scope into structured-pruning families.

    Args:
        model: the model the targets belong to.
        targets: the scope (from `resolve_scope`); every target ends up in at least one family.
        granularity: "auto" (coupled units, see the module docstring), "rows" or "cols".
        consumers: RNN module name -> name of the Linear reading its last layer.

    Returns:
        The families and the out-of-scope tensors they mask.

    Raises:
        PrunekitError: an RNN whose last-layer consumer cannot be found, or an LSTM with proj_size.
    """
    if granularity != "auto":
        return GroupPlan([_per_tensor(t, granularity) for t in targets], [])
    consumers = consumers or {}
    _check_consumer_keys(model, consumers)
    chains = find_chains(model, {k: v for k, v in consumers.items() if k not in _rnn_names(model)})
    f = _Finder(model, targets, consumers)
    for name, m in model.named_modules():
        if isinstance(m, nn.RNNBase):
            if any(
                id(original(m, a)) in f.by_id
                for a in m._flat_weights_names
                if a.startswith("weight")
            ):
                f.rnn(name, m)
            continue
        if name in chains:
            f.channels(name, m, chains[name])
            continue
        f.heads(name, m)
        f.fused_heads(name, m)
        f.ffn(name, m)
    for t in targets:
        if t.name not in f.covered:
            spec = _per_tensor(t, "auto")
            f.add(spec.name, spec.kind, list(spec.members))
    return GroupPlan(f.groups, list(f.dependents.values()))
