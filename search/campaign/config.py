"""The campaign config: what to search, over which variants, in which stages.

    name: sar-2026
    variants: [baseline, resnet_lite, residual, attention]
    train: {...}          # a TrainConfig: everything a trial does not sample
    search: {lr: {low: 1e-4, high: 1e-2, log: true}, ...}
    overrides: {attention: {base_channels: {choices: [32, 48]}}}
    objective: psnr
    quick: {fraction: 0.05, epochs: 20, trials: 30, sampler_seed: 0, pruner: median}
    full: {fraction: 0.2, epochs: 30, top_k: 3}

Loaded with the same strictness as a train config (training/schema.py): unknown keys and bad
values are errors naming the field.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from errors import ConfigError
from training.config import TrainConfig, config_hash, read_yaml
from training.schema import build, require, to_plain

STAGES = ("quick", "full")
# Set by the stage or the trial, never sampled.
NOT_SEARCHABLE = {"variant", "data", "fraction", "epochs", "seed", "out_dir", "device", "precision", "threads"}


@dataclass
class ParamSpec:
    """One searched parameter: a numeric range (`low`, `high`, `log`, `step`) or `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            require(self.low is None and self.high is None, "choices", "give either choices or low/high, not both")
            require(len(self.choices) > 0, "choices", "is empty")
            return
        require(self.low is not None and self.high is not None, "low", "a range needs both low and high")
        assert self.low is not None and self.high is not None
        require(self.low < self.high, "low", f"low ({self.low}) must be below high ({self.high})")
        require(not self.log or self.low > 0, "low", f"a log range needs low > 0, got {self.low}")
        require(self.step is None or self.step > 0, "step", f"must be positive, got {self.step}")

    def largest(self) -> Any:
        """The top of the range, or the largest choice (numeric specs only)."""
        return max(self.choices) if self.choices is not None else self.high

    def holds(self, value: Any) -> bool:
        """The value is one of the choices, or a number in the range."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high

    def describe(self) -> str:
        if self.choices is not None:
            return f"choices {self.choices}"
        return f"{self.low:g} to {self.high:g}{', log' if self.log else ''}"


def default_space() -> dict[str, ParamSpec]:
    """The research group's search space (quick stage), overridable key by key."""
    return {
        # Down to 5e-5, the research group's own hand pick, so a campaign can confirm or refute it
        # (it was 1e-4: the search could not even propose the config it is meant to replace).
        "lr": ParamSpec(low=5e-5, high=3e-3, log=True),
        "warmup_epochs": ParamSpec(low=0, high=5, step=1),
        "grad_clip": ParamSpec(choices=[0.0, 0.5, 1.0, 2.0, 5.0]),
        "base_channels": ParamSpec(choices=[32, 48, 64]),
        "optimizer": ParamSpec(choices=["adam", "adamw"]),
        "weight_decay": ParamSpec(low=1e-6, high=1e-2, log=True),
    }


@dataclass
class _Stage:
    """What every stage sets on its trials: the share of the training split and the epochs."""

    fraction: float
    epochs: int

    def __post_init__(self) -> None:
        require(0.0 < self.fraction <= 1.0, "fraction", f"must be in (0, 1], got {self.fraction}")
        require(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")


@dataclass
class QuickStage(_Stage):
    """The quick search: many short trials on a small subset, pruned early."""

    fraction: float = 0.05
    epochs: int = 20
    trials: int = 30
    """Trial budget per variant, shared by all workers (retries of stale trials do not count)."""
    sampler_seed: int = 0
    pruner: Literal["none", "median", "hyperband"] = "median"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.trials >= 1, "trials", f"must be at least 1, got {self.trials}")


@dataclass
class FullStage(_Stage):
    """Full runs of the best quick configs."""

    fraction: float = 0.2
    epochs: int = 30
    top_k: int = 3
    """Quick configs promoted per variant."""
    max_k: int | None = None
    """With seed noise measured (noise_seeds), configs whose quick value lies within the quick
    stage's noise band of the top_k-th are promoted too, up to max_k in all; null = 2 x top_k."""
    stop_margin: float | None = None
    """Stop a promoted run whose value at an epoch trails the best any other full run reached at
    that epoch by more than this many seed-noise standard deviations (search/policy/stopping.py);
    null: every promoted run trains all its epochs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.top_k >= 1, "top_k", f"must be at least 1, got {self.top_k}")
        require(self.stop_margin is None or self.stop_margin > 0, "stop_margin",
                f"must be positive or null, got {self.stop_margin}")
        require(self.max_k is None or self.max_k >= self.top_k, "max_k",
                f"must be at least top_k ({self.top_k}) or null, got {self.max_k}")

    @property
    def most(self) -> int:
        """max_k, or 2 x top_k."""
        return self.max_k if self.max_k is not None else 2 * self.top_k


@dataclass
class CampaignConfig:
    """A hyperparameter search over several variants, in a quick and a full stage."""

    name: str
    """Prefix of every study name: <name>.<variant>.<stage>."""
    variants: list[str] = field(default_factory=lambda: ["baseline", "resnet_lite", "residual", "attention"])
    train: TrainConfig = field(default_factory=TrainConfig)
    """Everything a trial does not sample (data, batch size, loss, schedule, ...)."""
    search: dict[str, ParamSpec] = field(default_factory=default_space)
    """The search space; keys are train config fields. Missing keys keep the default space."""
    overrides: dict[str, dict[str, ParamSpec]] = field(default_factory=dict)
    """Per variant, search keys that replace the campaign's (e.g. narrower base_channels)."""
    objective: Literal["psnr", "ssim"] = "psnr"
    """Validation metric a trial maximises (its best epoch's value)."""
    quick: QuickStage = field(default_factory=QuickStage)
    full: FullStage = field(default_factory=FullStage)
    reference: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named configs of your own (the one the search should beat, say) that run in every
    variant's quick stage beside the searched trials, never pruned, always in the report:
    {name: {search key: value}}. Keys a reference leaves out are sampled like any trial's; each
    value must lie in the variant's search space. They come on top of quick.trials."""
    noise_seeds: int = 1
    """Seed noise: once a stage has ended, its best config is re-run with this many other seeds,
    and the spread of its values is the stage's noise band (promotion and the report's verdicts
    use it). 0 turns it off. 1 since 2026-12-07 (it was 2): replayed 50 times on the curve table,
    the second re-run cost 11-12 % of a campaign's worker-hours and changed its regret by +0.001
    [+0.000, +0.003] dB (baseline) and +0.000 (resnet_lite) (docs/search-quality.md)."""
    noise_rule: Literal["fixed", "race"] = "fixed"
    """How the full stage buys its seed re-runs. fixed: its best config, noise_seeds times, once
    every promoted run has ended. race: as soon as a worker would idle, the leader and every config
    not yet beaten beyond the pooled seed noise get one more seed each, up to noise_seeds, until
    every comparison is decided (search/policy/seeds.py; docs/campaigns.md says which pays)."""
    keep_last_checkpoint: bool = False
    """Keep last.pt of trials that ended COMPLETE or PRUNED. It holds the optimizer state for a
    retry to resume from (3x best.pt: 264 of 352 MiB for residual at base 64), and such a trial
    is never retried, so by default it is deleted; best.pt and the previews always stay. A FAILed
    trial keeps it. Not part of the fingerprint: it changes no trial's result."""

    def __post_init__(self) -> None:
        from models.catalog import known_variants  # torch-free

        require(bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", self.name)), "name",
                 f"must be letters, digits, '-' or '_' (it names studies and folders), got {self.name!r}")
        require(len(self.variants) > 0, "variants", "needs at least one variant")
        for v in self.variants:
            require(v in known_variants(), "variants", f"unknown variant {v!r}; known: {', '.join(known_variants())}")
        for v in self.overrides:
            require(v in self.variants, f"overrides.{v}", f"is not one of this campaign's variants {self.variants}")
        self.search = {**default_space(), **self.search}
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for key in [*self.search, *(k for o in self.overrides.values() for k in o)]:
            require(key in train_fields and key not in NOT_SEARCHABLE, f"search.{key}",
                     f"is not a searchable train config field (searchable: "
                     f"{', '.join(sorted(train_fields - NOT_SEARCHABLE))})")
        for variant in self.variants:
            warmup = self.space(variant).get("warmup_epochs")
            top = warmup.largest() if warmup else self.train.warmup_epochs
            for stage in STAGES:
                epochs = self.stage(stage).epochs
                require(top <= epochs, "search.warmup_epochs",
                         f"reaches {top:g} but the {stage} stage has only {epochs} epochs")
            # A trial is judged one epoch after its warmup ends (search.campaign.studies.AfterWarmupPruner):
            # at the stage's last epoch or later, pruning it saves nothing.
            require(self.quick.pruner == "none" or top + 1 < self.quick.epochs,
                    "search.warmup_epochs" if warmup else "train.warmup_epochs",
                    f"reaches {top:g}, so a trial warmed up that long could never be pruned (pruning starts "
                    f"one epoch after a trial's warmup, epoch {top + 1:g} of the quick stage's {self.quick.epochs}); "
                    "lower it, raise quick.epochs or set quick.pruner: none")
        require(self.noise_seeds >= 0, "noise_seeds", f"must be 0 or more, got {self.noise_seeds}")
        self._check_references()
        require(self.quick.fraction <= self.full.fraction, "quick.fraction",
                f"{self.quick.fraction} is more than full.fraction {self.full.fraction}: promoted configs "
                "would retrain on less data than they were picked on")
        self._check_space()

    def _check_space(self) -> None:
        """Every choice and both ends of every range, for every variant and stage, through the train
        config schema: a value it refuses (batch_size 0, optimizer sgd, a float base_channels) is
        one line at `init`, not a trial failed at run time."""
        hints = typing.get_type_hints(TrainConfig)
        base = self.train.to_dict()
        for variant in self.variants:
            for key, spec in self.space(variant).items():
                where = f"overrides.{variant}.{key}" if key in self.overrides.get(variant, {}) else f"search.{key}"
                ends = [spec.low, spec.high] if spec.choices is None else spec.choices
                values = [int(v) for v in ends] if spec.choices is None and hints[key] is int else ends
                for value in values:
                    for stage in STAGES:
                        fixed = {"variant": variant, "epochs": self.stage(stage).epochs,
                                 "fraction": self.stage(stage).fraction}
                        try:
                            TrainConfig.from_dict({**base, key: value, **fixed})
                        except ConfigError as exc:
                            why = exc.message if exc.field == key else str(exc)
                            raise ConfigError(where, f"{value!r} is refused for {variant}: {why}") from None

    def _check_references(self) -> None:
        """Each reference names search keys only, with values inside every variant's space: TPE
        models the space, and a point outside it is one it cannot learn from."""
        for name, params in self.reference.items():
            require(bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name)), f"reference.{name}",
                    "a reference's name must be letters, digits, '-' or '_'")
            require(isinstance(params, dict) and bool(params), f"reference.{name}",
                    "expected a mapping of search keys to values, such as {lr: 5e-5, warmup_epochs: 3}")
            for variant in self.variants:
                space = self.space(variant)
                for key, value in params.items():
                    require(key in space, f"reference.{name}.{key}",
                            f"is not a key of {variant}'s search space ({', '.join(space)})")
                    require(space[key].holds(value), f"reference.{name}.{key}",
                            f"{value!r} lies outside {variant}'s search space ({space[key].describe()})")
                fixed = {"variant": variant, "epochs": self.quick.epochs, "fraction": self.quick.fraction}
                try:
                    TrainConfig.from_dict({**self.train.to_dict(), **params, **fixed})
                except ConfigError as exc:
                    raise ConfigError(f"reference.{name}.{exc.field}", exc.message) from None

    def quick_budget(self) -> int:
        """Quick trials in all: the searched ones plus one per reference config."""
        return self.quick.trials + len(self.reference)

    def space(self, variant: str) -> dict[str, ParamSpec]:
        return {**self.search, **self.overrides.get(variant, {})}

    def largest_model(self, variant: str) -> dict[str, int]:
        """Model kwargs of the variant's largest trial: each searched size (base_channels, ...)
        at the top of its range; what a worker must have disk for."""
        kwargs = self.train.model_kwargs
        for key, spec in self.space(variant).items():
            if key in kwargs:
                kwargs[key] = int(spec.largest())
        return kwargs

    def stage(self, stage: str) -> QuickStage | FullStage:
        return self.quick if stage == "quick" else self.full

    def study_name(self, variant: str, stage: str) -> str:
        return f"{self.name}.{variant}.{stage}"

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def fingerprint(self) -> str:
        """Hash of everything that changes what a trial means; budgets (and what is kept on
        disk) may change freely.

        Fields at their defaults are left out, so a sarsweep release that adds a field (with a
        default) does not lock users out of the studies they are running.
        """
        plain = to_plain(self, skip_defaults=True)
        plain.pop("keep_last_checkpoint", None)
        plain.get("train", {}).pop("threads", None)  # where a trial runs, not what it means
        if plain.get("train") == {}:
            del plain["train"]
        for key in ("reference", "noise_seeds", "noise_rule"):  # more trials, not other ones: budgets
            plain.pop(key, None)
        plain.get("full", {}).pop("max_k", None)
        plain.get("full", {}).pop("stop_margin", None)  # fewer epochs for beaten runs, not other trials
        for stage, budget in (("quick", "trials"), ("full", "top_k")):
            plain.get(stage, {}).pop(budget, None)
            if plain.get(stage) == {}:
                del plain[stage]
        return config_hash(plain)


def load_campaign(path: str | Path) -> CampaignConfig:
    data = read_yaml(path)
    try:
        return build(CampaignConfig, data)
    except ConfigError as exc:
        raise exc.within(source=str(path)) from None
