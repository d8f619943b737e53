"""The supernet mode of ``arch``: the space builds one network that holds every candidate.

``arch.choice(label, candidates)`` returns a :class:`MixedOp` holding a module of every candidate,
and ``arch.inputs(label, candidates, k)`` returns :class:`MixedInputs`, every candidate name, for
the space to wire them all. How candidates are mixed in a forward pass is the one-shot
strategy's, given as a :class:`Mixer`: a softmax over architecture weights (DARTS), the one
path a controller sampled (ENAS), binary gates (ProxylessNAS).

A repeated label is one decision (one set of architecture weights, one sampled value) over
modules of its own: every normal cell of a DARTS network shares the cell's weights ``alpha``,
not its convolutions. ``int``/``float``/``categorical`` decisions are not searched by weight
sharing: they must be pinned (given a value), else building the supernet raises
:class:`~nasforge.errors.UnsupportedDecision` naming every one of them (``check_supported``). A pinned ``choice`` or ``inputs`` is fixed too.

Two conventions let a strategy read a cell the way the papers do:

* the candidate named ``"none"`` of a choice is the zero op (DARTS ranks edges by their
  strongest op other than it);
* a choice labelled ``"<inputs label>/<candidate>"`` is the op on the edge from that input: a
  DARTS cell asks ``inputs("node2", ["c0", "c1", "n0"], k=2)`` and then, per chosen input ``j``,
  ``choice(f"node2/{j}", ops)``. In supernet mode every edge exists and the edges' ops, with
  their zero op, do the mixing.

Batch norm inside a mixed op is built without affine parameters and normalises with the batch's
statistics (Liu et al., 2019, DARTS): the shared weights meet other paths at every step.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

import torch
from torch import nn

from nasforge.errors import SpaceError, UnsupportedDecision
from nasforge.space.arch import ArchBase, build_candidate, choice_domain, inputs_domain
from nasforge.space.domains import ChoiceDomain, Domain, InputsDomain
from nasforge.types import ArchDict

NONE_OP = "none"


class Mixer(Protocol):
    """What a one-shot strategy supplies to the supernet. The supernet calls ``register`` once per
    decision while it is built (in the order the space asks), then, in every forward pass,
    ``mix_op`` for each mixed op and ``input_weights`` for each mixed input."""

    def register(self, label: str, domain: Domain) -> None: ...

    def mix_op(self, label: str, ops: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor: ...

    def input_weights(self, label: str, names: Sequence[str]) -> list[Any]:
        """Per candidate: a weight (a tensor or a float), or None where the candidate is not used."""
        ...


class MixedOp(nn.Module):
    """Every candidate of one choice; the mixer decides what a forward pass computes."""

    def __init__(self, label: str, ops: Mapping[str, nn.Module], mixer: Mixer):
        super().__init__()
        self.label = label
        self.ops = nn.ModuleDict(ops)
        object.__setattr__(self, "mixer", mixer)  # not a submodule: the strategy owns it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixer.mix_op(self.label, self.ops, x)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


class MixedInputs(list):  # type: ignore[type-arg]
    """Every candidate name of one inputs decision (wire them all); combine their tensors with
    :func:`sum_inputs` or :func:`concat_inputs`, which ask the mixer for each one's weight."""

    def __init__(self, label: str, names: Sequence[str], mixer: Mixer):
        super().__init__(names)
        self.label, self.mixer = label, mixer

    def weights(self) -> list[Any]:
        return self.mixer.input_weights(self.label, tuple(self))


def _tensor(value: Any) -> torch.Tensor:
    return value() if callable(value) else value


