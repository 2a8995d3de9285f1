"""One Optuna study per (campaign, variant, stage), named `<campaign>.<variant>.<stage>`.

Study user attrs record what the study is (stage, variant, fraction, epochs, objective, budget)
and the campaign's fingerprint; a worker started with a different config for the same study
is refused, so one study never mixes trials that mean different things.
"""

from __future__ import annotations

import hashlib
import logging
import typing
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, Trial

from errors import StudyError
from search.campaign.config import CampaignConfig, ParamSpec
from search.campaign.roles import REFERENCE, UNPRUNED
from storage import study_lock
from training.config import TrainConfig

log = logging.getLogger("sarsweep.search")

def derived_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across machines and Python runs."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def stage_attrs(campaign: CampaignConfig, variant: str, stage: str) -> dict[str, Any]:
    s = campaign.stage(stage)
    return {
        "campaign": campaign.name, "variant": variant, "stage": stage, "fraction": s.fraction,
        "epochs": s.epochs, "objective": campaign.objective, "fingerprint": campaign.fingerprint(),
        "budget": campaign.quick_budget() if stage == "quick" else None,
        "top_k": campaign.full.top_k if stage == "full" else None,
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
        if step is None or any(key in trial.user_attrs for key in UNPRUNED):
            return False
        if step < int(trial.params.get("warmup_epochs", self.warmup)) + 1:
            return False
        return self.inner.prune(study, trial)


class BeatenPruner(optuna.pruners.BasePruner):
    """A full run that trails the stage's best at the same epoch beyond `margin` noise sds
    (search/policy/stopping.py)."""

    def __init__(self, margin: float) -> None:
        self.margin = margin

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        from search.policy.stopping import stop_reason

        step = trial.last_step
        return step is not None and stop_reason(trial, study.get_trials(deepcopy=False), step, self.margin) is not None


def make_pruner(campaign: CampaignConfig, stage: str) -> optuna.pruners.BasePruner:
    if stage == "full":
        if campaign.full.stop_margin is None:
            return optuna.pruners.NopPruner()
        return AfterWarmupPruner(BeatenPruner(campaign.full.stop_margin), campaign.train.warmup_epochs)
    if campaign.quick.pruner == "none":
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
    from search.campaign.dashboard import describe_study as describe  # optuna-dashboard: only `init` pays its import

    describe(study, campaign, variant, stage)


def queue_references(study: optuna.Study, campaign: CampaignConfig) -> list[str]:
    """Enqueue each reference config the study holds none of (call under its lock); their names."""
    held = {t.user_attrs.get(REFERENCE) for t in study.get_trials(deepcopy=False)}
    queued = []
    for name, params in campaign.reference.items():
        if name not in held:
            study.enqueue_trial(params, user_attrs={REFERENCE: name})
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
