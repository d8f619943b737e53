"""The chapter's three experiments with nasforge, Optuna and Ray Tune, side by side in one process.

    python benchmarks/hpo_vs_peers.py                          # 5 seeds, all experiments, all tools
    python benchmarks/hpo_vs_peers.py --quick --seeds 2        # a smoke run (fewer trials and epochs)
    python benchmarks/hpo_vs_peers.py --experiments sh,hb --tools nasforge,optuna
    python benchmarks/hpo_vs_peers.py --dataset digits         # the same experiments on 1,203 training rows

Experiments (iris: 67/33 split, seed 42, min-max scaled, or the bundled set ``--dataset`` names, for
every tool alike; the MLP space: depth 1-6, widths 2-100, activation relu/tanh/gelu; Adam lr 0.01,
batch 32):

* ``sh``: successive halving, 20 configurations, budgets 5/10/15 epochs, eta 2.
  nasforge: examples/chapter_successive_halving.yaml. Optuna: 20 trials, RandomSampler,
  SuccessiveHalvingPruner(min_resource=5, reduction_factor=2). Ray: ASHAScheduler(grace_period=5,
  max_t=15, reduction_factor=2, brackets=1), 20 samples.
* ``hb``: Hyperband, R = 30 epochs, eta 3, 49 trials. nasforge: examples/chapter_hyperband.yaml.
  Optuna: RandomSampler, HyperbandPruner(min_resource=1, max_resource=30, reduction_factor=3),
  49 trials. Ray: HyperBandScheduler(max_t=30, reduction_factor=3), 49 samples (paused trials
  continue from a checkpoint written at Ray's rung milestones).
* ``bo``: 100 random configurations, then 5 chosen by the model; 30 epochs each. nasforge:
  examples/chapter_bayesian_optimization.yaml (GP, EI over 2000 candidates, batch 5). Optuna:
  GPSampler(n_startup_trials=100) (TPESampler if GPSampler is missing), 105 trials, no pruning.

The peers train with the plain PyTorch loop below on the same data tensors (a fresh model per trial,
``torch.manual_seed`` per trial and the shuffling seeded from it as nasforge's trainer does;
validation cross-entropy after every epoch). They ask all six widths in every trial and use the
first ``depth`` (a fixed-length space, as the chapter pads widths), so Optuna's GP models every
decision; ``optuna-dl`` is Optuna with the textbook DataLoader loop instead of the shuffled index.
Every tool runs in this one process (Ray's trials in its worker processes) with
``torch.set_num_threads(1)`` (``--threads N``: N for nasforge and Optuna); the peers run one trial
at a time (``--optuna-jobs N``: Optuna's ``n_jobs``, N trials in threads), nasforge runs with
``workers: 1`` (``--nasforge-workers N``: N worker processes) and the executor its config picks
(``--nasforge-executor serial`` forces one job at a time). Ray gets ``ray.init(num_cpus=2)`` once
for the whole run (its start-up time is printed apart) and 2 CPUs per trial, so one trial at a time.

Reported per experiment and tool, over seeds (mean +- std): wall time; epochs trained (every epoch
a trial actually trained: a promoted nasforge trial trains only the extra epochs, the peers train
each trial from scratch until it is stopped); best validation loss among trials that reached the
largest budget (marked ``*`` when, for some seed, no trial did and the best at any budget is used).
Ratios: peer wall time / nasforge wall time, and nasforge best loss / peer best loss (< 1: nasforge
found the better model). For nasforge the wall time is also split into training (inside the
trainer), job overhead (model build, checkpoint files) and the driver (study loop, SQLite, strategy).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import nasforge
from nasforge.api import create_study
from nasforge.space.space import _SCHEMAS
from nasforge.config import load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
MAX_DEPTH, MIN_WIDTH, MAX_WIDTH = 6, 2, 100
LR, BATCH_SIZE = 0.02, 10  # the chapter's (and its example configs')
TOOLS = ("nasforge", "optuna", "optuna-dl", "ray")
DEFAULT_TOOLS = ("nasforge", "optuna", "ray")


# --- the experiments ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Experiment:
    key: str
    title: str
    config: str  # the nasforge example config
    max_epochs: int  # the largest budget (R)
    trials: int  # trials for the peers (nasforge's count follows from its config)
    overrides: dict[str, Any] = field(default_factory=dict)  # nasforge config overrides (--quick)
    min_epochs: int = 1  # SH's first rung / Hyperband's smallest budget
    eta: int = 2
    n_initial: int = 0  # BO: random trials before the model


def on_dataset(exp: Experiment, dataset: str) -> Experiment:
    """The experiment on another of nasforge's bundled datasets (the configs say iris)."""
    return exp if dataset == "iris" else replace(exp, overrides={**exp.overrides, "dataset": dataset})


