"""workers: auto and trainer.threads: what is chosen, what is refused, what the user is told."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import nasforge
from nasforge.api import resolve_workers, usable_cores
from nasforge.config import parse_config
from nasforge.errors import ConfigError
from nasforge.train.evaluator import as_eval_result


def test_auto_fills_the_cores_with_workers_of_trainer_threads_each():
    cores = usable_cores()
    assert resolve_workers("auto", "batched") == cores
    assert resolve_workers("auto", "batched", threads=cores) == 1
    assert resolve_workers("auto", "pool", threads=2) == max(1, cores // 2)
    assert resolve_workers("auto", "serial") == 1
    assert resolve_workers(3, "serial") == 3


@pytest.mark.parametrize("bad", [0, 257, "many", [2], True])
def test_a_bad_workers_value_says_what_is_allowed(bad):
    with pytest.raises(ConfigError, match=r"workers: .*an int from 1 to 256, or auto"):
        parse_config({"workers": bad})


def test_training_runs_at_trainer_threads_and_restores_the_callers_count(tmp_path):
    before = torch.get_num_threads()
    seen = []
    original = torch.set_num_threads

    def spy(n):
        seen.append(n)
        original(n)

    torch.set_num_threads = spy
    try:
        nasforge.search("mlp", "iris", trials=2, budget=1, out=tmp_path / "s", workers=1, store="memory")
    finally:
        torch.set_num_threads = original
    assert 1 in seen or before == 1  # trained at one thread (no call needed if already there)
    assert torch.get_num_threads() == before


def test_the_progress_line_says_how_training_runs_and_a_failed_study_exits_1(tmp_path):
    config = tmp_path / "fails.yaml"
    config.write_text("space: mlp\ndataset: iris\ntrials: 2\nbudget: 1\nevaluator: fails_eval:evaluate\n")
    (tmp_path / "fails_eval.py").write_text("def evaluate(model, data, budget, state):\n    raise RuntimeError('no')\n")
    out = subprocess.run([sys.executable, "-m", "nasforge.cli", "search", str(config), "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "training: serial, 1 worker x 1 thread" in out.stdout
    assert "no trial succeeded" in out.stdout


def test_a_curve_that_is_not_a_list_is_named():
    with pytest.raises(TypeError, match="EvalResult.curve must be a list"):
        as_eval_result(nasforge.EvalResult({"val_loss": 1.0}, None, None))  # type: ignore[arg-type]
