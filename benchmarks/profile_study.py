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
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
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
        elif "nasforge/train/" in file:
            category = "trainer"
        elif "/torch/" in file and not _category(file, frame.function) == "checkpoints":
            category = _torch_python(file, owner)
        else:
            category = _category(file, frame.function)
        own = frame.time - sum(child.time for child in frame.children)
        shares[category] += max(own, 0.0)
        for child in frame.children:
            walk(child, category)

    walk(root, "other Python")
    return dict(shares), root.time


def run(config: Path, seed: int) -> None:
    cfg = load_config(config, {"seed": seed})
    with tempfile.TemporaryDirectory() as tmp:
        create_study(cfg, Path(tmp) / "study").run()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default=str(ROOT / "examples" / "chapter_hyperband.yaml"))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tree", action="store_true", help="also print the profiler's call tree")
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
