"""Batched training in worker processes (``workers > 1`` with the built-in trainer)."""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import nasforge
from nasforge.execution.base import Job
from nasforge.execution.batch_pool import ShardPlan, pack, shards, unpack
from nasforge.execution.batching import BatchRunner

STUDY_LOSS = dict(rel=1e-3)  # other groups in other processes: rounding differs, and compounds
PARENT = os.getpid()
HB = dict(scheduler={"name": "hyperband", "args": {"eta": 3}}, budget=9, seed=1, executor="batched")


pytestmark = pytest.mark.usefixtures("split_every_poll")


def test_polls_too_small_to_gain_stay_in_the_driver(tmp_path, monkeypatch):
    from nasforge.execution import pool
    started = []
    real_new_pool = pool.new_pool
    monkeypatch.setattr(pool, "new_pool", lambda *args: started.append(1) or real_new_pool(*args))
    monkeypatch.setattr(ShardPlan, "min_split_us", 300_000.0)
    small = nasforge.search(out=tmp_path / "small", workers=2, **HB)  # every poll estimated well under 0.3 s
    assert not started
    one = nasforge.search(out=tmp_path / "one", **HB)
    assert [(t.arch, t.loss) for t in small.trials] == [(t.arch, t.loss) for t in one.trials]  # exactly one process's
    monkeypatch.setattr(ShardPlan, "min_split_us", 0.0)
    nasforge.search(out=tmp_path / "split", workers=2, **HB)
    assert started == [1]


def test_two_workers_match_one_process_through_promotions(tmp_path):
    one = nasforge.search(out=tmp_path / "one", **HB)
    two = nasforge.search(out=tmp_path / "two", workers=2, **HB)
    assert [(t.arch, t.state, len(t.rungs)) for t in two.trials] == [(t.arch, t.state, len(t.rungs)) for t in one.trials]
    assert sum(len(t.rungs) > 1 for t in two.trials) >= 3  # promoted trials continued from their checkpoints
    for a, b in zip(two.trials, one.trials):
        assert a.loss == pytest.approx(b.loss, **STUDY_LOSS)
        # a promotion trains only the extra epochs
        assert [p["epoch"] for p in two.store.curve(a.id)] == [p["epoch"] for p in one.store.curve(b.id)]
    best = two.best
    assert (tmp_path / "two" / best.checkpoint).exists()  # the driver wrote what the workers made
    model = two.best_model()
    data = nasforge.load_dataset("iris")
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(data.x_val), data.y_val).item()
    assert loss == pytest.approx(best.loss, rel=1e-5)


def _job(i: int, budget: float, depth: int, resumed: bool = False) -> Job:
    arch = {"depth": depth, **{f"width_{k}": 8 for k in range(depth)}, "activation": "relu"}
    return Job(i, arch, budget, i, f"c{i}" if resumed else None)


def test_shards_keep_like_jobs_together_and_share_the_work():
    jobs = [_job(i, budget=[1, 3, 9][i % 3], depth=1 + i % 4, resumed=i % 3 > 0) for i in range(24)]
    parts = shards(jobs, 2)
    assert len(parts) == 2 and sorted(j.trial_id for p in parts for j in p) == list(range(24))
    costs = [sum(j.budget * (1 + len(j.arch)) for j in p) for p in parts]
    assert max(costs) < 0.75 * sum(costs)  # neither worker gets nearly everything
    keys = [(j.budget, j.checkpoint_in is not None, len(j.arch)) for p in parts for j in p]
    assert keys == sorted(keys)  # a run of like jobs is cut at most once, where the shards meet
    assert shards(jobs[:1], 4) == [jobs[:1]]  # never an empty shard
    assert len(shards(jobs, 30)) <= 24


def test_the_drivers_shard_takes_the_round_trip_more_work():
    jobs = [_job(i, budget=1, depth=1) for i in range(40)]  # each costs 4 (_cost: 1 x (1 + 3 choices))
    assert [len(p) for p in shards(jobs, 2)] == [20, 20]
    assert [len(p) for p in shards(jobs, 2, remote=32.0)] == [24, 16]  # 96 against 64 + 32
    assert [len(p) for p in shards(jobs, 3, remote=24.0)] == [17, 12, 11]  # ~69 against ~45 + 24 each, cut where jobs' middles fall
    assert shards(jobs, 2, remote=1000.0) == [sorted(jobs, key=lambda j: j.trial_id)]  # not worth a worker at all