# The chapter's BO ranks by the best epoch's validation loss; the peers here rank by the last
# epoch's, so nasforge does the same in this comparison.
_LAST_EPOCH = {"objective": {"metric": "val_loss", "mode": "min"}}


def experiments(quick: bool) -> dict[str, Experiment]:
    if not quick:
        return {
            "sh": Experiment("sh", "successive halving: 20 configs, budgets 5/10/15, eta 2",
                             "chapter_successive_halving.yaml", 15, 20, min_epochs=5, eta=2),
            "hb": Experiment("hb", "Hyperband: R = 30 epochs, eta 3, 49 trials", "chapter_hyperband.yaml", 30, 49,
                             min_epochs=1, eta=3),
            "bo": Experiment("bo", "Bayesian optimisation: 100 random + 5 model-chosen, 15 epochs each",
                             "chapter_bayesian_optimization.yaml", 15, 105, n_initial=100, overrides=_LAST_EPOCH),
        }
    return {
        "sh": Experiment("sh", "[quick] successive halving: 8 configs, budgets 2/4/6, eta 2",
                         "chapter_successive_halving.yaml", 6, 8, min_epochs=2, eta=2,
                         overrides={"budget": 6, "scheduler": {"name": "successive_halving",
                                                               "args": {"n_configs": 8, "rungs": [2, 2, 2], "eta": 2}}}),
        "hb": Experiment("hb", "[quick] Hyperband: R = 9 epochs, eta 3, 17 trials", "chapter_hyperband.yaml", 9, 17,
                         min_epochs=1, eta=3, overrides={"budget": 9}),
        "bo": Experiment("bo", "[quick] Bayesian optimisation: 10 random + 5 model-chosen, 10 epochs each",
                         "chapter_bayesian_optimization.yaml", 10, 15, n_initial=10,
                         overrides={**_LAST_EPOCH, "budget": 10, "trials": 15, "strategy": {
                             "name": "bayesopt", "args": {"n_initial": 10, "n_candidates": 200, "batch_size": 5}}}),
    }


@dataclass
class Outcome:
    """One tool on one experiment with one seed."""

    wall: float
    epochs: float
    best: float
    best_at_max: bool  # False: no trial reached the largest budget; ``best`` is the best at any budget
    trials: int
    train: float  # seconds inside the training loop (training and validation), all trials together
    parts: dict[str, float] = field(default_factory=dict)  # nasforge's time split
    best_initial: float = math.nan  # BO: the best of the random start, to see what the model phase added
    configs: list[dict[str, Any]] = field(default_factory=list)  # nasforge: its random configurations, in order
    curves: dict[int, dict[float, float]] = field(default_factory=dict)  # trial number -> {epoch: val loss}


def best_loss(final: list[tuple[float, float]], max_epochs: float) -> tuple[float, bool]:
    """``final``: (epochs reached, val loss there) per trial. The best at the largest budget, else anywhere."""
    ok = [(e, v) for e, v in final if math.isfinite(v)]
    at_max = [v for e, v in ok if e >= max_epochs - 1e-6]
    if at_max:
        return min(at_max), True
    return (min(v for _, v in ok) if ok else math.nan), False


