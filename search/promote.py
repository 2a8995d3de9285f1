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

import json
from dataclasses import dataclass

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from models.errors import QuickUnfinished
from search.campaign import CampaignConfig
from search.noise import Band, band
from search.studies import REFERENCE_ATTR, is_noise, load_stage_study, stage_progress
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


def ranked_distinct(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials by value, best first, skipping any whose params repeat a better one's (a
    retry's, a seed-noise re-run's)."""
    ranked = sorted((t for t in trials if t.state == TrialState.COMPLETE and not is_noise(t)),
                    key=lambda t: (-float(t.value), t.number))  # type: ignore[arg-type]
    picked, seen = [], set()
    for t in ranked:
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            picked.append(t)
    return picked


def picks(trials: list[FrozenTrial], k: int, most: int, noise: Band | None) -> list[tuple[FrozenTrial, float | None]]:
    """The top k distinct configs, then each next one whose value lies within the noise band of
    the k-th's (up to `most` in all), with the band it was taken within (None for the top k)."""
    ranked = ranked_distinct(trials)
    chosen: list[tuple[FrozenTrial, float | None]] = [(t, None) for t in ranked[:k]]
    if noise is None or len(ranked) <= k:
        return chosen
    kth = float(ranked[k - 1].value)  # type: ignore[arg-type]
    for t in ranked[k:most]:
        if float(t.value) < kth - noise.spread:  # type: ignore[arg-type]
            break
        chosen.append((t, noise.spread))
    return chosen


def promote(storage: RDBStorage, campaign: CampaignConfig, variant: str, top_k: int | None = None,
            partial: bool = False, first_only: bool = False) -> list[Promotion]:
    """Enqueue the best configs of a finished quick stage; QuickUnfinished while it still runs,
    unless `partial`. With `first_only` (a campaign worker's automatic promotion), nothing when
    the full study holds a promoted config already (a peer's or an operator's promotion): under
    the lock, so of workers that all see the stage end, one promotes."""
    quick = load_stage_study(storage, campaign, variant, "quick")
    full = load_stage_study(storage, campaign, variant, "full")
    trials = quick.get_trials(deepcopy=False)
    progress = stage_progress(trials, campaign.quick_budget(), campaign, "quick")
    if progress.left and not partial:
        if progress.running:
            grace = heartbeat_of(storage)[1]
            ages = heartbeat_ages(storage, study_id(quick)).values()
            progress.lost = sum(1 for age in ages if is_stale(age, grace))
        raise QuickUnfinished(variant, progress, progress.sentence())
    k = top_k or campaign.full.top_k
    chosen = picks(trials, k, max(k, campaign.full.most), band(trials))
    results = []
    with study_lock(storage, full.study_name):
        done = {t.user_attrs.get("promoted_from_trial") for t in full.get_trials(deepcopy=False)} - {None}
        if first_only and done:
            return []
        for t, within in chosen:
            fresh = t.number not in done
            if fresh:
                attrs = {"promoted_from_study": quick.study_name, "promoted_from_trial": t.number,
                         "quick_value": t.value}
                if within is not None:
                    attrs["promoted_within_noise"] = within
                if REFERENCE_ATTR in t.user_attrs:
                    attrs[REFERENCE_ATTR] = t.user_attrs[REFERENCE_ATTR]
                full.enqueue_trial(t.params, user_attrs=attrs)
            results.append(Promotion(variant, t.number, float(t.value), t.params, fresh,  # type: ignore[arg-type]
                                     within))
    return results
