"""Built-in search spaces, by name. A user space is any ``package.module:function``."""
from __future__ import annotations

from nasforge.registry import Registry

SPACES: Registry = Registry("space", {
    "mlp": "nasforge.spaces.mlp:mlp",
    "nb201": "nasforge.spaces.nb201:nb201",
})
