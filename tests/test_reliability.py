"""What a chaos campaign found: failures of user code, damaged input and crashes are recorded or
refused clearly, and never lose or overwrite what a study holds."""
from __future__ import annotations

import pytest
from torch import nn

import nasforge
from nasforge.store.sqlite import SQLiteStore
from nasforge.types import TrialState


def picky(arch, n_in=4, n_out=3):
    """Rejects some combinations while building (as a user's space may)."""
    width = arch.categorical("width", [4, 8, 16])
    depth = arch.categorical("depth", [1, 2, 3, 4])
    if width * depth > 40:
        raise ValueError(f"too big: {width} x {depth}")
    return nn.Sequential(nn.Linear(n_in, width), *[nn.Linear(width, width) for _ in range(depth - 1)], nn.Linear(width, n_out))


@pytest.mark.parametrize("strategy", ["grid", "random"])
def test_architectures_the_space_rejects_are_recorded_as_failed_trials(tmp_path, strategy):
    study = nasforge.search(picky, "none", strategy, evaluate=lambda m, d, b, s, arch: {"val_loss": arch["width"]},
                            budget=1, trials=12, out=tmp_path)
    failed = [t for t in study.trials if t.state is TrialState.FAILED]
    assert len(study.trials) == 12
    assert {(t.arch["width"], t.arch["depth"]) for t in failed} == {(16, 3), (16, 4)}
    assert all("ValueError: too big" in t.error for t in failed)