def test_sharding_by_model_size_shares_the_deep_networks():
    """8 shallow narrow and 8 deep wide MLPs: priced by their models (a dry build), the deep ones,
    nearly all the work, are shared between the shards; counted by their choices, 6 of the 8
    went to one shard (the driver waited for the worker)."""
    from types import SimpleNamespace

    from nasforge.execution.batch_pool import SizedCost
    from nasforge.space import Space
    from nasforge.spaces.mlp import mlp
    from nasforge.train.trainer import SupervisedTrainer

    data = nasforge.load_dataset("iris")
    space = Space(mlp, data.context())

    def job(i: int, depth: int, width: int) -> Job:
        return Job(i, {"depth": depth, **{f"width_{k}": width for k in range(depth)}, "activation": "relu"}, 30, i, None)

    jobs = [job(i, 1, 4) for i in range(8)] + [job(8 + i, 6, 90) for i in range(8)]
    sized = SizedCost(SimpleNamespace(space=space, data=data, evaluator=SupervisedTrainer(batch_size=32)))
    assert sum(p.numel() for p in space.dry_build(jobs[0].arch).parameters()) == 4 * 4 + 4 + 4 * 3 + 3

    def most_deep(parts):
        return max(sum(j.arch["depth"] == 6 for j in p) for p in parts)

    assert most_deep(shards(jobs, 2, sized)) <= 5
    assert most_deep(shards(jobs, 2)) >= 6
    assert sized(job(99, 2, 8)) == sized(job(99, 2, 8)) < sized(job(98, 2, 80))
    assert len(sized._step_us) == 4  # remembered per architecture
    assert sized(Job(97, {"depth": 99}, 30, 97, None)) > 0  # an architecture that does not build: the old guess


def test_states_travel_between_processes_unchanged():
    meta = OrderedDict(w=torch.randn(3, 2))
    meta._metadata = {"": {"version": 1}}  # type: ignore[attr-defined]
    payload = {"evaluator": {"model": meta, "optimizer": {"state": {0: {"step": torch.tensor(4.0), "exp_avg": torch.randn(3, 2)[:, :1]}},
                                                         "param_groups": [{"lr": 0.01, "params": [0]}]},
                             "positions": [1, (2, 3)], "half": torch.ones(2, dtype=torch.bfloat16)},
               "torch_rng": torch.get_rng_state()}
    packed = pack(payload)
    assert not isinstance(packed["torch_rng"], torch.Tensor)  # numpy on the way: no shared-memory segment per tensor
    back = unpack(packed)
    assert back["evaluator"]["model"]._metadata == {"": {"version": 1}}
    assert back["evaluator"]["positions"] == [1, (2, 3)]
    flat_in, flat_out = _tensors(payload), _tensors(back)
    assert len(flat_in) == len(flat_out) == 5
    for a, b in zip(flat_in, flat_out):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _dies(marker: Path, always: bool):
    """A BatchRunner.run whose worker process dies on its second shard (``always``: on every later
    shard holding that shard's first trial); the marker file names the trials of that shard."""
    real = BatchRunner.run
    seen = marker.with_suffix(".seen")

    def run(self, jobs, saved):  # reaches the workers by fork
        if os.getpid() != PARENT:
            if not seen.exists():  # the first shard a worker gets finishes: the workers do start
                seen.touch()
            elif not marker.exists():
                marker.write_text(" ".join(str(j.trial_id) for j in jobs))
                os._exit(1)  # as if killed (out of memory) in the middle of the shard
            elif always and int(marker.read_text().split()[0]) in [j.trial_id for j in jobs]:
                os._exit(1)
        return real(self, jobs, saved)
    return run


@pytest.mark.parametrize("always", [False, True])
def test_a_dead_worker_costs_its_shard_one_retry(tmp_path, monkeypatch, always):
    monkeypatch.setattr(ShardPlan, "min_shard", 1)  # every poll of two jobs or more uses the worker
    reference = nasforge.search(out=tmp_path / "ref", workers=2, **HB)
    monkeypatch.setattr(BatchRunner, "run", _dies(tmp_path / "died", always=always))
    study = nasforge.search(out=tmp_path / "cut", workers=2, **HB)
    victims = [int(t) for t in (tmp_path / "died").read_text().split()]
    assert victims
    if always:
        assert all(t.state.value == "failed" and "died twice" in t.error for t in study.trials if t.id in victims)
        assert sum(t.state.value != "failed" for t in study.trials) >= len(study.trials) - len(victims)  # nothing else lost
    else:
        assert [(t.arch, t.state, t.loss) for t in study.trials] == [(t.arch, t.state, t.loss) for t in reference.trials]


@pytest.mark.parametrize("executor", ["batched", "pool"])
def test_workers_that_cannot_start_give_a_clear_error(tmp_path, monkeypatch, executor):
    from nasforge.execution import pool

    monkeypatch.setattr(pool, "_init_worker", lambda *args: os._exit(1))  # reaches the workers by fork
    with pytest.raises(pool.ExecutorError, match="died before finishing any job.*__main__"):
        nasforge.search(out=tmp_path, budget=1, trials=8, workers=2, executor=executor)  # 8: a shard for the worker
