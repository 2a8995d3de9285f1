"""The reaper: fail (and so retry) stale trials even when no worker starts a new trial.

    sarsweep reaper --campaign configs/campaign.yaml [--period 60] [--once]

Stock Optuna checks for stale trials only when a worker starts a trial, so with one worker, or
with every worker deep in a long GPU trial, a killed worker's trial can sit RUNNING for hours.
The reaper passes over every study of the campaign each period (storage.trials.reap_study:
under the study lock, lost retries re-queued); the storage's RetryHeartbeatStaleTrialCallback
queues the retry, which resumes from the checkpoint. A stale trial is failed within grace
period + reaper period. Workers also reap on a timer, and before each trial claim.
"""

from __future__ import annotations

from search.campaign.config import STAGES, CampaignConfig
from storage.rdb import ResilientRDBStorage
from storage.trials import reap_studies


def study_names(campaign: CampaignConfig) -> list[str]:
    return [campaign.study_name(variant, stage) for variant in campaign.variants for stage in STAGES]


def reap_campaign(storage: ResilientRDBStorage, campaign: CampaignConfig) -> dict[str, list[int]]:
    """One pass over every existing study of the campaign: {study name: trial numbers failed}."""
    return reap_studies(storage, study_names(campaign))