def cli(*args, cwd=None):
    """The installed `nasforge` command, as a user runs it (not `python -m`, which puts the
    current directory first on the import path itself)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    command = shutil.which("nasforge", path=str(Path(sys.executable).parent)) or shutil.which("nasforge")
    return subprocess.run([command, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def one_error_line(out) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.mark.parametrize("text, says", [
    ("trials: 5\ntrials: 7\n", "duplicate key 'trials'"),
    ("budget: 1:20\n", "budget"),                       # YAML 1.1 read this as 80
    ("seed: yes\n", "seed"),                            # YAML 1.1 read this as true, then 1
    ("trials: true\n", "trials"),
    ("budget: .inf\n", "finite"),
    ("workers: 1000000\n", "workers"),
    ("seed: -1\n", "seed"),
    ("strategy: {name: random, args: [1, 2]}\n", "args must be a mapping"),
    ("strategy: {name: grid, values: {depth: []}}\n", "non-empty list"),
    ("hardware: {input_shape: [-1]}\n", "input_shape"),
    ("evaluator: os:getcwd\ndataset: iris\n", "cannot be called as evaluate"),
    ("trainer: {device: cuda}\n", "no CUDA"),
    ("dataset: {name: iris, val_fraction: x}\n", "val_fraction"),
    ("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", "expands to more than"),
    ("trials: " + "9" * 5000 + "\n", "cannot read"),
])
def test_config_mistakes_exit_2_with_one_line_before_any_work(tmp_path, text, says):
    if "cuda" in text:
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    (tmp_path / "c.yaml").write_text(text)
    line = one_error_line(cli("search", tmp_path / "c.yaml", "--out", tmp_path / "out", "--quiet"))
    assert says in line and len(line) < 400
    assert not (tmp_path / "out" / "study.db").exists()


def test_csv_mistakes_name_the_file_and_what_is_wrong(tmp_path):
    cases = {"inf.csv": ("a,b,y\n1,inf,0\n2,3,1\n3,4,0\n5,6,1\n7,8,1\n", "holds inf in row 2"),
             "label.csv": ("y\n0\n1\n0\n1\n1\n", "no feature columns"),
             "one.csv": ("a,y\n1,0\n2,0\n3,0\n4,0\n5,0\n", "single class"),
             "latin.csv": (b"a,y\n1,\xff\n2,0\n3,1\n4,0\n5,1\n", "not UTF-8")}
    for name, (content, says) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        (tmp_path / "c.yaml").write_text(f"dataset: {{name: csv, path: {path}, label: y}}\ntrials: 1\nbudget: 1\n")
        assert says in one_error_line(cli("search", tmp_path / "c.yaml", "--out", tmp_path / name[:-4], "--quiet"))


def test_text_from_user_code_is_printed_never_obeyed(tmp_path):
    (tmp_path / "marked.py").write_text(
        "from torch import nn\n"
        "def space(arch, n_in, n_out):\n"
        "    arch.categorical('act', ['[/bold]', '\\x1b[31mred', '[red]x'])\n"
        "    return nn.Linear(n_in, n_out)\n"
        "def evaluate(model, data, budget, state, arch):\n"
        "    if arch['act'] == '[red]x':\n"
        "        raise RuntimeError('boom [/bold] \\x1b[2J')\n"
        "    return {'val_loss': 1.0}\n")
    (tmp_path / "c.yaml").write_text("space: marked:space\nevaluator: marked:evaluate\ndataset: iris\ntrials: 3\nbudget: 1\n")
    for args in (["search", "c.yaml", "--out", "out", "--quiet"], ["status", "out"]):
        out = cli(*args, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "\x1b[31m" not in out.stdout and "\x1b[2J" not in out.stdout
        assert "[/bold]" in out.stdout and "\\x1b[31mred" in out.stdout


def test_damaged_stores_are_named_and_what_can_be_read_is_shown(tmp_path):
    import sqlite3
    study = nasforge.search("mlp", "iris", budget=1, trials=3, out=tmp_path / "good")
    study.store.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "study.db").write_bytes(b"")
    assert "empty (0 bytes)" in one_error_line(cli("status", empty))
    assert (empty / "study.db").stat().st_size == 0  # not rewritten
    import shutil
    for name, sql, says in (("badjson", "UPDATE trials SET arch = '{bad' WHERE id = 1", "trial 1"),
                            ("badstate", "UPDATE trials SET state = 'zombie' WHERE id = 1", "zombie")):
        shutil.copytree(tmp_path / "good", tmp_path / name)
        with sqlite3.connect(tmp_path / name / "study.db") as con:
            con.execute(sql)
        out = cli("status", tmp_path / name)
        assert out.returncode == 0 and says in out.stdout.replace("\n", " ") and "2 trials" in out.stdout
        assert "damaged" in one_error_line(cli("resume", tmp_path / name, "--quiet"))
    shutil.copytree(tmp_path / "good", tmp_path / "badsched")
    with sqlite3.connect(tmp_path / "badsched" / "study.db") as con:
        con.execute("UPDATE meta SET value = '{\"x\": 1}' WHERE key = 'scheduler_state'")
    assert "search state" in one_error_line(cli("resume", tmp_path / "badsched", "--quiet"))


def test_out_pointing_at_someones_files_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("mine: true\n")
    assert "not empty" in one_error_line(cli("search", "--out", tmp_path, "--trials", "1", "--budget", "1", "--quiet"))
    assert (tmp_path / "config.yaml").read_text() == "mine: true\n"


def test_a_study_stopped_by_a_config_mistake_is_not_resumed_into_the_same_mistake(tmp_path):
    from nasforge.errors import ConfigError
    with pytest.raises(ConfigError):
        nasforge.search(picky, "none", evaluate=lambda m, d, b, s: {"acc": 1.0}, objective="val_loss", budget=1,
                        trials=3, out=tmp_path)
    with pytest.raises(ConfigError, match="stopped by a mistake in its config"):
        nasforge.resume(tmp_path, space=picky, evaluate=lambda m, d, b, s: {"acc": 1.0})
    assert SQLiteStore(tmp_path).count() == 1


def test_export_refuses_a_trial_without_trained_weights(tmp_path):
    from nasforge.errors import StoreError
    study = nasforge.search(picky, "iris", evaluate=lambda m, d, b, s: {"val_loss": 1.0}, budget=1, trials=1, out=tmp_path)
    with pytest.raises(StoreError, match="no trained weights"):
        study.best_model()


CRASHING_SPACE = """
import os
from torch import nn

