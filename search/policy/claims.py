"""What a campaign worker claims next, from counts read without the lock (the claim recounts).

1. full runs, as soon as a variant's configs are promoted (the scarce, decisive work), in the
   campaign's variant order;
2. quick trials, from the quick study with the most trials still unclaimed (ties: campaign
   order), so the variants' quick stages advance together instead of one after another; a quick
   study with a retry waiting goes first (its stage cannot end before that retry);
3. the rest, in the campaign's order: a claim there reaps a dead peer's trial (whose retry this
   worker then runs), or queues a finished stage's seed re-runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Key = tuple[str, str]
"""(variant, stage)"""


@dataclass(frozen=True)
class Counts:
    """What the order needs of a study: trials waiting, and quick trials of its budget not yet begun."""

    waiting: int
    unclaimed: int


def unclaimed(stage: str, budget: int | None, originals: int) -> int:
    """Trials of a quick stage's budget no worker has begun (a full stage runs only what waits)."""
    return 0 if stage == "full" or budget is None else max(0, budget - originals)


def claim_order(served: Sequence[Key], counts: dict[Key, Counts]) -> list[Key]:
    """The served studies to try, best first (see the module docstring)."""
    full = [k for k in served if k[1] == "full" and counts[k].waiting]
    quick = [k for k in served if k[1] == "quick" and (counts[k].waiting or counts[k].unclaimed)]
    quick.sort(key=lambda k: (not counts[k].waiting, -counts[k].unclaimed, served.index(k)))
    rest = [k for k in served if k not in full and k not in quick]
    return full + quick + rest
