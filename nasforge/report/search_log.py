"""The report's section on a strategy's own per-step record (the study's ``search_log``): for the
surrogate-guided searches, each step's architectures and how well each surrogate ranked them
before they were trained."""
from __future__ import annotations

from html import escape
from typing import Any, Callable

_SPECIAL = ("step", "best_loss", "spearman", "complete")


def search_log_section(log: Any, objective: dict[str, Any], fmt: Callable[[Any], str]) -> str:
    if not isinstance(log, list) or not log or not all(isinstance(e, dict) for e in log):
        return ""
    plain = objective.get("mode") == "max" and not objective.get("constraint")
    best_name = f"best {objective.get('metric', 'objective')}" if plain else "best loss (minimised)"
    extra = [k for k in log[0] if k not in _SPECIAL]
    surrogates = list(dict.fromkeys(name for e in log for name in (e.get("spearman") or {})))  # the guide first
    header = ["step", *extra, best_name, *(f"Spearman ({n})" for n in surrogates)]
    rows = []
    for e in log:
        best = e.get("best_loss")
        best = -best if plain and isinstance(best, (int, float)) else best
        spearman = e.get("spearman") or {}
        cells = [e.get("step"), *(e.get(k) for k in extra), best, *(spearman.get(n) for n in surrogates)]
        rows.append("<tr>" + "".join(f"<td>{fmt(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    note = ("Before each step's architectures were trained, the surrogates fitted on every earlier result predicted "
            "their loss; the Spearman columns are the rank correlation of those predictions with the results "
            "(1: ranked exactly, 0: no better than chance; '-' before a surrogate was fitted or while the "
            "step's results are still coming in). The first surrogate listed chose; the others were fitted "
            "beside it only to be compared." if surrogates else "")
    return ('<section id="search-log"><h2>Search steps</h2>'
            + (f"<p>{escape(note)}</p>" if note else "")
            + f'<table id="search-steps"><tr>{head}</tr>{"".join(rows)}</table></section>')
