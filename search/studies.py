"""One Optuna study per (campaign, variant, stage), named `<campaign>.<variant>.<stage>`.

Study user attrs record what the study is (stage, variant, fraction, epochs, objective, budget)
and the campaign's fingerprint; a worker started with a different config for the same study
is refused, so one study never mixes trials that mean different things.
"""

from __future__ import annotations

import hashlib
import logging
import typing
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from models.errors import StudyError
from search.campaign import CampaignConfig, ParamSpec
from storage import study_lock
from storage.trials import is_retry
from training.config import TrainConfig

log = logging.getLogger("sarsweep.search")

# Trial user attrs that say what a trial is for, beyond a point of the search.
NOISE_ATTR = "noise_of"
"""A seed-noise re-run's (search/noise.py): the number of the trial whose config it re-runs."""
REFERENCE_ATTR = "reference"
"""A reference config's (campaign `reference:`): its name."""


def is_noise(t: FrozenTrial) -> bool:
    return NOISE_ATTR in t.user_attrs


def best_complete(trials: list[FrozenTrial]) -> FrozenTrial | None:
    """The COMPLETE trial with the highest value (the lowest number among equals), or None. A
    seed-noise re-run is never it: picking the luckiest seed of a config flatters it."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and not is_noise(t)]
    return max(done, key=lambda t: (float(t.value), -t.number)) if done else None  # type: ignore[arg-type]


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
    """Seed-noise re-runs of the stage's best config still to be queued (search/noise.py)."""

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


def stage_progress(trials: list[FrozenTrial], budget: int | None, campaign: CampaignConfig | None = None,
                   stage: str = "quick") -> StageProgress:
    """Counted from a stage's trials; `budget` is a quick stage's (None for a full stage, which runs
    only what waits). Originals are trials that are no retry, as the claim counts them. A RUNNING
    trial counts as running even when its worker died: the reaper retries it. With `campaign`,
    the seed-noise re-runs still to be queued count too (they end the stage)."""
    from search.noise import pending

    count = {s: sum(1 for t in trials if t.state == s) for s in TrialState}
    originals = sum(1 for t in trials if not is_retry(t))
    progress = StageProgress(count[TrialState.RUNNING], count[TrialState.WAITING],
                             0 if budget is None else max(0, budget - originals),
                             count[TrialState.COMPLETE] + count[TrialState.PRUNED] + count[TrialState.FAIL])
    if campaign is not None:
        progress.noise = pending(trials, campaign, stage, progress.left)
    return progress


def derived_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across machines and Python runs."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def stage_attrs(campaign: CampaignConfig, variant: str, stage: str) -> dict[str, Any]:
    s = campaign.stage(stage)
    return {
        "campaign": campaign.name, "variant": variant, "stage": stage, "fraction": s.fraction,
        "epochs": s.epochs, "objective": campaign.objective, "fingerprint": campaign.fingerprint(),
        "budget": campaign.quick_budget() if stage == "quick" else None, "top_k": getattr(s, "top_k", None),
    }


class AfterWarmupPruner(optuna.pruners.BasePruner):
    """`inner`, but a trial is judged only from one epoch after its own warmup ends.

    A trial in warmup trains at a fraction of its learning rate: judged against trials already at
    full rate it looks worse than it is (the seed's warmup-3 config was pruned at epoch 2). So
    a trial warmed up for W epochs is first judged at epoch W + 1, whatever the stage's pruner
    start. Reference configs and seed-noise re-runs are never pruned: they are measurements."""

    def __init__(self, inner: optuna.pruners.BasePruner, warmup: int) -> None:
        self.inner, self.warmup = inner, warmup

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or any(key in trial.user_attrs for key in UNPRUNED_ATTRS):
            return False
        if step < int(trial.params.get("warmup_epochs", self.warmup)) + 1:
            return False
        return self.inner.prune(study, trial)


UNPRUNED_ATTRS = (REFERENCE_ATTR, NOISE_ATTR)


