"""ONNX export: every built-in space exports to a file that onnxruntime runs as PyTorch does, at any
batch size; the CLI writes it beside arch.json with the difference it measured."""
from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

import nasforge
from nasforge.cli import main
from nasforge.errors import ExportError, MissingDependency
from nasforge.report import onnx_export
from nasforge.report.onnx_export import ONNX_PACKAGES, export_onnx, require_onnx
from nasforge.space import Space
from nasforge.spaces import SPACES


@pytest.fixture(scope="module")
def digits():
    return nasforge.load_dataset("digits")  # 64 features: an MLP's input, an 8x8 image for the conv spaces


def build(name, data, seed=0):
    """A random architecture with random weights whose outputs depend on its inputs: batch norm's
    running statistics are measured on training inputs (left at 0 and 1, several deep spaces give
    nearly the same output for every input, which would make the comparison an empty one)."""
    space = Space(SPACES.get(name), data.context())
    torch.manual_seed(seed)
    model = space.build(space.sample(np.random.default_rng(seed)))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for x in data.x_train[:256].split(64):
            model(x)
    return model.eval()


def run(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.parametrize("name", SPACES.names())
def test_every_builtin_space_exports_a_file_that_computes_what_pytorch_does(name, digits, tmp_path):
    model = build(name, digits)
    path = tmp_path / "model.onnx"
    check = export_onnx(model, digits.x_val[:16], path)
    assert check.samples == 16 and check.ok, check
    for batch in (1, 5):  # neither the 2 it was traced on nor the 16 it was checked on
        x = digits.x_val[16:16 + batch]
        with torch.no_grad():
            want = model(x).numpy()
        got = run(path, x)
        assert got.shape == want.shape == (batch, 10)
        assert np.abs(got - want).max() <= check.tolerance


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    directory = tmp_path_factory.mktemp("onnx") / "study"
    assert main(["search", "--out", str(directory), "--trials", "2", "--budget", "1", "--quiet"]) == 0
    return directory


def test_cli_exports_onnx_beside_arch_json_with_the_difference_it_measured(study, tmp_path, capsys):
    from nasforge.api import open_study
    from nasforge.results import load_trained_model
    out = tmp_path / "exp"
    out.mkdir()
    (out / "model.pt").write_bytes(b"an earlier export")
    assert main(["export", str(study), "--format", "onnx", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "model.onnx"]
    info = json.loads((out / "arch.json").read_text())
    iris = nasforge.load_dataset("iris")
    assert info["format"] == "onnx" and info["onnx_check_samples"] == min(64, len(iris.x_val))
    assert 0 <= info["onnx_max_abs_diff"] <= info["onnx_tolerance"]
    printed = " ".join(capsys.readouterr().out.split())
    assert f"largest difference from PyTorch {info['onnx_max_abs_diff']:.2g}" in printed

    opened = open_study(study)
    trained = load_trained_model(opened.space, opened.directory, opened.best)
    with torch.no_grad():
        want = trained(iris.x_val).numpy()
    assert np.abs(run(out / "model.onnx", iris.x_val) - want).max() <= info["onnx_tolerance"]
    with pytest.raises(ValueError, match="onnxruntime.InferenceSession"):
        nasforge.load_exported(out)


@pytest.mark.parametrize("package", ONNX_PACKAGES)
def test_a_missing_package_is_named_with_the_extra_to_install(package, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    with pytest.raises(MissingDependency, match=f"'{package}', which is not installed; .*pip install \"nasforge\\[onnx\\]\""):
        require_onnx()


def test_the_cli_says_what_to_install_and_keeps_the_earlier_export(study, tmp_path, monkeypatch, capsys):
    out = tmp_path / "exp"
    assert main(["export", str(study), "--out", str(out)]) == 0
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["export", str(study), "--format", "onnx", "--out", str(out)]) == 2
    assert 'pip install "nasforge[onnx]"' in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "model.pt"]


def test_a_file_that_computes_something_else_is_refused_and_removed(digits, tmp_path, monkeypatch):
    other = build("mlp", digits, seed=1)  # the same space, other weights: what a mistranslation looks like
    real_write = onnx_export.write_onnx
    monkeypatch.setattr(onnx_export, "write_onnx", lambda model, example, path: real_write(other, example, path))
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="computes something else than the model: outputs differ by up to .* no file was kept"):
        export_onnx(build("mlp", digits), digits.x_val[:16], path)
    assert not path.exists()


def test_the_onnx_packages_are_imported_only_for_an_onnx_export():
    import subprocess
    code = ("import sys, nasforge.cli, nasforge.report.export; nasforge.cli._parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxscript', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
