"""ONNX export: one ``.onnx`` file whose batch dimension is dynamic, checked in onnxruntime against
the PyTorch model before it is kept.

The exporter is torch's ``torch.export``-based one (``dynamo=True``; it needs onnxscript). The older
TorchScript-based one (``dynamo=False``) cannot give every built-in space a dynamic batch:
enas_macro pools its skip connections to a size read from a tensor's shape, which that tracer
records as a computed value and then refuses ("adaptive pooling, since output_size is not
constant"); torch.export keeps such sizes as the plain ints they are. It is the slower of the two
(1 to 10 s per built-in model on one core), which an export can afford.

onnx, onnxscript and onnxruntime are optional (``pip install "nasforge[onnx]"``) and imported here
only, when an ONNX export is asked for.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from nasforge.errors import ExportError, MissingDependency

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the file format, torch's exporter, the check
MIN_TORCH = (2, 6)  # torch.onnx documents its torch.export-based exporter from 2.6 on (only 2.13 is tested here)
# Both runtimes compute in float32 with their own kernels, summation orders and fusions (the file has
# batch norm folded into the convolution before it): on the built-in spaces their outputs differ by
# up to 6e-6 of the largest output (random weights, 6 architectures a space; trained MnasNet models
# 3e-7). The mistranslations an exporter can make move them by far more: batch norm's eps 1e-3 for
# 1e-5, average pooling counting the padding, a ReLU6 for a ReLU gave 5e-2 to 1 on darts, enas_micro,
# mnas and nb201. 1e-4 sits 15x above the first and 500x below the second.
RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OnnxCheck:
    """The ONNX file's outputs against the PyTorch model's, on ``samples`` inputs."""

    max_abs_diff: float
    output_scale: float  # the largest |output| of the PyTorch model
    samples: int

    @property
    def tolerance(self) -> float:
        return RELATIVE_TOLERANCE * self.output_scale

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def require_onnx() -> None:
    """Raise :class:`MissingDependency` naming the first ONNX package that is not installed."""
    for name in ONNX_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise MissingDependency(f"ONNX export needs the package {name!r}, which is not installed; "
                                    f'install the ONNX extra: pip install "nasforge[onnx]"') from exc
    if tuple(int(p) for p in torch.__version__.split(".")[:2]) < MIN_TORCH:
        raise MissingDependency(f"ONNX export needs torch >= {'.'.join(map(str, MIN_TORCH))} (its torch.export-based "
                                f"exporter); this is torch {torch.__version__}")


def export_onnx(model: nn.Module, inputs: torch.Tensor, path: Path) -> OnnxCheck:
    """Write ``model`` (in eval mode, on the CPU) to ``path`` and check the file on ``inputs``
    (validation samples). A file whose outputs differ by more than the tolerance is removed and
    :class:`ExportError` raised: a wrong file is worse than none."""
    require_onnx()
    write_onnx(model, inputs, path)
    check = compare_onnx(path, model, inputs)
    if not math.isfinite(check.output_scale):
        path.unlink(missing_ok=True)
        raise ExportError("the model's outputs on the validation samples are not all finite, so the ONNX file "
                          "cannot be checked against them; no file was kept")
    if not check.ok:
        path.unlink(missing_ok=True)
        raise ExportError(f"the ONNX file computes something else than the model: outputs differ by up to "
                          f"{check.max_abs_diff:.3g} on {check.samples} validation samples, more than the tolerance "
                          f"{check.tolerance:.3g} ({RELATIVE_TOLERANCE:g} x the largest output {check.output_scale:.3g}); "
                          f"no file was kept. Export --format torchscript or state_dict instead")
    return check


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` to ``path`` as one file (no external weights: built-in models are far below
    protobuf's 2 GB), traced on ``example`` with the batch dimension dynamic."""
    # torch.export fixes a dimension traced at size 1 (broadcasting could depend on it): trace on two
    example = example[:2] if len(example) >= 2 else example.expand(2, *example.shape[1:])
    try:
        with _quiet_exporter():
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},),
                              input_names=["input"], output_names=["output"])
    except Exception as exc:  # noqa: BLE001 - the exporter's own errors are long: keep the cause's first line
        path.unlink(missing_ok=True)
        cause = exc.__cause__ or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        raise ExportError(f"torch.onnx.export could not export the model: {type(cause).__name__}: {first}; "
                          f"export --format torchscript or state_dict instead") from exc


def compare_onnx(path: Path, model: nn.Module, inputs: torch.Tensor) -> OnnxCheck:
    """Run the file in onnxruntime (CPU) and the model in PyTorch on ``inputs`` (a model whose
    outputs are not finite gives an ``output_scale`` of nan)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = inputs.detach().cpu().contiguous()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    return OnnxCheck(float(np.abs(got - want).max()), float(np.abs(want).max()), len(x))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter logs what it skips (torchvision's ops) and warns of its own deprecations: not the user's concern
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
