"""Would a compiled training step beat the stacked one? A probe, not part of nasforge.

Builds (once, ~30 s; needs g++ and ``pip install ninja``) a C++ step for a group of MLP
candidates, ``benchmarks/compiled_step/step.cpp``: forward, softmax cross-entropy, backward and
Adam over each candidate's own unpadded parameters, the products register-blocked small-matrix
kernels, built with ``-ffast-math`` so that tanh vectorises (glibc's vector math; a real one would
need its own vectorised activations, as fast-math drops NaN semantics). It checks that three steps
give the same losses as
:class:`~nasforge.engine.stacked_mlp.MLPNet` from the same weights, then times both on the same
group (one thread).

    python benchmarks/compiled_step_probe.py                          # 18 candidates, ReLU and tanh
    python benchmarks/compiled_step_probe.py --activations relu --candidates 32 --seed 1
    python benchmarks/compiled_step_probe.py --inputs 64 --outputs 10      # digits' sizes

Here (one core of the 2-core VM), 18 or 32 candidates of depths 1-6 and widths 2-100: 2.1-3.6x the
stacked step's speed (20-33 GFLOP/s of the candidates' own arithmetic, against ~100 for torch's
batched products at mid sizes). With digits' sizes (64 inputs, 10 classes), 10-32 candidates:
1.5-2.9x, the larger groups gaining least (22-42 GFLOP/s). Plain vectorised loops gave 1.3-1.6x
with ReLU and 0.9-1.0x with tanh rows (libm's scalar tanhf); ATen calls per candidate from C++, 0.9x.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from nasforge.engine.mlp_layout import mlp_shape, stack_order
from nasforge.engine.stacked_mlp import MLPNet
from nasforge.train.trainer import SupervisedTrainer

SOURCE = Path(__file__).resolve().parent / "compiled_step" / "step.cpp"
ACTIVATIONS = {"relu": (nn.ReLU, 0), "tanh": (nn.Tanh, 1)}
BATCH = 32


def build_extension():
    try:
        import ninja  # noqa: F401 - torch's extension builder runs it
    except ImportError:
        sys.exit("needs ninja: pip install ninja")
    if shutil.which("g++") is None:
        sys.exit("needs a C++ compiler (g++)")
    from torch.utils.cpp_extension import load
    start = time.perf_counter()
    ext = load("nasforge_compiled_step_probe", [str(SOURCE)], extra_cflags=["-O3", "-march=native", "-fopenmp-simd", "-ffast-math"])
    print(f"built/loaded the extension in {time.perf_counter() - start:.1f} s")
    return ext


def random_models(n: int, activations: list[str], rng: np.random.Generator, n_in: int, n_out: int) -> list[nn.Sequential]:
    models = []
    for c in range(n):
        act = ACTIVATIONS[activations[c % len(activations)]][0]
        layers: list[nn.Module] = []
        previous = n_in
        for width in rng.integers(2, 101, int(rng.integers(1, 7))):
            layers += [nn.Linear(previous, int(width)), act()]
            previous = int(width)
        layers.append(nn.Linear(previous, n_out))
        models.append(nn.Sequential(*layers))
    return sorted(models, key=lambda m: stack_order(mlp_shape(m)))


def packed(models: list[nn.Sequential]) -> dict[str, torch.Tensor]:
    """The extension's buffers: per candidate and layer W^T then b (and W in a twin buffer)."""
    params, transposed, offsets, dims, depths, acts = [], [], [], [], [], []
    at = 0
    for model in models:
        shape = mlp_shape(model)
        offsets.append(at)
        for lin in shape.linears:
            params += [lin.weight.detach().t().reshape(-1), lin.bias.detach()]
            transposed += [lin.weight.detach().reshape(-1), torch.zeros(lin.out_features)]
            at += lin.weight.numel() + lin.out_features
        widths = [shape.linears[0].in_features] + [lin.out_features for lin in shape.linears]
        dims.append(widths + [0] * (8 - len(widths)))
        depths.append(shape.depth)
        acts.append(next(code for cls, code in ACTIVATIONS.values() if isinstance(shape.activations[0], cls)))
    slack = [torch.zeros(32)]  # the kernels read rows 16 floats at a time
    p = torch.cat(params + slack)
    longs = {k: torch.tensor(v, dtype=torch.int64) for k, v in (("offsets", offsets), ("dims", dims), ("depths", depths), ("acts", acts))}
    return {"p": p, "wt": torch.cat(transposed + slack), "g": torch.zeros_like(p), "m": torch.zeros_like(p), "v": torch.zeros_like(p), **longs}


def per_call_us(fn, repeats: int = 300) -> float:
    for _ in range(30):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=18)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inputs", type=int, default=4, help="input features (iris 4, digits 64)")
    ap.add_argument("--outputs", type=int, default=3, help="classes (iris 3, digits 10)")
    ap.add_argument("--activations", default="relu,tanh", help="comma-separated, from relu,tanh; candidates take them in turn")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ext = build_extension()
    models = random_models(args.candidates, args.activations.split(","), np.random.default_rng(args.seed), args.inputs, args.outputs)
    trainer = SupervisedTrainer(device="cpu")
    data = SimpleNamespace(task="classification", y_train=torch.zeros(1, dtype=torch.long))
    net = MLPNet(trainer, models, [mlp_shape(m) for m in models], [None] * len(models), data)
    buffers = packed(models)
    x, y = torch.randn(len(models), BATCH, args.inputs), torch.randint(0, args.outputs, (len(models), BATCH))

    def compiled(step: int) -> torch.Tensor:
        b = buffers
        return ext.step(b["p"], b["wt"], b["g"], b["m"], b["v"], b["offsets"], b["dims"], b["depths"], b["acts"], x, y,
                        float(trainer.lr), 0.9, 0.999, 1e-8, step)

    with torch.no_grad():
        stacked_losses = [net.step(x, y)[0] for _ in range(3)]
    compiled_losses = [compiled(t) for t in (1, 2, 3)]
    worst = max(float((a - b).abs().max()) for a, b in zip(stacked_losses, compiled_losses))
    print(f"3 steps from the same weights: largest loss difference {worst:.2e}")
    with torch.no_grad():
        stacked_us = per_call_us(lambda: net.step(x, y))
    compiled_us = per_call_us(lambda: compiled(4))
    own = sum(mlp_shape(m).flops for m in models) * BATCH * 6 / 1e6
    print(f"{len(models)} candidates ({args.activations}): stacked step {stacked_us:.0f} us, compiled {compiled_us:.0f} us "
          f"= {stacked_us / compiled_us:.2f}x; {own:.1f} MFLOP of their own -> compiled {own / compiled_us * 1e3:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
