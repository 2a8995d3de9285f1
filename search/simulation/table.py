"""A table of recorded learning curves (bench/curves.py records it): configs x seeds x fidelities x epochs.

    table = CurveTable.load("bench/curves/s1-cpu")
    table.curve("baseline", config=3, seed=1, fraction=0.25).values   # val PSNR per epoch
    table.true_value("baseline", 3, fraction=1.0, epochs=12)          # mean over seeds of the best epoch

Layout on disk: `table.json` (the campaign it was recorded for, the fidelities, the design size,
the command, machine and date) and `runs.jsonl`, one finished run a line, appended as it ended.
A fidelity (fraction, epochs) shorter than a recorded curve is read off its prefix: the schedule
is constant after warmup, so the first e epochs of a run are what an e-epoch run gives.

A point proposed anywhere in the campaign's space is looked up at its nearest recorded config
(`nearest`, in the unit cube the space spans: log ranges on a log scale, choices by index), the
tabular benchmark's usual nearest-neighbour lookup, used alike for sarsweep and every peer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errors import ConfigError
from search.campaign.config import CampaignConfig, ParamSpec
from training.schema import build


@dataclass
class Curve:
    """One run: per epoch, the objective's value, SSIM and seconds (validation included)."""

    values: np.ndarray
    ssim: np.ndarray
    seconds: np.ndarray
    trivial: float


@dataclass
class CurveTable:
    campaign: CampaignConfig
    meta: dict[str, Any]
    configs: dict[str, list[dict[str, Any]]]
    """Per variant, the recorded design's params, by config index."""
    runs: dict[tuple[str, int, int, float], Curve]
    """(variant, config, seed index, fraction) -> its curve."""
    seeds: dict[str, int] = field(default_factory=dict)
    """Per variant, seed indices recorded for every config at every fidelity (0..n-1)."""
    fidelities: list[tuple[float, int]] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path, min_seeds: int = 1) -> CurveTable:
        folder = Path(path)
        meta_path, runs_path = folder / "table.json", folder / "runs.jsonl"
        if not meta_path.is_file() or not runs_path.is_file():
            raise ConfigError(str(folder), "is no curve table (table.json and runs.jsonl; bench/curves.py records one)")
        meta = json.loads(meta_path.read_text())
        campaign = build(CampaignConfig, meta["campaign"])
        fidelities = [(float(f["fraction"]), int(f["epochs"])) for f in meta["fidelities"]]
        configs: dict[str, dict[int, dict[str, Any]]] = {}
        runs: dict[tuple[str, int, int, float], Curve] = {}
        for line in runs_path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            key = (r["variant"], int(r["config"]), int(r["seed_index"]), float(r["fraction"]))
            curve = r["curve"]
            runs[key] = Curve(np.array([e["psnr" if campaign.objective == "psnr" else "ssim"] for e in curve]),
                              np.array([e["ssim"] for e in curve]), np.array([e["seconds"] for e in curve]),
                              float(r["trivial_psnr" if campaign.objective == "psnr" else "trivial_ssim"]))
            configs.setdefault(r["variant"], {})[int(r["config"])] = r["params"]
        table = cls(campaign, meta, {}, runs, {}, fidelities)
        for variant, by_index in configs.items():
            n = int(meta["configs"])
            complete = [s for s in range(int(meta["seeds"]))
                        if all((variant, c, s, f) in runs for c in range(n) for f, _ in fidelities)]
            seeds = 0
            while seeds in complete:
                seeds += 1
            if seeds >= min_seeds and len(by_index) == n:
                table.configs[variant] = [by_index[c] for c in range(n)]
                table.seeds[variant] = seeds
        return table

    @property
    def variants(self) -> list[str]:
        return [v for v in self.campaign.variants if v in self.configs]

    def curve(self, variant: str, config: int, seed: int, fraction: float) -> Curve:
        return self.runs[variant, config, seed, self.recorded_fraction(fraction)]

    def recorded_fraction(self, fraction: float) -> float:
        for f, _ in self.fidelities:
            if math.isclose(f, fraction):
                return f
        raise ConfigError("fraction", f"{fraction:g} is not recorded in this table "
                                      f"({', '.join(f'{f:g}' for f, _ in self.fidelities)})")

    def recorded_epochs(self, fraction: float) -> int:
        return dict(self.fidelities)[self.recorded_fraction(fraction)]

    def values(self, variant: str, fraction: float, epochs: int) -> np.ndarray:
        """configs x seeds: each run's best value over its first `epochs` epochs."""
        if epochs > self.recorded_epochs(fraction):
            raise ConfigError("epochs", f"{epochs} at fraction {fraction:g}: the table holds "
                                        f"{self.recorded_epochs(fraction)}")
        n, s = len(self.configs[variant]), self.seeds[variant]
        return np.array([[self.curve(variant, c, k, fraction).values[:epochs].max() for k in range(s)]
                         for c in range(n)])

    def true_value(self, variant: str, config: int, fraction: float, epochs: int) -> float:
        """A config's value at a fidelity, its seeds averaged: what it is worth, not what one run showed."""
        return float(self.values(variant, fraction, epochs)[config].mean())

    def seconds(self, variant: str, fraction: float, epochs: int) -> np.ndarray:
        """configs x seeds: each run's seconds over its first `epochs` epochs."""
        n, s = len(self.configs[variant]), self.seeds[variant]
        return np.array([[self.curve(variant, c, k, fraction).seconds[:epochs].sum() for k in range(s)]
                         for c in range(n)])

    # ---- nearest recorded config ----------------------------------------------------------------

    def unit(self, variant: str, params: dict[str, Any]) -> np.ndarray:
        """A point of the variant's space in the unit cube (log ranges on a log scale, choices by index)."""
        space = self.campaign.space(variant)
        return np.array([_unit(spec, params[key]) for key, spec in space.items()])

    def nearest(self, variant: str, params: dict[str, Any]) -> int:
        grid = self._grid(variant)
        return int(np.argmin(((grid - self.unit(variant, params)) ** 2).sum(axis=1)))

    def _grid(self, variant: str) -> np.ndarray:
        cache = self.__dict__.setdefault("_grids", {})
        if variant not in cache:
            cache[variant] = np.array([self.unit(variant, p) for p in self.configs[variant]])
        return cache[variant]


def _unit(spec: ParamSpec, value: Any) -> float:
    if spec.choices is not None:
        index = spec.choices.index(value) if value in spec.choices else 0
        return index / max(1, len(spec.choices) - 1)
    low, high = float(spec.low), float(spec.high)  # type: ignore[arg-type]
    if spec.log:
        return (math.log(float(value)) - math.log(low)) / (math.log(high) - math.log(low))
    return (float(value) - low) / (high - low)

