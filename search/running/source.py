"""What a worker serves: the campaign's studies (all of them, or narrowed to some), claimed by the
priority search.policy.claims decides, promoted once each quick stage has ended.

A worker narrowed to one study (`sarsweep worker --variant V --stage S`, `one_study`) is the same
source with one study: it leaves when that study has nothing to claim, and promotes nothing
(`promote` or a campaign worker does). Narrowed by --stage or --variant alone it is a campaign
worker still: it waits for work that can come, and promotes the variants whose full stage it serves.

`on_promote(variant, promotions, already)` hears of each promotion this worker made, or found
made already (`already`; none and not already: the stage ended with no COMPLETE trial).

When a variant's quick stage has ended (search.policy.stages.stage_ended: nothing running,
waiting, unclaimed or to be re-run), the worker that notices promotes it, once across all
workers (search.running.promote.promote with first_only, under the full study's lock). A full
study that holds promoted configs already (an operator's `promote --partial`) is left as it is.
While more work can come (another worker's trials still run, a quick stage whose full stage it
serves has not ended), `idle` says why; None means its part of the campaign is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import Trial, TrialState

from search.campaign.config import STAGES, CampaignConfig
from search.campaign.studies import load_stage_study
from search.policy.claims import Counts, Key, claim_order, unclaimed
from search.policy.stages import stage_ended
from search.running import noise
from search.running.disk import DiskRoom, check_writable
from search.running.promote import Promotion, promote
from storage import artifact_store
from storage.artifacts import drop_resume_state
from storage.optuna_internals import study_id
from storage.queries import StudyCounts, study_counts
from storage.rdb import ResilientRDBStorage
from storage.trials import claim_through_outage

if TYPE_CHECKING:
    from training.data import SplitData
    from training.trainer import EpochResult


@dataclass
class Hooks:
    """What the command line hears of a worker's work (each optional)."""

    on_trial: Callable[[Trial, TrialState], None] | None = None
    on_wait: Callable[[str], None] | None = None
    on_data: Callable[[str, SplitData], None] | None = None
    on_promote: Callable[[str, list[Promotion], bool], None] | None = None
    on_epoch: Callable[[Trial, str, EpochResult], None] | None = None
    """Told of every epoch a trial finishes, with the trial's stage."""
    on_resume: Callable[[Trial, str], None] | None = None
    """Told in one line when a trial resumes (or restarts) a failed one: which, from where, why."""


@dataclass
class Claimed:
    """A trial claimed by a worker: its study, its stage, and how it runs."""

    study: optuna.Study
    stage: str
    trial: Trial
    objective: Callable[[Trial], float]


def served_studies(campaign: CampaignConfig, variants: list[str], stages: list[str]) -> list[Key]:
    return [(v, s) for v in campaign.variants if v in variants for s in STAGES if s in stages]


