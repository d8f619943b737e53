"""Built-in search spaces, by name. A user space is any ``package.module:function``."""
from __future__ import annotations

from nasforge.registry import Registry

SPACES: Registry = Registry("space", {
    "mlp": "nasforge.spaces.mlp:mlp",
    "nb201": "nasforge.spaces.nb201:nb201",
    "nasrl": "nasforge.spaces.nasrl:nasrl_cnn",
    "mnas": "nasforge.spaces.mnas:mnas",
    "darts": "nasforge.spaces.darts:darts",
    "enas_macro": "nasforge.spaces.enas:enas_macro",
    "enas_micro": "nasforge.spaces.enas:enas_micro",
    "proxyless": "nasforge.spaces.proxyless:proxyless",
    "pnas": "nasforge.spaces.pnas:pnas",
})
