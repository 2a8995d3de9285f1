"""Full runs stopped once beaten beyond noise (campaign `full.stop_margin`).

A promoted run whose value at epoch e trails the best value any other run of the stage reached at
epoch e by more than `stop_margin` seed-noise standard deviations is stopped (PRUNED, the reason in
its user attrs). The noise is the full stage's own, pooled over its configs' seeds once it has two
or more degrees of freedom, else the quick stage's (carried by each promoted config). With no
noise measured, nothing is stopped. search.campaign.studies.make_pruner makes it the full stage's
pruner, after each run's warmup; the margin is chosen on the curve table (docs/search-quality.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from search.campaign.roles import QUICK_NOISE_SD, is_noise, is_promoted
from search.policy.records import TrialLike
from search.policy.seeds import noise_sd


def stage_noise_sd(trials: Sequence[TrialLike]) -> float | None:
    """The full stage's seed-noise sd: its own pooled over configs with re-runs (2+ dof), else the
    quick stage's its promoted configs carry, else None."""
    own = noise_sd([t for t in trials if is_promoted(t) or is_noise(t)])
    if own is not None:
        return own
    quick = [float(t.user_attrs[QUICK_NOISE_SD]) for t in trials if QUICK_NOISE_SD in t.user_attrs]
    return quick[0] if quick else None


def stop_reason(trial: TrialLike, trials: Sequence[TrialLike], epoch: int, margin: float) -> str | None:
    """Why `trial` should stop at `epoch`, or None: it trails the best other run at that epoch by more
    than `margin` noise sds."""
    value = trial.intermediate_values.get(epoch)
    sd = stage_noise_sd(trials)
    if value is None or not sd:
        return None
    others = [(t.intermediate_values[epoch], t.number) for t in trials
              if t.number != trial.number and epoch in t.intermediate_values]
    if not others:
        return None
    best, leader = max(others, key=lambda o: (o[0], -o[1]))
    gap = best - value
    if gap <= margin * sd:
        return None
    return (f"stopped at epoch {epoch}: {value:.2f} trailed trial {leader}'s {best:.2f} at the same epoch by "
            f"{gap:.2f}, more than {margin:g} x the seed noise sd {sd:.2f}")
