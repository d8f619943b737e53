"""The ``nasforge`` command: search, resume, status, report, export, spaces, strategies."""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from nasforge.errors import NasforgeError, visible
from nasforge.report.formats import FORMATS

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXPORT_CHECK_SAMPLES = 64  # the validation batch an export is traced (TorchScript) or checked (ONNX) on


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nasforge", description="Neural architecture search for your own data.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("search", help="start a new search (the embedded default when no CONFIG is given)")
    s.add_argument("config", nargs="?", help="YAML config file (see README: config reference)")
    s.add_argument("--out", help="study directory (default: runs/<space>-<dataset>-<time>)")
    s.add_argument("--seed", type=int, help="random seed of the whole search (default 0): same seed, same trials")
    s.add_argument("--space", help="space name or package.module:function")
    s.add_argument("--dataset", help="dataset name")
    s.add_argument("--strategy", help="strategy name")
    s.add_argument("--scheduler", help="scheduler name")
    s.add_argument("--trials", type=int, help="number of trials")
    s.add_argument("--budget", type=float, help="epochs per trial")
    s.add_argument("--workers", type=_workers, help="parallel worker processes (Ray actors with --executor ray); "
                   "auto (default): one per core for batched, pool and ray")
    s.add_argument("--executor", help="where trials run: auto (default), serial, batched, pool, ray, simulated")
    s.add_argument("--address", help="with --executor ray: a cluster to join (auto, or host:port); default: start a "
                                     "local one")
    s.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("resume", help="finish an interrupted search")
    r.add_argument("directory")
    r.add_argument("--executor", help="run the rest elsewhere (the same trials on every executor)")
    r.add_argument("--address", help="with Ray: another cluster to join (auto, host:port), or local to start one here")
    r.add_argument("--quiet", action="store_true")

    st = sub.add_parser("status", help="trials and best architecture of a study")
    st.add_argument("directory")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--top", type=int, default=10)

    rp = sub.add_parser("report", help="write an HTML report of a study (plots embedded; no server needed)")
    rp.add_argument("directory")
    rp.add_argument("--out", help="output file (default: DIR/report.html)")

    e = sub.add_parser("export", help="write the best model and its architecture JSON")
    e.add_argument("directory")
    e.add_argument("--format", default="state_dict", choices=FORMATS,
                   help="state_dict (+ arch.json), torchscript, or onnx (checked in onnxruntime; needs nasforge[onnx])")
    e.add_argument("--out", help="output directory (default: DIR/export)")
    e.add_argument("--trial", type=int, help="export this trial instead of the best")

    pr = sub.add_parser("predictor", help="measure sampled architectures of a config's space on this machine and "
                                          "train a latency predictor (hardware.predictor reads it)")
    pr.add_argument("config", help="YAML config: its space, dataset (input shape) and hardware settings")
    pr.add_argument("--samples", type=int, default=80, help="architectures to measure (a quarter held out)")
    pr.add_argument("--out", default="latency_predictor.pkl", help="file to write")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--kind", default="linear", choices=["linear", "boosting"],
                    help="the regressor: ridge regression (latencies that add up layer by layer) or gradient boosting")

    sub.add_parser("spaces", help="list the built-in search spaces")
    sub.add_parser("strategies", help="list the search strategies")
    sub.add_parser("schedulers", help="list the schedulers")
    sub.add_parser("datasets", help="list the built-in datasets")
    return p


def safe(value: Any) -> str:
    from nasforge.report.leaderboard import terminal_safe
    return terminal_safe(value)



def _console() -> Any:
    from rich.console import Console
    return Console()


