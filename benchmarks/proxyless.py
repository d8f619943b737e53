"""ProxylessNAS on mnist5k: memory, the latency table and predictor, latency targets, quality.

    python benchmarks/proxyless.py memory     # a supernet step's memory: binary gates against DARTS
    python benchmarks/proxyless.py latency    # table sum and learned predictor against end-to-end latency
    python benchmarks/proxyless.py targets    # three targets: ProxylessNAS vs MNAS/PPO vs random

``memory``: the ProxylessNAS space as one supernet, batch 128; per step, parameters with their
gradients and the activations autograd saves for backward, for a DARTS step (every path, softmax
mixed), a ProxylessNAS weight step (one sampled path) and architecture step (two paths, gated).

``latency``: ``--samples`` random architectures of the space, each built and measured end to end
(batch 1, one thread, the undisturbed floor); against each, the table's sum (fixed part + every
chosen op timed alone); and a gradient-boosting predictor trained on three quarters of them, its
MAPE on the held-out quarter.

``targets``: for each target, ProxylessNAS (the derived network retrained for ``--budget`` epochs
and measured end to end; ``--seeds`` search seeds at the middle target, the first elsewhere) and
an MNAS search with PPO over the same space (``--ppo-trials`` trials of ``--budget`` epochs, every
model measured, MnasNet's hard reward at the target), each with its wall time; and ``--random``
random architectures of the space whose measured latency meets the middle target, trained and
measured alike: their mean accuracy. At the end every compared network is measured again, all
together in five interleaved passes (the best of each): what the latency columns compare.

Threads: ``torch.set_num_threads(--threads)`` (default 2; latency is always timed on one thread).
Run nothing beside it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nasforge
from nasforge.datasets import load_dataset

HARDWARE = {"batch_size": 1, "threads": 1, "repeats": 30, "min_seconds": 1.0}
TRAINER = {"optimizer": "adam", "lr": 0.003, "batch_size": 64}
SEARCH = {"epochs": 5, "warmup": 1, "batch_size": 64, "alpha_lr": 0.03, "latency_weight": 0.5,
          "latency_form": "mul", "latency_kind": "hard"}


def memory(args: argparse.Namespace, scratch: Path) -> None:
    from oneshot import _step_memory as step_memory  # parameters + gradients, activations saved for backward
    from nasforge.oneshot.darts import Darts
    from nasforge.oneshot.loop import build_supernet
    from nasforge.oneshot.proxyless import ProxylessNas
    from nasforge.space.space import Space
    from nasforge.spaces.proxyless import proxyless
    data = load_dataset("mnist5k")
    x, y = data.x_train[:128], data.y_train[:128]
    space = Space(proxyless, data.context())
    rows = []
    for name, method, mode in (("DARTS (every path)", Darts(), None), ("Proxyless weight step (1 path)", ProxylessNas(), "path"),
                               ("Proxyless arch step (2 paths)", ProxylessNas(), "gates")):
        torch.manual_seed(0)
        net, arch = build_supernet(space, method)
        method.setup(net, dict(arch.searched), torch.Generator().manual_seed(0))
        if mode:
            method.mixer.resample(mode, torch.Generator().manual_seed(0))
        rows.append((name, *step_memory(net, x, y)))
    child = space.build(space.sample(np.random.default_rng(0)))
    rows.append(("a child network", *step_memory(child, x, y)))
    darts_acts = rows[0][2]
    print("one step, batch 128 (MiB): parameters + gradients, activations saved for backward; activations / DARTS's")
    for name, p, a in rows:
        print(f"{name:32} {p / 2**20:8.2f} {a / 2**20:10.2f} {a / darts_acts:8.3f}")
    print(f"candidates per layer N: 6 or 7 (1/N = {1 / 7:.3f}-{1 / 6:.3f})")


def latency(args: argparse.Namespace, scratch: Path) -> None:
    from nasforge.hardware.cache import LatencyCache
    from nasforge.hardware.predictor import fit_predictor, measure_architectures
    from nasforge.hardware.table import measure_table
    from nasforge.oneshot.loop import build_supernet
    from nasforge.oneshot.proxyless import ProxylessNas
    from nasforge.space.space import Space
    from nasforge.spaces.proxyless import proxyless
    data = load_dataset("mnist5k")
    space = Space(proxyless, data.context(), name="proxyless")
    started = time.perf_counter()
    method = ProxylessNas()
    net, arch = build_supernet(space, method)
    method.setup(net, dict(arch.searched), torch.Generator().manual_seed(0))
    table = measure_table(net, data.input_shape, cache=LatencyCache(scratch / "ops.json"))
    print(f"table: {sum(len(e.ms) for e in table.entries)} op entries + fixed {table.fixed_ms:.3f} ms, "
          f"measured in {time.perf_counter() - started:.0f}s; span {table.span()[0]:.2f}-{table.span()[1]:.2f} ms")
    started = time.perf_counter()
    options = {**HARDWARE, "min_seconds": 0.5}
    measured = measure_architectures(space, args.samples, data.input_shape, seed=args.seed, passes=3, **options)
    print(f"{len(measured)} architectures measured end to end (best of 3 passes) in {time.perf_counter() - started:.0f}s")
    end_to_end = np.array([ms for _, _, ms in measured])
    summed = np.array([table.latency_ms(a) for a, _, _ in measured])
    ratio = summed / end_to_end
    print(f"end to end: {end_to_end.min():.2f}-{end_to_end.max():.2f} ms; table sum / end to end: mean {ratio.mean():.3f}, "
          f"min {ratio.min():.3f}, max {ratio.max():.3f}; MAPE {100 * np.mean(np.abs(ratio - 1)):.1f}%; "
          f"rank correlation {_spearman(summed, end_to_end):.3f}")
    for kind in ("linear", "boosting"):
        predictor = fit_predictor(space, measured, data.input_shape, seed=args.seed, settings=options, kind=kind)
        print(f"{kind}: {predictor.summary()}")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _measured_together(archs: list[dict[str, Any]], passes: int = 5) -> list[float]:
    """Every network measured again, interleaved passes, the best of ``passes`` each: a slow phase
    of this machine can outlast one model's measurement, rarely a whole pass over all of them."""
    from nasforge.hardware.latency import measure_many
    from nasforge.space.space import Space
    from nasforge.spaces.proxyless import proxyless
    data = load_dataset("mnist5k")
    space = Space(proxyless, data.context())
    found = measure_many({i: (space.build(a), data.input_shape) for i, a in enumerate(archs)}, passes=passes, **HARDWARE)
    return [found[i].floor_ms for i in range(len(archs))]


