"""Trial stores. SQLite (one file per study, WAL) is the default."""
from nasforge.store.base import Store, Trial
from nasforge.store.sqlite import SQLiteStore

__all__ = ["Store", "Trial", "SQLiteStore"]
