"""A study's report as one self-contained HTML file, built from the store alone.

No server, no network, no external CSS or JS: plots are embedded as base64 PNG images and every
piece of text taken from the store is escaped. Sections: summary (trial counts by state,
objective, seed, config), leaderboard (top 20, the columns of ``nasforge status``), the best
architecture as JSON, the search trajectory, learning curves of the top trials, the rungs of a
multi-fidelity study, the Pareto front with a table of its trials when a second metric is
there (the metric choice: :mod:`nasforge.report.pareto`), and a one-shot search's epochs and
architecture weights (:mod:`nasforge.report.oneshot`).
"""
from __future__ import annotations

import base64
import datetime
import json
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any, Sequence

from nasforge.errors import StoreError
from nasforge.report.leaderboard import arch_summary, metric_columns, ranked
from nasforge.report.oneshot import oneshot_section
from nasforge.report.search_log import search_log_section
from nasforge.report.pareto import PARETO_META_KEY, pareto_metrics, pareto_trials
from nasforge.store.base import Trial
from nasforge.store.sqlite import SQLiteStore
from nasforge.results import best_trial
from nasforge.store.lock import driver_running
from nasforge.types import finite

REPORT_NAME = "report.html"
ONESHOT_RECORD = "oneshot"  # nasforge.study.ONESHOT_KEY (the report imports nothing heavy)
SEARCH_LOG_RECORD = "search_log"  # nasforge.study.SEARCH_LOG_KEY
LEADERBOARD_TOP = 20
CURVES_TOP = 5

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .25em .7em; border-bottom: 1px solid #eee; text-align: right; vertical-align: top; }
th { background: #f5f5f5; } td.text, th.text { text-align: left; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; }
figure { display: inline-block; margin: .5em 1em .5em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: .9em; } .muted { color: #777; }
"""


def write_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the study in ``directory`` to ``out`` (default ``DIR/report.html``)
    and return its path. Raises :class:`StoreError` when there is no study there."""
    directory = Path(directory)
    store = SQLiteStore(directory, read_only=True)
    try:
        page = render_report(store, directory)
    finally:
        store.close()
    path = Path(out) if out is not None else directory / REPORT_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"Cannot write the report to {str(path)!r}: {exc}") from exc
    return path


def render_report(store: SQLiteStore, directory: Path) -> str:
    """The whole page as a string."""
    from nasforge.report import plots
    trials = store.trials()
    objective = _objective(store)
    metric, mode = objective["metric"], objective["mode"]
    top = ranked(trials)[:CURVES_TOP]
    constraint = objective.get("constraint")
    if constraint:  # the search ranks by MnasNet's reward, not by the metric alone: plot what it ranks by
        target = f"{constraint['metric']} target {constraint['target']:g}"
        trajectory = plots.trajectory_png(trials, f"reward ({metric} with the {target})", "max",
                                          value=lambda t: None if t.loss is None else -t.loss)
    else:
        trajectory = plots.trajectory_png(trials, metric, mode)
    figures = [
        (trajectory, "Search trajectory: each trial's objective in creation order."),
        (plots.learning_curves_png({t.id: store.curve(t.id) for t in top}), "Learning curves of the best trials."),
        (plots.rungs_png(trials, metric), "Multi-fidelity rungs: the objective at each budget a trial reached."),
    ]
    parts = [
        f"<h1>nasforge report: {escape(directory.name or str(directory))}</h1>",
        _summary(store, trials, directory, objective),
        _leaderboard(trials, metric),
        _best(trials, metric),
        "<h2>Plots</h2>" + ("".join(_figure(png, caption) for png, caption in figures if png is not None)
                            or '<p class="muted">No trial has a result to plot yet.</p>'),
        _pareto(trials, objective, store.get_meta(PARETO_META_KEY)),
        oneshot_section(store.get_meta(ONESHOT_RECORD), _figure, _fmt),
        search_log_section(store.get_meta(SEARCH_LOG_RECORD), objective, _fmt),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>nasforge report: {escape(str(directory))}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(p for p in parts if p) + "\n</body></html>\n")


def _objective(store: SQLiteStore) -> dict[str, Any]:
    stored = store.get_meta("objective")
    return stored if isinstance(stored, dict) else {"metric": "val_loss", "mode": "min"}


def _fmt(value: Any, digits: int = 4) -> str:
    """A metric for a table cell: '-' when missing, thousands separators for large whole numbers."""
    v = finite(value)
    if v is None:
        return "-"
    return f"{int(v):,}" if v.is_integer() and abs(v) >= 1000 else f"{v:.{digits}g}"


def _table(table_id: str, header: Sequence[str], rows: list[tuple[int, list[str]]], text_cols: Sequence[int]) -> str:
    """An HTML table; ``rows`` are (trial id, cells), cells already escaped."""
    def cls(i: int) -> str:
        return ' class="text"' if i in text_cols else ""
    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(header))
    body = "".join(f'<tr data-trial="{tid}">' + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(cells)) + "</tr>"
                   for tid, cells in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _summary(store: SQLiteStore, trials: list[Trial], directory: Path, objective: dict[str, Any]) -> str:
    counts = Counter(t.state.value for t in trials)
    rows = [("directory", str(directory)),
            ("trials", f"{len(trials)} (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"),
            ("objective", f"{objective['metric']} ({objective['mode']})"),
            ("seed", str(store.get_meta("seed"))), ("status", _status(store, directory))]
    failed = [t for t in trials if t.state.value == "failed"]
    if failed:
        rows.append(("first error", f"trial {failed[0].id}: {failed[0].error}"))
    cells = "".join(f'<tr><th class="text">{escape(k)}</th><td class="text">{escape(v)}</td></tr>' for k, v in rows)
    config = store.get_meta("config")
    config_html = ("" if config is None else
                   f"<details><summary>config</summary><pre>{escape(json.dumps(config, indent=2), quote=False)}</pre></details>")
    return f'<h2>Summary</h2><table id="summary">{cells}</table>{config_html}'


