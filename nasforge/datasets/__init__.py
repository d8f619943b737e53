"""Built-in datasets by name, all offline: scikit-learn's bundled sets, MNIST-1D, mnist5k, CSV, npz."""
from __future__ import annotations

import inspect
from typing import Any

from nasforge.errors import ConfigError, DataError
from nasforge.registry import Registry
from nasforge.train.data import Data

DATASETS: Registry = Registry("dataset", {
    "iris": "nasforge.datasets.tabular:iris",
    "digits": "nasforge.datasets.tabular:digits",
    "wine": "nasforge.datasets.tabular:wine",
    "breast_cancer": "nasforge.datasets.tabular:breast_cancer",
    "diabetes": "nasforge.datasets.tabular:diabetes",
    "mnist1d": "nasforge.datasets.images:mnist1d",
    "mnist5k": "nasforge.datasets.images:mnist5k",
    "csv": "nasforge.datasets.files:csv",
    "npz": "nasforge.datasets.files:npz",
    "none": "nasforge.datasets:no_data",
})


def no_data() -> None:
    """No dataset: for evaluators that bring their own (tabular benchmarks such as NAS-Bench-201)."""
    return None


def load_dataset(spec: str | dict[str, Any] | Data) -> Data | None:
    """``"iris"``, ``{"name": "csv", "path": "f.csv", "label": "y"}`` or a ready :class:`Data`."""
    if isinstance(spec, Data):
        return spec
    if isinstance(spec, str):
        name, args = spec, {}
    elif isinstance(spec, dict) and "name" in spec:
        args = dict(spec)
        name = args.pop("name")
        args.update(args.pop("args", {}) or {})
    else:
        raise ConfigError(f"A dataset is a name or a mapping with 'name'; got {spec!r}")
    loader = DATASETS.get(name)
    _check_args(name, loader, args)
    try:
        return loader(**args)
    except FileNotFoundError as exc:
        raise DataError(f"dataset {name!r}: file not found: {exc.filename or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"dataset {name!r}: the file is not UTF-8 text (byte {exc.start})") from exc
    except (ConfigError, DataError):
        raise
    except (ValueError, TypeError, OSError) as exc:  # what a loader or the libraries under it say of bad input
        raise DataError(f"dataset {name!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def _check_args(name: str, loader: Any, args: dict[str, Any]) -> None:
    """Check the arguments before the call, so a TypeError raised inside a loader is not blamed on them."""
    try:
        signature = inspect.signature(loader)
    except (TypeError, ValueError):  # not introspectable (a builtin): let the call itself complain
        return
    try:
        signature.bind(**args)
    except TypeError as exc:
        allowed = list(signature.parameters)
        raise ConfigError(f"dataset {name!r}: {exc}; allowed arguments: {', '.join(allowed) or 'none'}") from exc
