"""Explicit name registries. Entries are import paths, so looking up a name imports only that entry."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Generic, Iterable, TypeVar

from nasforge.errors import ConfigError

T = TypeVar("T")


def import_object(path: str) -> Any:
    """Import ``package.module:attribute`` (or ``package.module.attribute``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"Invalid import path {path!r}; expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"Cannot import module {module_name!r} from {path!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"Module {module_name!r} has no attribute {attr!r} (from {path!r})")
        obj = getattr(obj, part)
    return obj


def add_module_dirs(dirs: Iterable[str | Path]) -> None:
    """Let user modules (``mymodule:my_space``) be imported from ``dirs``: appended to the import
    path, after the standard library and installed packages, so a file there named like one of
    them (``sqlite3.py``) shadows nothing."""
    for folder in dirs:
        text = str(Path(folder).resolve())
        if text not in sys.path:
            sys.path.append(text)


def module_dir(path: str) -> str | None:
    """The folder the user module of import path ``path`` was imported from (the one holding its
    top-level package), or None for a module that is not a file (built in, not imported yet)."""
    module_name = path.partition(":")[0] if ":" in path else path.rpartition(".")[0]
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    folder = Path(file).resolve().parent
    for _ in range(module_name.count(".") + (Path(file).name == "__init__.py")):
        folder = folder.parent
    return str(folder)


class Registry(Generic[T]):
    """A named set of implementations of one protocol, e.g. every built-in strategy.

    Unknown names raise :class:`ConfigError` listing the valid ones. A name containing ':' is
    treated as a user's import path (``mypkg.spaces:my_space``), so user code plugs in anywhere.
    """

    def __init__(self, kind: str, entries: dict[str, str], descriptions: dict[str, str] | None = None):
        self.kind = kind
        self._entries = dict(entries)
        self._descriptions = dict(descriptions or {})

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self, name: str) -> str:
        if name in self._descriptions:
            return self._descriptions[name]
        doc = (getattr(self.get(name), "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str) -> str:
        """Return ``name`` if it resolves (a registered name or an import path), else raise."""
        if name not in self._entries and ":" not in name:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())} "
                f"(or an import path 'package.module:object')"
            )
        return name

    def get(self, name: str) -> T:
        self.check(name)
        return import_object(self._entries.get(name, name))  # type: ignore[no-any-return]

    def register(self, name: str, path: str, description: str = "") -> None:
        self._entries[name] = path
        if description:
            self._descriptions[name] = description
