"""A search runs with the heap that existed before it frozen out of the garbage collector, and
gives it back as it found it."""
from __future__ import annotations

import gc

import nasforge
from nasforge.heap import frozen_heap


def test_frozen_heap_nests_and_restores():
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():  # e.g. a process pool started inside a search
            pass
        assert gc.get_freeze_count() >= frozen  # the inner exit left the outer freeze alone
    assert gc.get_freeze_count() == 0


def test_a_search_freezes_the_heap_only_while_it_runs(tmp_path):
    seen = []
    nasforge.search(out=tmp_path / "s", budget=1, trials=2, seed=0, on_trial_end=lambda study, trial: seen.append(gc.get_freeze_count()))
    assert seen and min(seen) > 0
    assert gc.get_freeze_count() == 0


def test_a_callers_freeze_survives_a_search(tmp_path):
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        nasforge.search(out=tmp_path / "s", budget=1, trials=2, seed=0)
        assert gc.get_freeze_count() >= before
    finally:
        gc.unfreeze()
