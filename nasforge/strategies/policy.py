"""What the RL strategies (REINFORCE, PPO) share: a controller, its optimiser, batches of
(architecture, reward), and a JSON state that rebuilds the controller by replaying its updates.

Training is deterministic given the batches, so the state needs no weights: the history of
told rewards in order, the sampling generator's state and a few counters. Loading re-creates the
controller from the seed and replays every update (a few ms each).
"""
from __future__ import annotations

import base64
import math
from typing import Any, Callable

import numpy as np
import torch

from nasforge.errors import ConfigError
from nasforge.space.schema import Schema
from nasforge.strategies.base import SpaceWalk
from nasforge.space.controller import Controller, Rollout
from nasforge.train.state import torch_threads
from nasforge.types import ArchDict, Result, arch_key

Update = Callable[[list[tuple[ArchDict, float, float]]], None]


def check_positive(name: str, value: float, integer: bool = False) -> None:
    if (integer and (not isinstance(value, int) or isinstance(value, bool))) or not value > 0:
        raise ConfigError(f"Invalid {name}: {value!r} (must be {'an int ' if integer else ''}> 0)")


class PolicyCore:
    """The controller of one RL strategy and the bookkeeping around its updates."""

    def __init__(self, batch_size: int, lr: float, hidden: int, explore: float, explore_half_life: float,
                 value_head: bool):
        check_positive("batch_size", batch_size, integer=True)
        check_positive("lr", lr)
        check_positive("hidden", hidden, integer=True)
        check_positive("explore_half_life", explore_half_life)
        if not 0 <= explore < 1:
            raise ConfigError(f"Invalid explore: {explore} (must be in [0, 1))")
        self.batch_size, self.lr, self.hidden = batch_size, lr, hidden
        self.explore0, self.half_life, self.value_head = explore, explore_half_life, value_head

    walk: SpaceWalk | None = None  # the real space, when the study gives it (see Strategy's contract)

    def setup(self, schema: Schema, rng: np.random.Generator, update: Update) -> None:
        self.schema, self.update = schema, update
        self.seed = int(rng.integers(2**62))
        self.reset()

    def reset(self) -> None:
        with torch.random.fork_rng(devices=[]):  # the controller's initial weights come from the study's seed
            torch.default_generator.manual_seed(self.seed)  # the CPU's only: the controller lives there
            self.controller = Controller(self.schema, self.hidden, value_head=self.value_head)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.lr)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.asked = 0
        self.history: list[tuple[ArchDict, float, float]] = []  # (arch, reward, explore at sampling)
        self.pending: dict[str, float] = {}  # arch key -> the exploration rate it was sampled with
        self.worst = math.inf

    # --- ask / tell ----------------------------------------------------------------------------
    @property
    def explore(self) -> float:
        """The exploration rate decays with the number of asks (half-life ``explore_half_life``)."""
        return self.explore0 * 0.5 ** (self.asked / self.half_life)

    def sample(self) -> ArchDict:
        explore = self.explore
        with torch.no_grad(), torch_threads(1):
            arch = self.controller.rollout(self.generator, explore=explore, walk=self.walk).arch
        self.asked += 1
        self.pending[arch_key(arch)] = explore
        return arch

    def ready(self) -> bool:
        """False once the current batch is all asked: later asks should come from the updated policy."""
        updated = len(self.history) // self.batch_size * self.batch_size
        return self.asked < updated + self.batch_size

    def record(self, arch: ArchDict, result: Result) -> None:
        """A reward per told result (maximised: minus the loss); failures get the worst so far."""
        explore = self.pending.pop(arch_key(arch), self.explore)
        if result.ok:
            reward = -float(result.loss)  # type: ignore[arg-type]
            self.worst = min(self.worst, reward)
        else:
            reward = self.worst if math.isfinite(self.worst) else 0.0
        self.history.append((dict(arch), reward, explore))
        if len(self.history) % self.batch_size == 0:
            with torch_threads(1):
                self.update(self.history[-self.batch_size:])

    def scored(self, arch: ArchDict, explore: float) -> Rollout:
        return self.controller.rollout(given=arch, explore=explore, walk=self.walk)

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.controller.parameters(), 5.0)
        self.optimizer.step()

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        generator = base64.b64encode(self.generator.get_state().numpy().tobytes()).decode()
        return {"history": [[a, r, e] for a, r, e in self.history], "asked": self.asked, "generator": generator,
                "pending": self.pending, "worst": self.worst if math.isfinite(self.worst) else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the controller by replaying its updates (the strategy resets its own extras,
        e.g. a baseline, before calling this)."""
        self.reset()
        history = [(dict(a), float(r), float(e)) for a, r, e in state["history"]]
        with torch_threads(1):
            for end in range(self.batch_size, len(history) + 1, self.batch_size):
                self.update(history[end - self.batch_size:end])
        self.history = history
        self.asked = int(state["asked"])
        self.pending = {k: float(v) for k, v in state["pending"].items()}
        self.worst = math.inf if state["worst"] is None else float(state["worst"])
        raw = np.frombuffer(base64.b64decode(state["generator"]), dtype=np.uint8).copy()
        self.generator.set_state(torch.from_numpy(raw))



class PolicyStrategy:
    """The strategy protocol over a :class:`PolicyCore`: subclasses create ``self.core`` and
    define ``_update(batch)`` (one training step on a batch of (arch, reward, explore)); those
    with state of their own beyond the replayed history clear it in ``_reset``."""

    core: PolicyCore

    def _reset(self) -> None:
        """Clear state that replaying the history rebuilds (called before setup and loading)."""

    def _update(self, batch: list[tuple[ArchDict, float, float]]) -> None:
        raise NotImplementedError

    def use_space(self, walk: SpaceWalk) -> None:
        self.core.walk = walk

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self._reset()
        self.core.setup(schema, rng, self._update)

    def ask(self) -> ArchDict:
        return self.core.sample()

    def ready(self) -> bool:
        return self.core.ready()

    def tell(self, arch: ArchDict, result: Result) -> None:
        self.core.record(arch, result)

    def state_dict(self) -> dict[str, Any]:
        return self.core.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset()
        self.core.load_state_dict(state)