class Crash(nn.Module):
    def forward(self, x):
        os._exit(7)  # as a segfault or the OOM killer would end the process

def space(arch, n_in, n_out):
    width = arch.categorical("width", [4, 8, 16])
    crash = [Crash()] if width == 8 else []
    return nn.Sequential(nn.Linear(n_in, width), *crash, nn.ReLU(), nn.Linear(width, n_out))
"""


@pytest.mark.parametrize("executor", ["pool", "serial"])
def test_a_trial_that_kills_its_process_fails_alone_and_the_search_goes_on(tmp_path, executor):
    (tmp_path / "crashing.py").write_text(CRASHING_SPACE)
    (tmp_path / "c.yaml").write_text(f"space: crashing:space\nstrategy: grid\ntrials: 3\nbudget: 1\nexecutor: {executor}\n"
                                     f"workers: {2 if executor == 'pool' else 1}\n")
    out = cli("search", "c.yaml", "--out", "s", "--quiet", cwd=tmp_path)
    if executor == "serial":  # the trial ran in the driver and took it down; resumed, it runs in a process of its own
        assert out.returncode == 7
        out = cli("resume", "s", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = {t.arch["width"]: t for t in SQLiteStore(tmp_path / "s").trials()}
    assert trials[8].state is TrialState.FAILED and "died twice" in trials[8].error
    assert trials[4].state is TrialState.COMPLETE and trials[16].state is TrialState.COMPLETE


def test_a_trial_past_the_timeout_fails_and_the_search_goes_on(tmp_path):
    import time

    def evaluate(model, data, budget, state, arch):
        if arch["width"] == 8:
            time.sleep(30)
        return {"val_loss": float(arch["width"])}

    def widths(arch):
        return nn.Linear(4, arch.categorical("width", [4, 8, 16]))

    study = nasforge.search(widths, "none", "grid", evaluate=evaluate, budget=1, trials=3, out=tmp_path,
                            executor="serial", trial_timeout=0.5)
    failed = [t for t in study.trials if t.state is TrialState.FAILED]
    assert len(failed) == 1 and "timeout of 0.5 s" in failed[0].error


def test_readers_never_fail_a_writer_nor_misreport_a_study_being_created(tmp_path):
    """`status` hammered from the moment a search starts: the search finishes, and status either
    reads the study or says it is not there yet / being created."""
    import subprocess
    import sys
    import time
    search = subprocess.Popen([sys.executable, "-m", "nasforge.cli", "search", "--out", str(tmp_path / "s"), "--trials", "6",
                               "--budget", "1", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said = set()
    while search.poll() is None:
        out = cli("status", tmp_path / "s", "--json")
        if out.returncode != 0:
            said.add(one_error_line(out).split(":")[2].strip()[:40] if "No study" not in out.stderr else "no study")
        time.sleep(0.01)
    assert search.returncode == 0, search.stderr.read()
    assert said <= {"no study", "the study in"}, said
    assert cli("status", tmp_path / "s").returncode == 0


def test_a_damaged_checkpoint_is_trained_again_like_a_lost_one(tmp_path):
    kw = dict(budget=4, trials=4, seed=2, executor="serial", scheduler={"name": "successive_halving", "n_configs": 4,
                                                                        "rungs": [2, 2], "eta": 2})
    reference = nasforge.search(out=tmp_path / "ref", **kw)

    class DamageCheckpoints:
        """After the first rung, every checkpoint on disk is overwritten with garbage."""

        def __init__(self):
            from nasforge.train.trainer import SupervisedTrainer
            self.trainer, self.calls = SupervisedTrainer(), 0

        def __call__(self, model, data, budget, state):
            self.calls += 1
            if self.calls == 5:
                for path in (tmp_path / "cut" / "checkpoints").glob("*.pt"):
                    path.write_bytes(b"not a checkpoint")
            return self.trainer(model, data, budget, state)

    study = nasforge.search(out=tmp_path / "cut", data="iris", evaluate=DamageCheckpoints(), **kw)
    assert [t.state for t in study.trials] == [t.state for t in reference.trials]
    assert all(t.error is None for t in study.trials)
    for a, b in zip(study.trials, reference.trials):
        assert a.loss == pytest.approx(b.loss, rel=1e-5)  # trained again from scratch to the same budget
        assert [p["epoch"] for p in study.store.curve(a.id)] == [p["epoch"] for p in reference.store.curve(b.id)]


def test_modules_beside_the_user_never_shadow_the_standard_library(tmp_path):
    """A sqlite3.py in the current directory or its parent does not run (it did during status)."""
    nasforge.search("mlp", "iris", budget=1, trials=1, out=tmp_path / "here" / "s")
    for folder in (tmp_path, tmp_path / "here"):
        (folder / "sqlite3.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\n")
    for args in (["status", "s"], ["report", "s"], ["search", "--out", "t", "--trials", "1", "--budget", "1", "--quiet"]):
        assert cli(*args, cwd=tmp_path / "here").returncode == 0
    assert not (tmp_path / "ran").exists()


def test_a_file_size_limit_is_one_line_and_leaves_no_half_written_checkpoint(tmp_path):
    import resource
    import subprocess
    import sys

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    out = subprocess.run([sys.executable, "-m", "nasforge.cli", "search", "--out", str(tmp_path / "s"), "--trials", "4",
                          "--budget", "2", "--quiet"], capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.returncode in (0, 2)
    assert not list((tmp_path / "s").rglob("*.tmp*"))


def test_the_best_trials_weights_are_on_disk_as_soon_as_they_complete(tmp_path):
    """The batched executor keeps checkpoints in memory for up to 30 s; a kill -9 then lost the
    best model's weights. Those of the kept best are written when the trial completes."""
    seen = []

    def check(study, trial):
        best = study.best
        if best is not None and best.checkpoint:
            seen.append((tmp_path / best.checkpoint).exists())

    nasforge.search("mlp", "iris", budget=2, trials=6, seed=1, out=tmp_path, executor="batched", on_trial_end=check)
    assert seen and all(seen)


