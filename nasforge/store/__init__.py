"""Trial stores by name (see ``base`` for the protocol). SQLite (one file per study, WAL) is the
default; ``memory`` keeps a study in this process only (tests, quick runs: nothing to resume)."""
from nasforge.registry import Registry
from nasforge.store.base import Store, Trial
from nasforge.store.sqlite import SQLiteStore

STORES: Registry = Registry("store", {
    "sqlite": "nasforge.store.sqlite:SQLiteStore",
    "memory": "nasforge.store.memory:MemoryStore",
}, {
    "sqlite": "study.db in the study directory: survives a crash, resumable, read by status and report",
    "memory": "in this process only: for tests and quick runs, nothing to resume",
})

__all__ = ["STORES", "Store", "Trial", "SQLiteStore"]