# --- the plain PyTorch training the peers use -------------------------------------------------
def build_mlp(depth: int, widths: list[int], activation: str, n_in: int, n_out: int) -> nn.Module:
    """The same network as nasforge's ``mlp`` space: Flatten, (Linear, activation) x depth, Linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    previous = n_in
    for width in widths[:depth]:
        layers += [nn.Linear(previous, width), ACTIVATIONS[activation]()]
        previous = width
    layers.append(nn.Linear(previous, n_out))
    return nn.Sequential(*layers)


def adam(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, lr 0.01, with the fused kernel where the build has one, as nasforge's trainer does (the
    per-tensor loop costs ~1.5x the training time on these small models: not what is compared here)."""
    try:
        return torch.optim.Adam(params, lr=LR, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=LR)


class PlainRun:
    """One trial's training: a fresh seeded model, Adam, shuffled mini-batches, val loss per epoch.

    The batches come from a shuffled index (``loader=False``, the fast loop) or from the textbook
    ``DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)`` (``loader=True``, the
    ``optuna-dl`` tool): same data, same batch size, same model and optimiser."""

    def __init__(self, config: dict[str, Any], tensors: dict[str, torch.Tensor], seed: int, loader: bool = False):
        torch.manual_seed(seed)
        self.x, self.y, self.xv, self.yv = (tensors[k] for k in ("x_train", "y_train", "x_val", "y_val"))
        widths = [int(config[f"width_{i}"]) for i in range(MAX_DEPTH)]
        self.model = build_mlp(int(config["depth"]), widths, config["activation"], self.x.shape[1], int(tensors["n_out"]))
        self.optimizer = adam(list(self.model.parameters()))
        # The shuffling seed is drawn after the model, as nasforge's trainer draws it: seeding the
        # generator with ``seed`` itself replays the stream that drew the initial weights, and
        # that coupling gave this loop lower validation losses (200 iris configurations, 5
        # epochs: 0.409 against 0.437 with an independent seed, Wilcoxon p 0.01).
        self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        self.loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=BATCH_SIZE,
                                                  shuffle=True, generator=self.generator) if loader else None
        self.loss_fn = nn.CrossEntropyLoss()
        self.epoch = 0
        self.seconds = 0.0  # time spent in train_epoch (training and validation)

    def train_epoch(self) -> float:
        """Train one epoch; the validation loss after it."""
        start = time.perf_counter()
        self.model.train()
        for x, y in self._batches():
            loss = self.loss_fn(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.epoch += 1
        self.model.eval()
        with torch.no_grad():
            value = float(self.loss_fn(self.model(self.xv), self.yv))
        self.seconds += time.perf_counter() - start
        return value

    def _batches(self) -> Any:
        if self.loader is not None:
            yield from self.loader
            return
        order = torch.randperm(len(self.x), generator=self.generator)
        for i in range(0, len(order), BATCH_SIZE):
            idx = order[i:i + BATCH_SIZE]
            yield self.x[idx], self.y[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])


