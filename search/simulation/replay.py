"""Replay a campaign on a curve table: sarsweep's own decisions, N workers, a simulated clock.

    from search.simulation import CurveTable, replay_campaign
    table = CurveTable.load("bench/curves/s1-cpu")
    result = replay_campaign(table, table.campaign, workers=8, seed=0)
    result.variants["baseline"].regret, result.wall, result.idle_share

What runs is the product's own code wherever it decides: Optuna's TPE sampler as
search.campaign.studies.make_sampler builds it (constant liar, one sampler per worker, seeded by
worker index), the stage's pruner (make_pruner: the median pruner after each trial's warmup),
the reference configs (queue_references), the claim priority (search.policy.claims), the end of
a stage (search.policy.stages), promotion with the noise band (search.policy.promotion) and the
seed re-runs (search.policy.seeds). Only the training is replaced: a trial's point is looked up
at its nearest recorded config and one of its recorded seeds, and each epoch reports the
recorded value after the recorded seconds. Studies live in Optuna's in-memory storage.

A one-stage arm (a peer such as TPE + Hyperband at the full fidelity) is the same replay with
`one_stage=True`, its own sampler and pruner, and a budget of worker-seconds per variant.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from search.campaign.config import STAGES, CampaignConfig
from search.campaign.roles import NOISE_OF, is_noise, is_promoted
from search.campaign.studies import make_pruner, make_sampler, queue_references, sample_params
from search.policy.best import best_complete
from search.policy.claims import Counts, Key, claim_order, unclaimed
from search.policy.promotion import promotions
from search.policy.seeds import reruns_due
from search.policy.stages import stage_ended
from search.simulation.table import CurveTable

CONFIG_ATTR = "table_config"
"""The recorded config a trial's point was looked up at."""
SEED_ATTR = "table_seed"
"""The recorded seed its curve was read from."""
END_ATTR = "ended_at"
"""Simulated seconds when it ended."""

SamplerFactory = Callable[[str, int], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[str], optuna.pruners.BasePruner]


@dataclass
class VariantOutcome:
    chosen: int | None
    """The table config the campaign would export (the full stage's best), None if none finished."""
    chosen_value: float | None
    """Its true value at the full fidelity: the mean over the table's seeds of its best epoch."""
    best_value: float
    """The table's best config's true value at the full fidelity."""
    seconds: dict[str, float]
    """Worker-seconds spent per stage."""
    trials: dict[str, int]
    pruned: int
    promoted: list[int]
    """Table configs promoted to the full stage."""
    best_config: int
    stopped: list[int] = field(default_factory=list)
    """Table configs whose promoted full run was stopped early (full.stop_margin)."""

    @property
    def winner_stopped(self) -> bool:
        """The table's best config was promoted and its full run stopped as beaten."""
        return self.best_config in self.stopped

    @property
    def regret(self) -> float:
        return float("nan") if self.chosen_value is None else self.best_value - self.chosen_value

    @property
    def winner_promoted(self) -> bool:
        return self.best_config in self.promoted

    @property
    def named_winner(self) -> bool:
        """The campaign chose the table's best config."""
        return self.chosen == self.best_config


@dataclass
class ReplayResult:
    variants: dict[str, VariantOutcome]
    wall: float
    """Simulated seconds from the first claim until the last trial ended."""
    busy: float
    """Worker-seconds spent training."""
    workers: int
    studies: dict[Key, optuna.Study] = field(default_factory=dict)
    """The replay's in-memory studies, for a closer look."""

    @property
    def idle_share(self) -> float:
        return 1.0 - self.busy / (self.workers * self.wall) if self.wall > 0 else 0.0


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    worker: int = field(compare=False)
    key: Key = field(compare=False)
    study: optuna.Study = field(compare=False)
    trial: Trial = field(compare=False)
    values: np.ndarray = field(compare=False)
    seconds: np.ndarray = field(compare=False)
    epoch: int = field(compare=False, default=0)


