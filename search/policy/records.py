"""What the policy reads of a trial: a FrozenTrial, or the simulator's Record with the same fields.

The policy functions read only `number`, `state`, `value`, `params`, `user_attrs`,
`system_attrs` and `intermediate_values`, so Optuna's FrozenTrial passes as it is and the
simulator (bench/simulate.py) builds Records from a curve table without a storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from optuna.trial import TrialState


class TrialLike(Protocol):
    number: int
    state: TrialState
    value: float | None
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    intermediate_values: dict[int, float]


@dataclass
class Record:
    """A trial as the simulator keeps it: the fields of a FrozenTrial the policy reads."""

    number: int
    state: TrialState
    value: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate_values: dict[int, float] = field(default_factory=dict)
