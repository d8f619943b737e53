"""A user's own data from a CSV file (a named label column) or an .npz file (arrays x and y)."""
from __future__ import annotations

import csv as csvlib
import zipfile
from pathlib import Path

import numpy as np

from nasforge.datasets.splits import scale, split
from nasforge.errors import ConfigError, DataError
from nasforge.train.data import TASKS, Data

_MAX_CLASSES = 100


def _infer_task(y: np.ndarray, task: str) -> str:
    if task != "auto":
        if task not in TASKS:
            raise ConfigError(f"Invalid task {task!r}; allowed: auto, {', '.join(TASKS)}")
        return task
    if y.dtype.kind in "OUSb":
        return "classification"
    integral = np.all(np.mod(y, 1) == 0)
    return "classification" if integral and len(np.unique(y)) <= _MAX_CLASSES else "regression"


def _class_codes(*ys: np.ndarray | None) -> list[np.ndarray | None]:
    """Map class labels (any values) to 0..n-1 consistently across splits."""
    present = [y for y in ys if y is not None]
    classes = np.unique(np.concatenate([np.asarray(y).astype(str) if y.dtype.kind in "OUS" else y for y in present]))
    return [None if y is None else np.searchsorted(classes, y.astype(classes.dtype)).astype(np.int64) for y in ys]


def csv(path: str, label: str, task: str = "auto", val_fraction: float = 0.33, seed: int = 42,
        scaling: str = "minmax", stratify: bool = False) -> Data:
    """A CSV file with a header row; ``label`` names the target column, every other column must be numeric."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"dataset 'csv': no file at {str(file)!r}")
    with file.open(newline="", encoding="utf-8-sig") as fh:  # -sig: drop a spreadsheet's byte-order mark
        reader = csvlib.reader(fh)
        header = next(reader, None)
        rows = [row for row in reader if row]
    if not header:
        raise DataError(f"{file}: the CSV file is empty; it needs a header row naming the columns")
    header = [h.strip() for h in header]
    if label not in header:
        raise DataError(f"{file}: no label column {label!r}; columns: {', '.join(header)}")
    bad = [i + 2 for i, row in enumerate(rows) if len(row) != len(header)]
    if bad:
        raise DataError(f"{file}: row(s) {bad[:5]} have a different number of fields than the header ({len(header)})")
    if len(rows) < 4:
        raise DataError(f"{file}: only {len(rows)} data rows; need at least 4 to split train and validation")
    li = header.index(label)
    features = [i for i in range(len(header)) if i != li]
    if not features:
        raise DataError(f"{file}: no feature columns besides the label {label!r}")
    x = np.empty((len(rows), len(features)), dtype=np.float64)
    for j, col in enumerate(features):
        try:
            x[:, j] = [float(row[col]) for row in rows]
        except ValueError:
            raise DataError(f"{file}: feature column {header[col]!r} is not numeric; nasforge reads numeric features (encode it first)") from None
        infinite = np.flatnonzero(~np.isfinite(x[:, j]))
        if len(infinite):
            raise DataError(f"{file}: feature column {header[col]!r} holds {x[infinite[0], j]} in row {infinite[0] + 2}; "
                            f"features must be finite numbers")
    y_raw = np.array([row[li].strip() for row in rows], dtype=object)
    blank = [i + 2 for i, value in enumerate(y_raw) if not value]
    if blank:
        raise DataError(f"{file}: label column {label!r} is empty in row(s) {blank[:5]}; every row needs a label")
    try:
        y_num = y_raw.astype(np.float64)
    except ValueError:
        y_num = None
    kind = _infer_task(y_num if y_num is not None else y_raw, task)
    if kind == "regression" and y_num is None:
        raise DataError(f"{file}: label column {label!r} holds text, but regression targets must be numbers")
    y = y_num if y_num is not None else y_raw.astype(str)
    if kind == "classification" and len(np.unique(y)) < 2:
        raise DataError(f"{file}: label column {label!r} holds a single class ({str(y[0])!r}); classification needs two or more")
    return _finish(file.stem, kind, x, y, val_fraction, seed, scaling, stratify)


def npz(path: str, task: str = "auto", val_fraction: float = 0.33, seed: int = 42, scaling: str = "none",
        stratify: bool = False) -> Data:
    """An .npz file with arrays ``x`` and ``y`` (optionally ``x_val``/``y_val`` and ``x_test``/``y_test``)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"dataset 'npz': no file at {str(file)!r}")
    arrays: dict[str, np.ndarray] | None = None
    try:
        loaded = np.load(file, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{file}: cannot read as an .npz archive (pickles are not loaded): {exc}") from exc
    if arrays is None:  # np.load gave one .npy array, whatever the file is called
        raise DataError(f"{file}: holds a single array, not an .npz archive of named arrays x and y "
                        "(save with numpy.savez(path, x=..., y=...))")
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"{file}: missing array(s) {', '.join(missing)}; found: {', '.join(arrays)}; needs x and y (optionally x_val, y_val, x_test, y_test)")
    for a, b in (("x_val", "y_val"), ("y_val", "x_val"), ("x_test", "y_test"), ("y_test", "x_test")):
        if a in arrays and b not in arrays:
            raise DataError(f"{file}: has {a} but no {b}; give both or neither")
    kind = _infer_task(arrays["y"], task)
    if "x_val" in arrays:
        x_tr, x_va, y_tr, y_va = arrays["x"], arrays["x_val"], arrays["y"], arrays["y_val"]
        y_te = arrays.get("y_test")
        if kind == "classification":
            y_tr, y_va, y_te = _class_codes(y_tr, y_va, y_te)
        x_tr, x_va, x_te = scale(x_tr.astype(np.float64), x_va.astype(np.float64), arrays.get("x_test"), method=scaling)
        return Data(file.stem, kind, x_tr, y_tr, x_va, y_va, x_te, y_te)
    return _finish(file.stem, kind, arrays["x"].astype(np.float64), arrays["y"], val_fraction, seed, scaling, stratify,
                   arrays.get("x_test"), arrays.get("y_test"))


def from_arrays(x: np.ndarray, y: np.ndarray, *, task: str = "auto", val_fraction: float = 0.33, seed: int = 42,
                scaling: str = "minmax", name: str = "arrays", stratify: bool = False) -> Data:
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} rows but y has {len(y)}")
    return _finish(name, _infer_task(y, task), x.astype(np.float64), y, val_fraction, seed, scaling, stratify)


def _finish(name: str, task: str, x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, scaling: str,
            stratify: bool, x_test: np.ndarray | None = None, y_test: np.ndarray | None = None) -> Data:
    if task == "classification":
        y, y_test = _class_codes(y, y_test)
    x_tr, x_va, y_tr, y_va = split(x, y, val_fraction, seed, stratify and task == "classification")
    x_tr, x_va, x_te = scale(x_tr, x_va, None if x_test is None else x_test.astype(np.float64), method=scaling)
    return Data(name, task, x_tr, y_tr, x_va, y_va, x_te, y_test)
