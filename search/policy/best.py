"""A stage's best config: the COMPLETE trial with the highest value, never a seed re-run."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import TrialState

from search.campaign.roles import is_noise
from search.policy.records import TrialLike


def best_complete(trials: Sequence[TrialLike]) -> TrialLike | None:
    """The COMPLETE trial with the highest value (the lowest number among equals), or None. A
    seed re-run is never it: picking the luckiest seed of a config flatters it."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and not is_noise(t)]
    return max(done, key=lambda t: (float(t.value), -t.number)) if done else None  # type: ignore[arg-type]
