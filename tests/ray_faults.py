"""The built-in MLP space with a fault injected once, in the process that builds the model: how
the Ray tests kill an actor's process or its node mid-shard, at a point fixed by the study."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from nasforge.spaces.mlp import mlp


def faulty_mlp(arch, n_in: int, n_out: int, driver_pid: int = 0, folder: str = "", after: int = 0, fault: str = "none"):
    """``mlp``; the ``after``-th model built outside the driver (process ``driver_pid``) first
    does ``fault``: ``process`` kills its own process, ``node`` names its Ray node in
    ``folder/node`` and waits there for the test to remove that node."""
    if fault != "none" and os.getpid() != driver_pid:
        _maybe_fail(Path(folder), after, fault)
    return mlp(arch, n_in, n_out)


def _maybe_fail(folder: Path, after: int, fault: str) -> None:
    with open(folder / "builds", "a") as log:  # every build outside the driver, from every actor
        log.write("x")
    fired = folder / "fired"
    if (folder / "builds").stat().st_size < after or fired.exists():
        return
    try:
        fired.touch(exist_ok=False)  # once, whichever actor gets here first
    except FileExistsError:
        return
    if fault == "process":
        os.kill(os.getpid(), signal.SIGKILL)
    import ray
    (folder / "node.tmp").write_text(ray.get_runtime_context().get_node_id())
    os.replace(folder / "node.tmp", folder / "node")
    time.sleep(120)  # the test removes this node meanwhile
