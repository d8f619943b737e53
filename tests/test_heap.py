"""A search runs with the heap that existed before it frozen out of the garbage collector, and
gives it back as it found it; large tensors' memory is reused, not paged in again each step."""
from __future__ import annotations

import gc

import pytest

import nasforge
from nasforge.heap import frozen_heap


def test_frozen_heap_nests_and_restores():
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():  # e.g. a process pool started inside a search
            pass
        # the inner exit left the outer freeze alone (frozen objects that die leave the count, so
        # it may fall a little; an unfreeze would take it to 0)
        assert gc.get_freeze_count() > frozen // 2
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
        assert gc.get_freeze_count() > before // 2  # still frozen (less what died meanwhile)
    finally:
        gc.unfreeze()


STEPS = """
import ctypes, resource, sys
import torch
from torch import nn
from nasforge.heap import reuse_freed_memory

torch.set_num_threads(1)
# glibc's starting thresholds (128 KiB), fixed: what a block size meets before glibc has seen it
# freed; left to itself glibc raises them as blocks are freed, so a run may or may not fault.
mallopt = ctypes.CDLL(None).mallopt
assert mallopt(-3, 128 << 10) and mallopt(-1, 128 << 10)
tuned = reuse_freed_memory()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 10))
optimizer = torch.optim.Adam(model.parameters(), fused=True)
x, y = torch.randn(512, 64), torch.randint(0, 10, (512,))

def step():
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()

for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_training_steps_reuse_memory_instead_of_paging_it_in():
    """In a fresh process with malloc's thresholds set (as a search sets them), the autograd
    training steps of a wide MLP (the one-by-one trainer's and vmap's kind; a stacked group keeps
    its activations in a workspace) take no fresh pages; with glibc's starting thresholds
    (``NASFORGE_KEEP_MALLOC=1``) each step pages its 1 MiB activations in again. glibc moves its
    thresholds up as it frees large blocks, so without a setting a run pages in anywhere from
    nothing to all of it: the test fixes glibc's starting values first, and the setting must
    override them."""
    import os
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc's thresholds are glibc's")

    def faults(keep: str) -> int:
        env = {**os.environ, "NASFORGE_KEEP_MALLOC": keep}
        out = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True, text=True, check=True).stdout
        tuned, count = out.split()
        assert tuned == str(keep != "1")
        return int(count)

    tuned, untuned = faults("0"), faults("1")  # here: ~250 against ~46,000
    assert untuned > 2000 and tuned < untuned / 10, f"page faults in 20 steps: {tuned} with the setting, {untuned} without"
