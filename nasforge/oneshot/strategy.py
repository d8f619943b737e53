"""A one-shot method behind the strategy protocol, so that a study runs it like any strategy.

The study calls :meth:`OneShotStrategy.search_first` before its loop (contract item 6 of
:mod:`nasforge.strategies.base`): the supernet search runs (or finishes, after a kill) in the
driver, recording each epoch in the store. ``ask`` then proposes the derived architecture,
once; the scheduler has it retrained from scratch by the study's evaluator as an ordinary trial,
so ``status``, ``report`` and ``export`` need nothing new.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from nasforge.errors import ConfigError
from nasforge.oneshot.base import OneShotMethod
from nasforge.oneshot.loop import OneShotSearch, build_supernet
from nasforge.space.dry import dry_run
from nasforge.space.schema import Schema
from nasforge.space.space import Space
from nasforge.train.data import Data
from nasforge.types import ArchDict, Result


class OneShotStrategy:
    def __init__(self, method: OneShotMethod):
        self.method = method
        self.derived: ArchDict | None = None
        self.proposed = False

    def check_study(self, data: Any, scheduler: str) -> None:
        """Refuse, before any work, a study without data, or a scheduler that would retrain the
        derived architecture for less than the study's budget."""
        name = type(self.method).__name__
        if not isinstance(data, Data):
            raise ConfigError(f"strategy {name} trains a supernet on the study's dataset; "
                              f"give a dataset (it cannot search with dataset: none)")
        if scheduler not in ("full", "FullBudget"):
            raise ConfigError(f"strategy {name} derives one architecture and retrains it for the study's budget; "
                              f"scheduler {scheduler!r} would cut that short: use scheduler: full")

    def check_space(self, space: Space) -> None:
        """Refuse, before any work, a space the supernet cannot hold (naming every decision to pin)."""
        with dry_run():  # its structure is what is checked: no weights initialised
            build_supernet(space, self.method)

    def search_first(self, space: Space, data: Data, directory: Any, seed: int,
                     record: Callable[[list[dict[str, Any]]], None]) -> None:
        if self.derived is None:
            self.derived = OneShotSearch(self.method, space, data, directory, seed, record).run()

    # --- the strategy protocol ------------------------------------------------------------------
    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self.derived, self.proposed = None, False

    def ask(self) -> ArchDict | None:
        if self.derived is None or self.proposed:
            return None
        self.proposed = True
        return dict(self.derived)

    def tell(self, arch: ArchDict, result: Result) -> None:
        """The retrained result of the derived architecture: nothing is left to learn."""

    def state_dict(self) -> dict[str, Any]:
        return {"derived": self.derived, "proposed": self.proposed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.derived, self.proposed = state["derived"], bool(state["proposed"])
