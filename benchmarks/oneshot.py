"""One-shot search (DARTS, ENAS macro and micro) against random architectures of the same spaces.

    python benchmarks/oneshot.py quality        # derived vs 10 random, 3 seeds, mnist5k and mnist1d
    python benchmarks/oneshot.py orders         # first- vs second-order DARTS: time per step, result
    python benchmarks/oneshot.py memory         # a supernet step's memory against a child's
    python benchmarks/oneshot.py collapse       # DARTS on the NB201 cells, with and without beta-decay

``quality``: per dataset and method, each search seed's derived architecture retrained from scratch
(the built-in trainer, ``--budget`` epochs) against the mean of ``--random`` random architectures of
the same space retrained alike (random search, seed 0). Validation accuracy (mnist1d also test
accuracy, on its held-out split). Search cost: the one-shot search's wall time against what random
search would take to train as many candidates as the search evaluated (ENAS: every sampled
architecture rewarded plus the derivation's; DARTS: the architecture derived each epoch), from
the mean wall time of a random trial measured in the same run.

``collapse``: DARTS on the NAS-Bench-201 cell space searched on mnist5k; the derived cells and their
CIFAR-10 200-epoch test accuracy read from ``shared/data/nasbench201`` (a transfer signal only).

Threads: ``torch.set_num_threads(--threads)`` (default 2) for everything; run nothing beside it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import nasforge
from nasforge.datasets import load_dataset

SPACES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "mnist5k": {"darts": ("darts", {"C": 4, "cells": 3, "nodes": 2, "stem_stride": 2}),
                "enas_micro": ("enas_micro", {"C": 8, "stem_stride": 2}),
                "enas_macro": ("enas_macro", {"C": 16, "layers": 6, "stem_stride": 2})},
    "mnist1d": {"darts": ("darts", {"C": 8, "cells": 3, "nodes": 2}),
                "enas_micro": ("enas_micro", {"C": 8}),
                "enas_macro": ("enas_macro", {"C": 16, "layers": 6})},
}
STRATEGY = {"darts": {"name": "darts", "args": {"epochs": 6, "batch_size": 128}},
            "enas_micro": {"name": "enas", "args": {"epochs": 10, "batch_size": 128, "controller_steps": 40}},
            "enas_macro": {"name": "enas", "args": {"epochs": 10, "batch_size": 128, "controller_steps": 40}}}
TRAINER = {"lr": 0.005, "batch_size": 64}


def _test_accuracy(study: Any, data: Any) -> float | None:
    if data.x_test is None:
        return None
    model = study.best_model().eval()
    with torch.no_grad():
        return float((model(data.x_test).argmax(-1) == data.y_test).float().mean())


def _search(dataset: str, method: str, strategy: Any, trials: int, seed: int, budget: int, scratch: Path) -> dict[str, Any]:
    space, args = SPACES[dataset][method]
    tag = strategy if isinstance(strategy, str) else f"{strategy['name']}-{abs(hash(repr(strategy))) % 10**8}"
    out = scratch / f"{dataset}-{method}-{tag}-{seed}"
    began = time.perf_counter()
    study = nasforge.search(space, dataset, strategy, budget=budget, trials=trials, seed=seed, space_args=args,
                            trainer=TRAINER, objective="val_accuracy", out=out)
    wall = time.perf_counter() - began
    trials_done = study.trials
    record = study.store.get_meta("oneshot") or []
    search_seconds = sum(h["seconds"] for h in record)
    result = {"wall": wall, "search_seconds": search_seconds, "epochs": len(record),
              "val_acc": [t.metrics.get("val_accuracy") for t in trials_done],
              "trial_seconds": [t.duration for t in trials_done],
              "test_acc": _test_accuracy(study, load_dataset(dataset)), "arch": study.best.arch}
    study.store.close()
    return result


def _evaluated(method: str, epochs: int) -> int:
    """How many candidate architectures the one-shot search scored."""
    args = STRATEGY[method]["args"]
    if STRATEGY[method]["name"] == "enas":
        return epochs * (args["controller_steps"] + 10)  # rewarded samples + the derivation's samples
    return epochs


def quality(args: argparse.Namespace, scratch: Path) -> None:
    print(f"threads {args.threads}; retraining: {args.budget} epochs, Adam lr {TRAINER['lr']}, batch {TRAINER['batch_size']}")
    print("test d/r: test accuracy of the derived architecture / of the best random one (datasets with a test split)")
    print(f"{'dataset':8} {'method':11} {'seed':>4} {'derived':>8} {'random':>15} {'beats':>5} {'test d/r':>11} "
          f"{'search s':>8} {'random s':>9} {'ratio':>6} {'wall s':>7}")
    for dataset in args.datasets:
        for method in args.methods:
            random = _search(dataset, method, "random", args.random, 0, args.budget, scratch)
            r_mean = statistics.mean(random["val_acc"])
            r_sd = statistics.stdev(random["val_acc"])
            trial_s = statistics.mean(random["trial_seconds"])
            for seed in range(args.seeds):
                found = _search(dataset, method, STRATEGY[method], 1, seed, args.budget, scratch)
                acc = found["val_acc"][0]
                n = _evaluated(method, found["epochs"])
                random_cost = n * trial_s
                test = "" if found["test_acc"] is None else f"{found['test_acc']:.3f}/{random['test_acc']:.3f}"
                print(f"{dataset:8} {method:11} {seed:4d} {acc:8.3f} {r_mean:7.3f}+-{r_sd:5.3f} {str(acc > r_mean):>5} "
                      f"{test:>11} {found['search_seconds']:8.1f} {random_cost:9.0f} {random_cost / found['search_seconds']:6.1f} "
                      f"{found['wall']:7.1f}",
                      flush=True)
            print(f"  random architectures ({args.random}): {', '.join(f'{a:.3f}' for a in random['val_acc'])}; "
                  f"mean trial {trial_s:.1f} s; the best one's test accuracy {random['test_acc']}", flush=True)


def orders(args: argparse.Namespace, scratch: Path) -> None:
    print(f"threads {args.threads}; DARTS on mnist1d ({SPACES['mnist1d']['darts'][1]}), {args.budget}-epoch retraining")
    print(f"{'order':5} {'seed':>4} {'s/epoch':>8} {'val acc':>8} {'test acc':>8}")
    times: dict[int, list[float]] = {1: [], 2: []}
    for order in (1, 2):
        for seed in range(args.seeds):
            strategy = {"name": "darts", "args": {**STRATEGY["darts"]["args"], "order": order, "epochs": 3}}
            found = _search("mnist1d", "darts", strategy, 1, seed, args.budget, scratch)
            per_epoch = found["search_seconds"] / found["epochs"]
            times[order].append(per_epoch)
            print(f"{order:5d} {seed:4d} {per_epoch:8.1f} {found['val_acc'][0]:8.3f} {found['test_acc']:8.3f}", flush=True)
    print(f"second-order / first-order time per epoch: {statistics.mean(times[2]) / statistics.mean(times[1]):.2f}x")


def _step_memory(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """Bytes of parameters (with their gradients) and of the activations autograd saves for backward."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return 2 * params, saved