class CampaignSource:
    """The studies a worker serves, claimed by priority (search.policy.claims)."""

    def __init__(self, storage: ResilientRDBStorage, campaign: CampaignConfig, served: list[Key], artifacts: Path,
                 device: str | None = None, worker_index: int | None = None, progress: bool | None = None,
                 threads: int | None = None, hooks: Hooks | None = None, create: bool = False,
                 one_study: bool = False) -> None:
        from search.running.trial import TrialContext
        from training.data import load_data

        self.storage, self.campaign, self.served, self.hooks = storage, campaign, served, hooks or Hooks()
        self.one_study = one_study and len(served) == 1
        self.by_key = {key: load_stage_study(storage, campaign, *key, worker_index, create=create) for key in served}
        self.studies = list(self.by_key.values())
        self.serves = (campaign.study_name(*served[0]) if self.one_study else
                       f"campaign {campaign.name} ({len(served)} studies)")
        # Prepared before any claim: a DataError stops the worker with no trial claimed.
        self.data = {stage: load_data(campaign.train.data, campaign.stage(stage).fraction)
                     for stage in STAGES if any(s == stage for _, s in served)}
        for stage, data in self.data.items():
            if self.hooks.on_data is not None:
                self.hooks.on_data(stage, data)
        check_writable(artifacts)  # before the artifact store is made
        store = artifact_store(artifacts)
        self.contexts = {key: TrialContext(campaign, *key, artifacts, self.data[key[1]], device, progress, store,
                                           threads, self._epoch_hook(key[1]), self.hooks.on_resume)
                         for key in served}
        self.room = {v: DiskRoom(storage, campaign, v, artifacts) for v, _ in served}
        # It runs their full stage: it promotes them (a worker narrowed to one study does not).
        self.promotes = [] if self.one_study else [v for v, s in served if s == "full"]
        self.promoted: set[str] = set()
        self.quick = {v: self.by_key.get((v, "quick")) or load_stage_study(storage, campaign, v, "quick")
                      for v in self.promotes}

    def _epoch_hook(self, stage: str) -> Callable[[Trial, EpochResult], None] | None:
        hook = self.hooks.on_epoch
        return None if hook is None else lambda trial, e: hook(trial, stage, e)

    # ---- what to claim -----------------------------------------------------------------------

    def counts(self, key: Key) -> StudyCounts:
        return study_counts(self.storage, study_id(self.by_key[key]))

    def unclaimed(self, key: Key, counts: StudyCounts) -> int:
        budget = counts.budget if counts.budget is not None else self.campaign.quick_budget()
        return unclaimed(key[1], budget, counts.originals)

    def order(self) -> list[Key]:
        """The served studies to try, best first (a hint read without the lock; claim recounts)."""
        counts = {}
        for key in self.served:
            c = self.counts(key)
            counts[key] = Counts(c.waiting, self.unclaimed(key, c))
        return claim_order(self.served, counts)

    def claim(self) -> Claimed | None:
        from search.running.trial import run_trial

        self.promote_ended()
        for key in self.order():
            variant, stage = key
            study = self.by_key[key]
            budget = self.campaign.quick_budget() if stage == "quick" else None
            trial = claim_through_outage(study, self.storage, budget, stage == "quick", self.room[variant],
                                         noise.refill(study, self.campaign, stage), noise.TAG)
            if trial is not None:
                for other, data in self.data.items():
                    if other != stage:
                        data.release()  # one stage's patches on the GPU at a time
                ctx = self.contexts[key]
                return Claimed(study, stage, trial, lambda t, ctx=ctx: run_trial(t, ctx))
        return None

    def finished(self, trial: Trial, state: TrialState) -> None:
        if state in (TrialState.COMPLETE, TrialState.PRUNED) and not self.campaign.keep_last_checkpoint:
            drop_resume_state(trial.user_attrs.get("checkpoint"))
        if self.hooks.on_trial is not None:
            self.hooks.on_trial(trial, state)

    # ---- promotion and waiting ---------------------------------------------------------------

    def quick_ended(self, variant: str) -> bool:
        """The cheap counts first: most claims stop there."""
        counts = study_counts(self.storage, study_id(self.quick[variant]))
        if counts.running or counts.waiting or self.unclaimed((variant, "quick"), counts):
            return False
        trials = self.quick[variant].get_trials(deepcopy=False)
        return stage_ended(trials, self.campaign.quick_budget(), self.campaign.noise_seeds, "quick")

    def promote_ended(self) -> None:
        """Promote each variant whose full stage this worker serves once its quick stage has ended."""
        for variant in self.promotes:
            if variant in self.promoted or not self.quick_ended(variant):
                continue
            promotions = promote(self.storage, self.campaign, variant, first_only=True)
            self.promoted.add(variant)
            if self.hooks.on_promote is not None:
                full = self.by_key[variant, "full"]
                before = bool(promotions) or bool(full.get_trials(deepcopy=False))  # a peer's or an operator's
                self.hooks.on_promote(variant, promotions, not promotions and before)

    def idle(self) -> str | None:
        """Why more work can still come for this worker, or None when its part is done (a worker
        on one study never waits: a retry queued later is run by the next worker that starts)."""
        if self.one_study:
            return None
        reasons = []
        for key in self.served:
            variant, stage = key
            name = self.campaign.study_name(*key)
            if stage == "full" and variant not in self.promoted:
                reasons.append(f"{name} waits for its quick stage to end")
                continue
            counts = self.counts(key)
            if counts.running:
                reasons.append(f"{name} has {counts.running} trial(s) running on other workers (a retry or "
                               "its seed-noise re-runs may come)")
            elif counts.waiting or self.unclaimed(key, counts):
                reasons.append(f"{name} has trials another worker is claiming")
        return "; ".join(reasons) or None
