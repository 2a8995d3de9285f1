"""The report's plots, as PNG bytes: best value over quick trials, quick vs full, the winner's preview."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from search.campaign.roles import is_noise

if TYPE_CHECKING:
    from search.report.collect import Report


def plots(report: Report, artifacts: Path | None = None) -> dict[str, bytes]:
    """PNG plots: best value over trials, quick vs full, and the overall winner's preview."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    out: dict[str, bytes] = {}
    fig = Figure(figsize=(6, 3.6), dpi=100)
    ax = fig.subplots()
    reruns_shown = False
    for r in report.results:
        done = sorted((t for t in report.studies[r.variant, "quick"].get_trials(deepcopy=False)
                       if t.state == TrialState.COMPLETE), key=lambda t: t.number)
        steps = best_so_far(done)
        if steps:
            line, = ax.step(*zip(*steps, strict=True), where="post", label=r.variant)
            reruns = [t for t in done if is_noise(t)]
            if reruns:
                ax.scatter([t.number for t in reruns], [float(t.value) for t in reruns],  # type: ignore[arg-type]
                           marker="x", color=line.get_color(), alpha=0.6,
                           label=None if reruns_shown else "seed re-runs (noise, not the search)")
                reruns_shown = True
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("quick trial number")
    ax.set_ylabel(f"best val {report.campaign.objective.upper()} so far")
    ax.set_title("Quick search: best value over trials")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    out["best value over trials"] = _png(fig)

    fig = Figure(figsize=(4.5, 4), dpi=100)
    ax = fig.subplots()
    for r in report.results:
        pts = [(p.quick_value, p.full_value) for p in r.promoted if p.full_value is not None]
        if pts:
            ax.scatter(*zip(*pts, strict=True), label=r.variant)
    ax.set_xlabel("quick value")
    ax.set_ylabel("full value")
    ax.set_title("Promoted configs: quick vs full")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    out["quick vs full"] = _png(fig)

    preview = _winner_preview(report)
    if preview is not None:
        out["reconstruction preview of the overall winner"] = preview
    return out


def best_so_far(trials: list[FrozenTrial]) -> list[tuple[int, float]]:
    """(trial number, best value up to it) over a stage's COMPLETE trials in number order, seed
    re-runs left out: a re-run is a measurement of noise, and its luckier seed never sets the best."""
    steps, running = [], -math.inf
    for t in sorted(trials, key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and not is_noise(t):
            running = max(running, float(t.value))  # type: ignore[arg-type]
            steps.append((t.number, running))
    return steps


def _winner_preview(report: Report) -> bytes | None:
    chosen = [r.chosen for r in report.results if r.chosen is not None and r.full_best is not None] or \
             [r.chosen for r in report.results if r.chosen is not None]
    if not chosen:
        return None
    winner = max(chosen, key=lambda t: float(t.value))  # type: ignore[arg-type]
    recorded = winner.user_attrs.get("checkpoint")
    if not recorded:  # a trial added by hand, not by a worker: no checkpoint, no preview
        return None
    path = Path(recorded).with_name("preview.png")
    return path.read_bytes() if path.is_file() else None


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
