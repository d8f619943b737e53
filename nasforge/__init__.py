"""nasforge: neural architecture search for your own data and constraints, on PyTorch."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["search", "resume", "Space", "Data", "EvalResult", "load_dataset", "load_exported", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import nasforge` stays cheap and the CLI starts fast.
    if name in ("search", "resume"):
        from nasforge import api
        return getattr(api, name)
    if name == "Space":
        from nasforge.space.space import Space
        return Space
    if name == "Data":
        from nasforge.train.data import Data
        return Data
    if name == "EvalResult":
        from nasforge.types import EvalResult
        return EvalResult
    if name == "load_dataset":
        from nasforge.datasets import load_dataset
        return load_dataset
    if name == "load_exported":
        from nasforge.report.export import load_exported
        return load_exported
    raise AttributeError(f"module 'nasforge' has no attribute {name!r}")