def memory(args: argparse.Namespace, scratch: Path) -> None:
    from nasforge.oneshot.darts import Darts
    from nasforge.oneshot.enas import Enas
    from nasforge.oneshot.loop import build_supernet
    from nasforge.space.space import Space
    from nasforge.spaces import SPACES as REGISTERED
    import numpy as np
    print("one training step, batch 128: parameters + gradients, and the activations saved for backward (MiB)")
    print(f"{'dataset':8} {'space':11} {'mode':18} {'params':>8} {'activations':>11} {'x child':>8}")
    for dataset in args.datasets:
        data = load_dataset(dataset)
        x, y = data.x_train[:128], data.y_train[:128]
        for method, (space_name, space_args) in SPACES[dataset].items():
            space = Space(REGISTERED.get(space_name), data.context(), args=space_args)
            torch.manual_seed(0)
            child = space.build(space.sample(np.random.default_rng(0)))
            cp, ca = _step_memory(child, x, y)
            rows = [("child", cp, ca)]
            for mode, m in (("supernet (DARTS)", Darts()), ("sampled path (ENAS)", Enas())):
                net, arch = build_supernet(space, m)
                m.setup(net, dict(arch.searched), torch.Generator().manual_seed(0))
                if isinstance(m, Enas):
                    m.mixer.sample = space.sample(np.random.default_rng(0))
                sp, sa = _step_memory(net, x, y)
                rows.append((mode, sp, sa))
            for mode, p, a in rows:
                print(f"{dataset:8} {method:11} {mode:18} {p / 2**20:8.2f} {a / 2**20:11.2f} {(p + a) / (cp + ca):8.1f}")


def collapse(args: argparse.Namespace, scratch: Path) -> None:
    from nasforge.spaces.nb201 import to_arch_str
    from nasforge.train.tabular import NB201Lookup
    lookup = NB201Lookup(dataset="cifar10")
    print(f"threads {args.threads}; DARTS (first order, {args.epochs} epochs) on the NB201 cells (C=4, N=1) on mnist5k; "
          "CIFAR-10 200-epoch test accuracy of the derived cell (best 94.37)")
    for beta in args.betas:
        accs, skips = [], []
        for seed in range(args.seeds):
            strategy = {"name": "darts", "args": {"epochs": args.epochs, "batch_size": 128, "beta_decay": beta}}
            out = scratch / f"nb201-{beta}-{seed}"
            study = nasforge.search("nb201", "mnist5k", strategy, budget=1, trials=1, seed=seed,
                                    space_args={"C": 4, "N": 1}, trainer=TRAINER, out=out)
            cell = to_arch_str(study.store.get_meta("oneshot")[-1]["derived"])
            study.store.close()
            acc = lookup.query(cell)["test_accuracy_200"]
            ops = [edge.split("~")[0] for node in cell.split("+") for edge in node.strip("|").split("|")]
            n_param_free = sum(op in ("skip_connect", "avg_pool_3x3", "none") for op in ops)
            accs.append(acc)
            skips.append(n_param_free)
            print(f"beta_decay {beta:<4} seed {seed}: {cell}  CIFAR-10 {acc:.2f}  parameter-free edges {n_param_free}/6", flush=True)
        print(f"beta_decay {beta}: mean CIFAR-10 accuracy {statistics.mean(accs):.2f}, "
              f"mean parameter-free edges {statistics.mean(skips):.1f}/6", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["quality", "orders", "memory", "collapse"])
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=8, help="collapse: DARTS epochs")
    parser.add_argument("--betas", default="0,2", help="collapse: beta-decay's final weights to compare (0: off)")
    parser.add_argument("--datasets", default="mnist5k,mnist1d")
    parser.add_argument("--methods", default="darts,enas_micro,enas_macro")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.datasets, args.methods = args.datasets.split(","), args.methods.split(",")
    args.betas = [float(b) for b in args.betas.split(",")]
    args.seeds = args.seeds or {"quality": 3, "orders": 2, "memory": 1, "collapse": 5}[args.what]
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="nasforge-oneshot-") as scratch:
        {"quality": quality, "orders": orders, "memory": memory, "collapse": collapse}[args.what](args, Path(scratch))


if __name__ == "__main__":
    sys.exit(main())