def test_an_export_directory_describes_the_files_in_it_and_needs_no_data_for_a_state_dict(tmp_path):
    import json
    study = nasforge.search("mlp", "iris", budget=1, trials=2, out=tmp_path / "s")
    assert cli("export", tmp_path / "s", "--trial", "0").returncode == 0
    assert cli("export", tmp_path / "s", "--trial", "1", "--format", "torchscript").returncode == 0
    export = tmp_path / "s" / "export"
    assert sorted(p.name for p in export.iterdir()) == ["arch.json", "model.torchscript.pt"]
    assert json.loads((export / "arch.json").read_text())["trial"] == 1
    study.store.close()

    (tmp_path / "table.py").write_text(
        "from torch import nn\nfrom nasforge import EvalResult\n"
        "def space(arch):\n    return nn.Linear(2, arch.categorical('w', [1, 2]))\n"
        "def evaluate(model, data, budget, state, arch):\n"
        "    return EvalResult({'val_loss': arch['w']}, state={'model': model.state_dict()})\n")
    (tmp_path / "c.yaml").write_text("space: table:space\nevaluator: table:evaluate\ndataset: none\ntrials: 2\nbudget: 1\n")
    assert cli("search", "c.yaml", "--out", "t", "--quiet", cwd=tmp_path).returncode == 0
    assert cli("export", "t", cwd=tmp_path).returncode == 0
    assert "--format state_dict" in one_error_line(cli("export", "t", "--format", "torchscript", cwd=tmp_path))
