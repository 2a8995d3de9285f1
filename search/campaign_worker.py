"""The campaign worker: one process per GPU runs a whole campaign, every variant and both stages.

    sarsweep worker --campaign configs/campaign.yaml            # all studies of the campaign
    sarsweep worker --campaign configs/campaign.yaml --stage quick   # narrowed (or --variant V)
    sarsweep launch --gpus all -- --campaign configs/campaign.yaml

Each claim takes the next trial by this priority (`CampaignSource.order`):
1. full runs, as soon as a variant's configs are promoted (the scarce, decisive work), in the
   campaign's variant order;
2. quick trials, from the quick study with the most trials still unclaimed (ties: campaign
   order), so the variants' quick stages advance together instead of one after another; a quick
   study with a retry waiting goes first (its stage cannot end before that retry);
3. the rest, in the campaign's order: a claim there reaps a dead peer's trial (whose retry this
   worker then runs), or queues a finished stage's seed-noise re-runs (search/noise.py).
Claims stay exact: each is made under its study's lock (storage.trials.claim), which recounts.

`on_promote(variant, promotions, already)` hears of each promotion this worker made, or found
made already (`already`; none and not already: the stage ended with no COMPLETE trial).

When a variant's quick stage has ended (the rule `sarsweep promote` uses: nothing running,
waiting or left in the budget), the worker that notices promotes it, once across all workers
(search.promote.promote with first_only, under the full study's lock). A full study that holds
promoted configs already (an operator's `promote --partial`, say) is left as it is.

The worker waits, and says why, while more work can come (another worker's trials still run,
a quick stage whose full stage it serves has not ended), and exits 0 when the campaign is done.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import Trial, TrialState

from search import noise
from search.campaign import STAGES, CampaignConfig
from search.promote import Promotion, promote
from search.room import RoomCheck, check_writable
from search.studies import load_stage_study, stage_progress
from search.worker import Claimed, WorkerSummary, serve
from storage import artifact_store
from storage.artifacts import drop_resume_state
from storage.optuna_internals import study_id
from storage.queries import StudyCounts, study_counts
from storage.rdb import ResilientRDBStorage
from storage.trials import claim_through_outage

if TYPE_CHECKING:
    from training.data import SplitData
    from training.trainer import EpochResult

Key = tuple[str, str]  # (variant, stage)


class CampaignSource:
    """The studies a campaign worker serves, claimed by priority (see the module docstring)."""

    def __init__(self, storage: ResilientRDBStorage, campaign: CampaignConfig, served: list[Key], artifacts: Path,
                 device: str | None = None, worker_index: int | None = None, progress: bool | None = None,
                 threads: int | None = None, on_data: Callable[[str, SplitData], None] | None = None,
                 on_promote: Callable[[str, list[Promotion], bool], None] | None = None,
                 on_epoch: Callable[[Trial, EpochResult], None] | None = None) -> None:
        from search.objective import TrialContext
        from training.data import load_data

        self.storage, self.campaign, self.served, self.on_promote = storage, campaign, served, on_promote
        self.by_key = {key: load_stage_study(storage, campaign, *key, worker_index) for key in served}
        self.studies = list(self.by_key.values())
        self.serves = f"campaign {campaign.name} ({len(served)} stud{'y' if len(served) == 1 else 'ies'})"
        # Prepared before any claim: a DataError stops the worker with no trial claimed.
        self.data = {stage: load_data(campaign.train.data, campaign.stage(stage).fraction)
                     for stage in STAGES if any(s == stage for _, s in served)}
        for stage, data in self.data.items():
            if on_data is not None:
                on_data(stage, data)
        check_writable(artifacts)  # before the artifact store is made
        store = artifact_store(artifacts)
        self.contexts = {key: TrialContext(campaign, *key, artifacts, self.data[key[1]], device, progress, store,
                                           threads, on_epoch) for key in served}
        self.room = {v: RoomCheck(storage, campaign, v, artifacts) for v, _ in served}
        self.promotes = [v for v, s in served if s == "full"]  # it runs their full stage: it promotes them
        self.promoted: set[str] = set()
        self.quick = {v: self.by_key.get((v, "quick")) or load_stage_study(storage, campaign, v, "quick")
                      for v in self.promotes}

    # ---- what to claim -----------------------------------------------------------------------

    def counts(self, key: Key) -> StudyCounts:
        return study_counts(self.storage, study_id(self.by_key[key]))

    def unclaimed(self, key: Key, counts: StudyCounts) -> int:
        if key[1] == "full":
            return 0
        budget = counts.budget if counts.budget is not None else self.campaign.quick_budget()
        return max(0, budget - counts.originals)

    def order(self) -> list[Key]:
        """The served studies to try, best first (a hint read without the lock; claim recounts).
        The rest come last: a claim there reaps a dead peer's trial, or queues the stage's
        seed-noise re-runs once it has ended."""
        counts = {key: self.counts(key) for key in self.served}
        full = [k for k in self.served if k[1] == "full" and counts[k].waiting]
        quick = [k for k in self.served if k[1] == "quick" and (counts[k].waiting or self.unclaimed(k, counts[k]))]
        quick.sort(key=lambda k: (not counts[k].waiting, -self.unclaimed(k, counts[k]), self.served.index(k)))
        rest = [k for k in self.served if k not in full and k not in quick]
        return full + quick + rest

    def claim(self) -> Claimed | None:
        from search.objective import run_trial

        self.promote_ended()
        for key in self.order():
            study = self.by_key[key]
            budget = self.campaign.quick_budget() if key[1] == "quick" else None
            trial = claim_through_outage(study, self.storage, budget, key[1] == "quick", self.room[key[0]],
                                         noise.refill(study, self.campaign, key[1]), noise.NOISE_ATTR)
            if trial is not None:
                for stage, data in self.data.items():
                    if stage != key[1]:
                        data.release()  # one stage's patches on the GPU at a time
                ctx = self.contexts[key]
                return Claimed(study, trial, lambda t, ctx=ctx: run_trial(t, ctx), self.finished)
        return None

    def finished(self, trial: Trial, state: TrialState) -> None:
        if state in (TrialState.COMPLETE, TrialState.PRUNED) and not self.campaign.keep_last_checkpoint:
            drop_resume_state(trial.user_attrs.get("checkpoint"))

    # ---- promotion and waiting ---------------------------------------------------------------

    def quick_ended(self, variant: str) -> bool:
        """The rule `sarsweep promote` uses (search.studies.stage_progress): nothing running, waiting,
        unclaimed or to be re-run for seed noise. The cheap counts first: most claims stop there."""
        counts = study_counts(self.storage, study_id(self.quick[variant]))
        if counts.running or counts.waiting or self.unclaimed((variant, "quick"), counts):
            return False
        trials = self.quick[variant].get_trials(deepcopy=False)
        return not stage_progress(trials, self.campaign.quick_budget(), self.campaign, "quick").left

    def promote_ended(self) -> None:
        """Promote each variant whose full stage this worker serves once its quick stage has ended."""
        for variant in self.promotes:
            if variant in self.promoted or not self.quick_ended(variant):
                continue
            promotions = promote(self.storage, self.campaign, variant, first_only=True)
            self.promoted.add(variant)
            if self.on_promote is not None:
                full = self.by_key[variant, "full"]
                before = bool(promotions) or bool(full.get_trials(deepcopy=False))  # a peer's or an operator's
                self.on_promote(variant, promotions, not promotions and before)

    def idle(self) -> str | None:
        """Why more work can still come for this worker, or None when its part of the campaign is done."""
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


def served_studies(campaign: CampaignConfig, variants: list[str], stages: list[str]) -> list[Key]:
    return [(v, s) for v in campaign.variants if v in variants for s in STAGES if s in stages]


def run_campaign_worker(storage: ResilientRDBStorage, campaign: CampaignConfig, artifacts: Path,
                        variants: list[str] | None = None, stages: list[str] | None = None,
                        device: str | None = None, worker_index: int | None = None, progress: bool | None = None,
                        threads: int | None = None, poll: float = 10.0,
                        on_trial: Callable[[Trial, TrialState], None] | None = None,
                        on_wait: Callable[[str], None] | None = None,
                        on_data: Callable[[str, SplitData], None] | None = None,
                        on_promote: Callable[[str, list[Promotion], bool], None] | None = None,
                        on_epoch: Callable[[Trial, EpochResult], None] | None = None) -> WorkerSummary:
    """Serve the campaign's studies (narrowed to `variants` and `stages`) until it is done."""
    from training.inference import resolve_device
    from training.threads import register

    if resolve_device(device or campaign.train.device).type == "cpu":  # no GPU here: one line, exit 2
        register()  # counted among this node's trainers from now, before its first trial takes its share
    served = served_studies(campaign, variants or list(campaign.variants), stages or list(STAGES))
    source = CampaignSource(storage, campaign, served, artifacts, device, worker_index, progress, threads, on_data,
                            on_promote, on_epoch)
    return serve(source, storage, on_trial, lambda: check_writable(artifacts), on_wait, poll)
