from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import nasforge
from nasforge.cli import main

FAST = ["--trials", "4", "--budget", "3"]


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nasforge.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def status(directory: Path) -> dict:
    out = run("status", str(directory), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_default_search_status_and_export(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["search", "--out", str(out), *FAST, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Leaderboard" in printed and "best architecture" in printed
    st = status(out)
    assert len(st["trials"]) == 4 and st["counts"] == {"complete": 4}
    for t in st["trials"]:
        assert {"id", "state", "arch", "budget", "metrics"} <= set(t)
        assert {"val_loss", "val_accuracy"} <= set(t["metrics"]) and t["budget"] == 3
    assert st["best"]["metrics"]["val_loss"] == min(t["metrics"]["val_loss"] for t in st["trials"])
    assert (out / "config.yaml").exists()


@pytest.mark.parametrize("fmt", ["state_dict", "torchscript"])
def test_export_loads_back_and_predicts_the_same(tmp_path, fmt):
    import nasforge
    from nasforge.api import open_study
    from nasforge.results import load_trained_model
    study_dir = tmp_path / "s"
    assert main(["search", "--out", str(study_dir), *FAST, "--quiet"]) == 0
    assert main(["export", str(study_dir), "--format", fmt, "--out", str(tmp_path / "exp")]) == 0
    info = json.loads((tmp_path / "exp" / "arch.json").read_text())
    study = open_study(study_dir)
    assert info["arch"] == study.best.arch
    original = load_trained_model(study.space, study.directory, study.best)
    loaded = nasforge.load_exported(tmp_path / "exp")
    x = nasforge.load_dataset("iris").x_val
    with torch.no_grad():
        assert torch.allclose(original(x), loaded(x), atol=1e-6)


@pytest.mark.parametrize("config, message", [
    ("trails: 5\n", "unknown key 'trails'; allowed keys here: space, dataset, strategy"),
    ("trials: many\n", "trials: Input should be a valid integer"),
    ("trials: 0\n", "trials: Input should be greater than or equal to 1"),
    ("strategy: bayes-magic\n", "unknown strategy 'bayes-magic'; available: "),
    ("space: nope\n", "unknown space 'nope'; available: darts, enas_macro, enas_micro, mlp"),
    ("dataset: cifar\n", "unknown dataset 'cifar'; available: breast_cancer"),
    ("trainer: {lr: -1}\n", "trainer.lr: Input should be greater than 0"),
    ("trainer: {optimiser: adam}\n", "unknown key 'trainer.optimiser'; allowed keys here: optimizer, lr"),
    ("space: {name: mlp, args: {max_depht: 3}}\n", "no argument(s) max_depht; its arguments: n_in, n_out, max_depth"),
    ("strategy: {name: grid, args: {shufle: true}}\n", "strategy 'grid' has no argument(s) shufle; allowed: values, shuffle, max_size"),
    ("dataset: {name: csv, path: missing.csv, label: y}\n", "no file at 'missing.csv'"),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("a: [\n", "is not valid YAML"),
])
def test_bad_config_exits_2_with_one_clear_message(tmp_path, capsys, config, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config)
    assert main(["search", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nasforge: error:"), stderr
    assert message in lines[0], lines[0]


def test_bad_cli_input(tmp_path):
    assert run("search", str(tmp_path / "nope.yaml")).returncode == 2
    assert "config file not found" in run("search", str(tmp_path / "nope.yaml")).stderr
    out = run("search", "--strategy", "nope", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "unknown strategy 'nope'" in out.stderr
    out = run("status", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "No study at" in out.stderr
    assert run("resume", str(tmp_path / "nothing")).returncode == 2
    assert run("search", "--trials", "x").returncode == 2  # argparse


def test_listings():
    for cmd, expected in (("spaces", "mlp"), ("strategies", "random"), ("datasets", "mnist1d"), ("schedulers", "full")):
        out = run(cmd)
        assert out.returncode == 0 and expected in out.stdout


def test_custom_space_from_a_module_beside_the_config(tmp_path):
    (tmp_path / "myspaces.py").write_text(textwrap.dedent("""
        from torch import nn

        def two_layer(arch, n_in, n_out, max_units=32):
            units = arch.int("units", 4, max_units, log=True)
            act = arch.choice("act", {"relu": nn.ReLU, "tanh": nn.Tanh})
            return nn.Sequential(nn.Linear(n_in, units), act, nn.Linear(units, n_out))
    """))
    (tmp_path / "search.yaml").write_text(textwrap.dedent("""
        space: {name: "myspaces:two_layer", args: {max_units: 16}}
        dataset: wine
        trials: 3
        budget: 2
    """))
    out = run("search", "search.yaml", "--out", "study", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    st = status(tmp_path / "study")
    assert len(st["trials"]) == 3 and all(4 <= t["arch"]["units"] <= 16 for t in st["trials"])


def _completed(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'complete'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_with_two_workers_then_resume(tmp_path):
    args = ["--trials", "16", "--budget", "10", "--seed", "11", "--quiet"]
    ref = run("search", "--out", str(tmp_path / "ref"), *args, timeout=300)
    assert ref.returncode == 0, ref.stderr
    study = tmp_path / "killed"
    # the process pool, one job per worker, records trials one by one (a batched poll lands all at once)
    config = tmp_path / "pool.yaml"
    config.write_text((Path(nasforge.__file__).parent / "defaults" / "default.yaml").read_text() + "executor: pool\n")
    proc = subprocess.Popen([sys.executable, "-m", "nasforge.cli", "search", str(config), "--out", str(study), "--workers", "2", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _completed(study / "study.db") < 4 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t["id"]: t for t in status(study)["trials"] if t["state"] == "complete"}
    assert 4 <= len(before) < 16, "the kill should land mid-search"
    out = run("resume", str(study), "--quiet", timeout=300)
    assert out.returncode == 0, out.stderr
    after = status(study)
    assert len(after["trials"]) == 16 and after["counts"] == {"complete": 16}
    assert len({t["id"] for t in after["trials"]}) == 16
    by_id = {t["id"]: t for t in after["trials"]}
    for tid, t in before.items():  # nothing finished was lost or redone
        assert by_id[tid]["metrics"] == t["metrics"]
    reference = status(tmp_path / "ref")
    assert sorted(json.dumps(t["arch"], sort_keys=True) for t in after["trials"]) == \
        sorted(json.dumps(t["arch"], sort_keys=True) for t in reference["trials"])


def test_readme_custom_space_example_runs(tmp_path):
    """The README's 'Writing a search space' example, as a new user would copy it."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    python = readme.split("# myspaces.py\n", 1)[1].split("```", 1)[0]
    yaml_text = readme.split("# search.yaml (run: nasforge search search.yaml)\n", 1)[1].split("```", 1)[0]
    (tmp_path / "myspaces.py").write_text(python)
    (tmp_path / "search.yaml").write_text(yaml_text.replace("trials: 20", "trials: 3").replace("budget: 15", "budget: 2"))
    out = run("search", "search.yaml", "--out", "study", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = status(tmp_path / "study")["trials"]
    assert len(trials) == 3 and all(t["state"] == "complete" for t in trials)
    assert all(8 <= t["arch"]["units_0"] <= 64 for t in trials)


def test_only_the_best_checkpoints_stay_and_others_are_trained_again(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trials: 8\nbudget: 3\nkeep_checkpoints: 2\n")
    study_dir = tmp_path / "s"
    assert main(["search", str(cfg), "--out", str(study_dir), "--quiet"]) == 0
    assert len(list(study_dir.glob("checkpoints/*.pt"))) == 2
    trials = status(study_dir)["trials"]
    worst = max(trials, key=lambda t: t["loss"])
    assert main(["export", str(study_dir), "--trial", str(worst["id"]), "--out", str(tmp_path / "exp")]) == 0
    import nasforge
    model = nasforge.load_exported(tmp_path / "exp")
    data = nasforge.load_dataset("iris")
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(data.x_val), data.y_val).item()
    assert loss == pytest.approx(worst["loss"], rel=1e-3)  # trained again from its seed: the same model


def test_eta_is_the_average_pace_of_the_run():
    from nasforge.cli import eta_text
    assert eta_text(34.0, 32, 88) == "0:01:34"  # 32 trials in 34 s, 88 to go
    assert eta_text(3600.0, 1, 2) == "2:00:00"
    assert eta_text(5.0, 0, 10) == "-:--:--" and eta_text(5.0, 10, 0) == "0:00:00"
