"""`sarsweep status --campaign FILE`: per variant and stage, trials by state, best value and params."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optuna.storages import RDBStorage
from optuna.trial import TrialState

from search.campaign import STAGES, CampaignConfig
from search.studies import StudyError, best_complete, load_stage_study

STATES = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]


@dataclass
class StageStatus:
    variant: str
    stage: str
    exists: bool
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    budget: int | None = None


def stage_status(storage: RDBStorage, campaign: CampaignConfig, variant: str, stage: str) -> StageStatus:
    try:
        study = load_stage_study(storage, campaign, variant, stage)
    except StudyError:
        return StageStatus(variant, stage, exists=False)
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: sum(1 for t in trials if t.state == s) for s in STATES}
    status = StageStatus(variant, stage, True, counts, budget=study.user_attrs.get("budget"))
    best = best_complete(trials)
    if best is not None:
        status.best_value, status.best_trial, status.best_params = best.value, best.number, best.params
    return status


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def render(rows: list[StageStatus], objective: str) -> str:
    head = (f"{'variant':<12} {'stage':<6} {'done':>4} {'pruned':>6} {'failed':>6} {'running':>7} {'waiting':>7}"
            f"  best {objective:<6} params")
    lines = [head, "-" * len(head)]
    for r in rows:
        if not r.exists:
            lines.append(f"{r.variant:<12} {r.stage:<6} (no study yet: run `sarsweep init`)")
            continue
        c = r.counts
        best = f"#{r.best_trial} {r.best_value:.4g}" if r.best_value is not None else "-"
        params = " ".join(f"{k}={_fmt(v)}" for k, v in r.best_params.items())
        lines.append(f"{r.variant:<12} {r.stage:<6} {c['COMPLETE']:>4} {c['PRUNED']:>6} {c['FAIL']:>6} "
                     f"{c['RUNNING']:>7} {c['WAITING']:>7}  {best:<11} {params}")
    return "\n".join(lines)


def campaign_status(storage: RDBStorage, campaign: CampaignConfig) -> list[StageStatus]:
    return [stage_status(storage, campaign, v, s) for v in campaign.variants for s in STAGES]


def waiting_promotions(rows: list[StageStatus]) -> int:
    return sum(r.counts.get("WAITING", 0) for r in rows if r.stage == "full" and r.exists)


__all__ = ["StageStatus", "campaign_status", "render", "stage_status", "waiting_promotions"]