class _Replay:
    def __init__(self, table: CurveTable, campaign: CampaignConfig, workers: int, seed: int, one_stage: bool,
                 sampler: SamplerFactory | None, pruner: PrunerFactory | None,
                 budget_seconds: dict[str, float] | None, variants: list[str] | None, trial_overhead: float) -> None:
        self.table, self.workers, self.one_stage = table, workers, one_stage
        # Each replay its own TPE seeds: the campaign's sampler_seed is what make_sampler derives them from.
        self.campaign = dataclasses.replace(campaign, quick=dataclasses.replace(campaign.quick, sampler_seed=seed))
        self.rng = np.random.default_rng(seed)
        self.budget_seconds = budget_seconds
        self.overhead = trial_overhead
        self.variants = variants or table.variants
        stages = ["quick"] if one_stage else list(STAGES)
        self.served: list[Key] = [(v, s) for v in self.variants for s in stages]
        storage = optuna.storages.InMemoryStorage()
        self.storage = storage
        sampler = sampler or (lambda v, w: make_sampler(self.campaign, v, w))
        pruner = pruner or (lambda s: make_pruner(self.campaign, s))
        self.handles: list[dict[Key, optuna.Study]] = []
        for key in self.served:
            study = optuna.create_study(study_name=self.campaign.study_name(*key), storage=storage,
                                        direction="maximize")
            if key[1] == "quick" and not one_stage:
                queue_references(study, self.campaign)
        for w in range(workers):
            self.handles.append({key: optuna.load_study(study_name=self.campaign.study_name(*key), storage=storage,
                                                        sampler=sampler(key[0], w), pruner=pruner(key[1]))
                                 for key in self.served})
        self.spent: dict[Key, float] = dict.fromkeys(self.served, 0.0)
        self.promoted: set[str] = set()
        self.heap: list[_Job] = []
        self.seq = itertools.count()
        self.now = 0.0
        self.busy = 0.0

    # ---- the campaign's decisions, on the in-memory studies ---------------------------------------

    def trials(self, key: Key) -> list[FrozenTrial]:
        return self.handles[0][key].get_trials(deepcopy=False)

    def budget(self, key: Key) -> int | None:
        if key[1] == "full":
            return None
        if self.budget_seconds is not None:
            return None if self.spent[key] < self.budget_seconds[key[0]] else 0
        return self.campaign.quick_budget()

    def counts(self, key: Key) -> Counts:
        trials = self.trials(key)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        budget = self.budget(key)
        if budget is None and key[1] == "quick":
            return Counts(waiting, 1)  # a budget in seconds: more to claim until it is spent
        return Counts(waiting, unclaimed(key[1], budget, len(trials)))

    def promote_ended(self) -> None:
        if self.one_stage:
            return
        for variant in self.variants:
            if variant in self.promoted:
                continue
            quick = self.trials((variant, "quick"))
            if not stage_ended(quick, self.campaign.quick_budget(), self.campaign.noise_seeds, "quick"):
                continue
            self.promoted.add(variant)
            k = self.campaign.full.top_k
            full = self.handles[0][variant, "full"]
            for t, _, attrs in promotions(quick, k, max(k, self.campaign.full.most),
                                          self.campaign.study_name(variant, "quick")):
                full.enqueue_trial(t.params, user_attrs=attrs)

    def claim(self, worker: int) -> bool:
        self.promote_ended()
        counts = {key: self.counts(key) for key in self.served}
        for key in claim_order(self.served, counts):
            study = self.handles[worker][key]
            trials = self.trials(key)
            c = counts[key]
            if not c.waiting and not c.unclaimed:
                if self.one_stage:
                    continue
                if key[1] == "full" and key[0] not in self.promoted:
                    continue
                running = sum(t.state == TrialState.RUNNING for t in trials)
                due = reruns_due(trials, self.campaign.noise_seeds, key[1], 0, running,
                                 sum(is_noise(t) for t in trials), 0, self.campaign.noise_rule)
                if not due:
                    continue
                for params, attrs in due:
                    study.enqueue_trial(params, user_attrs=attrs)
            self.start(worker, key, study)
            return True
        return False

    # ---- the replaced training --------------------------------------------------------------------

    def start(self, worker: int, key: Key, study: optuna.Study) -> None:
        variant, stage = key
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # enqueued params outside a distribution's grid, and the like
            trial = study.ask()
            params = sample_params(trial, self.campaign.space(variant))
        config = self.table.nearest(variant, params)
        seed = self.seed_for(key, trial)
        trial.set_user_attr(CONFIG_ATTR, config)
        trial.set_user_attr(SEED_ATTR, seed)
        if self.one_stage:
            fraction, epochs = self.campaign.full.fraction, self.campaign.full.epochs
        else:
            s = self.campaign.stage(stage)
            fraction, epochs = s.fraction, s.epochs
        curve = self.table.curve(variant, config, seed, fraction)
        job = _Job(0.0, next(self.seq), worker, key, study, trial, curve.values[:epochs], curve.seconds[:epochs])
        job.due = self.now + self.overhead + float(job.seconds[0])
        self.busy += self.overhead
        self.spent[key] += self.overhead
        heapq.heappush(self.heap, job)

    def seed_for(self, key: Key, trial: Trial) -> int:
        """A recorded seed: at random, but a seed re-run takes one its config has not used yet."""
        n = self.table.seeds[key[0]]
        stored = self.trials(key)
        mine = stored[trial.number]  # one study per key: numbers run 0, 1, ... in order
        if NOISE_OF in mine.user_attrs:
            target = int(mine.user_attrs[NOISE_OF])
            used = {int(t.user_attrs[SEED_ATTR]) for t in stored
                    if SEED_ATTR in t.user_attrs and (t.number == target or t.user_attrs.get(NOISE_OF) == target)}
            free = [s for s in range(n) if s not in used]
            if free:
                return int(self.rng.choice(free))
        return int(self.rng.integers(n))

    def step(self, job: _Job) -> bool:
        """The job's epoch has ended: report it; True when the trial is over (its worker is free)."""
        seconds = float(job.seconds[job.epoch])
        self.busy += seconds
        self.spent[job.key] += seconds
        value = float(job.values[job.epoch])
        job.epoch += 1
        job.trial.report(value, job.epoch)
        if job.epoch < len(job.values) and job.trial.should_prune():
            job.trial.set_user_attr(END_ATTR, self.now)
            job.study.tell(job.trial, state=TrialState.PRUNED)
            return True
        if job.epoch == len(job.values):
            job.trial.set_user_attr(END_ATTR, self.now)
            job.study.tell(job.trial, float(job.values.max()))
            return True
        job.due = self.now + float(job.seconds[job.epoch])
        heapq.heappush(self.heap, job)
        return False

    def run(self) -> ReplayResult:
        idle = list(range(self.workers))
        while True:
            still = []
            for w in idle:
                if not self.claim(w):
                    still.append(w)
            idle = still
            if not self.heap:
                break
            job = heapq.heappop(self.heap)
            self.now = job.due
            if self.step(job):
                idle.append(job.worker)
        return ReplayResult({v: self.outcome(v) for v in self.variants}, self.now, self.busy, self.workers,
                            self.handles[0])

    def outcome(self, variant: str) -> VariantOutcome:
        full_f, full_e = self.campaign.full.fraction, self.campaign.full.epochs
        truth = self.table.values(variant, full_f, full_e).mean(axis=1)
        if self.one_stage:
            finals = [t for t in self.trials((variant, "quick")) if len(t.intermediate_values) == full_e]
        else:
            finals = [t for t in self.trials((variant, "full")) if is_promoted(t)]
        best = best_complete(finals)
        chosen = None if best is None else int(best.user_attrs[CONFIG_ATTR])
        stages = ["quick"] if self.one_stage else list(STAGES)
        trials = {s: self.trials((variant, s)) for s in stages}
        promoted = [int(t.user_attrs[CONFIG_ATTR]) for t in trials.get("full", [])
                    if is_promoted(t) and CONFIG_ATTR in t.user_attrs]
        stopped = [int(t.user_attrs[CONFIG_ATTR]) for t in trials.get("full", [])
                   if is_promoted(t) and t.state == TrialState.PRUNED]
        return VariantOutcome(
            chosen, None if chosen is None else float(truth[chosen]), float(truth.max()),
            {s: self.spent[variant, s] for s in stages}, {s: len(ts) for s, ts in trials.items()},
            sum(t.state == TrialState.PRUNED for ts in trials.values() for t in ts), promoted, int(truth.argmax()),
            stopped)


def replay_campaign(table: CurveTable, campaign: CampaignConfig, workers: int, seed: int = 0,
                    one_stage: bool = False, sampler: SamplerFactory | None = None,
                    pruner: PrunerFactory | None = None, budget_seconds: dict[str, float] | None = None,
                    variants: list[str] | None = None, trial_overhead: float = 0.0) -> ReplayResult:
    """One replay of `campaign` on `table` with `workers` workers (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _Replay(table, campaign, workers, seed, one_stage, sampler, pruner, budget_seconds, variants,
                       trial_overhead).run()


def summary(result: ReplayResult) -> dict[str, Any]:
    return {"wall": result.wall, "busy": result.busy, "idle_share": result.idle_share,
            "variants": {v: {**dataclasses.asdict(o), "regret": o.regret, "winner_promoted": o.winner_promoted}
                         for v, o in result.variants.items()}}
