"""Do the models an MNAS search returns meet its latency target when measured again?

    python benchmarks/mnas_latency.py                      # runs examples/mnas_mnist5k.yaml first
    python benchmarks/mnas_latency.py runs/mnas-study      # an MNAS-style study already run
    python benchmarks/mnas_latency.py DIR --top 5 --again 3

For the ``--top`` best trials of the study (by its objective: MnasNet's reward), the model is
built again from its architecture and measured ``--again`` times with the study's hardware
settings (batch size, threads, repeats), each time from a fresh copy of the model. Printed per
model: accuracy, the latency recorded during the search, the new measurements, the largest
difference between them, and latency / target. The goal: every returned model's re-measured
latency within 10% of the target (at most 1.1 x target) or below it. Also printed: the share of
all sampled models within that bound and the Pareto front (accuracy vs recorded latency).
Run it on a quiet machine: other processes on the same cores slow every measurement.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from nasforge.api import create_study, open_study, stored_config
from nasforge.config import load_config
from nasforge.hardware import measure_latency
from nasforge.report.leaderboard import ranked
from nasforge.report.pareto import pareto_trials

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mnas_mnist5k.yaml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("directory", nargs="?", help="a finished study with a latency constraint (default: run the example)")
    p.add_argument("--top", type=int, default=3, help="how many of the best trials to measure again")
    p.add_argument("--again", type=int, default=3, help="new measurements per model")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.directory
        if directory is None:
            directory = str(Path(tmp) / "mnas")
            print(f"running {EXAMPLE.name} into {directory} ...", flush=True)
            create_study(load_config(EXAMPLE), Path(directory)).run()
        report(directory, args.top, args.again)


def report(directory: str, top: int, again: int) -> None:
    if not (Path(directory) / "study.db").exists():
        raise SystemExit(f"{directory}: no study there (run one with `nasforge search examples/mnas_mnist5k.yaml --out DIR`)")
    study = open_study(directory)
    cfg, _ = stored_config(directory)
    constraint, hw = cfg.objective.constraint, cfg.hardware
    if constraint is None or hw is None:
        raise SystemExit(f"{directory}: the study needs objective.constraint and hardware settings")
    target, metric = constraint.target, constraint.metric
    shape = tuple(hw.input_shape or study.data.input_shape)
    trials = ranked(study.trials)
    measured = [t for t in trials if metric in t.metrics]
    within = sum(t.metrics[metric] <= 1.1 * target for t in measured)
    print(f"study {directory}: {len(trials)} trials; target {metric} {target} ({constraint.kind}); "
          f"{within}/{len(measured)} sampled models within 10% of the target or below it")
    print(f"{'trial':>5} {'accuracy':>8} {'recorded':>9}  {'measured again':<24} {'max diff':>8} {'/ target':>8}  ok")
    worst = 0.0
    for trial in trials[:top]:
        runs = []
        for i in range(again):
            model = study.space.build(trial.arch).eval()
            runs.append(measure_latency(model, shape, batch_size=hw.batch_size, threads=hw.threads,
                                        device=hw.device, repeats=hw.repeats, min_seconds=hw.min_seconds,
                                        seed=i).floor_ms)  # what trials record as latency_ms
        recorded = trial.metrics[metric]
        diff = max(abs(r - recorded) for r in runs) / recorded
        ratio = statistics.median(runs) / target
        worst = max(worst, ratio)
        print(f"{trial.id:>5} {trial.metrics.get('val_accuracy', float('nan')):8.4f} {recorded:9.3f}  "
              f"{' '.join(f'{r:.3f}' for r in runs):<24} {diff:8.1%} {ratio:8.3f}  {'yes' if ratio <= 1.1 else 'NO'}")
    print(f"worst re-measured latency / target among the top {top}: {worst:.3f} (goal <= 1.10)")
    front = pareto_trials(trials, ("val_accuracy", metric), ("max", "min"))
    print("Pareto front (accuracy, recorded latency ms): "
          + ", ".join(f"#{t.id} ({t.metrics['val_accuracy']:.4f}, {t.metrics[metric]:.3f})"
                      for t in sorted(front, key=lambda t: t.metrics[metric])))


if __name__ == "__main__":
    main()