def sum_inputs(chosen: Sequence[str], tensors: Mapping[str, Any]) -> torch.Tensor:
    """The sum of the chosen inputs' tensors (``tensors``: a dict name -> tensor, or name -> a
    function that computes it, called only if the input is used). In supernet mode: the mixer's
    weighted sum; where a sampled path chose none, zeros of a candidate's shape."""
    if isinstance(chosen, MixedInputs):
        parts = [_weighted(w, _tensor(tensors[n])) for n, w in zip(chosen, chosen.weights()) if w is not None]
        if not parts:  # a sampled path chose none (k=None): the empty sum, shaped as a candidate
            return torch.zeros_like(_tensor(tensors[chosen[0]]))
    else:
        parts = [_tensor(tensors[n]) for n in chosen]
    if not parts:
        raise SpaceError("sum_inputs: no input is chosen (an inputs decision with k=None may choose none: "
                         "handle the empty list in the space)")
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def concat_inputs(chosen: Sequence[str], tensors: Mapping[str, torch.Tensor], dim: int = 1) -> torch.Tensor:
    """The chosen inputs' tensors concatenated along ``dim`` (channels). In supernet mode every
    candidate keeps its place, weighted, and an unused one is zeros: the layer that reads the
    concatenation is sized for all of them, and a child's weights are its slices."""
    if isinstance(chosen, MixedInputs):
        parts = [torch.zeros_like(tensors[n]) if w is None else _weighted(w, tensors[n])
                 for n, w in zip(chosen, chosen.weights())]
    else:
        parts = [tensors[n] for n in chosen]
    return torch.cat(parts, dim=dim)


def _weighted(weight: Any, x: torch.Tensor) -> torch.Tensor:
    return x if isinstance(weight, float) and weight == 1.0 else weight * x


def batch_statistics_only(module: nn.Module) -> None:
    """Batch norm layers in ``module`` without affine parameters or running statistics."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.affine = False
            m.register_parameter("weight", None)
            m.register_parameter("bias", None)
            m.track_running_stats = False
            m.register_buffer("running_mean", None)
            m.register_buffer("running_var", None)
            m.register_buffer("num_batches_tracked", None)


class SupernetArch(ArchBase):
    """The supernet mode. ``pinned`` gives values to decisions that are not searched."""

    mode = "supernet"

    def __init__(self, mixer: Mixer, pinned: ArchDict | None = None):
        super().__init__()
        self.mixer = mixer
        self.pinned = dict(pinned or {})
        self.searched: dict[str, Domain] = {}  # the decisions the supernet mixes, in the order asked
        self.unsupported: dict[str, Domain] = {}  # decisions to pin, each answered by its default meanwhile

    def check_supported(self) -> None:
        """After the space is built: every decision that must be pinned, in one error."""
        if self.unsupported:
            example = {label: d.default() for label, d in self.unsupported.items()}
            raise UnsupportedDecision({label: d.describe() for label, d in self.unsupported.items()}, self.mode,
                                      "weight sharing searches choices among modules and inputs; pin "
                                      f"{'them' if len(example) > 1 else 'it'} (the strategy's pin argument, "
                                      f"e.g. pin: {example})")

    def choice(self, label: str, candidates: Mapping[str, Callable[[], nn.Module]]) -> nn.Module:
        domain = choice_domain(label, candidates)
        if label in self.pinned:
            name = self.decide(label, domain)
            return build_candidate(label, name, candidates[name])
        self._search(label, domain)
        ops = {name: build_candidate(label, name, factory) for name, factory in candidates.items()}
        for op in ops.values():
            batch_statistics_only(op)
        return MixedOp(label, ops, self.mixer)

    def inputs(self, label: str, candidates: Sequence[str], k: int | None = 1) -> list[str]:
        domain = inputs_domain(label, candidates, k)
        if label in self.pinned:
            return list(self.decide(label, domain))
        self._search(label, domain)
        return MixedInputs(label, domain.candidates, self.mixer)

    def _search(self, label: str, domain: ChoiceDomain | InputsDomain) -> None:
        if label in self.searched:
            if self.searched[label] != domain:
                raise SpaceError(f"Decision {label!r} asked twice with different domains: "
                                 f"{self.searched[label].describe()} and {domain.describe()}")
            return
        if not isinstance(label, str) or not label:
            raise SpaceError(f"Decision labels must be non-empty strings, got {label!r}")
        self.searched[label] = domain
        self.mixer.register(label, domain)

    def _value(self, label: str, domain: Domain) -> Any:
        if label in self.pinned:
            value = self.pinned[label]
            if not domain.contains(value):
                raise SpaceError(f"Invalid pinned value {value!r} for decision {label!r}: allowed {domain.describe()}")
            return value
        self.unsupported[label] = domain  # named with the others once the space is built
        return domain.default()
