from __future__ import annotations

import base64
import html
import itertools
import json
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

import nasforge
from conftest import hard_latency_study
from nasforge.cli import main
from nasforge.errors import ConfigError
from nasforge.report.html import write_report
from nasforge.report.leaderboard import ranked
from nasforge.report.pareto import pareto_front, pareto_metrics, pareto_trials
from nasforge.store.sqlite import SQLiteStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- pareto_front: the pure function ---------------------------------------------------------------
@pytest.mark.parametrize("points, directions, expected", [
    ([], ["min", "min"], []),
    ([(3.0, 4.0)], ["min", "min"], [0]),
    # (2, 3) appears twice: equal points do not dominate each other, both stay; (3, 4) and (5, 5) are dominated
    ([(1, 5), (2, 3), (3, 4), (4, 1), (2, 3), (5, 5)], ["min", "min"], [0, 1, 3, 4]),
    # a tie in one objective: the point better in the other dominates
    ([(1, 3), (1, 2), (0, 9)], ["min", "min"], [1, 2]),
    # accuracy up, latency down
    ([(0.9, 10), (0.8, 5), (0.9, 12), (0.7, 5), (0.95, 20)], ["max", "min"], [0, 1, 4]),
    ([(0.9, 10), (0.8, 5), (0.9, 12), (0.7, 5), (0.95, 20)], ["min", "max"], [2, 3, 4]),
    ([(1, 1), (2, 2), (2, 1), (1, 2)], ["max", "max"], [1]),
    ([(1, 1), (2, 2), (2, 1), (1, 2)], ["min", "max"], [3]),
    # three objectives; numpy scalars are numbers too
    ([(1, 2, 3), (2, 1, 3), (2, 2, 3), (np.float64(1), np.int64(2), 2)], ["min", "min", "min"], [1, 3]),
])
def test_pareto_front_on_hand_made_points(points, directions, expected):
    assert pareto_front(points, directions) == expected


def _brute_force(points, directions):
    sign = [1 if d == "min" else -1 for d in directions]
    keys = [[s * v for s, v in zip(sign, p)] for p in points]

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
    return [i for i, k in enumerate(keys) if not any(dominates(o, k) for o in keys)]


@pytest.mark.parametrize("directions", list(itertools.product(["min", "max"], repeat=2)) + [("min", "max", "min")])
def test_pareto_front_matches_the_definition_on_random_points_with_ties(directions):
    rng = np.random.default_rng(7)
    for _ in range(30):
        points = [tuple(int(v) for v in row) for row in rng.integers(0, 6, size=(int(rng.integers(1, 40)), len(directions)))]
        assert pareto_front(points, directions) == _brute_force(points, directions)


@pytest.mark.parametrize("points, directions, message", [
    ([(1, 2)], ["min", "minimize"], "Invalid direction 'minimize'; allowed: 'min', 'max'"),
    ([(1, 2, 3)], ["min", "min"], "Invalid point 0: (1, 2, 3) has 3 values, directions has 2"),
    ([(1, 2), (math.nan, 1)], ["min", "min"], "Invalid point 1: (nan, 1); values must be finite numbers"),
])
def test_pareto_front_rejects_bad_input_naming_it(points, directions, message):
    with pytest.raises(ValueError) as err:
        pareto_front(points, directions)
    assert message in str(err.value)


# --- studies ----------------------------------------------------------------------------------------
def latency_eval(model, data, budget, state):
    """Fake but deterministic: a loss that falls and a latency that grows with the parameter count."""
    p = sum(x.numel() for x in model.parameters())
    return {"val_loss": 1.0 / (1 + math.log(p)) + (p % 7) / 20, "latency_ms": 0.01 * p ** 0.5 + (p % 5) / 10}


@pytest.fixture(scope="module")
def iris_study(tmp_path_factory):
    return nasforge.search(budget=2, trials=6, out=tmp_path_factory.mktemp("iris"))


@pytest.fixture(scope="module")
def latency_study(tmp_path_factory):
    return nasforge.search(data="iris", evaluate=latency_eval, budget=1, trials=20, seed=2, out=tmp_path_factory.mktemp("lat"))


def images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def table_ids(page: str, table_id: str) -> list[int]:
    table = re.search(rf'<table id="{table_id}">.*?</table>', page, re.DOTALL)
    assert table, f"no table {table_id}"
    return [int(i) for i in re.findall(r'<tr data-trial="(\d+)">', table.group(0))]


def test_report_of_a_real_study(iris_study):
    path = write_report(iris_study.directory)
    assert path == iris_study.directory / "report.html"
    page = path.read_text()
    trials = iris_study.store.trials()
    assert table_ids(page, "leaderboard") == [t.id for t in ranked(trials)][:20]
    pngs = images(page)
    assert len(pngs) >= 3  # trajectory, learning curves, Pareto front (val_loss vs params)
    assert all(p.startswith(PNG_SIGNATURE) for p in pngs)
    best = re.search(r'<pre id="best-arch">(.*?)</pre>', page, re.DOTALL)
    assert best and json.loads(html.unescape(best.group(1))) == iris_study.best.arch
    assert "val_loss (min)" in page and '"strategy": {' in html.unescape(page)  # the summary: objective and config
    front = pareto_trials(trials, ("val_loss", "params"), ("min", "min"))
    assert table_ids(page, "pareto-table") == [t.id for t in front]
    assert not re.search(r"<script|<link|(src|href)=\"(?!data:)", page)  # self-contained: nothing to fetch