class Given:
    """A strategy that proposes the given architectures, in order (to train random ones alike)."""

    def __init__(self, archs: list[dict[str, Any]]):
        self.archs = list(archs)

    def setup(self, schema: Any, rng: Any) -> None:
        self.next = 0

    def ask(self) -> dict[str, Any] | None:
        self.next += 1
        return self.archs[self.next - 1] if self.next <= len(self.archs) else None

    def tell(self, arch: Any, result: Any) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next = state["next"]


def _random_meeting(target: float, n: int, scratch: Path, common: dict[str, Any]) -> list[tuple[float, float, Any]]:
    """``n`` random architectures whose measured latency meets ``target``, trained alike:
    (accuracy, recorded latency, architecture) of each."""
    from nasforge.hardware.latency import measure_many
    from nasforge.space.space import Space
    from nasforge.spaces.proxyless import proxyless
    data = load_dataset("mnist5k")
    space = Space(proxyless, data.context(), name="proxyless")
    rng = np.random.default_rng(1)
    meeting: list[dict[str, Any]] = []
    tried = 0
    while len(meeting) < n and tried < 40 * n:
        batch = [space.sample(rng) for _ in range(10)]
        tried += len(batch)
        models = {i: (space.build(a), data.input_shape) for i, a in enumerate(batch)}
        options = {k: v for k, v in HARDWARE.items() if k != "min_seconds"}
        floors = measure_many(models, passes=3, min_seconds=0.5, **options)
        meeting += [a for i, a in enumerate(batch) if floors[i].floor_ms <= target][:n - len(meeting)]
    print(f"random: {len(meeting)} of {tried} sampled architectures meet {target} ms", flush=True)
    study = nasforge.search("proxyless", "mnist5k", Given(meeting), trials=len(meeting), seed=0,
                            out=scratch / f"random{target}", **common)
    return [(t.metrics["val_accuracy"], t.metrics["latency_ms"], t.arch) for t in study.trials if "latency_ms" in t.metrics]


