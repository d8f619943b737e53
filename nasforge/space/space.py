"""A search space: a user's function ``(arch, **context) -> nn.Module`` plus the context it needs."""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
from torch import nn

from nasforge.errors import SpaceError
from nasforge.space.arch import ArchBase, FillArch, FixedArch
from nasforge.space.dry import dry_run
from nasforge.space.recording import record_schema
from nasforge.space.schema import Schema
from nasforge.types import ArchDict

SpaceFn = Callable[..., nn.Module]
_SCHEMAS: dict[tuple[Any, str], Schema] = {}  # recorded schemas of this process, by space and context


def _accepted_kwargs(fn: Callable[..., Any], context: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """Pass the data's context entries the function names (all if it takes ``**kwargs``), and
    every one of the user's ``args``, which must each name a parameter."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {**context, **args}
    names = list(params)[1:]  # the first parameter is arch
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {**context, **args}
    unknown = [a for a in args if a not in names]
    if unknown:
        raise SpaceError(f"Space {getattr(fn, '__name__', fn)!r} has no argument(s) {', '.join(unknown)}; "
                         f"its arguments: {', '.join(names) or 'none'}")
    context = {**context, **args}
    missing = [
        n for n in names
        if params[n].default is inspect.Parameter.empty
        and params[n].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and n not in context
    ]
    if missing:
        raise SpaceError(
            f"Space {getattr(fn, '__name__', fn)!r} needs argument(s) {', '.join(missing)}; "
            f"available from the data: {', '.join(sorted(context)) or 'none'} (others go in the space's args)"
        )
    return {k: v for k, v in context.items() if k in names}


class Space:
    """Builds models from architectures and records the decision schema of a space function."""

    def __init__(self, fn: SpaceFn, context: dict[str, Any] | None = None, name: str | None = None,
                 args: dict[str, Any] | None = None):
        if not callable(fn):
            raise SpaceError(f"A space must be a function (arch, **context) -> nn.Module, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "space")
        self.context = _accepted_kwargs(fn, dict(context or {}), dict(args or {}))
        self._schema: Schema | None = None

    def __call__(self, arch: ArchBase) -> nn.Module:
        model = self.fn(arch, **self.context)
        if not isinstance(model, nn.Module):
            raise SpaceError(f"Space {self.name!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    def walk(self, arch: ArchBase) -> nn.Module:
        """Run the space with ``arch`` answering its decisions, without initialising weights (see
        :mod:`nasforge.space.dry`): how a mode that decides as the space asks (a controller)
        sees exactly the decisions the space makes, in its order, conditions and all."""
        with dry_run():
            return self(arch)


    def build(self, arch: ArchDict) -> nn.Module:
        """The model of one architecture, with freshly initialised weights (uses torch's global RNG)."""
        fixed = FixedArch(arch)
        model = self(fixed)
        fixed.check_all_used()
        return model

    def dry_build(self, arch: ArchDict) -> nn.Module:
        """The architecture's model without weight initialisation (its weights are garbage): for
        looking at its structure and size, or for loading a whole state into; ~3x cheaper than
        :meth:`build` for a small MLP."""
        return self.walk(FixedArch(arch))

    def validate(self, arch: ArchDict) -> None:
        fixed = FixedArch(arch)
        self.walk(fixed)
        fixed.check_all_used()

    def canonical(self, values: ArchDict, rng: np.random.Generator) -> ArchDict:
        """The architecture the space really builds from ``values``: valid values kept, missing ones
        sampled, values of decisions the space does not ask dropped."""
        fill = FillArch(values, rng)
        self.walk(fill)
        return dict(fill.values)

    def fill(self, values: ArchDict, rng: np.random.Generator) -> tuple[ArchDict, Exception | None]:
        """As :meth:`canonical`, but a space that raises part-way (it rejects the combination)
        gives the decisions made up to there and the exception, instead of raising: the study
        records such an architecture as a failed trial (building it raises the same error)."""
        fill = FillArch(values, rng)
        try:
            self.walk(fill)
        except Exception as exc:  # noqa: BLE001 - the user's space rejected these values
            return dict(fill.values), exc
        return dict(fill.values), None

    def sample(self, rng: np.random.Generator) -> ArchDict:
        return self.canonical({}, rng)

    @property
    def schema(self) -> Schema:
        if self._schema is None:
            key = (self.fn, repr(sorted(self.context.items())))
            cached = _SCHEMAS.get(key) if _hashable(self.fn) else None
            if cached is not None:
                self._schema = cached
                return cached
            try:
                self._schema = record_schema(self.walk)
                if _hashable(self.fn):
                    _SCHEMAS[key] = self._schema
            except SpaceError:
                raise
            except Exception as exc:
                raise SpaceError(f"Space {self.name!r} failed while recording its decisions: {type(exc).__name__}: {exc}") from exc
        return self._schema

    def set_schema(self, schema: Schema) -> None:
        """Use a stored schema (on resume), so encodings stay exactly as they were."""
        self._schema = schema


def _hashable(obj: Any) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True
