"""Whom to promote: the best K distinct quick configs, widened to the quick stage's noise band."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from optuna.trial import TrialState

from search.campaign.roles import (
    PROMOTED_FROM_STUDY,
    PROMOTED_FROM_TRIAL,
    PROMOTED_WITHIN_NOISE,
    QUICK_NOISE_SD,
    QUICK_VALUE,
    REFERENCE,
    is_noise,
)
from search.policy.records import TrialLike
from search.policy.seeds import Band, band, noise_sd


def ranked_distinct(trials: Sequence[TrialLike]) -> list[TrialLike]:
    """COMPLETE trials by value, best first, skipping any whose params repeat a better one's (a
    retry's, a seed-noise re-run's)."""
    ranked = sorted((t for t in trials if t.state == TrialState.COMPLETE and not is_noise(t)),
                    key=lambda t: (-float(t.value), t.number))  # type: ignore[arg-type]
    picked, seen = [], set()
    for t in ranked:
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            picked.append(t)
    return picked


def picks(trials: Sequence[TrialLike], k: int, most: int, noise: Band | None) -> list[tuple[TrialLike, float | None]]:
    """The top k distinct configs, then each next one whose value lies within the noise band of
    the k-th's (up to `most` in all), with the band it was taken within (None for the top k)."""
    ranked = ranked_distinct(trials)
    chosen: list[tuple[TrialLike, float | None]] = [(t, None) for t in ranked[:k]]
    if noise is None or len(ranked) <= k:
        return chosen
    kth = float(ranked[k - 1].value)  # type: ignore[arg-type]
    for t in ranked[k:most]:
        if float(t.value) < kth - noise.spread:  # type: ignore[arg-type]
            break
        chosen.append((t, noise.spread))
    return chosen


def promotion_attrs(quick: TrialLike, quick_study: str, within: float | None,
                    noise: float | None = None) -> dict[str, Any]:
    """The user attrs a promoted config carries into the full stage: where it came from, its quick
    value, the band it was taken within (beyond top_k), the quick stage's seed-noise sd (what a
    full run is judged by until the full stage measures its own), and its reference name."""
    attrs: dict[str, Any] = {PROMOTED_FROM_STUDY: quick_study, PROMOTED_FROM_TRIAL: quick.number,
                             QUICK_VALUE: quick.value}
    if noise is not None:
        attrs[QUICK_NOISE_SD] = noise
    if within is not None:
        attrs[PROMOTED_WITHIN_NOISE] = within
    if REFERENCE in quick.user_attrs:
        attrs[REFERENCE] = quick.user_attrs[REFERENCE]
    return attrs


def promotions(trials: Sequence[TrialLike], k: int, most: int,
               quick_study: str) -> list[tuple[TrialLike, float | None, dict[str, Any]]]:
    """What a finished quick stage promotes: each pick (`picks`, within the stage's noise band),
    the band it was taken within, and the user attrs it carries into the full stage (with the
    stage's seed-noise sd). `sarsweep promote` and the simulator both enqueue these."""
    noise = noise_sd(trials)
    return [(t, within, promotion_attrs(t, quick_study, within, noise))
            for t, within in picks(trials, k, most, band(trials))]