def test_cli_report_prints_the_path(iris_study, tmp_path, capsys):
    assert main(["report", str(iris_study.directory)]) == 0
    assert capsys.readouterr().out.strip() == str(iris_study.directory / "report.html")
    out = tmp_path / "sub" / "r.html"
    assert main(["report", str(iris_study.directory), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.read_text().startswith("<!DOCTYPE html>")


def test_cli_report_of_a_missing_study_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "No study at" in capsys.readouterr().err


def test_status_json_lists_the_pareto_front(iris_study, capsys):
    assert main(["status", str(iris_study.directory), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    front = pareto_trials(iris_study.store.trials(), ("val_loss", "params"), ("min", "min"))
    assert st["pareto"] == [t.id for t in front] and front
    assert st["pareto_metrics"] == {"metrics": ["val_loss", "params"], "directions": ["min", "min"]}


def test_latency_metrics_make_the_pareto_front(latency_study):
    trials = latency_study.store.trials()
    assert pareto_metrics(trials, {"metric": "val_loss", "mode": "min"}) == (("val_loss", "latency_ms"), ("min", "min"))
    page = write_report(latency_study.directory).read_text()
    section = re.search(r'<section id="pareto">.*?</section>', page, re.DOTALL)
    assert section and "latency_ms" in section.group(0) and images(section.group(0))
    front = pareto_trials(trials, ("val_loss", "latency_ms"), ("min", "min"))
    assert 1 < len(front) < len(trials)
    assert table_ids(page, "pareto-table") == [t.id for t in front]


def test_the_study_meta_chooses_the_pareto_metrics(latency_study, tmp_path):
    import shutil
    directory = tmp_path / "copy"
    shutil.copytree(latency_study.directory, directory)
    store = SQLiteStore(directory, create=False)
    spec = {"metrics": ["latency_ms", "val_loss"], "directions": ["min", "max"]}
    store.set_meta("pareto", spec)
    trials = store.trials()
    store.close()
    page = write_report(directory).read_text()
    front = pareto_trials(trials, ("latency_ms", "val_loss"), ("min", "max"))
    assert table_ids(page, "pareto-table") == [t.id for t in front]
    with pytest.raises(ConfigError, match=r"meta 'pareto'.directions: \['min', 'up'\]"):
        pareto_metrics(trials, None, {"metrics": ["a", "b"], "directions": ["min", "up"]})


def test_no_pareto_section_without_a_second_metric(tmp_path):
    study = nasforge.search(data="iris", evaluate=lambda m, d, b, s: {"val_loss": 1.0 / sum(x.numel() for x in m.parameters())},
                            budget=1, trials=3, out=tmp_path)
    trials = study.store.trials()
    assert pareto_metrics(trials, {"metric": "val_loss", "mode": "min"}) is None
    page = write_report(tmp_path).read_text()
    assert 'id="pareto"' not in page and len(images(page)) == 1  # the trajectory only: no curves, no rungs
    assert main(["status", str(tmp_path), "--json"]) == 0


def test_multi_fidelity_study_gets_the_rung_view(tmp_path):
    study = nasforge.search("mlp", "iris", "random", "successive_halving", budget=4, trials=8, seed=1, out=tmp_path)
    assert len({r["budget"] for t in study.trials for r in t.rungs}) > 1
    page = write_report(tmp_path).read_text()
    assert "Multi-fidelity rungs" in page and len(images(page)) == 4


def tagged_space(arch, n_in, n_out):
    arch.categorical("tag", ["<script>alert(1)</script>", "a&b"])
    return nn.Linear(n_in, n_out)


def test_report_escapes_text_and_survives_a_study_without_results(tmp_path):
    def fail(model, data, budget, state):
        raise RuntimeError("<b>broken</b>")
    nasforge.search(tagged_space, "iris", evaluate=fail, budget=1, trials=2, out=tmp_path)
    page = write_report(tmp_path).read_text()
    assert "No trial succeeded" in page and not images(page)
    assert "<b>broken" not in page and "&lt;b&gt;broken&lt;/b&gt;" in page
    nasforge.search(tagged_space, "iris", evaluate=lambda m, d, b, s: {"val_loss": float(torch.rand(1))}, budget=1, trials=4,
                    out=tmp_path / "ok")
    page = write_report(tmp_path / "ok").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_constrained_study_plots_the_reward_it_ranks_by(tmp_path, monkeypatch):
    from nasforge.report import plots

    study = hard_latency_study(tmp_path)
    seen = {}
    real = plots.trajectory_png

    def spy(trials, metric, mode="min", value=None):
        seen.update(metric=metric, mode=mode, values={t.arch["width_0"]: value(t) for t in trials})
        return real(trials, metric, mode, value)

    monkeypatch.setattr(plots, "trajectory_png", spy)
    write_report(tmp_path)
    assert seen["mode"] == "max" and "latency_ms target 3" in seen["metric"]
    assert seen["values"][40] == pytest.approx(0.9 * (4.0 / 3.0) ** -1)  # over the target: penalised
    assert seen["values"][30] == pytest.approx(0.8)  # the best reward: under the target
    assert max(seen["values"], key=seen["values"].get) == study.best.arch["width_0"] == 30
