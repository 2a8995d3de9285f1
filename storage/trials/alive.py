"""Keeping trials alive and reaped while a worker trains: the heartbeat thread, the reaper thread
(one Periodic helper: a missed beat or pass is logged and tried again), and signals deferred
through a storage write.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import optuna

from storage.rdb import ResilientRDBStorage, heartbeat_of
from storage.trials.reap import reap_study

log = logging.getLogger("sarsweep.trials")


class Periodic:
    """Calls `action` every `period` seconds on a daemon thread while in its `with` block, first
    after one period. A failure is logged as "<what> failed (<error>)" and tried again next period:
    a missed heartbeat or reaper pass is never fatal."""

    def __init__(self, name: str, period: float, action: Callable[[], object], what: str) -> None:
        self.period, self.action, self.what = period, action, what
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.wait(self.period):
            try:
                self.action()
            except Exception as exc:  # noqa: BLE001 - the next period tries again
                log.warning("%s failed (%s); trying again in %gs", self.what, exc.__class__.__name__, self.period)

    def __enter__(self) -> Periodic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def heartbeat(storage: ResilientRDBStorage, tid: int) -> Periodic:
    """A running trial's heartbeat, every heartbeat interval. The claim beat already: the first
    beat here waits one interval, so the thread never needs a second connection while the main
    thread is still busy starting the trial (64 workers x 2 was 99 of 100)."""
    return Periodic(f"heartbeat-{tid}", heartbeat_of(storage)[0], lambda: storage.record_heartbeat(tid),
                    f"heartbeat for trial id {tid}")


def reaper_thread(studies: optuna.Study | Sequence[optuna.Study], period: float) -> Periodic:
    """Reaps the studies every `period` seconds in the background (a dead peer's trial is
    retried while this worker trains)."""
    group = [studies] if isinstance(studies, optuna.Study) else list(studies)

    def reap() -> None:
        for study in group:
            for number in reap_study(study):
                log.warning("trial %d of %s was stale: failed and queued for retry", number, study.study_name)

    names = ", ".join(s.study_name for s in group)
    return Periodic("reaper", period, reap, f"reaper pass on {names}")


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT at the OS level (main thread only), so a claimed trial is never
    orphaned mid-claim: they arrive once the claim has committed and returned its trial."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
