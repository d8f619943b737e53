"""ONNX export of every built-in space: how far onnxruntime is from PyTorch, file size, speed.

    python benchmarks/onnx_export.py                     # every space, 3 architectures each
    python benchmarks/onnx_export.py --spaces mlp,darts --archs 1 --seconds 0.5

For each space (default arguments) on the dataset it is normally used with (its example in
``examples/``; mnist5k for the image spaces without one), ``--archs`` architectures are sampled
(seeds 0, 1, ...), built with random weights (nothing is trained; batch norm's running statistics
are measured on 512 training inputs, else several deep spaces give nearly the same output for
every input and the comparison says little), in eval mode, and exported as
``nasforge export --format onnx`` does. Printed per space (the worst architecture's difference,
the median architecture's sizes and times): the largest absolute difference between onnxruntime's
and PyTorch's outputs over the whole validation set, that difference over the largest output,
the ONNX file's size, the export time, and the inference time per batch of 1 and of 64 samples
in onnxruntime and in PyTorch, one thread each (``torch.set_num_threads(1)``, onnxruntime's
``intra_op_num_threads=1``), as the ratio onnxruntime / PyTorch (below 1: onnxruntime is faster).
The two engines are timed in alternating rounds (a round: enough calls for ~10 ms), and each
time is the median round, so a slow phase of the machine falls on both alike.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import torch

import nasforge
from nasforge.report.onnx_export import export_onnx
from nasforge.space import Space
from nasforge.spaces import SPACES

# the dataset each space's example uses; mnist5k (28x28 digits) for the image spaces without one
DATASETS = {"mlp": "digits", "nasrl": "digits", "enas_macro": "mnist1d"}
BATCHES = (1, 64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", default=",".join(SPACES.names()), help="comma-separated space names")
    p.add_argument("--archs", type=int, default=3, help="architectures per space (seeds 0..N-1)")
    p.add_argument("--seconds", type=float, default=1.0, help="timing per engine and batch size")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; one thread each\n")
    print("| space | dataset (input) | params | max abs diff (val) | / max output | ONNX KiB | export s | "
          + " | ".join(f"batch {b}: PyTorch ms | onnxruntime ms | ratio" for b in BATCHES) + " |")
    print("|---|---|---|---|---|---|---|" + "---|---|---|" * len(BATCHES))
    with tempfile.TemporaryDirectory() as tmp:
        # the first export pays for importing the exporter (seconds): not a space's cost
        export_onnx(torch.nn.Linear(4, 2).eval(), torch.randn(8, 4), Path(tmp) / "warm-up.onnx")
        for name in args.spaces.split(","):
            rows = [measure(name, seed, Path(tmp), args.seconds) for seed in range(args.archs)]
            print(row(name, rows), flush=True)


def measure(name: str, seed: int, tmp: Path, seconds: float) -> dict:
    data = nasforge.load_dataset(DATASETS.get(name, "mnist5k"))
    space = Space(SPACES.get(name), data.context())
    torch.manual_seed(seed)
    model = with_data_statistics(space.build(space.sample(np.random.default_rng(seed))), data.x_train[:512])
    path = tmp / f"{name}-{seed}.onnx"
    start = time.perf_counter()
    export_onnx(model, data.x_val[:64], path)
    export_s = time.perf_counter() - start
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    diff, scale = 0.0, 0.0
    with torch.inference_mode():
        for x in data.x_val.split(256):
            want = model(x).numpy()
            got = session.run(None, {input_name: x.numpy()})[0]
            diff, scale = max(diff, float(np.abs(got - want).max())), max(scale, float(np.abs(want).max()))
    out = {"dataset": f"{data.name} {tuple(data.x_val.shape[1:])}", "params": sum(p.numel() for p in model.parameters()),
           "diff": diff, "relative": diff / scale, "kib": path.stat().st_size / 1024, "export_s": export_s}
    for b in BATCHES:
        x = data.x_val[:b].contiguous()
        x_np = x.numpy()

        def run_torch(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                model(x)

        def run_ort(x_np: np.ndarray = x_np) -> None:
            session.run(None, {input_name: x_np})

        out[f"torch_{b}"], out[f"ort_{b}"] = alternate(run_torch, run_ort, seconds)
    return out


def with_data_statistics(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """The model in eval mode, its batch norms' running statistics the average over ``x``."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a plain average over the batches
    model.train()
    with torch.no_grad():
        for batch in x.split(64):
            model(batch)
    return model.eval()


def alternate(a: Callable[[], None], b: Callable[[], None], seconds: float) -> tuple[float, float]:
    """Median seconds per call of ``a`` and of ``b``, timed in alternating rounds."""
    calls = {f: max(1, int(0.01 / max(once(f), 1e-7))) for f in (a, b)}  # ~10 ms a round
    rounds: dict[Callable[[], None], list[float]] = {a: [], b: []}
    deadline = time.perf_counter() + 2 * seconds
    while time.perf_counter() < deadline or len(rounds[a]) < 5:
        for f in (a, b):
            start = time.perf_counter()
            for _ in range(calls[f]):
                f()
            rounds[f].append((time.perf_counter() - start) / calls[f])
    return statistics.median(rounds[a]), statistics.median(rounds[b])


def once(f: Callable[[], None]) -> float:
    f()  # warm-up: first-call allocations, lazy initialisation
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def row(name: str, rows: list[dict]) -> str:
    worst = max(rows, key=lambda r: r["relative"])
    med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    times = " | ".join(f"{1e3 * med(f'torch_{b}'):.3f} | {1e3 * med(f'ort_{b}'):.3f} | "
                       f"{statistics.median(r[f'ort_{b}'] / r[f'torch_{b}'] for r in rows):.2f}" for b in BATCHES)
    return (f"| {name} | {rows[0]['dataset']} | {med('params'):,.0f} | {worst['diff']:.1e} | {worst['relative']:.1e} | "
            f"{med('kib'):,.0f} | {med('export_s'):.1f} | {times} |")


if __name__ == "__main__":
    main()
