"""The strategy protocol: a strategy proposes architectures and learns from their results.

Contract (the study and the schedulers are the only callers):

1. ``setup(schema, rng)`` is called once, before anything else, with the space's decision schema
   and a seeded ``np.random.Generator`` the strategy must use for all its randomness.
2. ``ask()`` returns a new architecture (a JSON-able dict label -> value), or ``None`` when the
   strategy has nothing more to propose (a finished grid). It may be called several times before
   any ``tell`` (parallel workers). The study canonicalises what ``ask`` returns through the space,
   so a proposal may leave conditional decisions out or carry values for inactive ones.
3. ``tell(arch, result)`` reports an evaluation of an architecture that ``ask`` proposed (as
   canonicalised): ``result.loss`` is the objective as a value to minimise, or ``None`` with
   ``result.failed`` when the trial failed. Multi-fidelity schedulers call it once per rung,
   with ``result.budget`` saying at which budget.
4. Optionally ``ready() -> bool``: False when another ``ask`` now would be better made after the
   pending results arrive (a model-based step wants them). Schedulers then wait instead of
   asking; the study still keeps every real worker busy. Strategies without it are always ready.
5. Optionally ``use_space(walk)``, called before ``setup``: ``walk(arch)`` runs the real space
   with an ``arch`` mode object answering its decisions (no weights initialised). A strategy
   that decides as the space asks (the RL controllers) walks the space itself, so it sees the
   decisions an architecture really has even where the schema's conditions cannot state them
   (``schema.exact`` False). Strategies that only sample or encode through the schema ignore it.
6. A one-shot method (:mod:`nasforge.oneshot`: a supernet trained once) is not a strategy by
   itself; the study puts it behind this protocol (``OneShotStrategy``), runs its search before
   the first ``ask``, and then retrains what it derived as an ordinary trial.
7. ``state_dict()`` returns plain JSON data; after ``setup`` with an identically seeded rng,
   ``load_state_dict(state)`` restores the strategy so that later asks are the same as if it had
   never stopped. The study saves it after every ask and tell.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from nasforge.space.protocol import SpaceWalk
from nasforge.space.schema import Schema
from nasforge.types import ArchDict, Result, arch_key


@runtime_checkable
class Strategy(Protocol):
    def setup(self, schema: Schema, rng: np.random.Generator) -> None: ...
    def ask(self) -> ArchDict | None: ...
    def tell(self, arch: ArchDict, result: Result) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state




def unseen_sample(schema: Schema, rng: np.random.Generator, seen: set[str], tries: int = 100) -> ArchDict:
    """A random architecture whose key is not in ``seen`` (a repeat only when ``tries`` samples all were)."""
    for _ in range(tries):
        arch = schema.sample(rng)
        if arch_key(arch) not in seen:
            break
    return arch


def is_ready(strategy: Strategy) -> bool:
    ready = getattr(strategy, "ready", None)
    return bool(ready()) if callable(ready) else True


__all__ = ["Strategy", "SpaceWalk", "rng_state", "set_rng_state", "is_ready", "unseen_sample"]
