"""The roles a trial plays beyond a point of the search, as the user attrs that mark them.

One module names every such attr, so a reader (the worker, promotion, the report, the dashboard,
the simulator) tests a role by its constant, never by a spelled-out string. The attrs are stored
on Optuna trials and on the simulator's records alike.
"""

from __future__ import annotations

from typing import Any, Protocol

NOISE_OF = "noise_of"
"""A seed re-run's: the number of the trial whose config it re-runs with another seed."""
NOISE_SEED = "noise_seed"
"""A seed re-run's: which re-run of that config it is (1, 2, ...)."""
REFERENCE = "reference"
"""A reference config's (campaign `reference:`): its name."""
PROMOTED_FROM_STUDY = "promoted_from_study"
"""A full-stage trial's: the quick study its config came from."""
PROMOTED_FROM_TRIAL = "promoted_from_trial"
"""A full-stage trial's: the quick trial its config came from."""
QUICK_VALUE = "quick_value"
"""A full-stage trial's: the value its config reached in the quick stage."""
PROMOTED_WITHIN_NOISE = "promoted_within_noise"
"""A config promoted beyond top_k: the quick noise band its value lay within of the k-th's."""
QUICK_NOISE_SD = "quick_noise_sd"
"""A promoted config's: the quick stage's seed noise (pooled sd), what a full run is judged by
until the full stage has measured its own."""
STOPPED_BEATEN = "stopped_beaten"
"""A full run stopped early: why (it trailed the stage's best at the same epoch beyond noise)."""

UNPRUNED = (REFERENCE, NOISE_OF)
"""Trials that are measurements, never pruned: reference configs and seed re-runs."""


class HasAttrs(Protocol):
    user_attrs: dict[str, Any]


def is_noise(t: HasAttrs) -> bool:
    """A seed re-run: never a stage's best, never promoted (picking a config's luckiest seed flatters it)."""
    return NOISE_OF in t.user_attrs


def is_promoted(t: HasAttrs) -> bool:
    return PROMOTED_FROM_TRIAL in t.user_attrs


def reference_of(t: HasAttrs) -> str | None:
    name = t.user_attrs.get(REFERENCE)
    return None if name is None else str(name)


def role_of(t: HasAttrs) -> str | None:
    """What a trial is beyond a point of the search, in words (logs, dashboard notes, the report), or
    None for a plain trial of the search."""
    if is_noise(t):
        return (f"seed re-run {t.user_attrs.get(NOISE_SEED, '?')} of trial {t.user_attrs[NOISE_OF]}: "
                "a noise measurement, never the best")
    name = reference_of(t)
    if name is not None:
        return f"reference config {name!r}"
    if is_promoted(t):
        return f"promoted from quick trial {t.user_attrs[PROMOTED_FROM_TRIAL]}"
    return None
