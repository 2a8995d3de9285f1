"""What a running campaign has left to pay: trials, worker-hours, and the wall time for N workers.

    sarsweep status --campaign configs/campaign.yaml [--workers N]

`sarsweep plan`'s forecast before a campaign, made again while it runs from what the workers have
measured instead of a calibration: each stage's median trial's seconds per epoch and per-trial overhead from
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
    """Trials still to start whose config is not known yet, fewest and most (a full stage not
    promoted yet: top_k..most, plus seeds); each takes trial_seconds."""
    trial_seconds: float | None
    """A trial's seconds from start to end at the stage's measured epoch time; None when nothing was measured."""
    running: list[float] = field(default_factory=list)
    """Seconds each running trial has left."""
    measured: str = "measured"
    """Where trial_seconds comes from: 'measured', or 'scaled from quick'."""
    queued: list[float | None] = field(default_factory=list)
    """Seconds of each waiting trial whose config is known (a promoted one, a retry), timed by the
    trials of its width; None: by trial_seconds."""
    widths: list[Any] = field(default_factory=list)
    """The base_channels of each queued trial (what the caller times it by)."""

    def jobs(self, end: int) -> list[float] | None:
        """Seconds of each trial to start, with the fewest (end 0) or the most (1); None when one
        has no time."""
        if self.trial_seconds is None and (self.to_start[end] or any(q is None for q in self.queued)):
            return None
        per = self.trial_seconds or 0.0
        return [per if q is None else q for q in self.queued] + [per] * self.to_start[end]

    def hours(self) -> tuple[float, float] | None:
        few, most = self.jobs(0), self.jobs(1)
        if few is None or most is None:
            return None
        now = sum(self.running)
        return ((now + sum(few)) / 3600, (now + sum(most)) / 3600)


@dataclass
class LeftForecast:
    workers: int
    stages: list[StageWork]
    wall_hours: float | None = None
    """Until the last trial ends with `workers` workers, the most trials taken; None when a stage
    with work has no measured time, or there is work and no worker."""
    idle_share: float | None = None
    """Of the workers' time until then, spent waiting (for a quick stage to end before its full runs)."""
    wall_hours_fewest: float | None = None
    """As wall_hours, the fewest trials taken (a full stage promoting top_k only)."""
    critical_hours: float | None = None
    """As wall_hours with a worker for every trial: what no number of workers can beat."""

    def hours(self) -> tuple[float, float] | None:
        spans = [s.hours() for s in self.stages]
        if any(h is None for h in spans):
            return None
        return (sum(h[0] for h in spans if h), sum(h[1] for h in spans if h))

    def trials(self) -> tuple[int, int]:
        return (sum(s.to_start[0] + len(s.queued) + len(s.running) for s in self.stages),
                sum(s.to_start[1] + len(s.queued) + len(s.running) for s in self.stages))

    def to_dict(self) -> dict[str, Any]:
        hours = self.hours()
        return {"workers": self.workers, "pruning_assumed": False, "trials_left": list(self.trials()),
                "worker_hours_left": None if hours is None else list(hours), "wall_hours": self.wall_hours,
                "idle_share": self.idle_share, "wall_hours_fewest": self.wall_hours_fewest,
                "critical_path_hours": self.critical_hours,
                "stages": [{"variant": s.variant, "stage": s.stage, "to_start": list(s.to_start),
                            "queued": len(s.queued), "running": len(s.running),
                            "trial_seconds": s.trial_seconds, "from": s.measured,
                            "worker_hours": None if s.hours() is None else list(s.hours() or ())}
                           for s in self.stages]}


def forecast_left(stages: list[StageWork], workers: int) -> LeftForecast:
    """Worker-hours per stage, and the wall time of the most (and the fewest) trials on `workers` workers."""
    result = LeftForecast(workers, stages)
    most = _schedule(stages, workers, 1)
    if most is not None:
        result.wall_hours, result.idle_share = most
        result.wall_hours_fewest = (_schedule(stages, workers, 0) or most)[0]
    everyone = sum(len(s.running) + len(s.queued) + s.to_start[1] for s in stages)
    unbounded = _schedule(stages, max(1, everyone), 1)
    result.critical_hours = None if unbounded is None else unbounded[0]
    return result


def _schedule(stages: list[StageWork], workers: int, end: int) -> tuple[float, float] | None:
    """(wall hours, idle share) with each stage's to_start[end] trials; None when not computable."""
    running = [r for s in stages for r in s.running]
    jobs = {(s.variant, s.stage): s.jobs(end) for s in stages}
    if any(j is None for j in jobs.values()):
        return None
    if not running and not any(jobs.values()):
        return 0.0, 0.0
    n = max(workers, len(running))
    if n == 0:
        return None
    free = sorted(running) + [0.0] * (n - len(running))
    heapq.heapify(free)
    quick_end = {s.variant: max(s.running, default=0.0) for s in stages if s.stage == "quick"}
    queue = {key: list(j or []) for key, j in jobs.items()}  # in order: a waiting trial is claimed oldest first
    busy = sum(running)
    while any(queue.values()):
        at = heapq.heappop(free)
        ready = [key for key, pending in queue.items() if pending and
                 (key[1] == "quick" or not queue.get((key[0], "quick")) and quick_end.get(key[0], 0.0) <= at)]
        if not ready:  # only full runs whose quick stage is still running: wait for the next to end
            later = [quick_end[v] for (v, stage), pending in queue.items() if pending and stage == "full"
                     and not queue.get((v, "quick"))]
            heapq.heappush(free, min(later) if later else min(free, default=at))
            continue
        full = [key for key in ready if key[1] == "full"]
        key = full[0] if full else max(ready, key=lambda k: len(queue[k]))
        took = queue[key].pop(0)
        busy += took
        heapq.heappush(free, at + took)
        if key[1] == "quick":
            quick_end[key[0]] = max(quick_end.get(key[0], 0.0), at + took)
    wall = max(free)
    return wall / 3600, (max(0.0, 1 - busy / (n * wall)) if wall else 0.0)


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
        fewest = f.wall_hours if f.wall_hours_fewest is None else f.wall_hours_fewest
        lines.append(f"  with {f.workers} worker(s): about {_span((fewest, f.wall_hours))} more, idle "
                     f"{f.idle_share or 0:.0%} of worker time with the most trials (full runs wait for their "
                     "quick stage)")
    elif hours is not None:
        lines.append("  no worker is running or waiting: start some (sarsweep worker), or pass --workers N "
                     "to see the wall time N would take")
    if f.critical_hours is not None:
        lines.append(f"  critical path {_duration(f.critical_hours)} (a worker for every trial: no number of workers "
                     "is faster)")
    scaled = [f"{s.variant} full" for s in f.stages if s.measured != "measured" and (s.to_start[1] or s.queued)]
    if scaled:
        lines.append(f"  ({', '.join(scaled)}: no full run timed yet, the quick stage's epochs scaled by the "
                     "stages' data fractions)")
    return "\n".join(lines)


def _span(pair: tuple[float, float]) -> str:
    low, high = _duration(pair[0]), _duration(pair[1])
    return low if low == high else f"{low} to {high}"


def _duration(hours: float) -> str:
    """'0.4 s', '40 s', '12 min', '3.4 h'."""
    if hours * 3600 < 10:
        return f"{hours * 3600:.1f} s"
    if hours * 60 < 1:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"
