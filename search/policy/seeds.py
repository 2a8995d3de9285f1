"""Seed noise: a stage's best config re-run with other seeds, and the band their spread gives.

Two configs 0.3 dB apart may differ by no more than their seeds do. So once a stage has ended
(a quick stage: its budget spent; a full stage: its promoted configs run), `noise_seeds` re-runs of
its best config are queued, each with its own seed (roles NOISE_OF and NOISE_SEED), and the stage
ends when they have run. Its noise band is the spread (max - min) of that config's values over all
its seeds, the original's included: promotion takes every config within the quick band of the
top_k-th (search.policy.promotion), and the report says which differences exceed the bands.
Re-runs are never pruned and never chosen as a stage's best. search.running.noise queues them on
the storage; the simulator calls the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from search.campaign.roles import NOISE_OF, NOISE_SEED, is_noise, is_promoted
from search.policy.records import TrialLike
from search.policy.stages import best_complete


def noise_target(trials: Sequence[TrialLike], stage: str) -> TrialLike | None:
    """The config a stage's re-runs repeat: its best trial (in a full stage, of the promoted configs)."""
    return best_complete([t for t in trials if stage == "quick" or is_promoted(t)])


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


def band(trials: Sequence[TrialLike]) -> Band | None:
    """The stage's noise band, once at least one re-run has finished; None before (or with none)."""
    reruns = [t for t in trials if is_noise(t) and t.state == TrialState.COMPLETE]
    if not reruns:
        return None
    target = int(reruns[0].user_attrs[NOISE_OF])
    original = next((t for t in trials if t.number == target), None)
    if original is None or original.value is None:
        return None
    values = [float(original.value)] + [float(t.value) for t in reruns  # type: ignore[arg-type]
                                        if int(t.user_attrs[NOISE_OF]) == target]
    return Band(target, values)


def pending(trials: Sequence[TrialLike], noise_seeds: int, stage: str, others_left: int) -> int:
    """Re-runs the stage has still to queue: `noise_seeds` until they are queued, unless the stage
    has ended with no trial to re-run (`others_left`: its trials running, waiting or unclaimed)."""
    if not noise_seeds or any(is_noise(t) for t in trials):
        return 0
    if stage == "full" and not any(is_promoted(t) for t in trials):
        return 0  # nothing promoted yet: the stage has not begun
    return noise_seeds if others_left or noise_target(trials, stage) is not None else 0


def reruns_due(trials: Sequence[TrialLike], noise_seeds: int, stage: str, waiting: int, running: int,
               queued: int, unclaimed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The re-runs to queue now, as (params, user attrs): the stage's best config `noise_seeds`
    times, once the stage has nothing else waiting, running or unclaimed and none is queued yet
    (`queued`: re-runs the stage holds already). Empty otherwise."""
    if not noise_seeds or waiting or running or queued or unclaimed:
        return []
    target = noise_target(trials, stage)
    if target is None:
        return []
    return [(dict(target.params), {NOISE_OF: target.number, NOISE_SEED: seed}) for seed in range(1, noise_seeds + 1)]