def _run_study(study: Any, quiet: bool, total: int) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    console = _console()
    data = study.data.summary() if hasattr(study.data, "summary") else (
        "none (the evaluator brings its own)" if study.data is None else type(study.data).__name__)
    console.print(f"study: [bold]{safe(study.directory)}[/]   space: {safe(study.space.name)}   data: {safe(data)}")
    if study.where:
        console.print(f"training: {safe(study.where)}")
    if quiet:
        study.run()
        return
    metric = study.objective.metric
    unit = "trials" if total == study.max_trials else "jobs"  # multi-fidelity: a promotion is a job of its own
    with Progress(TextColumn(f"[bold]{unit}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
                  TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"), console=console, transient=False) as bar:
        done = sum(1 for t in study.store.trials() if t.state.finished or t.state.value == "paused")
        task = bar.add_task("search", total=max(total, done), completed=done, best="", eta="-:--:--")
        if study.one_shot:  # the supernet search comes first: a line per epoch, then the one trial
            study.on_oneshot_epoch = lambda entry: console.print(_epoch_line(entry))
        reward = study.objective.constraint is not None  # the loss is minus MnasNet's reward
        study.on_search_log = StepLines(console.print, "reward" if reward else metric, "max" if reward else study.objective.mode,
                                        study.max_trials)

        def on_trial_end(st: Any, trial: Any) -> None:
            best = st.best
            text = f"best {safe(metric)} {best.metrics.get(metric, float('nan')):.4f} (trial {best.id})" if best else ""
            progress = bar.tasks[0]
            completed = progress.completed + 1
            bar.update(task, completed=completed, best=text,
                       eta=eta_text(progress.elapsed or 0.0, completed - done, progress.total - completed))

        study.run(on_trial_end)
        bar.update(task, completed=bar.tasks[0].total)


class StepLines:
    """A line when a surrogate-guided strategy starts a step, and one when its results are in."""

    def __init__(self, emit: Callable[[str], None], metric: str, mode: str, max_trials: int | None = None):
        self.emit, self.metric, self.sign = emit, metric, -1.0 if mode == "max" else 1.0
        self.max_trials = max_trials
        self.said: set[tuple[int, bool]] = set()

    def __call__(self, log: list[dict[str, Any]]) -> None:
        for entry in log:
            step, complete = entry.get("step"), bool(entry.get("complete"))
            if (step, complete) in self.said:
                continue
            self.said.add((step, complete))
            if not complete:
                if "picked" in entry:  # a progressive step: its size and how its architectures were picked
                    size = "".join(f"{k} {v}, " for k, v in entry.items() if k not in _STEP_KEYS)
                    n, of = entry["trained"], entry.get("candidates")
                    how = {"all": f"all {n}", "sampled": f"a random {n} of {f'{of:,}' if of else 'too many to list'}",
                           "ranked": f"the best {n} of {of:,} ranked"}.get(entry["picked"], str(n))
                    self.emit(f"step {step}: {size}training {how}")
                    if step == 1 and self.max_trials is not None and n > self.max_trials:
                        self.emit(f"[yellow]note:[/] step 1 alone trains {n} architectures and the study stops after "
                                  f"trials: {self.max_trials}, so no architecture will be grown; set the strategy's "
                                  f"`initial` (how many smallest architectures to train first) or raise `trials`")
                continue
            best = entry.get("best_loss")
            text = f"best {safe(self.metric)} {self.sign * best:.4f}" if isinstance(best, (int, float)) else "no result"
            rho = ", ".join(f"{n} {v:+.2f}" for n, v in (entry.get("spearman") or {}).items() if v is not None)
            self.emit(f"step {step} done: {text}" + (f"; Spearman of predicted and measured: {rho}" if rho else ""))


_STEP_KEYS = ("step", "candidates", "trained", "best_loss", "spearman", "complete", "picked")


def _epoch_line(entry: dict[str, Any]) -> str:
    figures = ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                        if k not in ("epoch", "seconds", "distribution", "derived") and isinstance(v, (int, float)))
    return f"one-shot epoch {entry['epoch']}: {figures} ({entry['seconds']:.1f}s)"


def eta_text(elapsed: float, finished: float, remaining: float) -> str:
    """Time left at the average pace of this run so far. (Rich's estimate looks at recent updates
    only, and trials that finish in batches make that pace swing: it said 0:23 where 1:30 was left.)"""
    if finished <= 0 or remaining <= 0:
        return "-:--:--" if remaining > 0 else "0:00:00"
    seconds = int(round(elapsed / finished * remaining))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _summary(study: Any) -> int:
    """Print the leaderboard and the best trial; the exit status: 1 when no trial succeeded."""
    from nasforge.report.leaderboard import leaderboard_table
    console = _console()
    trials = study.store.trials()
    console.print(leaderboard_table(trials, study.objective.metric))
    failed = [t for t in trials if t.state.value == "failed"]
    if failed:
        console.print(f"[yellow]{len(failed)} trial(s) failed[/]; first error: {safe(failed[0].error)}")
    best = study.best
    if best is None:
        console.print("[red]no trial succeeded[/]")
        return 1
    console.print(f"best architecture (trial {best.id}, {safe(study.objective.metric)} = {best.metrics[study.objective.metric]:.4f}):")
    console.print_json(json.dumps(best.arch))
    if study.store.location == "memory":  # nothing of the trials outlives this process
        console.print("(store: memory: the trials are not kept; use store: sqlite to report on or export them later)")
        return 0
    console.print(f"next: nasforge status {safe(study.directory)}   |   nasforge export {safe(study.directory)}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from nasforge.api import create_study
    from nasforge.config import load_config
    overrides = {"seed": args.seed, "space": args.space, "dataset": args.dataset, "strategy": args.strategy,
                 "scheduler": args.scheduler, "trials": args.trials, "budget": args.budget, "workers": args.workers,
                 "out": args.out, "executor": args.executor}
    cfg = load_config(args.config, overrides)
    if args.address:
        cfg = load_config(args.config, {**overrides, **_where(args, cfg)})
    study = create_study(cfg)
    args.directory = str(study.directory)  # for the resume hint if interrupted
    args.in_memory = study.store.location == "memory"
    start = time.perf_counter()
    _run_study(study, args.quiet, study.expected_jobs())
    _console().print(f"finished in {time.perf_counter() - start:.1f}s")
    count = study.store.count()
    if study.one_shot:
        _console().print("the one-shot search's derived architecture was retrained from scratch as trial 0 "
                         "(`nasforge report` shows the search's epochs)")
    elif study.strategy.finished and count < cfg.trials:
        _console().print(f"the search ended after {count} of {cfg.trials} trials: the strategy has nothing more "
                         f"to propose (a grid or a small space drawn to its end, PNAS's last step or a step without "
                         f"improvement)")
    elif study.strategy.exhausted and count < cfg.trials:
        _console().print(f"the search ended after {count} of {cfg.trials} trials: the strategy had no new architecture "
                         f"to propose (each is evaluated once; `repeats: true` evaluates repeats)")
    return _summary(study)


def _where(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """The config entries of --executor and --address (which means Ray: --executor may be left out),
    over the config ``cfg``."""
    from nasforge.errors import ConfigError
    where: dict[str, Any] = {"executor": args.executor} if args.executor else {}
    if args.address:
        executor = args.executor or cfg.executor
        if executor not in ("auto", "ray") or (args.executor and args.executor != "ray"):
            raise ConfigError(f"--address joins a Ray cluster: it needs --executor ray (the executor is {executor!r})")
        ray = cfg.ray.model_dump() if cfg.ray is not None else {}
        where.update(executor="ray", ray={**ray, "address": None if args.address == "local" else args.address})
    return where


def cmd_resume(args: argparse.Namespace) -> int:
    from nasforge.api import open_study
    from nasforge.api import stored_config
    study = open_study(args.directory, where=_where(args, stored_config(args.directory)[0]))
    _run_study(study, args.quiet, study.expected_jobs())
    return _summary(study)


def cmd_status(args: argparse.Namespace) -> int:
    from nasforge.report.leaderboard import leaderboard_table, status_json
    from nasforge.store.sqlite import SQLiteStore
    from nasforge.results import best_trial
    from nasforge.store.lock import driver_running
    store = SQLiteStore(args.directory, read_only=True)
    trials = store.trials()
    objective = store.get_meta("objective") or {"metric": "val_loss", "mode": "min"}
    meta = {"directory": str(args.directory), "finished": store.get_meta("finished_at") is not None,
            "driver_running": driver_running(Path(args.directory))}
    oneshot = store.get_meta("oneshot")
    if isinstance(oneshot, list):
        meta["oneshot_epochs"] = len(oneshot)
    if args.json:
        print(json.dumps(status_json(trials, objective, meta, store.get_meta("pareto")), indent=2))  # type: ignore[arg-type]
        return 0
    console = _console()
    counts = status_json(trials, objective, meta)["counts"]  # type: ignore[arg-type]
    console.print(f"study {safe(args.directory)}: {len(trials)} trials ({', '.join(f'{v} {k}' for k, v in counts.items())}), "
                  f"{_progress_word(meta)}")
    oneshot = store.get_meta("oneshot")
    if isinstance(oneshot, list) and oneshot:  # a one-shot search's epochs come before its one trial
        console.print(f"one-shot search: {len(oneshot)} epoch(s) done; last: {_epoch_line(oneshot[-1])}")
    if store.damaged:
        console.print(f"[yellow]damaged, not shown:[/] {safe('; '.join(store.damaged[:3]))}"
                      f"{f' (and {len(store.damaged) - 3} more)' if len(store.damaged) > 3 else ''}")
    console.print(leaderboard_table(trials, objective["metric"], args.top))  # type: ignore[index]
    best = best_trial(trials)
    if best:
        console.print(f"best: trial {best.id}")
        console.print_json(json.dumps(best.arch))
    return 0


def _progress_word(meta: dict[str, Any]) -> str:
    if meta["driver_running"]:
        return "running now"
    if meta["finished"]:
        return "finished"
    return f"stopped before the end: `nasforge resume {safe(meta['directory'])}` continues it"


def cmd_report(args: argparse.Namespace) -> int:
    from nasforge.report.html import write_report
    print(write_report(args.directory, args.out))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nasforge.api import open_study
    from nasforge.errors import StoreError
    from nasforge.report.export import export_model
    from nasforge.results import load_trained_model
    study = open_study(args.directory)
    trial = study.store.trial(args.trial) if args.trial is not None else study.best
    if trial is None:
        raise StoreError(f"the study in {args.directory} has no successful trial to export")
    model = load_trained_model(study.space, study.directory, trial, study.evaluator, study.data)
    example = study.data.x_val[:EXPORT_CHECK_SAMPLES].cpu() if hasattr(study.data, "x_val") else None
    out = Path(args.out) if args.out else study.directory / "export"
    paths = export_model(model, study.space, trial, example, out, args.format, study.space.name)
    info = json.loads(paths[-1].read_text())
    checked = (f"; largest difference from PyTorch {info['onnx_max_abs_diff']:.2g} on {info['onnx_check_samples']} "
               f"validation samples (tolerance {info['onnx_tolerance']:.2g})") if "onnx_max_abs_diff" in info else ""
    _console().print(f"exported trial {trial.id} ({args.format}{checked}): " + ", ".join(str(p) for p in paths))
    return 0


def cmd_predictor(args: argparse.Namespace) -> int:
    from nasforge.api import train_latency_predictor
    from nasforge.config import load_config
    start = time.perf_counter()
    predictor = train_latency_predictor(load_config(args.config), args.samples, args.seed, Path(args.out), args.kind)
    _console().print(f"{safe(predictor.summary())}\nwritten to {safe(args.out)} in {time.perf_counter() - start:.1f}s; "
                     f"use it with hardware: {{predictor: {safe(args.out)}}}")
    return 0


def _list(registry: Any) -> int:
    for name in registry.names():
        print(f"{name:16s} {registry.describe(name)}")
    return 0


def _workers(text: str) -> int | str:
    """--workers as the config takes it: a number as an int, anything else as given (the config
    says what is allowed)."""
    try:
        return int(text)
    except ValueError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "search":
        # A config's user modules ('mymodule:my_space') are found beside it, or beside the user
        # without one; a study records where they came from for the commands that reopen it.
        from nasforge.registry import add_module_dirs
        add_module_dirs(([Path(args.config).parent] if args.config else []) + [Path.cwd()])
    try:
        if args.command == "search":
            return cmd_search(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "predictor":
            return cmd_predictor(args)
        if args.command == "spaces":
            from nasforge.spaces import SPACES
            return _list(SPACES)
        if args.command == "strategies":
            from nasforge.strategies import STRATEGIES
            return _list(STRATEGIES)
        if args.command == "schedulers":
            from nasforge.schedulers import SCHEDULERS
            return _list(SCHEDULERS)
        from nasforge.datasets import DATASETS
        return _list(DATASETS)
    except NasforgeError as exc:
        print(f"nasforge: error: {visible(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a full disk, a file size limit, a directory we may not write
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"nasforge: error: {visible(where)}{visible(exc.strerror or exc)}; what was recorded before is kept",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except sqlite3.DatabaseError as exc:  # a page of study.db is damaged
        where = getattr(args, "directory", None) or "the study"
        print(f"nasforge: error: the database of {visible(where)} is damaged ({visible(exc)}); "
              f"`sqlite3 study.db .recover` may save what can be read", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        where = getattr(args, "directory", None) or "DIR"
        if getattr(args, "in_memory", False):
            print("\nnasforge: interrupted; the study kept its trials in memory (store: memory): nothing to resume",
                  file=sys.stderr)
        else:
            print(f"\nnasforge: interrupted; finished trials are saved. Continue with: nasforge resume {where}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
