"""What a campaign will cost before it runs: trials, worker-hours, and for N workers the wall time.

    sarsweep plan --campaign configs/campaign.yaml --workers 8

Calibrated on the campaign's own device, patch size and data (training.calibrate: the trainer
itself, a few timed steps of each variant at the narrowest and widest width it searches; each
stage's training and validation patches counted, not guessed). The worker-hours per variant and
stage are a range over the searched widths: every trial runs all its epochs (pruning can only
save from there, so it is not assumed). The wall time, idle share and critical path come from
the campaign simulator (search.simulation.replay) run on a table of those costs: the real claim
order, promotion and seed re-runs, N workers; the critical path is the wall time no number of
workers can beat (quick trial, then full run, then the full stage's seed re-runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.campaign.config import STAGES, CampaignConfig, ParamSpec
from search.simulation.replay import replay_campaign
from search.simulation.table import Curve, CurveTable

Costs = dict[tuple[str, int, str], float]
"""(variant, width, stage) -> seconds per epoch."""


@dataclass
class StageForecast:
    trials: tuple[int, int]
    """Fewest and most trials (the full stage promotes top_k up to max_k); seed re-runs included."""
    epoch_seconds: tuple[float, float]
    """Seconds per epoch at the narrowest and the widest width searched."""
    hours: tuple[float, float]
    """Worker-hours: the fewest trials all at the cheapest width, the most all at the dearest; no pruning."""


@dataclass
class Forecast:
    campaign: str
    device: str
    workers: int
    stages: dict[tuple[str, str], StageForecast] = field(default_factory=dict)
    data: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per stage: (training patches, validation patches)."""
    wall_hours: float = 0.0
    idle_share: float = 0.0
    critical_hours: float = 0.0
    simulated_hours: float = 0.0
    """Worker-hours the simulated campaigns spent (mean over replays): a point inside the range."""
    startup: float = 0.0
    """Seconds each trial pays once beyond its epochs (the calibration's: see training/calibrate.py)."""
    worker_start: float = 0.0
    """Seconds a worker spends before its first claim (preparing the data), added to the wall time."""
    data_source: str | None = None
    """Where the patch counts come from when not from the data itself (plan --patches)."""

    def total(self) -> tuple[float, float]:
        return (sum(s.hours[0] for s in self.stages.values()), sum(s.hours[1] for s in self.stages.values()))

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.total()
        return {"campaign": self.campaign, "device": self.device, "workers": self.workers, "pruning_assumed": False,
                "data_source": self.data_source or "the campaign's data",
                "data": {s: {"train_patches": t, "val_patches": v} for s, (t, v) in self.data.items()},
                "stages": [{"variant": v, "stage": s, "trials": list(f.trials), "epoch_seconds": list(f.epoch_seconds),
                            "worker_hours": list(f.hours)} for (v, s), f in self.stages.items()],
                "worker_hours": [lo, hi], "simulated_worker_hours": self.simulated_hours,
                "wall_hours": self.wall_hours, "idle_share": self.idle_share,
                "critical_path_hours": self.critical_hours, "trial_startup_seconds": self.startup}


def widths(campaign: CampaignConfig, variant: str) -> list[int]:
    """The base_channels a variant's trials can take: its choices, the ends of its range, or the fixed one."""
    spec = campaign.space(variant).get("base_channels")
    if spec is None:
        return [campaign.train.base_channels]
    if spec.choices is not None:
        return sorted({int(c) for c in spec.choices})
    return sorted({int(spec.low), int(spec.high)})  # type: ignore[arg-type]


def stage_trials(campaign: CampaignConfig, stage: str) -> tuple[int, int]:
    seeds = campaign.noise_seeds
    if stage == "quick":
        n = campaign.quick_budget() + seeds
        return n, n
    return campaign.full.top_k + seeds, max(campaign.full.top_k, campaign.full.most) + seeds


def closed_form(campaign: CampaignConfig, costs: Costs, forecast: Forecast) -> None:
    for variant in campaign.variants:
        ws = widths(campaign, variant)
        for stage in STAGES:
            epochs = campaign.stage(stage).epochs
            narrow, wide = costs[variant, ws[0], stage], costs[variant, ws[-1], stage]
            cheap, dear = min(costs[variant, w, stage] for w in ws), max(costs[variant, w, stage] for w in ws)
            few, most = stage_trials(campaign, stage)
            start = forecast.startup
            forecast.stages[variant, stage] = StageForecast(
                (few, most), (narrow, wide),
                (few * (start + epochs * cheap) / 3600, most * (start + epochs * dear) / 3600))


