"""What an idle worker waits for, written where `sarsweep status` reads it: a system attr of each
study the worker serves, one per worker (`sarsweep:idle:<host:pid>`), through the storage's public
calls. Written when the reason changes and refreshed every REFRESH seconds while it waits, cleared
when the worker claims a trial or leaves; a worker killed while idle leaves a note that ages, and
readers drop notes older than they trust (status: the grace period plus REFRESH).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from optuna.storages import RDBStorage

PREFIX = "sarsweep:idle:"
REFRESH = 60.0
"""Seconds between rewrites of an unchanged reason (what tells a waiting worker from a dead one)."""


@dataclass
class IdleNote:
    worker: str
    why: str
    age: float
    """Seconds since the worker last said it (on the reader's clock against the worker's)."""


class IdleNotes:
    """One worker's notes on the studies it serves."""

    def __init__(self, storage: RDBStorage, study_ids: list[int], worker: str) -> None:
        self.storage, self.study_ids, self.key = storage, study_ids, PREFIX + worker
        self.said: str | None = None
        self.at = 0.0

    def leave(self) -> None:
        """The worker is leaving: status no longer counts it (nor, for the grace period after its last
        trial, as a worker between two trials)."""
        for sid in self.study_ids:
            self.storage.set_study_system_attr(sid, self.key, {"left": True, "at": time.time()})
        self.said = None

    def say(self, why: str | None) -> None:
        """Record `why` (None: busy or gone); a repeat is written only once per REFRESH seconds."""
        now = time.time()
        if why == self.said and (why is None or now - self.at < REFRESH):
            return
        for sid in self.study_ids:
            self.storage.set_study_system_attr(sid, self.key, None if why is None else {"why": why, "at": now})
        self.said, self.at = why, now


def idle_notes(storage: RDBStorage, study_id: int, max_age: float) -> list[IdleNote]:
    """The workers waiting on this study now (notes younger than `max_age` seconds), oldest first."""
    now = time.time()
    notes = []
    for key, value in storage.get_study_system_attrs(study_id).items():
        if key.startswith(PREFIX) and isinstance(value, dict) and value.get("why") and \
                now - float(value.get("at", 0)) <= max_age:
            notes.append(IdleNote(key[len(PREFIX):], str(value.get("why", "")), max(0.0, now - float(value["at"]))))
    return sorted(notes, key=lambda n: -n.age)


def gone_workers(storage: RDBStorage, study_id: int) -> set[str]:
    """The workers that said they left this study (IdleNotes.leave)."""
    return {key[len(PREFIX):] for key, value in storage.get_study_system_attrs(study_id).items()
            if key.startswith(PREFIX) and isinstance(value, dict) and value.get("left")}
