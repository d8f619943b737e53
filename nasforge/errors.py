"""Errors with messages meant for the user: each names what is wrong and what is allowed."""
from __future__ import annotations

from typing import Any


class NasforgeError(Exception):
    """Base class of every error nasforge raises on purpose."""


class ConfigError(NasforgeError, ValueError):
    """A config, CLI flag or API argument is invalid."""


class SpaceError(NasforgeError, ValueError):
    """A search space or an architecture does not fit the space."""


class StoreError(NasforgeError):
    """A study directory or database is missing, locked or unreadable."""


class DataError(NasforgeError, ValueError):
    """A dataset is missing or malformed."""


def visible(value: Any) -> str:
    """Text from user code (an option, an error) as one line of plain text: characters that are
    not printable (newlines, ANSI escapes) written as their escapes, so they are shown, never obeyed."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(value))


class UnsupportedDecision(SpaceError):
    """A space asks decisions that the current ``arch`` mode cannot search: ``decisions`` maps
    each label to its domain's description."""

    def __init__(self, decisions: dict[str, str], mode: str, remedy: str):
        self.decisions, self.mode = dict(decisions), mode
        self.label = next(iter(decisions))
        named = ", ".join(f"{label!r} ({kind})" for label, kind in decisions.items())
        many = len(decisions) > 1
        super().__init__(f"decision{'s' if many else ''} {named} cannot be searched in {mode} mode: {remedy}")


class MissingDependency(NasforgeError, ImportError):
    """An optional package a feature needs is not installed; the message says what to install."""


class ExportError(NasforgeError):
    """An exported model does not compute what the PyTorch model computes."""
