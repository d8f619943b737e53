"""The report's section on a one-shot search: its epochs, the architecture distribution of every
decision over the epochs (a heat map per decision, as DARTS users read them), and where the
derived architecture changed. Drawn from the store's record (meta ``oneshot``)."""
from __future__ import annotations

import math
from html import escape
from typing import Any, Callable

from nasforge.report.leaderboard import arch_summary

MAX_PANELS = 48  # decisions drawn; a larger space's remaining decisions are named below the figure


def distributions_png(history: list[dict[str, Any]]) -> bytes | None:
    """One heat map per decision: its candidates (rows) over the epochs (columns)."""
    if not history or not history[-1].get("distribution"):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    import io
    labels = list(history[-1]["distribution"])[:MAX_PANELS]
    cols = min(4, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig = Figure(figsize=(3.6 * cols, 0.4 + 1.9 * rows), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    epochs = [h["epoch"] for h in history]
    for i, label in enumerate(labels):
        ax = fig.add_subplot(rows, cols, i + 1)
        names = list(history[-1]["distribution"][label])
        grid = [[h["distribution"].get(label, {}).get(n, math.nan) for h in history] for n in names]
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.set_yticks(range(len(names)), [n[:14] for n in names], fontsize=6)
        ax.set_xticks(range(len(epochs)), [str(e) for e in epochs], fontsize=6)
        fig.colorbar(image, ax=ax, fraction=0.05)
    fig.suptitle("architecture weights per decision (rows: candidates; columns: epochs)", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def oneshot_section(history: Any, figure: Callable[[bytes, str], str], fmt: Callable[[Any], str]) -> str:
    if not isinstance(history, list) or not history:
        return ""
    figures = [k for k in history[-1] if k not in ("epoch", "distribution", "derived")]
    rows = "".join("<tr>" + "".join(f"<td>{fmt(h.get(k))}</td>" for k in ["epoch", *figures]) + "</tr>" for h in history)
    header = "".join(f"<th>{escape(k)}</th>" for k in ["epoch", *figures])
    changes, previous = [], None
    for h in history:
        if h.get("derived") != previous:
            changes.append(f"<tr><td>{h['epoch']}</td><td class=\"text\">{escape(arch_summary(h['derived'], limit=400))}</td></tr>")
            previous = h.get("derived")
    png = distributions_png(history)
    more = len(history[-1].get("distribution", {})) - MAX_PANELS
    return ('<section id="oneshot"><h2>One-shot search</h2>'
            f"<p>{len(history)} epochs of supernet training; the derived architecture is retrained as a trial above.</p>"
            f'<table id="oneshot-epochs"><tr>{header}</tr>{rows}</table>'
            + (figure(png, "Architecture weights per decision over the epochs.") if png else "")
            + (f'<p class="muted">{more} more decisions are not drawn.</p>' if more > 0 else "")
            + '<h3>Derived architecture, where it changed</h3><table id="oneshot-derived"><tr><th>epoch</th>'
            f'<th class="text">architecture</th></tr>{"".join(changes)}</table></section>')
