"""Values as stores keep them: plain JSON text, without NaN or infinities."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null. NumPy scalars (a strategy's ints) become Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(value: Any) -> str:
    try:  # the common case: plain JSON already; cleaning walks the whole value, so only on need
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError):
        return json.dumps(_clean(value), allow_nan=False, separators=(",", ":"))
