"""The controller mode of ``arch``: an LSTM that emits a space's decisions one by one.

Each decision is one step: the LSTM reads the embedding of the previous token, and a head for
that decision turns its hidden state into a distribution over the decision's options (Zoph & Le,
2017). Decisions that a condition leaves out are skipped, exactly as the space would skip them.
``arch.inputs`` decisions (skip connections) are chosen by attention over the hidden states of
the layers they name: for each candidate ``j``, ``sigmoid(v . tanh(W_prev h_j + W_curr h))``
(Bernoulli per candidate when any number may be picked; a softmax over candidates, k times
without replacement, when exactly k). The anchor ``h_j`` of a candidate named ``layer_j`` is the
hidden state after the last decision labelled ``layer_j/...``.

:class:`ControllerArch` is the arch mode; ``Controller.rollout`` walks a schema with it, so the
same controller serves any space whose decisions are categorical or small integer ranges.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nasforge.errors import ConfigError, NasforgeError, SpaceError
from nasforge.space.arch import ArchBase
from nasforge.space.domains import CategoricalDomain, Domain, FloatDomain, InputsDomain, IntDomain, _same
from nasforge.space.schema import Schema
from nasforge.space.protocol import SpaceWalk
from nasforge.types import ArchDict

MAX_OPTIONS = 128


def _options(label: str, domain: Domain) -> list[Any] | None:
    """The tokens of a decision (None for inputs, which use attention)."""
    if isinstance(domain, CategoricalDomain):
        return list(domain.options)
    if isinstance(domain, IntDomain):
        if domain.size > MAX_OPTIONS:
            raise ConfigError(f"controller strategies emit integer decisions as tokens; {label!r} has {domain.size} values "
                              f"(at most {MAX_OPTIONS}): use a step or a smaller range")
        return domain.values()
    if isinstance(domain, FloatDomain):
        raise ConfigError(f"controller strategies need categorical or small integer decisions; {label!r} is a float")
    if isinstance(domain, InputsDomain) and domain.k is not None and domain.k > 5:
        raise ConfigError(f"controller strategies pick at most 5 inputs exactly (a set's probability sums over its "
                          f"k! orders); {label!r} asks for {domain.k}: use k=None (any subset)")
    return None


@dataclass
class Rollout:
    """One pass of the controller over a schema: the architecture and, per decision step, the
    log-probability of what was chosen, the policy's entropy and the critic's value."""

    arch: ArchDict
    log_probs: list[torch.Tensor] = field(default_factory=list)
    entropies: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)


class Controller(nn.Module):
    def __init__(self, schema: Schema, hidden: int = 64, tanh_constant: float = 2.5, value_head: bool = False):
        super().__init__()
        self.schema = schema
        self.hidden = hidden
        self.tanh_constant = tanh_constant
        self.options: dict[str, list[Any] | None] = {d.label: _options(d.label, d.domain) for d in schema}
        self.positions = {d.label: i for i, d in enumerate(schema)}  # a decision's heads and embedding
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.start = nn.Parameter(torch.zeros(hidden))
        self.heads = nn.ModuleDict()
        self.embeds = nn.ModuleDict()
        for i, d in enumerate(schema):
            opts = self.options[d.label]
            n = len(opts) if opts is not None else len(d.domain.candidates)  # type: ignore[union-attr]
            self.embeds[str(i)] = nn.Embedding(n + 1, hidden)  # +1: "no input chosen"
            if opts is not None:
                self.heads[str(i)] = nn.Linear(hidden, n)
        self.w_prev = nn.Linear(hidden, hidden, bias=False)
        self.w_curr = nn.Linear(hidden, hidden, bias=False)
        self.v_attn = nn.Linear(hidden, 1, bias=False)
        self.value = nn.Linear(hidden, 1) if value_head else None
        with torch.no_grad():
            for head in self.heads.values():
                head.weight.mul_(0.1)  # start near uniform: the first batches explore
                head.bias.zero_()

    def rollout(self, generator: torch.Generator | None = None, given: ArchDict | None = None,
                explore: float = 0.0, walk: SpaceWalk | None = None) -> Rollout:
        """Sample an architecture (``given=None``) or score a given one. ``explore`` mixes each
        distribution with the uniform one (the log-probabilities are those of the mixture).

        With ``walk`` (the real space, :meth:`Space.walk`) the controller answers the decisions
        the space asks, in its order; else it walks the schema. A space that raises part-way
        (it rejects the combination so far) ends the rollout there: the decisions made are the
        proposal, and the study records it as failed."""
        arch = ControllerArch(self, generator, given, explore)
        if walk is None:
            for d in self.schema:
                if self.schema.is_active(d, arch.values):
                    arch.decide(d.label, d.domain)
            return arch.result
        try:
            walk(arch)
        except NasforgeError:
            raise
        except Exception:  # noqa: BLE001 - the space's own rejection; what was decided stands
            pass
        return arch.result

    # --- one decision ----------------------------------------------------------------------
    def _logits(self, index: int, h: torch.Tensor) -> torch.Tensor:
        logits = self.heads[str(index)](h)
        return self.tanh_constant * torch.tanh(logits / self.tanh_constant)

    def _attention(self, anchors: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.v_attn(torch.tanh(self.w_prev(anchors) + self.w_curr(h))).squeeze(-1)


class ControllerArch(ArchBase):
    """The arch mode whose answers come from a :class:`Controller` (sampled, or scored if given)."""

    mode = "controller"

    def __init__(self, controller: Controller, generator: torch.Generator | None, given: ArchDict | None, explore: float):
        super().__init__()
        self.controller, self.generator, self.given, self.explore = controller, generator, given, explore
        c = controller
        self.state = (torch.zeros(1, c.hidden), torch.zeros(1, c.hidden))
        self.x = c.start.unsqueeze(0)
        self.hiddens: dict[str, torch.Tensor] = {}  # label -> hidden state after it (attention anchors)
        self.result = Rollout({})

    def _value(self, label: str, domain: Domain) -> Any:
        c = self.controller
        if label not in c.positions:
            return self._unrecorded(label, domain)
        i = c.positions[label]
        h, cell = c.lstm(self.x, self.state)
        self.state = (h, cell)
        if c.value is not None:
            self.result.values.append(c.value(h).squeeze())
        opts = c.options[label]
        if opts is not None:
            value, token = self._categorical(i, label, opts, h)
        else:
            value, token = self._inputs(i, label, domain, h)  # type: ignore[arg-type]
        self.hiddens[label] = h
        self.x = c.embeds[str(i)](torch.tensor([token]))
        self.result.arch[label] = value
        return value

    def _unrecorded(self, label: str, domain: Domain) -> Any:
        """A decision the schema never recorded has no head: it is drawn uniformly (and is not
        learned), from the controller's generator so that rollouts stay reproducible."""
        if self.given is not None:
            value = self.given.get(label)
            if value is None or not domain.contains(value):
                raise SpaceError(f"the architecture has no valid value for decision {label!r} ({domain.describe()})")
        else:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            value = domain.sample(np.random.default_rng(seed))
        self.result.arch[label] = value
        return value

    def _mix(self, probs: torch.Tensor) -> torch.Tensor:
        return probs if self.explore <= 0 else (1 - self.explore) * probs + self.explore / probs.shape[-1]

    def _categorical(self, i: int, label: str, opts: list[Any], h: torch.Tensor) -> tuple[Any, int]:
        probs = self._mix(torch.softmax(self.controller._logits(i, h)[0], -1))
        if self.given is not None:
            if label not in self.given:
                raise SpaceError(f"the architecture has no value for decision {label!r}; options: {opts}")
            token = _index(opts, self.given[label], label)
        else:
            token = int(torch.multinomial(probs.detach(), 1, generator=self.generator))
        self.result.log_probs.append(torch.log(probs[token]))
        self.result.entropies.append(-(probs * torch.log(probs.clamp_min(1e-12))).sum())
        return opts[token], token

    def _inputs(self, i: int, label: str, domain: InputsDomain, h: torch.Tensor) -> tuple[list[str], int]:
        anchors = torch.cat([self._anchor(i, j, name) for j, name in enumerate(domain.candidates)])
        scores = self.controller._attention(anchors, h)
        chosen = self._choose(label, domain, scores)
        token = len(domain.candidates) if not chosen else domain.candidates.index(chosen[-1])
        return chosen, token

    def _anchor(self, i: int, j: int, name: str) -> torch.Tensor:
        """The hidden state after the last decision of layer ``name``; else a learned embedding."""
        found = [h for label, h in self.hiddens.items() if label == name or label.startswith(name + "/")]
        return found[-1] if found else self.controller.embeds[str(i)](torch.tensor([j]))

    def _choose(self, label: str, domain: InputsDomain, scores: torch.Tensor) -> list[str]:
        if self.given is not None and label not in self.given:
            raise SpaceError(f"the architecture has no value for decision {label!r} ({domain.describe()})")
        given = set(self.given[label]) if self.given is not None else None
        if domain.k is None:  # each candidate independently: Bernoulli(sigmoid(score))
            p = self.explore * 0.5 + (1 - self.explore) * torch.sigmoid(scores)
            if given is None:
                picks = torch.rand(len(p), generator=self.generator) < p.detach()
            else:
                picks = torch.tensor([c in given for c in domain.candidates])
            log_p = torch.where(picks, torch.log(p.clamp_min(1e-12)), torch.log((1 - p).clamp_min(1e-12)))
            self.result.log_probs.append(log_p.sum())
            self.result.entropies.append(-(p * torch.log(p.clamp_min(1e-12)) + (1 - p) * torch.log((1 - p).clamp_min(1e-12))).sum())
            return [c for c, keep in zip(domain.candidates, picks.tolist()) if keep]
        # Exactly k: a softmax over the remaining candidates, k times. A set's probability sums
        # over the orders it could be drawn in, so sampling and scoring a set agree.
        if given is None:
            order: list[int] = []
            for _ in range(domain.k):
                probs = self._remaining(scores, order)
                order.append(int(torch.multinomial(probs.detach(), 1, generator=self.generator)))
        else:
            order = [domain.candidates.index(c) for c in domain.candidates if c in given]
        paths = [self._path_log_prob(scores, list(p)) for p in itertools.permutations(order)]
        self.result.log_probs.append(torch.logsumexp(torch.stack(paths), 0))
        first = self._remaining(scores, [])
        self.result.entropies.append(-(first * torch.log(first.clamp_min(1e-12))).sum())
        return [domain.candidates[j] for j in sorted(order)]

    def _remaining(self, scores: torch.Tensor, taken: list[int]) -> torch.Tensor:
        mask = torch.zeros(len(scores), dtype=torch.bool)
        mask[taken] = True
        probs = self._mix(torch.softmax(scores.masked_fill(mask, -math.inf), -1)).masked_fill(mask, 0.0)
        return probs / probs.sum()

    def _path_log_prob(self, scores: torch.Tensor, path: list[int]) -> torch.Tensor:
        return torch.stack([torch.log(self._remaining(scores, path[:t])[j]) for t, j in enumerate(path)]).sum()


def _index(options: list[Any], value: Any, label: str) -> int:
    for i, option in enumerate(options):
        if _same(option, value):  # as the space's domains compare: 1 and True are two options
            return i
    raise ConfigError(f"value {value!r} of {label!r} is not one of the controller's options {options}")
