"""The SQLite store's own promises: what readers see, persistence, opening and its errors (the
contract every store keeps is in test_store_contract.py)."""
from __future__ import annotations

import json
import sqlite3

import pytest

from nasforge.errors import StoreError
from nasforge.store import SQLiteStore
from nasforge.store.sqlite import DB_NAME, SCHEMA_VERSION
from nasforge.types import TrialState


def test_the_file_holds_standard_json_and_the_schema_version(tmp_path):
    store = SQLiteStore(tmp_path / "study")
    tid = store.create_trial({"a": 1}, 1, seed=0)
    store.finish(tid, TrialState.COMPLETE, metrics={"val_loss": float("nan"), "ok": 1.0}, loss=float("nan"), budget=1)
    raw = sqlite3.connect(store.path).execute("SELECT metrics FROM trials").fetchone()[0]
    assert "NaN" not in raw and json.loads(raw) == {"val_loss": None, "ok": 1.0}
    assert store.get_meta("schema_version") == SCHEMA_VERSION
    store.close()


def test_atomic_group_is_invisible_to_readers_until_committed(tmp_path):
    writer = SQLiteStore(tmp_path / "s")
    reader = SQLiteStore(tmp_path / "s", create=False)
    try:
        with writer.atomic():
            writer.create_trial({"a": 1}, 1, seed=0)
            writer.set_meta("k", 1)
            assert reader.count() == 0 and reader.get_meta("k") is None
        assert reader.count() == 1 and reader.get_meta("k") == 1
    finally:
        writer.close()
        reader.close()


# --- persistence and opening ------------------------------------------------------------------
def test_data_persists_after_close_and_reopen(tmp_path):
    directory = tmp_path / "study"
    s = SQLiteStore(directory)
    tid = s.create_trial({"depth": 2}, 3, seed=5)
    s.start(tid, 3)
    s.append_curve(tid, 1, {"val_loss": 0.7})
    s.finish(tid, TrialState.COMPLETE, metrics={"val_loss": 0.7}, loss=0.7, budget=3, checkpoint="c.pt")
    s.set_meta("strategy", {"position": 4})
    before = s.trial(tid)
    s.close()

    again = SQLiteStore(directory, create=False)
    try:
        assert again.trial(tid) == before
        assert again.curve(tid) == [{"val_loss": 0.7}]
        assert again.get_meta("strategy") == {"position": 4}
        assert again.create_trial({"depth": 1}, 1, seed=0) == 1
    finally:
        again.close()


def test_missing_directory_without_create(tmp_path):
    with pytest.raises(StoreError, match="No study at .*nowhere"):
        SQLiteStore(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()


def test_create_makes_parent_directories(tmp_path):
    s = SQLiteStore(tmp_path / "a" / "b")
    s.close()
    assert (tmp_path / "a" / "b" / DB_NAME).is_file()


def test_non_database_file_is_a_clear_store_error(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"these are not the bytes of an SQLite database " * 40)
    with pytest.raises(StoreError) as err:
        SQLiteStore(tmp_path)
    assert "not a nasforge study database" in str(err.value) and DB_NAME in str(err.value)


def test_directory_that_is_a_file_is_a_store_error(tmp_path):
    (tmp_path / "study").write_text("a file where the study directory should be")
    with pytest.raises(StoreError, match="study"):
        SQLiteStore(tmp_path / "study")


def test_other_schema_version_is_refused(tmp_path):
    s = SQLiteStore(tmp_path)
    s.set_meta("schema_version", SCHEMA_VERSION + 1)
    s.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SQLiteStore(tmp_path)