def trial_seed(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


# --- nasforge -----------------------------------------------------------------------------------
def run_nasforge(exp: Experiment, seed: int, scratch: Path, executor: str, workers: int = 1) -> Outcome:
    out = scratch / f"nasforge-{exp.key}-{seed}"
    _SCHEMAS.clear()  # each study records its space's schema, as a search in a fresh process does
    start = time.perf_counter()
    overrides = {**exp.overrides, "seed": seed, "out": str(out), "executor": None if executor == "auto" else executor,
                 "workers": workers}
    cfg = load_config(EXAMPLES / exp.config, overrides)
    study = create_study(cfg, out).run()
    wall = time.perf_counter() - start
    trials = study.trials
    curves = {t.id: {float(p["epoch"]): float(p["val_loss"]) for p in study.store.curve(t.id) if "val_loss" in p} for t in trials}
    study.store.close()
    epochs = sum(float(t.metrics.get("epoch", 0.0)) for t in trials)  # trained epochs; promotions add only the extra
    best, at_max = best_loss([(t.budget_used, math.nan if t.loss is None else t.loss) for t in trials if t.metrics],
                             cfg.budget)
    train = sum(r["metrics"].get("train_seconds", 0.0) for t in trials for r in t.rungs)
    jobs = sum(t.duration for t in trials)
    parts = {"train": train, "job overhead": jobs - train, "driver": wall - jobs}
    initial = min((t.loss for t in trials[: exp.n_initial] if t.loss is not None), default=math.nan)
    random_phase = trials[: exp.n_initial] if exp.n_initial else trials  # SH and HB: every configuration is random
    return Outcome(wall, epochs, best, at_max, len(trials), train, parts, initial, [t.arch for t in random_phase], curves)


# --- Optuna -------------------------------------------------------------------------------------
def run_optuna(exp: Experiment, seed: int, scratch: Path, tensors: dict[str, Any], storage: str,
               loader: bool = False, jobs: int = 1, configs: list[dict[str, Any]] | None = None) -> Outcome:
    """``configs``: evaluate these first (Optuna's ``enqueue_trial``) instead of sampling them."""
    import optuna

    start = time.perf_counter()
    if exp.key == "bo":
        sampler_cls = getattr(optuna.samplers, "GPSampler", None) or optuna.samplers.TPESampler
        sampler = sampler_cls(n_startup_trials=exp.n_initial, seed=seed)
        pruner: Any = optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
        pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=exp.min_epochs, reduction_factor=exp.eta)
                  if exp.key == "sh" else
                  optuna.pruners.HyperbandPruner(min_resource=exp.min_epochs, max_resource=exp.max_epochs,
                                                 reduction_factor=exp.eta))
    url = f"sqlite:///{scratch / f'optuna-{exp.key}-{seed}-{int(loader)}.db'}" if storage == "sqlite" else None
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner, storage=url,
                                study_name=f"{exp.key}-{seed}")
    for config in configs or []:
        study.enqueue_trial(config)  # the widths a shallow config lacks are sampled, and unused
    curves: dict[int, list[float]] = {}
    train = [0.0]

    def objective(trial: Any) -> float:
        config = {"depth": trial.suggest_int("depth", 1, MAX_DEPTH),
                  **{f"width_{i}": trial.suggest_int(f"width_{i}", MIN_WIDTH, MAX_WIDTH) for i in range(MAX_DEPTH)},
                  "activation": trial.suggest_categorical("activation", list(ACTIVATIONS))}
        run = PlainRun(config, tensors, trial_seed(seed, trial.number), loader)
        curve = curves.setdefault(trial.number, [])
        value = math.nan
        try:
            for epoch in range(1, exp.max_epochs + 1):
                value = run.train_epoch()
                curve.append(value)
                if not math.isfinite(value):
                    return math.nan  # Optuna records the trial as failed
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return value
        finally:
            train[0] += run.seconds

    study.optimize(objective, n_trials=exp.trials, n_jobs=jobs)
    wall = time.perf_counter() - start
    best, at_max = best_loss([(len(c), c[-1]) for c in curves.values() if c], exp.max_epochs)
    initial = min((c[-1] for n, c in curves.items() if n < exp.n_initial and c and math.isfinite(c[-1])), default=math.nan)
    return Outcome(wall, sum(len(c) for c in curves.values()), best, at_max, len(study.trials), train[0], {}, initial,
                   curves={n: {float(e + 1): v for e, v in enumerate(c)} for n, c in curves.items()})


# --- Ray Tune -----------------------------------------------------------------------------------
def ray_milestones(exp: Experiment) -> list[int]:
    """The epochs at which Ray's HyperBandScheduler may pause a trial (its brackets' rungs, from its
    own formulas), so the trainable checkpoints there and only there; nasforge likewise writes a
    checkpoint only at the end of each job."""
    if exp.key != "hb":
        return []
    eta, max_t = exp.eta, exp.max_epochs
    s_max_1 = int(np.round(np.log(max_t) / np.log(eta))) + 1
    out = set()
    for s in range(s_max_1):
        r = int(max_t * eta ** (-s))
        while 0 < r < max_t:
            out.add(r)
            r = int(r * eta)
    return sorted(out)


