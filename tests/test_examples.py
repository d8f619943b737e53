"""The shipped example configs run as a user would run them."""
from __future__ import annotations

from pathlib import Path


from nasforge.api import create_study
from nasforge.config import load_config
from nasforge.schedulers.hyperband import hyperband_brackets
from nasforge.types import TrialState

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_every_example_parses():
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 3
    for file in files:
        load_config(file)


def test_chapter_successive_halving(tmp_path):
    study = create_study(load_config(EXAMPLES / "chapter_successive_halving.yaml"), tmp_path).run()
    assert len(study.trials) == 20
    assert sorted(len(t.rungs) for t in study.trials) == [1] * 10 + [2] * 5 + [3] * 5
    assert [r["budget"] for r in study.best.rungs] == [5, 10, 15]


def test_chapter_hyperband(tmp_path):
    study = create_study(load_config(EXAMPLES / "chapter_hyperband.yaml"), tmp_path).run()
    assert len(study.trials) == sum(n for n, _, _ in hyperband_brackets(30, 3)) == 49
    assert study.best.state is TrialState.COMPLETE and study.best.budget_used == 30


def test_chapter_bayesian_optimization(tmp_path):
    cfg = load_config(EXAMPLES / "chapter_bayesian_optimization.yaml", {"budget": 2})  # the search, on short training
    study = create_study(cfg, tmp_path).run()
    trials = study.trials
    assert len(trials) == 105
    keys = {str(sorted(t.arch.items())) for t in trials}
    assert len(keys) == 105  # BO never proposes an architecture twice
    state = study.store.get_meta("scheduler_state")["strategy"]["inner"]
    assert len(state["history"]) == 105


def test_pnas_example_grows_cells_on_real_digits(tmp_path):
    import yaml
    data = yaml.safe_load((EXAMPLES / "pnas_mnist5k.yaml").read_text())
    data["space"]["args"]["max_blocks"] = 2  # the first two steps, each cell trained on 40 % of an epoch's batches
    cfg = load_config(EXAMPLES / "pnas_mnist5k.yaml", {"space": data["space"], "budget": 0.4})
    study = create_study(cfg, tmp_path).run()
    trials = study.trials
    assert [t.arch["blocks"] for t in trials] == [1] * 36 + [2] * 6
    log = study.store.get_meta("search_log")
    assert [e["trained"] for e in log] == [36, 6] and set(log[1]["spearman"]) == {"lstm", "mlp"}
    assert study.best.metrics["val_accuracy"] > 0.25  # ten classes: learning, even in 25 steps
