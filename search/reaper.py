"""The reaper: fail (and so retry) stale trials even when no worker starts a new trial.

    sarsweep reaper --campaign configs/campaign.yaml [--period 60] [--once]

Stock Optuna checks for stale trials only when a worker starts a trial, so with one worker, or
with every worker deep in a long GPU trial, a killed worker's trial can sit RUNNING for hours.
The reaper runs `fail_stale_trials` on every study of the campaign each period; the storage's
RetryHeartbeatStaleTrialCallback then queues the retry, which resumes from the checkpoint. A
stale trial is failed within grace period + reaper period. Workers also run one on a timer for
their own study (ReaperThread).
"""

from __future__ import annotations

import logging
import threading

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from search.campaign import STAGES, CampaignConfig

log = logging.getLogger("sarsweep.reaper")


def reap_study(study: optuna.Study) -> list[int]:
    """Fail the study's stale trials; returns the numbers of those it failed."""
    from search.worker import fail_stale

    running = {t._trial_id: t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return []
    fail_stale(study)
    storage = study._storage
    return sorted(n for tid, n in running.items() if storage.get_trial(tid).state == TrialState.FAIL)


def reap_campaign(storage: RDBStorage, campaign: CampaignConfig) -> dict[str, list[int]]:
    """One pass over every existing study of the campaign: {study name: trial numbers failed}."""
    failed = {}
    for variant in campaign.variants:
        for stage in STAGES:
            name = campaign.study_name(variant, stage)
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                continue
            numbers = reap_study(study)
            if numbers:
                failed[name] = numbers
    return failed


class ReaperThread:
    """Reaps one study every `period` seconds in the background; a DB error is logged, not fatal."""

    def __init__(self, study: optuna.Study, period: float) -> None:
        self.study, self.period = study, period
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def _run(self) -> None:
        while not self.stop_event.wait(self.period):
            try:
                for number in reap_study(self.study):
                    log.warning("trial %d of %s was stale: failed and queued for retry", number, self.study.study_name)
            except Exception as exc:  # noqa: BLE001 - the next period tries again
                log.warning("reaper pass on %s failed (%s)", self.study.study_name, exc.__class__.__name__)

    def __enter__(self) -> ReaperThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