def ray_trainable(config: dict[str, Any], tensors: dict[str, Any], max_epochs: int, milestones: list[int]) -> None:
    """The Ray Tune function trainable: the same plain training, continuing from a checkpoint if any."""
    from ray import tune

    torch.set_num_threads(1)
    run = PlainRun(config, tensors, int(config["seed"]))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            run.load_state_dict(torch.load(Path(d) / "state.pt", weights_only=True))
    while run.epoch < max_epochs:
        value = run.train_epoch()
        metrics = {"val_loss": value if math.isfinite(value) else math.inf, "epoch": run.epoch, "train_s": run.seconds}
        run.seconds = 0.0
        if run.epoch in milestones:
            with tempfile.TemporaryDirectory() as d:
                torch.save(run.state_dict(), Path(d) / "state.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)
        if not math.isfinite(value):
            return


def run_ray(exp: Experiment, seed: int, scratch: Path, tensors: dict[str, Any], trial_cpus: int,
            reuse_actors: bool) -> Outcome:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler
    from ray.tune.search import BasicVariantGenerator

    class Recorder(tune.Callback):
        """Every result is one trained epoch (a restarted trial reports its epochs again)."""

        def __init__(self) -> None:
            self.results = 0
            self.train = 0.0
            self.curves: dict[str, dict[int, float]] = {}

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
            self.results += 1
            self.train += float(result["train_s"])
            self.curves.setdefault(trial.trial_id, {})[int(result["epoch"])] = float(result["val_loss"])

    start = time.perf_counter()
    if exp.key == "sh":
        scheduler: Any = ASHAScheduler(time_attr="epoch", max_t=exp.max_epochs, grace_period=exp.min_epochs,
                                       reduction_factor=exp.eta, brackets=1)
    else:
        scheduler = HyperBandScheduler(time_attr="epoch", max_t=exp.max_epochs, reduction_factor=exp.eta)
    space = {"depth": tune.randint(1, MAX_DEPTH + 1),
             **{f"width_{i}": tune.randint(MIN_WIDTH, MAX_WIDTH + 1) for i in range(MAX_DEPTH)},
             "activation": tune.choice(list(ACTIVATIONS)), "seed": tune.randint(0, 2**31 - 1)}
    trainable = tune.with_parameters(ray_trainable, tensors=tensors, max_epochs=exp.max_epochs,
                                     milestones=ray_milestones(exp))
    recorder = Recorder()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": trial_cpus}), param_space=space,
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=exp.trials, scheduler=scheduler,
                                    search_alg=BasicVariantGenerator(random_state=seed), reuse_actors=reuse_actors),
        run_config=tune.RunConfig(name=f"{exp.key}-{seed}", storage_path=str(scratch / "ray"), verbose=0,
                                  callbacks=[recorder], checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    grid = tuner.fit()
    wall = time.perf_counter() - start
    final = [(max(c), c[max(c)]) for c in recorder.curves.values() if c]
    best, at_max = best_loss(final, exp.max_epochs)
    return Outcome(wall, recorder.results, best, at_max, len(grid), recorder.train)


def warm_up(tensors: dict[str, Any]) -> None:
    """Pay the one-time costs before any clock starts: the first optimizer imports torch._dynamo
    (~2.5 s on this machine), the first save/load imports serialisation code."""
    import io
    run = PlainRun({"depth": 1, "width_0": 4, **{f"width_{i}": 2 for i in range(1, MAX_DEPTH)}, "activation": "relu"},
                   tensors, 0)
    run.train_epoch()
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)


def warm_up_tools(key: str, tools: list[str], scratch: Path, tensors: dict[str, Any], args: argparse.Namespace) -> None:
    """An untimed run of nasforge and Optuna on the quick version of the experiment: what each
    pays once per process on first use (lazy imports, nasforge's registry and malloc settings,
    Optuna's sampler and pruner) is paid before any clock starts, as imports are. Without it
    the first seed's nasforge run took ~0.15 s more than the others (SH: 0.35 s against 0.19-0.22)."""
    quick = on_dataset(experiments(quick=True)[key], args.dataset)
    if "nasforge" in tools:
        run_nasforge(quick, 10_000, scratch, args.nasforge_executor, args.nasforge_workers)
    if "optuna" in tools or "optuna-dl" in tools:
        run_optuna(quick, 10_000, scratch, tensors, args.optuna_storage, "optuna" not in tools, args.optuna_jobs)


def start_ray() -> float:
    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    return time.perf_counter() - start


# --- the report ---------------------------------------------------------------------------------
def mean_std(values: list[float]) -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}" if max(values) < 10 else f"{statistics.fmean(values):.1f} ± {std:.1f}"


