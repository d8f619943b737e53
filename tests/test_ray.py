"""executor: ray on real Ray clusters on this machine: a driver killed with kill -9 and resumed,
a three-node cluster giving the same trials as the local pool, an actor's process and a whole
node dying mid-study, checkpoints in a shared directory, and the errors said before any work."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import nasforge
from nasforge.errors import ConfigError
from ray_faults import faulty_mlp

pytestmark = pytest.mark.xdist_group("ray")  # one worker runs them all, one cluster at a time


def _digits_study(executor: str, **kwargs):
    return nasforge.search(faulty_mlp, "digits", "random", "hyperband", budget=9, trials=30, seed=1, workers=2,
                           executor=executor, store="memory", **kwargs)


def _record(study) -> list[tuple]:
    return [(t.id, t.arch, t.state, t.budget_used, [r["budget"] for r in t.rungs], t.loss) for t in study.trials]


@pytest.fixture(scope="module")
def local_pool():
    """The reference: the same study on the local batched pool (two processes), every poll split
    as in the Ray tests (``split_every_poll``): the shards decide the groups, and so the rounding."""
    from nasforge.execution.batch_pool import ShardPlan

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ShardPlan, "min_split_us", 0.0)
        patch.setattr(ShardPlan, "remote_us", 0.0)
        return _record(_digits_study("batched"))


# --- the driver killed (first: its own local cluster, before the module's) ----------------------
CONFIG = """space: mlp
dataset: digits
strategy: random
scheduler: hyperband
budget: 9
trials: 60
workers: 2
seed: 4
executor: {executor}
"""


def _finished(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state IN ('complete', 'pruned')").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_driver_killed_mid_study_resumes_to_the_same_trials(tmp_path):
    ray_config, local_config = tmp_path / "ray.yaml", tmp_path / "local.yaml"
    ray_config.write_text(CONFIG.format(executor="ray"))
    local_config.write_text(CONFIG.format(executor="batched"))
    cli = [sys.executable, "-m", "nasforge.cli"]
    driver = subprocess.Popen(cli + ["search", str(ray_config), "--out", str(tmp_path / "ray"), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while _finished(tmp_path / "ray" / "study.db") < 9 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert driver.poll() is None, f"the search ended before it could be killed: {driver.stderr.read().decode()[-2000:]}"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    query = "SELECT id, state, arch, budget_used, loss FROM trials ORDER BY id"
    with sqlite3.connect(tmp_path / "ray" / "study.db") as con:
        before = [row for row in con.execute(query) if row[1] in ("complete", "pruned")]
    assert 9 <= len(before) < 17, "the kill should land mid-search"
    resumed = subprocess.run(cli + ["resume", str(tmp_path / "ray"), "--quiet"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    subprocess.run(cli + ["search", str(local_config), "--out", str(tmp_path / "local"), "--quiet"], check=True,
                   capture_output=True, timeout=300)
    with sqlite3.connect(tmp_path / "ray" / "study.db") as a, sqlite3.connect(tmp_path / "local" / "study.db") as b:
        after, reference = a.execute(query).fetchall(), b.execute(query).fetchall()
        assert a.execute("SELECT COUNT(*) FROM rungs").fetchone() == b.execute("SELECT COUNT(*) FROM rungs").fetchone()
    assert [row for row in after if row[0] in {r[0] for r in before}] == before  # nothing finished lost or redone
    assert [row[:4] for row in after] == [row[:4] for row in reference]  # the same trials, decisions and budgets
    # Jobs re-run after the kill train in other groups than they first would have: the last bits of
    # their losses may differ (the population trainer's arithmetic depends on its group).
    assert [row[4] for row in after] == pytest.approx([row[4] for row in reference], rel=1e-3)


# --- a three-node cluster ------------------------------------------------------------------------
def test_a_study_over_a_cluster_gives_the_local_pools_trials(ray_cluster, local_pool, split_every_poll):
    study = _digits_study("ray")
    assert _record(study) == local_pool
    assert len(study._executor.nodes) == 2  # an actor on each worker node (the head runs none)
    assert study._executor.actors_lost == 0


def _faulty(tmp_path: Path, fault: str, after: int) -> dict:
    return {"driver_pid": os.getpid(), "folder": str(tmp_path), "after": after, "fault": fault}


def test_an_actor_process_killed_mid_shard_loses_and_repeats_nothing(ray_cluster, local_pool, split_every_poll, tmp_path):
    study = _digits_study("ray", space_args=_faulty(tmp_path, "process", after=12))
    assert (tmp_path / "fired").exists()  # the fault happened, inside a shard
    assert study._executor.actors_lost == 1
    assert _record(study) == local_pool  # its shard ran again, whole: the same results to the last bit


def test_a_node_lost_mid_shard_loses_and_repeats_nothing(ray_cluster, local_pool, split_every_poll, tmp_path):
    stop = threading.Event()
    remover = threading.Thread(target=_remove_named_node, args=(ray_cluster, tmp_path / "node", stop))
    remover.start()
    try:
        study = _digits_study("ray", space_args=_faulty(tmp_path, "node", after=12))
    finally:
        stop.set()
        remover.join()
        while len(ray_cluster.worker_nodes) < 2:  # back to two worker nodes for the tests after this one
            ray_cluster.add_node(num_cpus=1)
    assert (tmp_path / "node").exists() and study._executor.actors_lost >= 1
    assert _record(study) == local_pool


def _remove_named_node(cluster, named: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        if named.exists():
            node_id = named.read_text()
            cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node_id))
            return
        time.sleep(0.05)


def test_checkpoints_in_a_shared_directory(ray_cluster, local_pool, split_every_poll, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    study = nasforge.search(faulty_mlp, "digits", "random", "hyperband", budget=9, trials=30, seed=1, workers=2,
                            executor="ray", ray={"checkpoint_dir": str(shared)}, out=tmp_path / "study")
    assert _record(study) == local_pool  # promotions continued from the shared checkpoints
    best = study.best
    assert (shared / best.checkpoint).exists() and (tmp_path / "study" / best.checkpoint).exists()
    kept = {t.checkpoint for t in study.trials if t.checkpoint and (shared / t.checkpoint).exists()}
    assert len(kept) <= 5  # the study's keep_checkpoints: the others were dropped from the shared directory
    assert study.best_model()(__import__("torch").zeros(2, 64)).shape == (2, 10)


# --- errors before any work ----------------------------------------------------------------------
def test_ray_missing_is_said_at_once(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'nasforge\[ray\]'"):
        nasforge.search("mlp", "iris", executor="ray", out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_an_address_where_nothing_answers_is_said_at_once(tmp_path):
    with pytest.raises(ConfigError, match="nothing answers there"):
        nasforge.search("mlp", "iris", executor="ray", ray={"address": "127.0.0.1:9"}, out=tmp_path / "s")
    with pytest.raises(ConfigError, match="is not 'auto' or host:port"):
        nasforge.search("mlp", "iris", executor="ray", ray={"address": "nowhere"}, out=tmp_path / "t")


def test_settings_no_cluster_can_serve_are_said_before_any_trial(tmp_path):
    with pytest.raises(ConfigError, match="Ray Client addresses are not supported"):
        nasforge.search("mlp", "iris", executor="ray", ray={"address": "ray://head:10001"}, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="checkpoint_dir .* is not a directory"):
        nasforge.search("mlp", "iris", executor="ray", ray={"checkpoint_dir": str(tmp_path / "none")}, out=tmp_path / "b")
    assert not (tmp_path / "none").exists() and not (tmp_path / "a").exists()


def test_more_gpus_than_the_cluster_has_is_refused_at_once(ray_cluster, tmp_path):
    start = time.monotonic()
    with pytest.raises(ConfigError, match="ray.num_gpus 1: no node of the Ray cluster has that many GPUs"):
        nasforge.search("mlp", "iris", executor="ray", ray={"num_gpus": 1}, trials=2, budget=1, out=tmp_path / "s")
    assert time.monotonic() - start < 60  # not Ray's wait for a node that never comes


def test_resume_elsewhere_with_the_same_trials(tmp_path):
    """A study stopped mid-way and resumed on another executor finishes with the trials it would
    have had (losses to the two trainers' tolerance)."""
    from nasforge.api import open_study
    config = dict(budget=3, trials=8, seed=2)  # one worker: forking a process that runs Ray (this one) can kill it
    reference = nasforge.search("mlp", "iris", executor="batched", store="memory", **config)

    class Stop(Exception):
        """Stops the study as Ctrl-C does (a KeyboardInterrupt would end the xdist worker itself)."""

    def stop_after_two(study, trial):
        if sum(t.state.finished for t in study.trials) >= 2:
            raise Stop

    with pytest.raises(Stop):
        nasforge.search("mlp", "iris", executor="serial", out=tmp_path / "a", on_trial_end=stop_after_two, **config)
    resumed = open_study(tmp_path / "a", where={"executor": "batched"}).run().trials
    assert [(t.arch, t.state) for t in resumed] == [(t.arch, t.state) for t in reference.trials]
    assert [t.loss for t in resumed] == pytest.approx([t.loss for t in reference.trials], rel=2e-3)
    with pytest.raises(ConfigError, match="unknown executor 'nowhere'"):
        open_study(tmp_path / "a", where={"executor": "nowhere"})


def test_a_local_pool_spawns_its_workers_in_a_process_where_ray_runs(ray_cluster):
    """Forking a process that runs Ray's threads and sockets can take it down: spawn instead."""
    from nasforge.execution import pool

    assert pool._start_method() == "spawn"