def _status(store: SQLiteStore, directory: Path) -> str:
    finished = store.get_meta("finished_at")
    if isinstance(finished, (int, float)):
        return f"finished {datetime.datetime.fromtimestamp(finished).isoformat(sep=' ', timespec='seconds')}"
    if driver_running(directory):
        return "running now (this report is a snapshot)"
    return f"stopped before the end: nasforge resume {directory} continues it"


def _leaderboard(trials: list[Trial], metric: str) -> str:
    best = ranked(trials)[:LEADERBOARD_TOP]
    if not best:
        return '<h2>Leaderboard</h2><p class="muted">No trial has a result yet.</p>'
    columns = metric_columns(best, metric, limit=4)  # the metrics these trials have, the evaluator's own too
    rows = [(t.id, [str(t.id), escape(t.state.value), _fmt(t.metrics.get(metric)), *(_fmt(t.metrics.get(c)) for c in columns),
                    f"{t.budget_used:g}", escape(arch_summary(t.arch, limit=160))])
            for t in best]
    header = ["trial", "state", metric, *columns, "epochs", "architecture"]
    table = _table("leaderboard", header, rows, (1, len(header) - 1))
    return f"<h2>Leaderboard (top {len(best)} of {len(trials)} trials)</h2>{table}"


def _best(trials: list[Trial], metric: str) -> str:
    best = best_trial(trials)
    if best is None:
        return '<h2>Best architecture</h2><p class="muted">No trial succeeded.</p>'
    return (f"<h2>Best architecture</h2><p>trial {best.id}, {escape(metric)} = {_fmt(best.metrics.get(metric))}, "
            f"{best.budget_used:g} epochs</p><pre id=\"best-arch\">{escape(json.dumps(best.arch, indent=2), quote=False)}</pre>")


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _pareto(trials: list[Trial], objective: dict[str, Any], spec: Any) -> str:
    from nasforge.report.plots import pareto_png
    choice = pareto_metrics(trials, objective, spec)
    if choice is None:
        return ""
    metrics, directions = choice
    front = pareto_trials(trials, metrics, directions)
    png = pareto_png(trials, metrics, directions, front)
    what = " and ".join(f"{m} ({'lower' if d == 'min' else 'higher'} is better)" for m, d in zip(metrics, directions))
    rows = [(t.id, [str(t.id), escape(t.state.value), _fmt(t.metrics.get(metrics[0])), _fmt(t.metrics.get(metrics[1])),
                    f"{t.budget_used:g}", escape(arch_summary(t.arch, limit=160))]) for t in front]
    table = _table("pareto-table", ["trial", "state", metrics[0], metrics[1], "epochs", "architecture"], rows, (1, 5))
    return (f'<section id="pareto"><h2>Pareto front</h2><p>{len(front)} Pareto-optimal trials on {escape(what)}: '
            "no other trial is at least as good on both and better on one.</p>"
            + (_figure(png, f"Pareto front: {metrics[0]} vs {metrics[1]}.") if png else "") + table + "</section>")
