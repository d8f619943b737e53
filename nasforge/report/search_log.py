"""The report's section on a strategy's own per-step record (the study's ``search_log``): for the
surrogate-guided searches, each step's architectures and how well each surrogate ranked them
before they were trained."""
from __future__ import annotations

from html import escape
from typing import Any, Callable

_SPECIAL = ("step", "best_loss", "spearman", "complete")


def _rho(value: Any) -> str:
    return f"{value:+.2f}" if isinstance(value, (int, float)) else "-"


def search_log_section(log: Any, objective: dict[str, Any], fmt: Callable[[Any], str]) -> str:
    if not isinstance(log, list) or not log or not all(isinstance(e, dict) for e in log):
        return ""
    plain = not objective.get("constraint")  # the loss is the metric (negated when maximised), not a reward
    best_name = f"best {objective.get('metric', 'objective')}" if plain else "best loss (minus the reward)"
    sign = -1 if plain and objective.get("mode") == "max" else 1
    extra = [k for k in log[0] if k not in _SPECIAL]
    surrogates = list(dict.fromkeys(name for e in log for name in (e.get("spearman") or {})))  # the guide first
    header = ["step", *extra, best_name, *(f"Spearman ({n})" for n in surrogates)]
    rows = []
    for e in log:
        best = e.get("best_loss")
        best = sign * best if isinstance(best, (int, float)) else best
        spearman = e.get("spearman") or {}
        cells = [fmt(c) if isinstance(c, (int, float)) else escape(str(c)) if c is not None else "-"
                 for c in (e.get("step"), *(e.get(k) for k in extra), best)]
        cells += [_rho(spearman.get(n)) for n in surrogates]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    note = ("Before each step's architectures were trained, the surrogates fitted on every earlier result predicted "
            "their loss; the Spearman columns are the rank correlation of those predictions with the results "
            "(1: ranked exactly, 0: no better than chance; '-' before a surrogate was fitted or while the "
            "step's results are still coming in). The first surrogate listed chose; the others were fitted "
            "beside it only to be compared." if surrogates else "")
    return ('<section id="search-log"><h2>Search steps</h2>'
            + (f"<p>{escape(note)}</p>" if note else "")
            + f'<table id="search-steps"><tr>{head}</tr>{"".join(rows)}</table></section>')
