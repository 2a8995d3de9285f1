"""Seed noise: a stage's best config re-run with other seeds, and the band their spread gives.

Two configs 0.3 dB apart may differ by no more than their seeds do. So once a stage has ended
(a quick stage: its budget spent; a full stage: its promoted configs run), the claim that finds
nothing left queues `noise_seeds` re-runs of its best config (`refill`, under the study lock, so
once), each with its own seed: user attrs `noise_of` (the re-run trial's number) and
`noise_seed` (1, 2, ...). The stage ends when they have run. Its noise band is the spread (max -
min) of that config's values over all its seeds, the original's included: promotion takes every
config within the quick band of the top_k-th (search.promote), and the report says which
differences exceed the bands. Re-runs are never pruned and never chosen as a stage's best.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.campaign import CampaignConfig
from search.studies import NOISE_ATTR, best_complete, is_noise
from storage.queries import StudyCounts

__all__ = ["NOISE_ATTR", "Band", "band", "is_noise", "noise_target", "pending", "refill"]


def noise_target(trials: list[FrozenTrial], stage: str) -> FrozenTrial | None:
    """The config a stage's re-runs repeat: its best trial (search.studies.best_complete; in a
    full stage, of the promoted configs)."""
    return best_complete([t for t in trials if stage == "quick" or "promoted_from_trial" in t.user_attrs])


@dataclass
class Band:
    """A stage's seed noise: one config's values over its seeds."""

    trial: int
    """The re-run config's trial."""
    values: list[float]
    """Its value at each seed: the original's first, then its finished re-runs'."""

    @property
    def spread(self) -> float:
        return max(self.values) - min(self.values)

    def sentence(self, unit: str = "dB") -> str:
        return f"{self.spread:.2f} {unit} (trial {self.trial} over {len(self.values)} seeds)"


def band(trials: list[FrozenTrial]) -> Band | None:
    """The stage's noise band, once at least one re-run has finished; None before (or with none)."""
    reruns = [t for t in trials if is_noise(t) and t.state == TrialState.COMPLETE]
    if not reruns:
        return None
    target = int(reruns[0].user_attrs[NOISE_ATTR])
    original = next((t for t in trials if t.number == target), None)
    if original is None or original.value is None:
        return None
    values = [float(original.value)] + [float(t.value) for t in reruns  # type: ignore[arg-type]
                                        if int(t.user_attrs[NOISE_ATTR]) == target]
    return Band(target, values)


def pending(trials: list[FrozenTrial], campaign: CampaignConfig, stage: str, others_left: int) -> int:
    """Re-runs the stage has still to queue: `noise_seeds` until they are queued, unless the stage
    has ended with no trial to re-run (`others_left`: its trials running, waiting or unclaimed)."""
    if not campaign.noise_seeds or any(is_noise(t) for t in trials):
        return 0
    if stage == "full" and not any("promoted_from_trial" in t.user_attrs for t in trials):
        return 0  # nothing promoted yet: the stage has not begun
    return campaign.noise_seeds if others_left or noise_target(trials, stage) is not None else 0


def refill(study: optuna.Study, campaign: CampaignConfig, stage: str) -> Callable[[StudyCounts], bool]:
    """For storage.trials.claim: when the study has nothing left to claim, queue the re-runs of
    its best config (once), and say whether it did. Runs under the study lock."""
    def fill(counts: StudyCounts) -> bool:
        if not campaign.noise_seeds or counts.waiting or counts.running or counts.tagged:
            return False
        if stage == "quick" and counts.budget is not None and counts.originals < counts.budget:
            return False  # searched trials are still to be claimed
        target = noise_target(study.get_trials(deepcopy=False), stage)
        if target is None:
            return False
        for seed in range(1, campaign.noise_seeds + 1):
            study.enqueue_trial(target.params, user_attrs={NOISE_ATTR: target.number, "noise_seed": seed})
        return True

    return fill