def paired_losses(exp: Experiment, base: list[Outcome], peer: list[Outcome], tool: str) -> str:
    """With --same-configs: each configuration's validation loss after the epochs every trial
    trains (SH's first rung, Hyperband's smallest budget, BO's whole budget), nasforge minus the
    peer, over all configurations and seeds. Same architecture, initial weights and data order:
    only the tools' arithmetic differs (rounding, which a long training can amplify), so the
    differences should be ~0. They are heavy-tailed (a training that diverges in one tool and not
    in the other moves the mean alone), so the median and the Wilcoxon signed-rank test's p-value
    come with the mean."""
    from scipy.stats import wilcoxon  # scikit-learn's dependency
    epoch = float(exp.max_epochs if exp.key == "bo" else exp.min_epochs)
    diffs = [b.curves[n][epoch] - o.curves[n][epoch] for b, o in zip(base, peer)
             for n in b.curves if epoch in b.curves[n] and epoch in o.curves.get(n, {})
             and math.isfinite(b.curves[n][epoch]) and math.isfinite(o.curves[n][epoch])]
    if len(diffs) < 2:
        return f"paired by configuration ({tool}): too few pairs"
    mean, sem = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
    lower = sum(d < 0 for d in diffs) / len(diffs)
    p_value = float(wilcoxon(diffs).pvalue) if any(diffs) else 1.0
    return (f"paired by configuration, val loss after {epoch:g} epoch(s), nasforge - {tool}: mean {mean:+.4f} "
            f"(95% CI {mean - 1.96 * sem:+.4f} .. {mean + 1.96 * sem:+.4f}), median {statistics.median(diffs):+.4f}, "
            f"Wilcoxon p {p_value:.2f}; {len(diffs)} pairs; nasforge lower in "
            f"{100 * lower:.0f}%; mean loss {statistics.fmean(b.curves[n][epoch] for b in base for n in b.curves if epoch in b.curves[n]):.4f})")


def report(exp: Experiment, results: dict[str, list[Outcome]], paired: bool = False) -> None:
    print(f"\n== {exp.key}: {exp.title}")
    print(f"{'tool':<10}{'trials':>7}{'wall s':>16}{'train s':>9}{'other s':>9}{'epochs trained':>18}"
          f"{'best val loss':>17}{'time/nasforge':>15}{'nf loss/peer':>14}{'nf better':>11}")
    base = results.get("nasforge")
    for tool, outs in results.items():
        flag = "" if all(o.best_at_max for o in outs) else " *"
        ratio_t = ratio_l = better = ""
        if base and tool != "nasforge":
            ratio_t = f"{statistics.fmean(o.wall for o in outs) / statistics.fmean(o.wall for o in base):.2f}x"
            ratio_l = f"{statistics.fmean(o.best for o in base) / statistics.fmean(o.best for o in outs):.3f}"
            better = f"{sum(b.best < o.best for b, o in zip(base, outs))}/{len(outs)}"
        trials = statistics.fmean(o.trials for o in outs)
        train = statistics.fmean(o.train for o in outs)
        other = statistics.fmean(o.wall - o.train for o in outs)
        print(f"{tool:<10}{trials:>7.0f}{mean_std([o.wall for o in outs]):>16}{train:>9.2f}{other:>9.2f}"
              f"{mean_std([o.epochs for o in outs]):>18}{mean_std([o.best for o in outs]) + flag:>17}"
              f"{ratio_t:>15}{ratio_l:>14}{better:>11}")
    if exp.key == "bo":
        print("best of the random start / after the model phase: " + ", ".join(
            f"{tool} {statistics.fmean(o.best_initial for o in outs):.4f} / {statistics.fmean(o.best for o in outs):.4f}"
            for tool, outs in results.items() if all(math.isfinite(o.best_initial) for o in outs)))
    if base and paired:
        for tool, outs in results.items():
            if tool.startswith("optuna"):
                print(paired_losses(exp, base, outs, tool))
    if base:
        parts = {k: statistics.fmean(o.parts[k] for o in base) for k in base[0].parts}
        wall = statistics.fmean(o.wall for o in base)
        print("nasforge wall time split (mean s): " + ", ".join(f"{k} {v:.2f} ({100 * v / wall:.0f}%)" for k, v in parts.items()))
    ms = {tool: 1e3 * statistics.fmean(o.train for o in outs) / statistics.fmean(o.epochs for o in outs)
          for tool, outs in results.items() if statistics.fmean(o.epochs for o in outs) > 0}
    print("training cost per epoch (ms): " + ", ".join(f"{tool} {v:.2f}" for tool, v in ms.items()))


