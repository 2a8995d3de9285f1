"""Disk room for checkpoints: a worker claims a trial only if the artifacts disk can hold it.

A zero-byte probe passes on a full disk, and a trial that finds out at its first checkpoint has
been claimed, failed and queued for retry; under compose's `restart: on-failure` a worker on a
too small disk did that again at every start. So before every claim a worker checks that the
artifacts root is writable (`check_writable`, no lock) and, under the claim lock, that it has
room for its largest trial's checkpoints plus what the campaign's running trials have still to
write (`DiskRoom`): every variant and stage, whose workers write to the same root.
"""

from __future__ import annotations

import functools
from pathlib import Path

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from search.campaign.config import STAGES, CampaignConfig
from storage.artifacts import artifact_dir, trial_dir
from storage.lineage import original_number
from storage.locks import LockConnection, also_lock
from storage.optuna_internals import study_id
from training.config import TrainConfig
from training.files import ensure_free, ensure_writable


def check_writable(artifacts: Path) -> None:
    """The artifacts folders can be written (a cheap probe, no lock), or OutputError naming one."""
    for folder in (artifacts, artifact_dir(artifacts)):
        ensure_writable(folder)


class DiskRoom:
    """Under the claim lock: room for the largest trial's checkpoints plus what the campaign's
    running trials have still to write (seen from this worker's artifacts root, the shared disk
    they all write to). Else an OutputError, and the worker stops with no trial claimed: a restart
    loop (compose's on-failure) only probes, no trial is failed, nor its retry spent.

    Counting the running trials covers workers started together (launch --per-gpu N, compose
    --scale), each of which used to see the empty disk and claim, and those of the other variants
    and stage. Those hold other study locks, so on PostgreSQL the check also takes the campaign's
    disk lock in the claim's transaction (after the study lock, always in that order): two
    workers of different variants never both pass on the same free bytes. SQLite's lock is one
    for all studies."""

    def __init__(self, storage: RDBStorage, campaign: CampaignConfig, variant: str, artifacts: Path) -> None:
        self.storage, self.campaign, self.variant, self.artifacts = storage, campaign, variant, artifacts

    def __call__(self, conn: LockConnection) -> None:
        campaign, variant = self.campaign, self.variant
        also_lock(conn, f"disk:{campaign.name}")
        need = largest_of(campaign, variant)
        running = running_trials(self.storage, campaign)
        if not running:
            ensure_free(self.artifacts, need, f"{variant} trials' checkpoints")
            return
        pending = sum(still_to_write(t, self.artifacts, campaign, v, s, largest_of(campaign, v)) for v, s, t in running)
        n = len(running)
        ensure_free(self.artifacts, need + pending, f"checkpoints of this {variant} trial and of {n} running "
                                                    f"trial{'s' if n > 1 else ''} of campaign {campaign.name}")


@functools.lru_cache(maxsize=64)
def _peak(variant: str, model_kwargs: tuple[tuple[str, int], ...]) -> int:
    """checkpoint_bytes, once per model size: it runs under the claim lock, for every running trial."""
    from training.checkpoint import checkpoint_bytes

    return checkpoint_bytes(variant, dict(model_kwargs))


def running_trials(storage: RDBStorage, campaign: CampaignConfig) -> list[tuple[str, str, FrozenTrial]]:
    """(variant, stage, trial) for every running trial of the campaign: all its variants' studies,
    both stages. A study not made yet has none. (Listing the studies, not looking each up by
    name: a missing name raises inside Optuna's session, which rolls back the claim lock's
    transaction on SQLite.)"""
    ids = {study.study_name: study_id(study) for study in storage.get_all_studies()}
    found = []
    for variant in campaign.variants:
        for stage in STAGES:
            sid = ids.get(campaign.study_name(variant, stage))
            if sid is not None:
                running = storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,))
                found += [(variant, stage, trial) for trial in running]
    return found


def largest_of(campaign: CampaignConfig, variant: str) -> int:
    """checkpoint_bytes of the variant's largest trial in this campaign."""
    return _peak(variant, tuple(campaign.largest_model(variant).items()))


def still_to_write(trial: FrozenTrial, artifacts: Path, campaign: CampaignConfig, variant: str, stage: str,
                   largest: int) -> int:
    """Bytes a running trial may still add to the disk: its checkpoints' peak (checkpoint_bytes,
    for its own model size once it has recorded its config, else the largest's) less what its
    folder already holds."""
    from training.checkpoint import held_bytes

    config = trial.user_attrs.get("config")
    peak = largest if config is None else _peak(variant, tuple(TrainConfig.from_dict(config).model_kwargs.items()))
    number = original_number(trial)  # a retry writes to its original's folder
    return max(0, peak - held_bytes(trial_dir(artifacts, campaign.name, variant, stage, number)))