def cost_table(campaign: CampaignConfig, costs: Costs, seed: int = 0) -> CurveTable:
    """A curve table whose configs are the searched widths (other keys mid-range) and whose epochs
    take the calibrated seconds; values are seed noise only (nothing to learn, so TPE's choices of
    width are the campaign's spread of costs). One curve per fraction, long enough for each stage."""
    rng = np.random.default_rng(seed)
    fractions: dict[float, int] = {}
    for stage in STAGES:
        s = campaign.stage(stage)
        fractions[s.fraction] = max(fractions.get(s.fraction, 0), s.epochs)
    stage_of = {campaign.quick.fraction: "quick", campaign.full.fraction: "full"}
    seeds = 1 + campaign.noise_seeds
    configs: dict[str, list[dict[str, Any]]] = {}
    runs: dict[tuple[str, int, int, float], Curve] = {}
    for variant in campaign.variants:
        space = campaign.space(variant)
        configs[variant] = [{k: _middle(spec) for k, spec in space.items()} | ({"base_channels": w} if "base_channels"
                            in space else {}) for w in widths(campaign, variant)]
        for c, w in enumerate(widths(campaign, variant)):
            for k in range(seeds):
                for fraction, epochs in fractions.items():
                    per = costs[variant, w, stage_of[fraction]]
                    values = np.full(epochs, 20.0) + rng.normal(0, 0.1)
                    runs[variant, c, k, fraction] = Curve(values, values * 0, np.full(epochs, per), 0.0)
    return CurveTable(campaign, {"configs": 0, "seeds": seeds}, configs, runs,
                      dict.fromkeys(campaign.variants, seeds), list(fractions.items()))


def _middle(spec: ParamSpec) -> Any:
    if spec.choices is not None:
        return spec.choices[len(spec.choices) // 2]
    low, high = float(spec.low), float(spec.high)  # type: ignore[arg-type]
    return float(np.sqrt(low * high)) if spec.log else (low + high) / 2


def simulate(campaign: CampaignConfig, costs: Costs, forecast: Forecast, replays: int = 5) -> None:
    import dataclasses

    unpruned = dataclasses.replace(campaign, quick=dataclasses.replace(campaign.quick, pruner="none"))
    walls, idles, spent = [], [], []
    for r in range(replays):
        result = replay_campaign(cost_table(unpruned, costs, r), unpruned, forecast.workers, seed=r,
                                 trial_overhead=forecast.startup)
        walls.append(result.wall)
        idles.append(result.idle_share)
        spent.append(result.busy)
    table = cost_table(unpruned, costs, 0)
    everyone = sum(stage_trials(campaign, s)[1] for s in STAGES) * len(campaign.variants)
    critical = replay_campaign(table, unpruned, max(1, everyone), seed=0, trial_overhead=forecast.startup).wall
    forecast.wall_hours = (float(np.mean(walls)) + forecast.worker_start) / 3600
    forecast.idle_share = float(np.mean(idles))
    forecast.simulated_hours = float(np.mean(spent)) / 3600
    forecast.critical_hours = (critical + forecast.worker_start) / 3600


def render(f: Forecast) -> str:
    lines = [f"campaign {f.campaign} on {f.device}: worker-hours per variant and stage, narrowest..widest width "
             "searched, every trial to its last epoch (pruning not assumed: it can only save)"]
    for stage, (train_n, val_n) in f.data.items():
        lines.append(f"  {stage} stage data: {train_n:,} training patches, {val_n:,} validation patches")
    if f.data_source:
        lines.append(f"  (counted from {f.data_source}; reading the data is not in the wall time)")
    lines.append(f"{'variant':<12} {'stage':<6} {'trials':>7} {'s/epoch':>15} {'worker-hours':>17}")
    for (variant, stage), s in f.stages.items():
        trials = f"{s.trials[0]}" if s.trials[0] == s.trials[1] else f"{s.trials[0]}-{s.trials[1]}"
        lines.append(f"{variant:<12} {stage:<6} {trials:>7} {_span(s.epoch_seconds, '.2f'):>15} "
                     f"{_span(s.hours, '.3f'):>17}")
    lo, hi = f.total()
    lines.append(f"{'all':<12} {'':<6} {'':>7} {'':>15} {_span((lo, hi), '.3f'):>17}")
    lines.append(f"with {f.workers} worker(s) (simulated, the real claim order and promotion): wall "
                 f"{_hours(f.wall_hours)}, idle {f.idle_share:.0%} of worker time, {f.simulated_hours:.3f} "
                 f"worker-hours; critical path {_hours(f.critical_hours)} (no number of workers is faster)")
    return "\n".join(lines)


def _span(pair: tuple[float, float], spec: str) -> str:
    return f"{pair[0]:{spec}}" if abs(pair[0] - pair[1]) < 1e-12 else f"{pair[0]:{spec}}-{pair[1]:{spec}}"


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"
