"""Export a trained model: state dict + architecture JSON, TorchScript, or ONNX."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasforge.errors import ConfigError, SpaceError
from nasforge.report.formats import EXPORT_FILES, FORMATS
from nasforge.space.space import Space
from nasforge.store.base import Trial

__all__ = ["FORMATS", "export_model", "load_exported"]


def export_model(model: nn.Module, space: Space, trial: Trial, example: torch.Tensor | None, out: Path, fmt: str,
                 space_name: str) -> list[Path]:
    """Write the model in ``fmt`` plus ``arch.json`` (architecture, space, context, metrics).
    ``example`` (validation inputs from the dataset) is needed to trace TorchScript and to export
    and check ONNX (its largest difference from PyTorch on them goes into ``arch.json``), not for a
    state dict. A directory holds one export: the other formats' files, from an earlier export, are
    removed, and so is ``arch.json`` until the new one describes the new file."""
    if fmt not in FORMATS:
        raise ConfigError(f"Invalid export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if example is None and fmt != "state_dict":
        raise ConfigError(f"export format {fmt!r} needs example inputs from the dataset, and the study has none; "
                          f"use --format state_dict")
    if fmt == "onnx":
        from nasforge.report.onnx_export import require_onnx
        require_onnx()  # before an earlier export in ``out`` is removed
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    info = {"trial": trial.id, "arch": trial.arch, "space": space_name, "context": _jsonable(space.context),
            "metrics": trial.metrics, "input_shape": None if example is None else list(example.shape[1:]), "format": fmt}
    path = out / EXPORT_FILES[fmt]
    arch_file = out / "arch.json"
    for other in (set(EXPORT_FILES.values()) - {EXPORT_FILES[fmt]}) | {arch_file.name}:
        (out / other).unlink(missing_ok=True)
    if fmt == "state_dict":
        torch.save(model.state_dict(), path)
    elif fmt == "onnx":
        from nasforge.report.onnx_export import export_onnx
        check = export_onnx(model, example, path)  # type: ignore[arg-type]
        info.update(onnx_max_abs_diff=check.max_abs_diff, onnx_tolerance=check.tolerance, onnx_check_samples=check.samples)
    else:
        with torch.no_grad():
            scripted = _torchscript(model, example)  # type: ignore[arg-type]
        scripted.save(str(path))
    # last: it describes the files beside it
    arch_file.write_text(json.dumps(info, indent=2))
    return [path, arch_file]


def _torchscript(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    # TorchScript is deprecated upstream but still what many deployments load; asked for by name.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.script(model)
        except Exception:  # noqa: BLE001 - not scriptable (dynamic Python): trace with an example input
            return torch.jit.trace(model, example)


def _jsonable(context: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in context.items()
            if isinstance(v, (int, float, str, bool, list, tuple, type(None)))}


def load_exported(directory: str | Path, space_fn: Any = None) -> nn.Module:
    """Load an export back: TorchScript directly, a state dict by rebuilding the space."""
    directory = Path(directory)
    info = json.loads((directory / "arch.json").read_text())
    if info["format"] == "onnx":
        raise ConfigError(f"{directory} holds an ONNX export, which runs in an ONNX runtime, not as a torch module: "
                          f"onnxruntime.InferenceSession({str(directory / EXPORT_FILES['onnx'])!r})")
    if info["format"] == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(directory / EXPORT_FILES["torchscript"]))
    if space_fn is None:
        from nasforge.spaces import SPACES
        try:
            space_fn = SPACES.get(info["space"])
        except ConfigError as exc:
            raise SpaceError(f"cannot rebuild space {info['space']!r}: pass space_fn= ({exc})") from exc
    context = {k: tuple(v) if k == "input_shape" else v for k, v in info["context"].items()}
    model = Space(space_fn, context).build(info["arch"])
    model.load_state_dict(torch.load(directory / EXPORT_FILES["state_dict"], map_location="cpu", weights_only=True))
    return model.eval()
