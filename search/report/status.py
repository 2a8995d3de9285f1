"""`sarsweep status --campaign FILE`: per variant and stage, trials by state, best value and params;
then every running trial with its worker, epoch and heartbeat age (what an operator chasing a
stuck or dead worker needs: which host and pid, and whether the reaper is about to retry it).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from errors import StudyError
from search.campaign.config import STAGES, CampaignConfig
from search.campaign.studies import load_stage_study
from search.policy.best import best_complete
from search.policy.stages import stage_progress
from search.policy.verdicts import below_trivial
from search.simulation.left import LeftForecast, StageWork, forecast_left
from storage.lineage import is_retry, original_number
from storage.optuna_internals import study_id, trial_id
from storage.queries import heartbeat_ages, is_stale
from storage.rdb import heartbeat_of
from storage.workers import REFRESH, IdleNote, gone_workers, idle_notes

STATES = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
COUNTED = ["COMPLETE", "PRUNED", "FAIL", "INTERRUPTED", "RUNNING", "WAITING"]
"""What status and the report count trials by: Optuna's states, with FAIL split in two. FAIL is a
trial that failed (its config, or retries used up); INTERRUPTED one whose worker stopped (a signal,
lost heartbeats, a full disk) and that a later trial retries from its last checkpoint."""


def interrupted(trials: list[FrozenTrial]) -> set[int]:
    """The FAILed trials a later trial retries: their work goes on from their last checkpoint, so
    they are interruptions, not failures (storage.trials: a config's own failure is never retried)."""
    last: dict[int, int] = {}
    for t in trials:
        last[original_number(t)] = max(last.get(original_number(t), -1), t.number)
    return {t.number for t in trials if t.state == TrialState.FAIL and last[original_number(t)] > t.number}


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by COUNTED: Optuna's state, an interrupted trial as INTERRUPTED rather than FAIL."""
    stopped = interrupted(trials)
    counts = {name: 0 for name in COUNTED}
    for t in trials:
        if t.state.name in counts:
            counts["INTERRUPTED" if t.number in stopped else t.state.name] += 1
    return counts


@dataclass
class RunningTrial:
    number: int
    worker: str | None
    """host:pid of the worker running it (recorded when its training starts)."""
    epochs_done: int
    epochs: int | None
    seconds: float | None
    """Since the trial started, on this host's clock against the worker's."""
    beat_age: float | None
    """Seconds since its last heartbeat, on the database's clock (None: no heartbeat row)."""
    epoch_seconds: float | None = None
    """Its epochs' mean wall time so far (training and validation), None before its first."""

    def stale(self, grace_period: float) -> bool:
        return is_stale(self.beat_age, grace_period)


@dataclass
class StageStatus:
    variant: str
    stage: str
    exists: bool
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_below: str | None = None
    """The best trial scored below the trivial reference (search.policy.verdicts.below_trivial)."""
    budget: int | None = None
    running: list[RunningTrial] = field(default_factory=list)
    left: Left | None = None
    idle: list[IdleNote] = field(default_factory=list)
    """Workers alive that serve this stage and wait (storage.workers), each with what for."""
    problem: str | None = None
    """Why a study of this name cannot be read as this campaign's (exists is then False)."""
    work: StageWork | None = None
    """What it has left in worker-seconds (search.simulation.left), for the campaign's forecast."""
    timing: Timing | None = None
    """What its trials take (its median measured trial's)."""
    recent_workers: set[str] = field(default_factory=set)
    """Workers that ended a trial of this stage within the grace period and have not said they left
    (alive, between two trials)."""
    by_width: dict[Any, Timing] = field(default_factory=dict)
    """The same per base_channels."""


def stage_status(storage: RDBStorage, campaign: CampaignConfig, variant: str, stage: str) -> StageStatus:
    try:
        study = load_stage_study(storage, campaign, variant, stage)
    except StudyError as exc:
        exists = campaign.study_name(variant, stage) in {s.study_name for s in storage.get_all_studies()}
        # A study made by another campaign config (the demo's, say) is not "no study yet": say why.
        return StageStatus(variant, stage, exists=False, problem=str(exc) if exists else None)
    trials = study.get_trials(deepcopy=False)
    counts = state_counts(trials)
    status = StageStatus(variant, stage, True, counts, budget=study.user_attrs.get("budget"))
    best = best_complete(trials)
    if best is not None:
        status.best_value, status.best_trial, status.best_params = best.value, best.number, best.params
        status.best_below = below_trivial(best.user_attrs)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if running:
        ages = heartbeat_ages(storage, study_id(study))
        # Optuna 5's RDB storage keeps datetime_start as UTC and hands it out in this host's local
        # time, so a status host in another zone than the worker reads it right (clock skew aside).
        now = datetime.now()
        for t in running:
            started = t.datetime_start
            epochs = t.user_attrs.get("epochs", [])
            status.running.append(RunningTrial(
                t.number, t.user_attrs.get("worker"), len(epochs), t.user_attrs.get("config", {}).get("epochs"),
                None if started is None else max(0.0, (now - started).total_seconds()), ages.get(trial_id(t)),
                _mean([e.get("seconds") for e in epochs]),
            ))
    grace = heartbeat_of(storage)[1]
    status.idle = idle_notes(storage, study_id(study), grace + REFRESH)
    now = datetime.now()
    status.recent_workers = {str(t.user_attrs["worker"]) for t in trials
                             if t.datetime_complete and "worker" in t.user_attrs
                             and (now - t.datetime_complete).total_seconds() <= grace}
    status.recent_workers -= gone_workers(storage, study_id(study))
    budget = campaign.quick_budget() if stage == "quick" else None
    progress = stage_progress(trials, budget, campaign.noise_seeds, stage, campaign.noise_rule)
    to_start = progress.waiting + progress.unclaimed + progress.noise
    status.left = time_left(trials, status.running, to_start, campaign.stage(stage).epochs, grace)
    status.timing, status.by_width = timing(trials), timings_by_width(trials)
    status.work = stage_work(campaign, variant, stage, trials, status.running, to_start, grace,
                             status.timing, status.by_width)
    return status


@dataclass
class Timing:
    """What a trial of a stage takes, from measured trials (the median trial's: a worker's first
    trial pays its process's warm-up, 2.4 s outside its epochs against 0.2-0.3 s for later ones on the
    quickstart campaign with 2 workers on the CPU dev machine, which a mean over the first few
    trials would spread over all)."""

    epoch: float
    """Seconds per epoch, training and validation."""
    training: float | None
    """Of those, the training steps (None: a trial of an older sarsweep did not tell them apart)."""
    overhead: float
    """A trial's seconds outside its epochs (start-up, the last checkpoint)."""

    def trial(self, epochs: int) -> float:
        return self.overhead + epochs * self.epoch

    def scaled(self, campaign: CampaignConfig) -> float:
        """A full run's seconds from a quick trial's: an epoch's training steps grow with the stage's
        training patches (nested subsets of one split: the fractions' ratio), the epochs with their
        number; validation (the same set in both stages) and the start-up do not. Epochs not told
        apart scale whole (which errs high)."""
        data = campaign.full.fraction / campaign.quick.fraction
        steps = self.epoch if self.training is None else min(self.training, self.epoch)
        return self.overhead + campaign.full.epochs * ((self.epoch - steps) + steps * data)


WIDTH = "base_channels"
"""The searched key a trial's time depends on most (2.4x between 8 and 16 on the quickstart)."""


def timing(trials: list[FrozenTrial]) -> Timing | None:
    epoch = _median([_mean([e.get("seconds") for e in t.user_attrs.get("epochs", [])]) for t in trials])
    if epoch is None:
        return None
    steps = _median([_mean([e.get("train_seconds") for e in t.user_attrs.get("epochs", [])]) for t in trials])
    overheads = [(t.datetime_complete - t.datetime_start).total_seconds()
                 - sum(float(e.get("seconds", 0.0)) for e in t.user_attrs.get("epochs", []))
                 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and not is_retry(t)
                 and t.datetime_start and t.datetime_complete]
    return Timing(epoch, steps, max(0.0, _median(overheads) or 0.0))


def timings_by_width(trials: list[FrozenTrial]) -> dict[Any, Timing]:
    groups: dict[Any, list[FrozenTrial]] = {}
    for t in trials:
        groups.setdefault(t.params.get(WIDTH), []).append(t)
    return {w: found for w, group in groups.items() if (found := timing(group)) is not None}


def stage_work(campaign: CampaignConfig, variant: str, stage: str, trials: list[FrozenTrial],
               running: list[RunningTrial], to_start: int, grace_period: float, whole: Timing | None,
               by_width: dict[Any, Timing]) -> StageWork:
    """A stage's work left, timed by its own measured trials (`whole`: timing(trials), `by_width`:
    timings_by_width(trials)): a waiting trial (a promoted config, a retry) by those of its width, the
    others by the stage's median trial. A full stage with nothing promoted yet will run top_k..most
    configs and its seed re-runs (plan's count)."""
    from search.simulation.plan import stage_trials

    epochs = campaign.stage(stage).epochs
    alive = [r for r in running if not r.stale(grace_period)]
    to_start += len(running) - len(alive)  # a trial whose worker is gone starts again (its retry)
    waiting = sorted((t for t in trials if t.state == TrialState.WAITING), key=lambda t: t.number)
    unknown = max(0, to_start - len(waiting))
    span = (unknown, unknown) if trials or stage == "quick" else stage_trials(campaign, stage)
    work = StageWork(variant, stage, span, None if whole is None else whole.trial(epochs))
    work.queued = [by_width[t.params.get(WIDTH)].trial(epochs) if t.params.get(WIDTH) in by_width else None
                   for t in waiting]
    work.widths = [t.params.get(WIDTH) for t in waiting]
    for r in alive:
        each = r.epoch_seconds or (None if whole is None else whole.epoch)
        work.running.append(0.0 if each is None else each * max(0, (r.epochs or epochs) - r.epochs_done))
    return work


def campaign_forecast(rows: list[StageStatus], campaign: CampaignConfig, workers: int | None = None) -> LeftForecast:
    """What the campaign has left (search.simulation.left) on `workers` workers (None: the workers
    alive now: running a trial, waiting, or having ended one within the grace period). What the
    full stage has not timed yet takes its variant's quick trials of the same width (else all its
    quick trials) scaled to the full stage (Timing.scaled)."""
    stages = []
    quick = {r.variant: r for r in rows if r.stage == "quick" and r.work is not None}
    for r in rows:
        if r.work is None:
            continue
        work = r.work
        q = quick.get(r.variant)
        q_whole = None if q is None else q.timing
        if r.stage == "full" and q is not None and q_whole is not None:
            by_width = q.by_width
            queued = [seconds if seconds is not None else
                      by_width.get(w, q_whole).scaled(campaign)
                      for seconds, w in zip(work.queued, work.widths, strict=True)]
            work = dataclasses.replace(work, queued=queued)
            if work.trial_seconds is None:
                work = dataclasses.replace(work, trial_seconds=q_whole.scaled(campaign), measured="scaled from quick")
        stages.append(work)
    if workers is None:  # running a trial, waiting, or between two (one ended within the grace period)
        alive = {t.worker for r in rows for t in r.running if t.worker} | {n.worker for r in rows for n in r.idle}
        workers = len(alive | {w for r in rows for w in r.recent_workers})
    return forecast_left(stages, workers)


@dataclass
class Left:
    """What a stage has still to run and the estimated wall time for it at the current worker count."""

    trials: int
    """Trials not finished: running, waiting, and a quick stage's budget not yet claimed."""
    workers: int
    """Trials running now (one per worker)."""
    seconds: float | None
    """Estimated until the last of them ends, None when it cannot be estimated (nothing has
    finished an epoch yet) or nothing runs them (no worker)."""


def _median(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return statistics.median(numbers) if numbers else None


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(numbers) / len(numbers) if numbers else None


def time_left(trials: list[FrozenTrial], running: list[RunningTrial], to_start: int, epochs: int,
              grace_period: float = math.inf) -> Left:
    """Estimated wall time until the stage's last trial ends, if the workers running now go on.

    A trial still to start takes the mean wall time of the stage's finished trials (COMPLETE and
    PRUNED, so pruning is counted in), or, before any has finished, the stage's epochs at the
    running trials' mean epoch time. A running trial takes its own mean epoch time for each epoch
    it has left, as if it is not pruned (an upper bound), or, before its first epoch, a new trial's
    time less what it has run. Trials are handed to the worker that frees up first. A running
    trial without a heartbeat for `grace_period` has lost its worker: it counts as a trial to
    start again (its retry), not as a worker."""
    stale = [r for r in running if r.stale(grace_period)]
    running = [r for r in running if r not in stale]
    to_start += len(stale)
    spans = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
             if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_start and t.datetime_complete]
    per_epoch = _mean([r.epoch_seconds for r in running])
    per_trial = _mean(spans) if spans else (None if per_epoch is None else per_epoch * epochs)
    remaining: list[float | None] = []
    for r in running:
        if r.epoch_seconds is not None:
            remaining.append(r.epoch_seconds * max(0, (r.epochs or epochs) - r.epochs_done))
        else:
            remaining.append(None if per_trial is None else max(0.0, per_trial - (r.seconds or 0.0)))
    left = Left(len(running) + to_start, len(running), None)
    if not running or any(x is None for x in remaining) or (to_start and per_trial is None):
        return left
    free = sorted(x for x in remaining if x is not None)
    for _ in range(to_start):  # each new trial to the worker that frees up first
        heapq.heapreplace(free, free[0] + (per_trial or 0.0))
    left.seconds = max(free)
    return left


def render_left(row: StageStatus) -> str:
    """'done', '-' (nothing to run yet), 'no worker', 'waiting' (workers serve it, idle: see
    render_idle), '?' (no epoch timed yet) or '~1h05m'."""
    left = row.left
    if left is None or left.trials == 0:
        return "done" if sum(row.counts.values()) else "-"
    if left.workers == 0:
        return "waiting" if row.idle else "no worker"
    return "?" if left.seconds is None else "~" + duration(left.seconds)


def value_text(value: float, objective: str) -> str:
    """An objective value with its metric's fixed decimals: PSNR 2 (17.30, 17.19), SSIM 4."""
    return f"{value:.2f}" if objective == "psnr" else f"{value:.4f}"


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def render(rows: list[StageStatus], objective: str) -> str:
    head = (f"{'variant':<12} {'stage':<6} {'done':>4} {'pruned':>6} {'failed':>6} {'interrupted':>11} "
            f"{'running':>7} {'waiting':>7}"
            f" {'left':>9}  best {objective:<6} params")
    lines = [head, "-" * len(head)]
    for r in rows:
        if not r.exists:
            lines.append(f"{r.variant:<12} {r.stage:<6} " + (f"({r.problem})" if r.problem else
                                                              "(no study yet: run `sarsweep init`)"))
            continue
        c = r.counts
        best = f"#{r.best_trial} {value_text(r.best_value, objective)}" if r.best_value is not None else "-"
        params = " ".join(f"{k}={_fmt(v)}" for k, v in r.best_params.items())
        if r.best_below:
            params += f"  ({r.best_below})"
        lines.append(f"{r.variant:<12} {r.stage:<6} {c['COMPLETE']:>4} {c['PRUNED']:>6} {c['FAIL']:>6} "
                     f"{c.get('INTERRUPTED', 0):>11} "
                     f"{c['RUNNING']:>7} {c['WAITING']:>7} {render_left(r):>9}  {best:<11} {params}")
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 90:
        return f"{s}s"
    if s < 90 * 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


def render_running(rows: list[StageStatus], grace_period: float) -> str:
    """Running trials, those without a heartbeat first, then the oldest heartbeat first; '' when none runs."""
    running = sorted(((r, t) for r in rows for t in r.running),
                     key=lambda rt: (0, 0.0) if rt[1].beat_age is None else (1, -rt[1].beat_age))
    if not running:
        return ""
    head = f"{'variant':<12} {'stage':<6} {'trial':>5} {'epoch':>7} {'running':>8} {'last beat':>9}  worker"
    lines = [f"running trials (stale after {grace_period:g}s without a heartbeat: the reaper fails and "
             f"retries them):", head, "-" * len(head)]
    for r, t in running:
        epoch = f"{t.epochs_done}/{t.epochs}" if t.epochs else "-"
        beat = "never" if t.beat_age is None else f"{duration(t.beat_age)} ago"
        note = ""
        if t.beat_age is None:
            note = "  NO HEARTBEAT (not claimed by a sarsweep worker: no reaper will ever fail it)"
        elif t.stale(grace_period):
            note = "  STALE (its worker is gone or cut off; the next reaper pass retries it)"
        lines.append(f"{r.variant:<12} {r.stage:<6} {'#' + str(t.number):>5} {epoch:>7} {duration(t.seconds):>8} "
                     f"{beat:>9}  {t.worker or '-'}{note}")
    return "\n".join(lines)


def render_idle(rows: list[StageStatus]) -> str:
    """Each idle worker once, with what it waits for; '' when none waits."""
    seen: dict[str, IdleNote] = {}
    for r in rows:
        for note in r.idle:
            seen.setdefault(note.worker, note)
    if not seen:
        return ""
    lines = ["idle workers (alive, nothing to claim now; they go on when it comes):"]
    lines += [f"  {n.worker} (said {duration(n.age)} ago): {n.why}" for n in seen.values()]
    return "\n".join(lines)


def to_json(campaign: CampaignConfig, rows: list[StageStatus], grace_period: float,
            forecast: LeftForecast | None = None) -> dict[str, Any]:
    """What the tables say, for scripts: per variant and stage the counts, best trial, estimate
    and running trials (seconds as numbers; `stale` judged against `grace_period`)."""
    stages = []
    for r in rows:
        stage: dict[str, Any] = {"variant": r.variant, "stage": r.stage, "exists": r.exists}
        if r.problem:
            stage["problem"] = r.problem
        if r.exists:
            left = r.left
            stage.update(
                counts=r.counts,
                best=None if r.best_trial is None else {"trial": r.best_trial, "value": r.best_value,
                                                        "params": r.best_params, "below_trivial": r.best_below},
                left=None if left is None else {"trials": left.trials, "workers": left.workers,
                                                "seconds": left.seconds, "says": render_left(r)},
                running=[{"trial": t.number, "worker": t.worker, "epochs_done": t.epochs_done, "epochs": t.epochs,
                          "seconds": t.seconds, "heartbeat_age": t.beat_age,
                          "stale": t.stale(grace_period)} for t in r.running],
                idle_workers=[{"worker": n.worker, "waits_for": n.why, "said_seconds_ago": n.age} for n in r.idle],
            )
        stages.append(stage)
    return {"campaign": campaign.name, "objective": campaign.objective, "grace_period": grace_period,
            "promotions_waiting": waiting_promotions(rows), "stages": stages,
            "forecast": None if forecast is None else forecast.to_dict()}


def campaign_status(storage: RDBStorage, campaign: CampaignConfig) -> list[StageStatus]:
    return [stage_status(storage, campaign, v, s) for v in campaign.variants for s in STAGES]


def waiting_promotions(rows: list[StageStatus]) -> int:
    return sum(r.counts.get("WAITING", 0) for r in rows if r.stage == "full" and r.exists)


__all__ = [
    "COUNTED", "campaign_forecast", "Left", "interrupted", "state_counts", "RunningTrial", "StageStatus",
    "campaign_status", "render", "render_idle", "render_left", "render_running", "stage_status", "time_left",
    "to_json", "waiting_promotions"]
