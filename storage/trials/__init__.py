"""A trial's life on the database: claim, heartbeat, tell, retry, reap. One room for all of it,
a module per job: claim (claim.py), keeping alive (alive.py), the end (end.py), reaping (reap.py).

    claim_through_outage -> heartbeat -> (the objective runs) -> tell | fail | retry_later
    reap_study (a worker's Reaper thread, `sarsweep reaper`, and the claim itself)

Why not `study.optimize`: it creates a trial before any callback can say the budget is spent,
so N workers overshoot by up to N-1 trials. Here a trial is claimed under the study lock
(storage.locks), which makes the budget exact. `optimize` is also the only place Optuna beats
heartbeats, so this room has its own heartbeat thread, which, unlike Optuna's, logs and goes on
through a transient database error instead of dying.

Stock Optuna fails a stale trial and queues its retry as two separate writes: a process killed
between them leaves a FAILed trial that is never retried. A reap pass here runs under the study
lock (so the two writes are seen together) and re-queues such lost retries (`requeue_lost`). A
pass right after a database outage or restart is skipped (ResilientRDBStorage.reap_allowed):
live trials' heartbeats are old then, and failing them would be wrong.

Why a trial failed is a named kind (`FailKind`, user attr `fail_kind`) beside its reason in words
(`fail_reason`): a trial that failed on its own (non-finite loss, a model too big for the GPU) is never retried;
one stopped by a signal or by its worker's disk is (and its retry resumes from its checkpoint).
"""

from storage.trials.alive import Periodic, heartbeat, reaper_thread, signals_deferred
from storage.trials.claim import Refill, UnderLock, claim, claim_through_outage
from storage.trials.end import RETRIED_KINDS, FailKind, fail, frozen, retry_later, still_running, tell
from storage.trials.reap import reap_locked, reap_studies, reap_study, requeue_lost

__all__ = ["RETRIED_KINDS", "FailKind", "Periodic", "Refill", "UnderLock", "claim", "claim_through_outage", "fail",
           "frozen", "heartbeat", "reap_locked", "reap_studies", "reap_study", "reaper_thread", "requeue_lost",
           "retry_later", "signals_deferred", "still_running", "tell"]
