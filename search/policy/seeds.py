"""Seed noise: a stage's best config re-run with other seeds, and the band their spread gives.

Two configs 0.3 dB apart may differ by no more than their seeds do. So once a stage has ended
(a quick stage: its budget spent; a full stage: its promoted configs run), `noise_seeds` re-runs of
its best config are queued, each with its own seed (roles NOISE_OF and NOISE_SEED), and the stage
ends when they have run. Its noise band is the spread (max - min) of that config's values over all
its seeds, the original's included: promotion takes every config within the quick band of the
top_k-th (search.policy.promotion), and the report says which differences exceed the bands.
Re-runs are never pruned and never chosen as a stage's best. search.running.noise queues them on
the storage; the simulator calls the same functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState

from search.campaign.roles import NOISE_OF, NOISE_SEED, is_noise, is_promoted
from search.policy.best import best_complete
from search.policy.records import TrialLike

FIXED, RACE = "fixed", "race"
"""The rules for seed re-runs (campaign `noise_rule`): `fixed` re-runs each stage's best config
noise_seeds times once the stage has ended; `race` does so in the quick stage, and in the full
stage re-runs the leader and every config not yet beaten beyond noise, as soon as a worker would
idle, until each comparison is decided or has noise_seeds re-runs (racing, as irace/F-Race do)."""


def noise_target(trials: Sequence[TrialLike], stage: str) -> TrialLike | None:
    """The config a stage's re-runs repeat: its best trial (in a full stage, of the promoted configs)."""
    return best_complete([t for t in trials if stage == "quick" or is_promoted(t)])


@dataclass
class Band:
    """A stage's seed noise: one config's values over its seeds."""

    trial: int
    """The re-run config's trial."""
    values: list[float]
    """Its value at each seed: the original's first, then its finished re-runs'."""

    @property
    def spread(self) -> float:
        return max(self.values) - min(self.values)

    def sentence(self, unit: str = "dB") -> str:
        return f"{self.spread:.2f} {unit} (trial {self.trial} over {len(self.values)} seeds)"


def band(trials: Sequence[TrialLike]) -> Band | None:
    """The stage's noise band, once at least one re-run has finished; None before (or with none).
    With several configs re-run (racing), the one re-run most (the first among equals)."""
    reruns = [t for t in trials if is_noise(t) and t.state == TrialState.COMPLETE]
    if not reruns:
        return None
    counts: dict[int, int] = {}
    for t in reruns:
        counts[int(t.user_attrs[NOISE_OF])] = counts.get(int(t.user_attrs[NOISE_OF]), 0) + 1
    target = max(counts, key=lambda n: (counts[n], -n))
    original = next((t for t in trials if t.number == target), None)
    if original is None or original.value is None:
        return None
    values = [float(original.value)] + [float(t.value) for t in reruns  # type: ignore[arg-type]
                                        if int(t.user_attrs[NOISE_OF]) == target]
    return Band(target, values)


def seed_values(trials: Sequence[TrialLike]) -> dict[int, list[float]]:
    """Finished values by config: each original trial's, with its seed re-runs' under its number."""
    values: dict[int, list[float]] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and t.value is not None:
            origin = int(t.user_attrs[NOISE_OF]) if is_noise(t) else t.number
            values.setdefault(origin, []).append(float(t.value))
    return values


def noise_sd(trials: Sequence[TrialLike]) -> float | None:
    """The stage's seed noise as a pooled standard deviation, or None with fewer than 2 dof."""
    sd, dof = pooled_sd(list(seed_values(trials).values()))
    return sd if dof >= 2 else None


def pending(trials: Sequence[TrialLike], noise_seeds: int, stage: str, others_left: int, rule: str = FIXED) -> int:
    """Re-runs the stage has still to queue: `noise_seeds` until they are queued, unless the stage
    has ended with no trial to re-run (`others_left`: its trials running, waiting or unclaimed).
    Racing in a full stage: the re-runs due now (more may come as they finish)."""
    if rule == RACE and stage == "full":
        return len(race(trials, noise_seeds)) if noise_seeds else 0
    if not noise_seeds or any(is_noise(t) for t in trials):
        return 0
    if stage == "full" and not any(is_promoted(t) for t in trials):
        return 0  # nothing promoted yet: the stage has not begun
    return noise_seeds if others_left or noise_target(trials, stage) is not None else 0


