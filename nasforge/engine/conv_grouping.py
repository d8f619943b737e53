"""Which NAS-RL CNN candidates of one conv key train together (placeholder: one group)."""
from __future__ import annotations

from nasforge.engine.conv_layout import ConvShape


def conv_groups(shapes: list[ConvShape], batch: int, max_group: int) -> list[list[int]]:
    return [list(range(s, min(s + max_group, len(shapes)))) for s in range(0, len(shapes), max_group)]
