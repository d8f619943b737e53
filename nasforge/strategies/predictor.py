"""Predictor-guided search for any space: rank many architectures with a learned surrogate,
train the few it ranks best, refit, repeat ("rank many, train few"; the surrogate of PNAS
without its progressive growth, as in the predictor-based searches that followed it)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nasforge.errors import ConfigError
from nasforge.predictors.observations import Observations
from nasforge.predictors.pair import SurrogatePair, correlations
from nasforge.space.codes import ArrayCodes, local_and_fresh
from nasforge.space.schema import Schema
from nasforge.strategies.base import rng_state, set_rng_state, unseen_sample
from nasforge.types import ArchDict, Result, arch_key

N_PARENTS = 5
"""Mutations are made of the best this-many architectures trained."""


class PredictorGuided:
    """Predictor-guided search: a surrogate ranks many candidates, the best few are trained.

    Random asks first; then, per round, ``n_candidates`` candidates (half mutations of the
    best architectures trained, half fresh samples) ranked by the surrogate's predicted loss
    minus ``explore`` times its ensemble's spread, and the best ``batch_size`` unseen ones
    trained. The surrogate is refitted on every result of the modelled budget after each round.

    Args:
        surrogate: ``mlp`` (an ensemble over the space's encoding) or ``lstm`` (over the
            decisions as tokens); ``surrogate_args`` are passed to it.
        n_initial: random architectures trained before the surrogate is used (>= 3).
        n_candidates: candidates ranked per round (>= 1).
        batch_size: architectures trained per round (>= 1).
        explore: weight of the ensemble's spread (>= 0; 0 ranks by the predicted loss alone).
        compare_surrogates: also fit the other surrogate and record how it would have ranked
            each round's architectures.
    """

    def __init__(self, surrogate: str = "mlp", n_initial: int = 10, n_candidates: int = 2000, batch_size: int = 4,
                 explore: float = 0.0, surrogate_args: Mapping[str, Any] | None = None,
                 compare_surrogates: bool = False):
        for name, value, low in (("n_initial", n_initial, 3), ("n_candidates", n_candidates, 1),
                                 ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"Invalid {name}: {value!r} (must be an int >= {low})")
        if isinstance(explore, bool) or not isinstance(explore, (int, float)) or not explore >= 0:
            raise ConfigError(f"Invalid explore: {explore!r} (must be a number >= 0)")
        if not isinstance(compare_surrogates, bool):
            raise ConfigError(f"Invalid compare_surrogates: {compare_surrogates!r} (must be true or false)")
        self.n_initial, self.n_candidates, self.batch_size, self.explore = n_initial, n_candidates, batch_size, float(explore)
        self.pair = SurrogatePair(surrogate, surrogate_args, compare_surrogates)

    def setup(self, schema: Schema, rng: np.random.Generator) -> None:
        self.schema, self.rng = schema, rng
        self.codes = ArrayCodes(schema)
        self.pair.bind(schema)
        self.obs = Observations()
        self.seen: set[str] = set()
        self.queue: list[ArchDict] = []
        self.rounds: list[dict[str, Any]] = []  # per model round: keys, predictions, measured losses
        self.where: dict[str, tuple[int, int]] = {}
        self.pending = 0

    def ready(self) -> bool:
        """Random asks may run ahead; a round wants the results of the one before."""
        return len(self.seen) < self.n_initial or bool(self.queue) or self.pending == 0

    def ask(self) -> ArchDict:
        if not self.queue and len(self.seen) >= self.n_initial:
            self.queue = self._round()
        arch = self.queue.pop(0) if self.queue else self._random()
        self.seen.add(arch_key(arch))
        self.pending += 1
        return arch

    def tell(self, arch: ArchDict, result: Result) -> None:
        loss = self.obs.add(arch, result)
        key = arch_key(arch)
        self.seen.add(key)
        if result.resumed:
            return
        self.pending = max(0, self.pending - 1)
        place = self.where.pop(key, None)
        if place is not None:
            self.rounds[place[0]]["measured"][place[1]] = loss

    def _random(self) -> ArchDict:
        return unseen_sample(self.schema, self.rng, self.seen)

    def _round(self) -> list[ArchDict]:
        archs, losses = self.obs.training_set()
        if len(archs) < 3 or np.ptp(losses) == 0:
            return []
        self.pair.fit(archs, losses, int(self.rng.integers(2**31)))
        candidates = self._candidates(archs, losses)
        members = self.pair.guide.predict_members(candidates)
        score = members.mean(axis=0) - self.explore * members.std(axis=0)
        picks = [candidates[i] for i in np.argsort(score, kind="stable")[: self.batch_size]]
        index = len(self.rounds)
        self.rounds.append({"keys": [arch_key(a) for a in picks], "predicted": self.pair.predict_all(picks),
                            "measured": [None] * len(picks)})
        for position, arch in enumerate(picks):
            self.where[arch_key(arch)] = (index, position)
        return picks

    def _candidates(self, archs: list[ArchDict], losses: np.ndarray) -> list[ArchDict]:
        """Unseen candidates, each once: mutations of the best trained, and fresh samples."""
        parents = [self.codes.from_arch(archs[i]) for i in np.argsort(losses, kind="stable")[:N_PARENTS]]
        rows = local_and_fresh(self.codes, np.asarray(parents), self.n_candidates, self.rng)
        out: dict[str, ArchDict] = {}
        for row in rows:
            arch = self.codes.to_arch(row)
            key = arch_key(arch)
            if key not in self.seen:
                out.setdefault(key, arch)
        return list(out.values()) or [self._random()]

    def search_log(self) -> list[dict[str, Any]]:
        """Per round: the architectures trained, the best loss among them, and each surrogate's
        Spearman correlation on them once all are told."""
        out = []
        for i, r in enumerate(self.rounds):
            measured = [m for m in r["measured"] if m is not None]
            complete = i < len(self.rounds) - 1 or not any(k in self.where for k in r["keys"])
            entry: dict[str, Any] = {"step": i + 1, "trained": len(r["keys"]),
                                     "best_loss": min(measured) if measured else None, "complete": complete}
            if complete:
                entry["spearman"] = correlations(r["predicted"], r["measured"])
            out.append(entry)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"observations": self.obs.state(), "seen": sorted(self.seen), "queue": self.queue,
                "rounds": self.rounds, "pending": self.pending, "rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs = Observations(state["observations"])
        self.seen = set(state["seen"])
        self.queue = [dict(a) for a in state["queue"]]
        self.rounds = [dict(r) for r in state["rounds"]]
        self.where = {key: (i, j) for i, r in enumerate(self.rounds) for j, key in enumerate(r["keys"])
                      if r["measured"][j] is None}
        self.pending = int(state["pending"])
        set_rng_state(self.rng, state["rng"])