# --- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--experiments", default="sh,hb,bo", help="a subset of sh,hb,bo")
    parser.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                        help="a subset of nasforge,optuna,optuna-dl,ray (optuna-dl: Optuna with the textbook "
                             "DataLoader loop; default nasforge,optuna,ray)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads for nasforge and Optuna (default 1; Ray's trials keep 1 each)")
    parser.add_argument("--quick", action="store_true", help="fewer trials and epochs: a smoke run")
    parser.add_argument("--dataset", default="iris", choices=("iris", "wine", "breast_cancer", "digits"),
                        help="a bundled tabular classification set: iris (default, the chapter's), wine, "
                             "breast_cancer or digits (1,203 training rows: 38 steps an epoch instead of 4)")
    parser.add_argument("--nasforge-executor", choices=("auto", "serial"), default="auto",
                        help="nasforge's executor: its config default (auto) or the serial one-job-at-a-time executor")
    parser.add_argument("--nasforge-workers", type=int, default=1,
                        help="nasforge's workers (default 1; N > 1: N worker processes of cpu_count // N threads each)")
    parser.add_argument("--optuna-jobs", type=int, default=1,
                        help="Optuna's study.optimize(n_jobs=N): N trials at a time in threads (default 1)")
    parser.add_argument("--optuna-storage", choices=("memory", "sqlite"), default="memory",
                        help="Optuna's storage (default: in memory, Optuna's own default)")
    parser.add_argument("--same-configs", action="store_true",
                        help="Optuna evaluates nasforge's random configurations of the same seed (all of SH's and "
                             "HB's, BO's first 100) instead of drawing its own: the best losses then compare the "
                             "tools' training and pruning on one set of candidates, not two random draws")
    parser.add_argument("--ray-trial-cpus", type=int, choices=(1, 2), default=2,
                        help="CPUs per Ray trial out of 2: 2 runs one trial at a time like the others (default)")
    parser.add_argument("--no-ray-reuse-actors", dest="ray_reuse_actors", action="store_false",
                        help="start a fresh Ray actor per trial (Ray's default) instead of reusing them")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.same_configs and "nasforge" not in args.tools.split(","):
        parser.error("--same-configs gives the peers nasforge's configurations: --tools must include nasforge")
    for name, allowed in (("experiments", ("sh", "hb", "bo")), ("tools", TOOLS)):
        chosen = [x for x in getattr(args, name).split(",") if x]
        bad = [x for x in chosen if x not in allowed]
        if bad or not chosen:
            parser.error(f"--{name}: unknown {', '.join(bad) or '(empty)'}; allowed: {', '.join(allowed)}")
        setattr(args, name, chosen)
    return args


def nasforge_version() -> str:
    """The package version and, in a git checkout, the commit (and whether nasforge/ has local edits)."""
    import subprocess
    root = Path(nasforge.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], check=False,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "nasforge"], check=False,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    version = getattr(nasforge, "__version__", "?")
    return f"{version} ({commit}{', nasforge/ modified' if dirty else ''})" if commit else version


