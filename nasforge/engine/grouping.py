"""Which MLP candidates train together as one stacked group.

A group pads each layer to its widest member and costs a fixed amount per step, so merging two
groups saves one fixed cost and pays for the padding (:func:`step_cost` prices both). Two
phases:

1. candidates of one depth, sorted by size, are cut into the contiguous runs that cost least
   in all (so candidates pad only to widths near their own where that pays);
2. whole groups of different depths merge, the pair that saves most first, while a merge saves.

Interleaved whole studies of the chapter's experiments (3 seeds, one core), time against the
grouping before depths could mix: BO 0.875 with these two phases, 0.89-0.91 with phase 1 alone,
0.92-0.98 when single candidates of other depths could join in phase 1; HB and SH between 0.90
and 1.08 for all three, within this machine's noise.
"""
from __future__ import annotations

from typing import Callable

from nasforge.engine.mlp_layout import MLPShape, step_cost


def mlp_groups(shapes: list[MLPShape], batch: int, max_group: int) -> list[list[int]]:
    """Indices of ``shapes`` (one input size) partitioned into groups of at most ``max_group``."""
    return merge_while_saving(_same_depth_groups(shapes, batch, max_group),
                              lambda members: step_cost([shapes[i] for i in members], batch), max_group)


def merge_while_saving(groups: list[list[int]], cost: Callable[[list[int]], float], max_group: int) -> list[list[int]]:
    """Merge whole groups, the pair whose merge saves most first (ties: the lowest indices), while
    a merge saves and the merged group holds at most ``max_group``; ``cost`` prices a group's step."""
    by_id = dict(enumerate(groups))
    costs = {g: cost(m) for g, m in by_id.items()}
    savings: dict[tuple[int, int], float] = {}  # (group, group) -> what merging them saves

    def price(a: int, b: int) -> None:
        if len(by_id[a]) + len(by_id[b]) <= max_group:
            savings[(a, b)] = costs[a] + costs[b] - cost(by_id[a] + by_id[b])

    keys = sorted(by_id)
    for n, a in enumerate(keys):
        for b in keys[n + 1:]:
            price(a, b)
    while savings:
        (a, b), best = max(savings.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        if best <= 0:
            break
        by_id[a] = by_id[a] + by_id.pop(b)
        costs[a] = cost(by_id[a])
        savings = {pair: v for pair, v in savings.items() if a not in pair and b not in pair}
        for other in by_id:
            if other != a:
                price(min(a, other), max(a, other))
    return list(by_id.values())


def _same_depth_groups(shapes: list[MLPShape], batch: int, max_group: int) -> list[list[int]]:
    """Per depth, candidates sorted by size cut into the contiguous runs of least total cost
    (dynamic programming over the cut points): narrow candidates group with narrow ones, so a
    group pads to widths near its own, wherever another group's fixed cost is the smaller price."""
    by_depth: dict[int, list[int]] = {}
    for i in sorted(range(len(shapes)), key=lambda i: (shapes[i].depth, shapes[i].flops)):
        by_depth.setdefault(shapes[i].depth, []).append(i)
    groups: list[list[int]] = []
    for order in by_depth.values():
        n = len(order)
        best = [0.0] + [float("inf")] * n  # best[j]: the least cost of the first j candidates
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(max(0, j - max_group), j):
                total = best[i] + step_cost([shapes[k] for k in order[i:j]], batch)
                if total < best[j]:
                    best[j], cut[j] = total, i
        runs = []
        j = n
        while j > 0:
            runs.append(order[cut[j]:j])
            j = cut[j]
        groups.extend(reversed(runs))
    return groups