def reruns_due(trials: Sequence[TrialLike], noise_seeds: int, stage: str, waiting: int, running: int,
               queued: int, unclaimed: int, rule: str = FIXED) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The re-runs to queue now, as (params, user attrs). Fixed: the stage's best config
    `noise_seeds` times, once the stage has nothing else waiting, running or unclaimed and none is
    queued yet (`queued`: re-runs the stage holds already). Racing in a full stage: `race`, as soon
    as nothing waits (a worker would idle), while other runs go on. Empty otherwise."""
    if rule == RACE and stage == "full":
        return race(trials, noise_seeds) if noise_seeds and not waiting else []
    if not noise_seeds or waiting or running or queued or unclaimed:
        return []
    target = noise_target(trials, stage)
    if target is None:
        return []
    return [(dict(target.params), {NOISE_OF: target.number, NOISE_SEED: seed}) for seed in range(1, noise_seeds + 1)]


# ---- racing --------------------------------------------------------------------------------------

def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Seed noise pooled over every config with two or more finished seeds: the standard deviation
    sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) and its degrees of freedom, sum (n_i - 1)."""
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    if dof == 0:
        return 0.0, 0
    ss = sum(sum((v - sum(g) / len(g)) ** 2 for v in g) for g in groups if len(g) > 1)
    return math.sqrt(ss / dof), dof


def t_quantile(dof: int, p: float = 0.95) -> float:
    from scipy.stats import t

    return float(t.ppf(p, dof))


def beaten(leader: Sequence[float], other: Sequence[float], sd: float, dof: int, p: float = 0.95) -> bool:
    """`other` trails `leader` beyond seed noise: by more than the one-sided t bound of the
    difference of their means (pooled sd, its dof). Never with no dof: nothing is known of noise."""
    if dof == 0 or not leader or not other:
        return False
    gap = sum(leader) / len(leader) - sum(other) / len(other)
    return gap > t_quantile(dof, p) * sd * math.sqrt(1 / len(leader) + 1 / len(other))


def _groups(trials: Sequence[TrialLike]) -> dict[int, dict[str, Any]]:
    """A full stage's promoted configs by their original trial: finished values, pending re-runs."""
    groups: dict[int, dict[str, Any]] = {}
    for t in trials:
        if is_promoted(t) and not is_noise(t):
            groups.setdefault(t.number, {"trial": t, "values": [], "pending": 0, "reruns": 0})
    for t in trials:
        origin = int(t.user_attrs[NOISE_OF]) if is_noise(t) else t.number
        g = groups.get(origin)
        if g is None:
            continue
        if is_noise(t):
            g["reruns"] += 1
        if t.state == TrialState.COMPLETE and t.value is not None:
            g["values"].append(float(t.value))
        elif t.state in (TrialState.RUNNING, TrialState.WAITING):
            g["pending"] += 1
    return groups


def race(trials: Sequence[TrialLike], noise_seeds: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A full stage's re-runs due now: the leader's (best mean) and each finished config's not yet
    beaten beyond noise by it, one at a time per config (none while one is pending), up to
    `noise_seeds` each, while some comparison is undecided (before any noise is measured, every
    comparison is). A config beaten beyond noise gets no more seeds."""
    groups = _groups(trials)
    finished = {n: g for n, g in groups.items() if g["values"]}
    if not finished or len(groups) < 2:
        return []
    sd, dof = pooled_sd([g["values"] for g in finished.values()])
    lead = max(finished, key=lambda n: (sum(finished[n]["values"]) / len(finished[n]["values"]), -n))
    undecided = [n for n in finished if n != lead
                 and not beaten(finished[lead]["values"], finished[n]["values"], sd, dof)]
    unfinished = [n for n, g in groups.items() if not g["values"]]
    if not undecided and (dof or not unfinished):
        return []
    due = []
    for n in [lead, *undecided]:
        g = finished[n]
        if g["pending"] == 0 and g["reruns"] < noise_seeds:
            due.append((dict(g["trial"].params), {NOISE_OF: n, NOISE_SEED: g["reruns"] + 1}))
    return due
