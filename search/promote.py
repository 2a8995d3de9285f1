"""Promotion: the best K COMPLETE quick trials with distinct params become full-stage trials.

    sarsweep promote --campaign configs/campaign.yaml [--variant V] [--top-k K]

Each promoted config is enqueued once in the full study with user attrs linking it back
(promoted_from_study, promoted_from_trial, quick_value). The check "already promoted?" and the
enqueue happen under the full study's lock, so running promote twice, or from two processes at
the same moment, still enqueues each config once (Optuna's enqueue_trial(skip_if_exists=True)
alone is not atomic and duplicates under concurrency).

Promotion waits for the quick stage to end: while trials run, wait or remain in its budget, the
best configs so far are not the stage's best, and promoting again later would add the new best
beside the early picks (more than top_k full runs). `partial=True` promotes from what has
finished anyway; `sarsweep promote --wait` polls until each variant's quick stage ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from models.errors import QuickUnfinished
from search.campaign import CampaignConfig
from search.studies import load_stage_study, stage_progress
from storage import study_lock
from storage.optuna_internals import study_id
from storage.queries import heartbeat_ages, is_stale
from storage.rdb import heartbeat_of


@dataclass
class Promotion:
    variant: str
    quick_trial: int
    quick_value: float
    params: dict[str, object]
    enqueued: bool
    """False when an earlier promote had already enqueued this config."""


def best_distinct(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """Top-k COMPLETE trials by value, skipping any whose params repeat a better one's."""
    ranked = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: (-float(t.value), t.number))  # type: ignore[arg-type]
    picked, seen = [], set()
    for t in ranked:
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            picked.append(t)
        if len(picked) == k:
            break
    return picked


def promote(storage: RDBStorage, campaign: CampaignConfig, variant: str, top_k: int | None = None,
            partial: bool = False, first_only: bool = False) -> list[Promotion]:
    """Enqueue the best configs of a finished quick stage; QuickUnfinished while it still runs,
    unless `partial`. With `first_only` (a campaign worker's automatic promotion), nothing when
    the full study holds a promoted config already (a peer's or an operator's promotion): under
    the lock, so of workers that all see the stage end, one promotes."""
    quick = load_stage_study(storage, campaign, variant, "quick")
    full = load_stage_study(storage, campaign, variant, "full")
    progress = stage_progress(quick.get_trials(deepcopy=False), campaign.quick.trials)
    if progress.left and not partial:
        if progress.running:
            grace = heartbeat_of(storage)[1]
            ages = heartbeat_ages(storage, study_id(quick)).values()
            progress.lost = sum(1 for age in ages if is_stale(age, grace))
        raise QuickUnfinished(variant, progress, progress.sentence())
    picks = best_distinct(quick, top_k or campaign.full.top_k)
    results = []
    with study_lock(storage, full.study_name):
        done = {t.user_attrs.get("promoted_from_trial") for t in full.get_trials(deepcopy=False)} - {None}
        if first_only and done:
            return []
        for t in picks:
            fresh = t.number not in done
            if fresh:
                full.enqueue_trial(t.params, user_attrs={
                    "promoted_from_study": quick.study_name, "promoted_from_trial": t.number,
                    "quick_value": t.value,
                })
            results.append(Promotion(variant, t.number, float(t.value), t.params, fresh))  # type: ignore[arg-type]
    return results