def available_tools(wanted: list[str]) -> list[str]:
    tools = []
    for tool in wanted:
        module = {"nasforge": "nasforge", "optuna": "optuna", "optuna-dl": "optuna", "ray": "ray.tune"}[tool]
        try:
            __import__(module)
        except ImportError as exc:
            print(f"note: skipping {tool} ({exc}); install the peers with: pip install -e \".[bench]\"")
            continue
        tools.append(tool)
    return tools


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="optuna")
    tools = available_tools(args.tools)
    exps = [on_dataset(experiments(args.quick)[k], args.dataset) for k in args.experiments]
    if "optuna" in tools or "optuna-dl" in tools:
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if any(e.key == "bo" for e in exps) and not hasattr(optuna.samplers, "GPSampler"):
            print("note: optuna has no GPSampler; the BO experiment uses TPESampler(n_startup_trials=...)")
    data = nasforge.load_dataset(args.dataset)
    tensors = {"x_train": data.x_train, "y_train": data.y_train, "x_val": data.x_val, "y_val": data.y_val,
               "n_out": data.n_out}
    print(f"hpo_vs_peers: {data.summary()}; seeds 0..{args.seeds - 1}; torch {torch.__version__}, "
          f"torch.set_num_threads({args.threads}) for nasforge and Optuna; Optuna n_jobs={args.optuna_jobs}, "
          f"Ray one trial at a time, nasforge workers={args.nasforge_workers} (executor: {args.nasforge_executor})"
          + (f" (Ray: {args.ray_trial_cpus} CPU(s) per trial of 2, reuse_actors={args.ray_reuse_actors})"
             if "ray" in tools else ""))
    versions = [f"nasforge {nasforge_version()}"]
    for tool, module in (("optuna", "optuna"), ("ray", "ray")):
        if tool in tools:
            versions.append(f"{tool} {sys.modules[module].__version__}" if module in sys.modules else tool)
    print("tools: " + ", ".join(versions) + (f"; Optuna storage: {args.optuna_storage}" if "optuna" in tools else ""))
    warm_up(tensors)
    scratch = Path(tempfile.mkdtemp(prefix="hpo-vs-peers-"))
    ray_started = False
    try:
        if "ray" in tools and any(e.key in ("sh", "hb") for e in exps):
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
            print(f"ray.init(num_cpus=2): {start_ray():.1f} s (not counted in the wall times below)")
            ray_started = True
        total = time.perf_counter()
        for exp in exps:
            runners: dict[str, Callable[[int], Outcome]] = {}
            if "nasforge" in tools:
                runners["nasforge"] = lambda s, e=exp: run_nasforge(e, s, scratch, args.nasforge_executor, args.nasforge_workers)

            def given(seed: int) -> list[dict[str, Any]] | None:  # reads ``results`` (below) when called: nasforge ran first
                return results["nasforge"][seed].configs if args.same_configs else None

            if "optuna" in tools:
                runners["optuna"] = lambda s, e=exp: run_optuna(e, s, scratch, tensors, args.optuna_storage,
                                                                jobs=args.optuna_jobs, configs=given(s))
            if "optuna-dl" in tools:
                runners["optuna-dl"] = lambda s, e=exp: run_optuna(e, s, scratch, tensors, args.optuna_storage, True,
                                                                   args.optuna_jobs, configs=given(s))
            if "ray" in tools and exp.key != "bo":
                runners["ray"] = lambda s, e=exp: run_ray(e, s, scratch, tensors, args.ray_trial_cpus,
                                                          args.ray_reuse_actors)
            warm_up_tools(exp.key, tools, scratch, tensors, args)
            results: dict[str, list[Outcome]] = {tool: [] for tool in runners}
            for seed in range(args.seeds):  # tools interleaved per seed, so drift hits all alike
                for tool, runner in runners.items():
                    outcome = runner(seed)
                    results[tool].append(outcome)
                    print(f"  {exp.key} seed {seed} {tool:<9} {outcome.wall:7.2f} s  {outcome.epochs:7.1f} epochs  "
                          f"best {outcome.best:.4f}{'' if outcome.best_at_max else ' (not at max budget)'}",
                          flush=True)
            report(exp, results, args.same_configs)
        print(f"\ntotal {time.perf_counter() - total:.0f} s. Means (± std) over seeds. train s: inside the training "
              f"loop (training + validation); other s: wall - train (the tool's own cost). Best val loss: among "
              f"trials that reached the largest budget ('*': for some seed none did, the best at any budget is "
              f"used). time/nasforge: peer wall / nasforge wall. nf loss/peer: nasforge best loss / peer best loss "
              f"(< 1: nasforge better). nf better: seeds where nasforge's best loss was lower.")
    finally:
        if ray_started:
            import ray
            ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