def make_pruner(campaign: CampaignConfig, stage: str) -> optuna.pruners.BasePruner:
    if stage == "full" or campaign.quick.pruner == "none":
        return optuna.pruners.NopPruner()
    epochs = campaign.quick.epochs
    if campaign.quick.pruner == "hyperband":
        inner: optuna.pruners.BasePruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    else:
        inner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=max(1, epochs // 4))
    return AfterWarmupPruner(inner, campaign.train.warmup_epochs)


def make_sampler(campaign: CampaignConfig, variant: str, worker_index: int | None) -> optuna.samplers.BaseSampler:
    """TPE with constant_liar: a worker's sampler treats the trials running on other workers as if
    they had done badly, so parallel workers do not propose points next to each other (what
    Optuna recommends for distributed runs). bench/sampler_spread.py measured the closeness of
    8 workers' concurrent proposals with and without it, and with multivariate TPE too: no
    difference beyond its run-to-run spread (docs/search-quality.md), so multivariate stays off."""
    # Workers must not share a seed: TPE's random start-up trials would repeat across them.
    # An explicit worker index makes a run reproducible; without one the process id is mixed in.
    import os

    index = worker_index if worker_index is not None else f"pid{os.getpid()}"
    return optuna.samplers.TPESampler(seed=derived_seed(campaign.quick.sampler_seed, variant, index),
                                      constant_liar=True)


def _check(study: optuna.Study, campaign: CampaignConfig, variant: str, stage: str) -> None:
    attrs = study.user_attrs
    expected = stage_attrs(campaign, variant, stage)
    if attrs.get("stage") != stage or attrs.get("variant") != variant:
        raise StudyError(f"study {study.study_name} is not the {stage} stage of {variant} "
                         f"(it records stage={attrs.get('stage')!r}, variant={attrs.get('variant')!r})")
    if attrs.get("fingerprint") != expected["fingerprint"]:
        raise StudyError(
            f"study {study.study_name} was created by a different campaign config (fingerprint "
            f"{attrs.get('fingerprint')}, this file {expected['fingerprint']}); use the original file, "
            "or a new campaign name to search a changed space"
        )
    for key in ("budget", "top_k"):  # budgets may grow or shrink between runs
        if attrs.get(key) != expected[key]:
            study.set_user_attr(key, expected[key])


def ensure_study(storage: RDBStorage, campaign: CampaignConfig, variant: str, stage: str) -> tuple[optuna.Study, bool]:
    """Create the study with its attrs if absent (under the study lock), else check it, and queue
    the campaign's reference configs a quick study does not hold yet. Returns (study, created)."""
    name = campaign.study_name(variant, stage)
    with study_lock(storage, name):
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            created = False
        except KeyError:
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
            for key, value in stage_attrs(campaign, variant, stage).items():
                study.set_user_attr(key, value)
            created = True
        if not created:
            _check(study, campaign, variant, stage)
        if stage == "quick":
            queue_references(study, campaign)
        describe_study(study, campaign, variant, stage)
    return study, created


def describe_study(study: optuna.Study, campaign: CampaignConfig, variant: str, stage: str) -> None:
    from search.dashboard import describe_study as describe  # optuna-dashboard: only `init` pays its import

    describe(study, campaign, variant, stage)


def queue_references(study: optuna.Study, campaign: CampaignConfig) -> list[str]:
    """Enqueue each reference config the study holds none of (call under its lock); their names."""
    held = {t.user_attrs.get(REFERENCE_ATTR) for t in study.get_trials(deepcopy=False)}
    queued = []
    for name, params in campaign.reference.items():
        if name not in held:
            study.enqueue_trial(params, user_attrs={REFERENCE_ATTR: name})
            queued.append(name)
    return queued


def load_stage_study(
    storage: RDBStorage, campaign: CampaignConfig, variant: str, stage: str,
    worker_index: int | None = None, create: bool = False,
) -> optuna.Study:
    """The stage's study with our sampler and pruner; missing -> error (or created, when asked)."""
    name = campaign.study_name(variant, stage)
    if variant not in campaign.variants:
        raise StudyError(f"variant {variant!r} is not in campaign {campaign.name} ({', '.join(campaign.variants)})")
    if create:
        ensure_study(storage, campaign, variant, stage)
    try:
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=make_sampler(campaign, variant, worker_index),
                                  pruner=make_pruner(campaign, stage))
    except KeyError:
        raise StudyError(f"study {name} does not exist; run `sarsweep init --campaign ...` first") from None
    _check(study, campaign, variant, stage)
    return study


def suggest(trial: Trial, name: str, spec: ParamSpec) -> Any:
    """Sample one train config field, as an int or a float according to the schema."""
    if spec.choices is not None:
        return trial.suggest_categorical(name, spec.choices)
    assert spec.low is not None and spec.high is not None
    field_type = typing.get_type_hints(TrainConfig)[name]
    if field_type is int:
        step = int(spec.step or 1)
        return trial.suggest_int(name, int(spec.low), int(spec.high), step=step, log=spec.log and step == 1)
    return trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=None if spec.log else spec.step)


def sample_params(trial: Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    return {name: suggest(trial, name, spec) for name, spec in space.items()}
