"""Built-in datasets by name, all offline: scikit-learn's bundled sets, MNIST-1D, mnist5k, CSV, npz."""
from __future__ import annotations

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
})


def load_dataset(spec: str | dict[str, Any] | Data) -> Data:
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
    try:
        return loader(**args)
    except TypeError as exc:
        import inspect
        allowed = [p for p in inspect.signature(loader).parameters]
        raise ConfigError(f"dataset {name!r}: {exc}; allowed arguments: {', '.join(allowed) or 'none'}") from exc
    except FileNotFoundError as exc:
        raise DataError(f"dataset {name!r}: file not found: {exc.filename or exc}") from exc
