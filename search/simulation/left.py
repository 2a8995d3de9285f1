"""What a running campaign has left to pay: trials, worker-hours, and the wall time for N workers.

    sarsweep status --campaign configs/campaign.yaml [--workers N]

`sarsweep plan`'s forecast before a campaign, made again while it runs from what the workers have
measured instead of a calibration: each stage's mean seconds per epoch and per-trial overhead from
its finished epochs (a full stage that has not trained yet takes its variant's quick epochs, scaled
by the two stages' data fractions). Every trial is taken to run all its epochs, as plan takes it
(pruning can only save). The wall time comes from handing the work, in the claim's order (full
stages first, search.policy.claims), to the workers as they free up; a variant's full runs start
once its quick stage has ended.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageWork:
    """One stage's work left, in seconds of a worker."""

    variant: str
    stage: str
    to_start: tuple[int, int]
    """Trials still to start, fewest and most (a full stage not promoted yet: top_k..most, plus seeds)."""
    trial_seconds: float | None
    """A trial's seconds from start to end at the measured epoch time; None when nothing was measured."""
    running: list[float] = field(default_factory=list)
    """Seconds each running trial has left."""
    measured: str = "measured"
    """Where trial_seconds comes from: 'measured', or 'scaled from quick'."""
    overhead: float = 0.0
    """Of trial_seconds, what a trial spends outside its epochs (start-up, checkpoints at the end)."""

    def hours(self) -> tuple[float, float] | None:
        if self.trial_seconds is None and any(self.to_start):
            return None
        per = self.trial_seconds or 0.0
        now = sum(self.running)
        return ((now + self.to_start[0] * per) / 3600, (now + self.to_start[1] * per) / 3600)


@dataclass
class LeftForecast:
    workers: int
    stages: list[StageWork]
    wall_hours: float | None = None
    """Until the last trial ends with `workers` workers, the most trials taken; None when a stage
    with work has no measured time, or there is work and no worker."""
    idle_share: float | None = None
    """Of the workers' time until then, spent waiting (for a quick stage to end before its full runs)."""

    def hours(self) -> tuple[float, float] | None:
        spans = [s.hours() for s in self.stages]
        if any(h is None for h in spans):
            return None
        return (sum(h[0] for h in spans if h), sum(h[1] for h in spans if h))

    def trials(self) -> tuple[int, int]:
        return (sum(s.to_start[0] + len(s.running) for s in self.stages),
                sum(s.to_start[1] + len(s.running) for s in self.stages))

    def to_dict(self) -> dict[str, Any]:
        hours = self.hours()
        return {"workers": self.workers, "pruning_assumed": False, "trials_left": list(self.trials()),
                "worker_hours_left": None if hours is None else list(hours), "wall_hours": self.wall_hours,
                "idle_share": self.idle_share,
                "stages": [{"variant": s.variant, "stage": s.stage, "to_start": list(s.to_start), "running": len(s.running),
                            "trial_seconds": s.trial_seconds, "from": s.measured,
                            "worker_hours": None if s.hours() is None else list(s.hours() or ())}
                           for s in self.stages]}


def forecast_left(stages: list[StageWork], workers: int) -> LeftForecast:
    """Worker-hours per stage, and the wall time of the most trials on `workers` workers."""
    result = LeftForecast(workers, stages)
    running = [r for s in stages for r in s.running]
    if any(s.trial_seconds is None and s.to_start[1] for s in stages):
        return result
    if not running and not any(s.to_start[1] for s in stages):
        result.wall_hours, result.idle_share = 0.0, 0.0
        return result
    n = max(workers, len(running))
    if n == 0:
        return result
    free = sorted(running) + [0.0] * (n - len(running))
    heapq.heapify(free)
    quick_end = {s.variant: max(s.running, default=0.0) for s in stages if s.stage == "quick"}
    queue = {(s.variant, s.stage): [s.trial_seconds or 0.0] * s.to_start[1] for s in stages}
    busy = sum(running)
    while any(queue.values()):
        at = heapq.heappop(free)
        ready = [key for key, jobs in queue.items() if jobs and
                 (key[1] == "quick" or not queue.get((key[0], "quick")) and quick_end.get(key[0], 0.0) <= at)]
        if not ready:  # only full runs whose quick stage is still running: wait for the next to end
            later = [quick_end[v] for (v, stage), jobs in queue.items() if jobs and stage == "full"
                     and not queue.get((v, "quick"))]
            heapq.heappush(free, min(later) if later else min(free, default=at))
            continue
        full = [key for key in ready if key[1] == "full"]
        key = full[0] if full else max(ready, key=lambda k: len(queue[k]))
        took = queue[key].pop()
        busy += took
        heapq.heappush(free, at + took)
        if key[1] == "quick":
            quick_end[key[0]] = max(quick_end.get(key[0], 0.0), at + took)
    wall = max(free)
    result.wall_hours = wall / 3600
    result.idle_share = max(0.0, 1 - busy / (n * wall)) if wall else 0.0
    return result


def render_left(f: LeftForecast) -> str:
    """The lines `sarsweep status` prints under its table."""
    lo, hi = f.trials()
    if hi == 0:
        return "left: nothing; the campaign's trials have all ended"
    trials = f"{lo}" if lo == hi else f"{lo}-{hi}"
    hours = f.hours()
    spent = "worker time unknown until each variant has trained an epoch" if hours is None else (
        f"{_span(hours)} of worker time")
    lines = [f"left: {trials} trials, {spent} (from the measured epoch times; every trial to its last epoch, "
             "pruning not assumed)"]
    if f.wall_hours is not None:
        lines.append(f"  with {f.workers} worker(s): about {_duration(f.wall_hours)} more, idle "
                     f"{f.idle_share or 0:.0%} of worker time (full runs wait for their quick stage)")
    elif hours is not None:
        lines.append("  no worker is running or waiting: start some (sarsweep worker), or pass --workers N "
                     "to see the wall time N would take")
    scaled = [f"{s.variant} full" for s in f.stages if s.measured != "measured" and s.to_start[1]]
    if scaled:
        lines.append(f"  ({', '.join(scaled)}: no full run timed yet, the quick stage's epochs scaled by the "
                     "stages' data fractions)")
    return "\n".join(lines)


def _span(pair: tuple[float, float]) -> str:
    low, high = _duration(pair[0]), _duration(pair[1])
    return low if low == high else f"{low} to {high}"


def _duration(hours: float) -> str:
    """'40 s', '12 min', '3.4 h'."""
    if hours * 60 < 1:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"