def targets(args: argparse.Namespace, scratch: Path) -> None:
    common = {"budget": args.budget, "objective": "val_accuracy", "trainer": TRAINER, "hardware": HARDWARE}
    middle = args.targets[len(args.targets) // 2]
    started = time.perf_counter()
    rows: list[tuple[float, str, int, float, float, float, dict[str, Any]]] = []  # target, method, seed, acc, recorded, s, arch
    for acc, ms, arch in _random_meeting(middle, args.random, scratch, common):
        rows.append((middle, "random", 0, acc, ms, 0.0, arch))
    print(f"random: {args.random} trained in {time.perf_counter() - started:.0f}s", flush=True)
    for target in args.targets:
        for seed in args.seeds if target == middle else args.seeds[:1]:
            began = time.perf_counter()
            study = nasforge.search("proxyless", "mnist5k", {"name": "proxyless", "args": {**SEARCH, "latency_target": target}},
                                    trials=1, seed=seed, out=scratch / f"px{target}-{seed}", **common)
            best = study.best
            rows.append((target, "proxyless", seed, best.metrics["val_accuracy"], best.metrics["latency_ms"],
                         time.perf_counter() - began, best.arch))
            print(f"proxyless target {target} seed {seed}: {rows[-1][3]:.4f} at {rows[-1][4]:.3f} ms (recorded), "
                  f"{rows[-1][5]:.0f}s", flush=True)
        if args.ppo_trials:
            began = time.perf_counter()
            study = nasforge.search("proxyless", "mnist5k", {"name": "ppo", "args": {"batch_size": 4, "epochs": 4}},
                                    trials=args.ppo_trials, seed=0, out=scratch / f"ppo{target}",
                                    constraint={"metric": "latency_ms", "target": target, "kind": "hard"}, **common)
            wall = time.perf_counter() - began
            for t in study.trials:
                if "latency_ms" in t.metrics:
                    rows.append((target, "mnas/ppo" + (" best" if t.id == study.best.id else ""), 0,
                                 t.metrics["val_accuracy"], t.metrics["latency_ms"], wall, t.arch))
            print(f"mnas/ppo target {target}: {len(study.trials)} trials, {wall:.0f}s", flush=True)
    again = _measured_together([r[6] for r in rows])
    print("\nevery network measured again together (best of 5 interleaved passes); latency / target")
    print(f"{'target':>6} {'method':14} {'seed':>4} {'accuracy':>8} {'recorded':>8} {'again':>7} {'/T':>5} {'wall s':>7}")
    for (target, method, seed, acc, recorded, wall, _), ms in zip(rows, again):
        if method == "mnas/ppo":
            continue  # in the front below
        print(f"{target:6.2f} {method:14} {seed:4d} {acc:8.4f} {recorded:8.3f} {ms:7.3f} {ms / target:5.2f} {wall:7.0f}")
    for target in args.targets:
        ppo = [(ms, r[3]) for r, ms in zip(rows, again) if r[0] == target and r[1].startswith("mnas/ppo")]
        if ppo:
            print(f"mnas/ppo front at {target}: " + ", ".join(f"{a:.3f}@{m:.2f}" for m, a in _front(ppo)))
    randoms = [(r[3], ms) for r, ms in zip(rows, again) if r[1] == "random"]
    print(f"random at {middle}: accuracy mean {statistics.mean(a for a, _ in randoms):.4f} over {len(randoms)}; "
          f"latency again {min(m for _, m in randoms):.2f}-{max(m for _, m in randoms):.2f} ms")


def _front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(latency, accuracy) points no other beats on both."""
    out, best = [], -1.0
    for ms, acc in sorted(points):
        if acc > best:
            out.append((ms, acc))
            best = acc
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["memory", "latency", "targets"])
    parser.add_argument("--samples", type=int, default=120, help="latency: architectures measured end to end")
    parser.add_argument("--targets", type=float, nargs="+", default=[1.7, 1.9, 2.1], help="targets: latency targets (ms)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds at the middle target")
    parser.add_argument("--budget", type=int, default=3, help="epochs to train each compared network")
    parser.add_argument("--random", type=int, default=10, help="random architectures meeting the middle target")
    parser.add_argument("--ppo-trials", type=int, default=8, help="trials of the MNAS/PPO search per target (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        {"memory": memory, "latency": latency, "targets": targets}[args.what](args, Path(scratch))


if __name__ == "__main__":
    sys.exit(main())
