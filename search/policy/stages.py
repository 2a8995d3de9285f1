"""Where a stage stands, from its trials: what it has still to run (its best config: search.policy.best)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from optuna.trial import TrialState

from search.policy.records import TrialLike
from search.policy.seeds import pending
from storage.lineage import is_retry


@dataclass
class StageProgress:
    """What a stage has still to run (see stage_progress)."""

    running: int
    waiting: int
    """Queued: retries of failed or lost trials, and enqueued configs."""
    unclaimed: int
    """Trials of a quick stage's budget no worker has started yet (0 for a full stage)."""
    finished: int
    """COMPLETE, PRUNED and FAIL trials."""
    lost: int = 0
    """Running trials past the grace period without a heartbeat: their worker is gone, and they
    end only when a worker or `sarsweep reaper` retries them."""
    noise: int = 0
    """Seed re-runs still to be queued (search.policy.seeds)."""

    @property
    def left(self) -> int:
        return self.running + self.waiting + self.unclaimed + self.noise

    def sentence(self) -> str:
        running = f"{self.running} running"
        if self.lost:
            gone = (f"{self.lost} of them with their worker gone" if self.lost < self.running
                    else "whose worker is gone")
            running += f" {gone}, for a worker or `sarsweep reaper` to retry"
        parts = [text for n, text in ((self.running, running), (self.waiting, f"{self.waiting} waiting"),
                                      (self.unclaimed, f"{self.unclaimed} not started"),
                                      (self.noise, f"{self.noise} seed-noise re-run(s) to come")) if n]
        return f"{', '.join(parts)}; {self.finished} finished"


def stage_progress(trials: Sequence[TrialLike], budget: int | None, noise_seeds: int = 0,
                   stage: str = "quick", rule: str = "fixed") -> StageProgress:
    """Counted from a stage's trials; `budget` is a quick stage's (None for a full stage, which runs
    only what waits). Originals are trials that are no retry, as the claim counts them. A RUNNING
    trial counts as running even when its worker died: the reaper retries it. With `noise_seeds`,
    the seed re-runs still to be queued count too (they end the stage)."""
    count = {s: sum(1 for t in trials if t.state == s) for s in TrialState}
    originals = sum(1 for t in trials if not is_retry(t))
    progress = StageProgress(count[TrialState.RUNNING], count[TrialState.WAITING],
                             0 if budget is None else max(0, budget - originals),
                             count[TrialState.COMPLETE] + count[TrialState.PRUNED] + count[TrialState.FAIL])
    if noise_seeds:
        progress.noise = pending(trials, noise_seeds, stage, progress.left, rule)
    return progress


def stage_ended(trials: Sequence[TrialLike], budget: int | None, noise_seeds: int, stage: str,
                rule: str = "fixed") -> bool:
    """Nothing running, waiting, unclaimed or to be re-run for seed noise: the rule `promote` and
    the campaign worker use before promoting."""
    return not stage_progress(trials, budget, noise_seeds, stage, rule).left
