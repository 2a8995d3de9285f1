"""Promotion: the best K COMPLETE quick trials with distinct params become full-stage trials.

    sarsweep promote --campaign configs/campaign.yaml [--variant V] [--top-k K]

Each promoted config is enqueued once in the full study with user attrs linking it back
(promoted_from_study, promoted_from_trial, quick_value). The check "already promoted?" and the
enqueue happen under the full study's lock, so running promote twice, or from two processes at
the same moment, still enqueues each config once (Optuna's enqueue_trial(skip_if_exists=True)
alone is not atomic and duplicates under concurrency).

With seed noise measured (campaign noise_seeds), every config whose quick value lies within the
quick stage's noise band of the top_k-th's is promoted too, up to full.max_k in all: the quick
stage cannot tell those apart from the k-th, so the full stage should. Each says so.

Promotion waits for the quick stage to end (its seed-noise re-runs included): while trials run,
wait or remain in its budget, the best configs so far are not the stage's best, and promoting
again later would add the new best beside the early picks (more than top_k full runs).
`partial=True` promotes from what has finished anyway; `sarsweep promote --wait` polls until each
variant's quick stage ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna.storages import RDBStorage

from errors import QuickUnfinished
from search.campaign.config import CampaignConfig
from search.campaign.roles import PROMOTED_FROM_TRIAL
from search.campaign.studies import load_stage_study
from search.policy.promotion import promotions
from search.policy.stages import stage_progress
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
    within_noise: float | None = None
    """Promoted beyond top_k: the quick noise band its value lies within of the top_k-th's."""

    def why(self, top_k: int, kth: float | None) -> str:
        """' (within the quick noise band 0.21 of the 3rd config, 17.3000)', or ''."""
        if self.within_noise is None or kth is None:
            return ""
        return f" (within the quick stage's noise band {self.within_noise:.2f} of config {top_k}, {kth:.4f})"


def promote(storage: RDBStorage, campaign: CampaignConfig, variant: str, top_k: int | None = None,
            partial: bool = False, first_only: bool = False) -> list[Promotion]:
    """Enqueue the best configs of a finished quick stage; QuickUnfinished while it still runs,
    unless `partial`. With `first_only` (a campaign worker's automatic promotion), nothing when
    the full study holds a promoted config already (a peer's or an operator's promotion): under
    the lock, so of workers that all see the stage end, one promotes."""
    quick = load_stage_study(storage, campaign, variant, "quick")
    full = load_stage_study(storage, campaign, variant, "full")
    trials = quick.get_trials(deepcopy=False)
    progress = stage_progress(trials, campaign.quick_budget(), campaign.noise_seeds, "quick")
    if progress.left and not partial:
        if progress.running:
            grace = heartbeat_of(storage)[1]
            ages = heartbeat_ages(storage, study_id(quick)).values()
            progress.lost = sum(1 for age in ages if is_stale(age, grace))
        raise QuickUnfinished(variant, progress, progress.sentence())
    k = top_k or campaign.full.top_k
    chosen = promotions(trials, k, max(k, campaign.full.most), quick.study_name)
    results = []
    with study_lock(storage, full.study_name):
        done = {t.user_attrs.get(PROMOTED_FROM_TRIAL) for t in full.get_trials(deepcopy=False)} - {None}
        if first_only and done:
            return []
        for t, within, attrs in chosen:
            fresh = t.number not in done
            if fresh:
                full.enqueue_trial(t.params, user_attrs=attrs)
            results.append(Promotion(variant, t.number, float(t.value), t.params, fresh,  # type: ignore[arg-type]
                                     within))
    return results
