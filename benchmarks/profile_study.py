"""Where a study's time goes: tensor math against nasforge's own loop, store, strategy and space.

Runs one study (after a warm-up study, so one-off imports are not counted) under a sampling
profiler (pyinstrument, 1 ms; its overhead is small and even, unlike cProfile's per-call cost,
which inflates Python-heavy code) and sorts the time into categories by where the code runs.
A torch operator (a C call) counts as tensor math when it is called from torch or from
nasforge's trainers; called from elsewhere (the store's sqlite, a strategy's numpy) it counts
there. torch's own Python counts as tensor math only where training calls it: building a
model's layers (``nn.Module`` machinery, initialisers) counts where it is called from, the space
or the trainer. Needs ``pip install pyinstrument`` (part of the ``bench`` extra).

    python benchmarks/profile_study.py                       # the chapter's Hyperband experiment
    python benchmarks/profile_study.py examples/chapter_bayesian_optimization.yaml --tree
    python benchmarks/profile_study.py --groups              # also each stacked group's steps and arithmetic
    python benchmarks/profile_study.py examples/chapter_successive_halving.yaml --dataset mnist1d

The study runs in one process (``workers: 1``), at one thread.

``--groups`` runs the study once more, unprofiled, and lists every group the population trainer
trained: candidates, steps, time, and the arithmetic of its steps (6 x multiply-adds x batch per
step: forward and both backward products) as padded to the group's shapes and as the candidates
alone would need it. Their sums, against the rate batched products reach on this core, give the
study's arithmetic floor: how far the training is from being bound by arithmetic.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from nasforge.api import create_study
from nasforge.config import load_config

ROOT = Path(__file__).resolve().parent.parent

# (category, test on the function's file and name); the first match wins.
RULES: list[tuple[str, object]] = [
    ("checkpoints", lambda f, n: "serialization.py" in f or "_weights_only_unpickler" in f or "pickle" in n.lower()),
    ("store", lambda f, n: "nasforge/store/" in f or "/json/" in f or "sqlite3" in f),
    ("strategy", lambda f, n: "nasforge/strategies/" in f or "/sklearn/" in f or "/scipy/" in f or "/numpy/" in f),
    ("scheduler", lambda f, n: "nasforge/schedulers/" in f),
    ("space (build, canonicalise)", lambda f, n: "nasforge/space" in f),
    ("nasforge loop", lambda f, n: "nasforge/" in f),
]
TENSOR = {"tensor math"}  # "trainer" is the Python of nasforge's training loops around it


def _category(file: str, function: str) -> str:
    return next((c for c, rule in RULES if rule(file, function)), "other Python")  # type: ignore[operator]


MODULE_MACHINERY = ("/torch/nn/modules/", "/torch/nn/init.py", "/torch/nn/parameter.py")


def _torch_python(file: str, owner: str) -> str:
    """torch's own Python: tensor math where training calls it (functional wrappers, autograd
    modes); charged to its caller elsewhere (building a model in the space, the store's tensors),
    and nn.Module machinery (constructing layers, state dicts, attribute lookups) always is."""
    if any(part in file for part in MODULE_MACHINERY):
        return "trainer" if owner == "tensor math" else owner
    return "tensor math" if owner in ("tensor math", "trainer") else owner


def categorise(root) -> tuple[dict[str, float], float]:  # root: a pyinstrument frame
    shares: dict[str, float] = defaultdict(float)

    def walk(frame, owner: str) -> None:
        file = frame.file_path or ""
        if frame.function == "[self]" or not file:  # the caller's own time
            category = owner
        elif file == "<built-in>":  # a C call (a torch operator, sqlite, ...): charge it to its caller
            category = "tensor math" if owner in ("tensor math", "trainer") else owner
        elif "nasforge/train/" in file or "nasforge/engine/" in file:
            category = "trainer"
        elif "/torch/" in file and _category(file, frame.function) != "checkpoints":
            category = _torch_python(file, owner)
        else:
            category = _category(file, frame.function)
        own = frame.time - sum(child.time for child in frame.children)
        shares[category] += max(own, 0.0)
        for child in frame.children:
            walk(child, category)

    walk(root, "other Python")
    return dict(shares), root.time


@dataclass
class GroupRecord:
    candidates: int
    steps: int
    seconds: float
    padded_gflop: float
    own_gflop: float


def record_groups(config: Path, seed: int) -> list[GroupRecord]:
    """Run the study with the population trainer's group loop timed and sized."""
    from nasforge.engine import population

    records: list[GroupRecord] = []
    original = population._Loop.train

    def timed(loop: population._Loop) -> None:
        first = loop.cands[0].run.steps
        start = time.perf_counter()
        original(loop)
        seconds = time.perf_counter() - start
        steps = loop.cands[0].run.steps - first
        shapes = [c.shape for c in loop.cands]
        if any(shape is None for shape in shapes):  # a vmap group: identical candidates, no padding
            return
        per_step = 6 * loop.trainer.batch_size * steps / 1e9
        padded = loop.net.stack.layout.padded_macs * per_step  # type: ignore[attr-defined]  # an MLPNet's
        own = sum(s.flops for s in shapes) * per_step
        records.append(GroupRecord(len(loop.cands), steps, seconds, padded, own))

    population._Loop.train = timed  # type: ignore[method-assign]
    try:
        run(config, seed)
    finally:
        population._Loop.train = original  # type: ignore[method-assign]
    return records


def bmm_gflops(candidates: int = 20, batch: int = 32, width: int = 64, repeats: int = 300) -> float:
    """The rate of a batched product of a mid-sized group on this core (GFLOP/s)."""
    a, b = torch.randn(candidates, batch, width), torch.randn(candidates, width, width)
    for _ in range(30):
        torch.bmm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.bmm(a, b)
    return 2 * candidates * batch * width * width * repeats / (time.perf_counter() - start) / 1e9


def print_groups(records: list[GroupRecord]) -> None:
    if not records:
        print("\nno stacked MLP groups: this study trained its candidates one by one (or under vmap)")
        return
    print(f"\n{'candidates':>10} {'steps':>6} {'ms':>8} {'padded GFLOP':>13} {'own GFLOP':>10}")
    for r in records:
        print(f"{r.candidates:>10} {r.steps:>6} {r.seconds * 1e3:>8.1f} {r.padded_gflop:>13.3f} {r.own_gflop:>10.3f}")
    seconds = sum(r.seconds for r in records)
    padded, own = sum(r.padded_gflop for r in records), sum(r.own_gflop for r in records)
    rate = bmm_gflops()
    print(f"{len(records)} groups, {sum(r.steps for r in records)} group steps, {seconds * 1e3:.0f} ms training "
          f"(validation included); arithmetic {padded:.2f} GFLOP padded, {own:.2f} of the candidates' own")
    print(f"at {rate:.0f} GFLOP/s (bmm of 20 x (32 x 64) @ (64 x 64) here): {padded / rate * 1e3:.0f} ms padded, "
          f"{own / rate * 1e3:.0f} ms own: the training runs at {padded / seconds:.1f} GFLOP/s padded")


OVERRIDES: dict = {"workers": 1}  # one process: the profiler sees only this one


def run(config: Path, seed: int) -> None:
    cfg = load_config(config, {**OVERRIDES, "seed": seed})
    with tempfile.TemporaryDirectory() as tmp:
        create_study(cfg, Path(tmp) / "study").run()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default=str(ROOT / "examples" / "chapter_hyperband.yaml"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tree", action="store_true", help="also print the profiler's call tree")
    p.add_argument("--groups", action="store_true", help="also list the stacked groups and their arithmetic")
    p.add_argument("--dataset", default=None, help="another dataset than the config's (e.g. digits, mnist1d)")
    args = p.parse_args()
    if args.dataset:
        OVERRIDES["dataset"] = args.dataset
    torch.set_num_threads(1)
    run(Path(args.config), 0)  # warm-up: imports, first-call costs
    start = time.perf_counter()
    run(Path(args.config), args.seed)
    plain = time.perf_counter() - start
    from pyinstrument import Profiler
    profiler = Profiler(interval=0.001)
    profiler.start()
    run(Path(args.config), args.seed)
    session = profiler.stop()
    shares, total = categorise(session.root_frame())
    print(f"{Path(args.config).name}: {plain:.2f} s without the profiler, {total:.2f} s profiled")
    for category, seconds in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {category:<30} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")
    own = sum(v for k, v in shares.items() if k not in TENSOR)
    print(f"  {'=> not tensor math':<30} {own:7.3f} s  {100 * own / total:5.1f} %")
    if args.tree:
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    if args.groups:
        print_groups(record_groups(Path(args.config), args.seed))


if __name__ == "__main__":
    main()
