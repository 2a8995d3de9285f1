"""A trial: sample a point, build the TrainConfig, train it, report every epoch to Optuna.

The trainer knows nothing of Optuna; this module turns its per-epoch callback into
`trial.report` and pruning, and records what a person needs beside the value: SSIM, parameter
count, seconds and device per epoch, the checkpoint path, the config itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.artifacts import upload_artifact
from optuna.trial import FrozenTrial, Trial, TrialState

from errors import OutputError
from search.campaign.config import CampaignConfig
from search.campaign.dashboard import note_config
from search.campaign.roles import NOISE_OF, NOISE_SEED, STOPPED_BEATEN
from search.campaign.studies import derived_seed, sample_params
from search.policy.stopping import stop_reason
from search.policy.verdicts import below_trivial
from search.running.signals import raise_if_stopped
from storage import trial_dir
from storage.lineage import original_number
from storage.optuna_internals import rdb_of
from storage.rdb import heartbeat_of
from storage.trials import frozen
from training.checkpoint import load_checkpoint
from training.config import TrainConfig, with_absolute_root
from training.data import SplitData
from training.files import os_reason
from training.inference import resolve_device
from training.threads import threads_for
from training.trainer import EpochResult, train

if TYPE_CHECKING:
    from storage.optuna_internals import ArtifactStore


@dataclass
class TrialContext:
    campaign: CampaignConfig
    variant: str
    stage: str
    artifacts: Path
    data: SplitData
    """The stage's data, prepared once per worker and shared by its trials."""
    device: str | None = None
    progress: bool | None = None
    artifact_store: ArtifactStore | None = None
    """Where previews go as Optuna artifacts (None: previews stay on disk only)."""
    threads: int | None = None
    """CPU threads (`sarsweep worker --threads`); None: the campaign's, else a node share."""
    on_epoch: Callable[[Trial, EpochResult], None] | None = None
    on_resume: Callable[[Trial, str], None] | None = None
    """Told, in one line, when a trial is a retry: which trial it resumes, from which epoch, why."""
    """Told of every epoch a trial finishes (the worker's progress line)."""


def worker_name() -> str:
    """host:pid of this process, recorded on its trials so `sarsweep status` can say who runs what
    (in a container the host is the container id)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def build_config(trial: Trial, ctx: TrialContext, number: int, attrs: dict[str, Any] | None = None) -> TrainConfig:
    """The trial's TrainConfig: campaign base + sampled point + stage settings.

    It goes through the same validation as a hand-written YAML. The seed and the checkpoint
    folder come from `number`, the original trial's, so a retry keeps both; a seed-noise re-run
    (`attrs` has noise_of) takes a seed of its own, derived from the config it re-runs.
    """
    stage = ctx.campaign.stage(ctx.stage)
    attrs = attrs or {}
    seed = derived_seed(ctx.campaign.name, ctx.variant, ctx.stage, number)
    if NOISE_OF in attrs:
        seed = derived_seed(ctx.campaign.name, ctx.variant, ctx.stage, attrs[NOISE_OF], "noise", attrs[NOISE_SEED])
    params = sample_params(trial, ctx.campaign.space(ctx.variant))
    out_dir = trial_dir(ctx.artifacts, ctx.campaign.name, ctx.variant, ctx.stage, number)
    cfg = trial_config(ctx.campaign, ctx.variant, stage.fraction, stage.epochs, params, seed, out_dir, ctx.device)
    if resolve_device(cfg.device).type == "cpu":  # a share of the node's cores, decided as the trial starts
        cfg = cfg.replace(threads=threads_for(ctx.threads or cfg.threads)[0])
    return cfg


def trial_config(campaign: CampaignConfig, variant: str, fraction: float, epochs: int, params: dict[str, Any],
                 seed: int, out_dir: str | Path, device: str | None = None, threads: int | None = None) -> TrainConfig:
    """The TrainConfig of a point of the campaign's space at a fidelity (fraction, epochs): what a
    trial trains, and what bench/curves.py records. Validated like a hand-written YAML; its data
    root is absolute, so the config (and its export) retrains from any folder."""
    fixed: dict[str, Any] = {"variant": variant, "fraction": fraction, "epochs": epochs, "seed": seed,
                             "out_dir": str(out_dir)}
    if device:
        fixed["device"] = device
    if threads:
        fixed["threads"] = threads
    return TrainConfig.from_dict({**with_absolute_root(campaign.train.to_dict()), **params, **fixed})


def objective_value(ctx: TrialContext, psnr: float, ssim: float) -> float:
    return psnr if ctx.campaign.objective == "psnr" else ssim


def run_trial(trial: Trial, ctx: TrialContext) -> float:
    """Train the trial's config; return the best epoch's objective value."""
    stored = frozen(trial.study, trial)
    number = original_number(stored)
    cfg = build_config(trial, ctx, number, stored.user_attrs)
    is_retry = number != trial.number
    last = Path(cfg.out_dir) / "last.pt"
    trial.set_user_attr("worker", worker_name())
    trial.set_user_attr("config", cfg.to_dict())
    note_config(trial, cfg.to_dict())  # readable on the dashboard's trial page
    trial.set_user_attr("checkpoint", str(Path(cfg.out_dir) / "best.pt"))
    trial.set_user_attr("seed", cfg.seed)
    if cfg.threads:
        trial.set_user_attr("threads", cfg.threads)
    epochs: list[dict[str, Any]] = []
    if is_retry and last.is_file():
        # Intermediate values of the epochs the retried trial already ran, so the curve is whole.
        for h in load_checkpoint(last)["history"]:
            trial.report(objective_value(ctx, h["val_psnr"], h["val_ssim"]), h["epoch"])
            epochs.append(_epoch_attrs(EpochResult(**h)))
    if is_retry and ctx.on_resume is not None:
        ctx.on_resume(trial, resume_line(trial.study, stored, number, len(epochs), cfg.epochs))

    def on_epoch(e: EpochResult) -> None:
        raise_if_stopped()  # a signal whose first WorkerStopped was lost in a finalizer
        trial.report(objective_value(ctx, e.val_psnr, e.val_ssim), e.epoch)
        epochs.append(_epoch_attrs(e))
        trial.set_user_attr("epochs", epochs)
        if ctx.on_epoch is not None:
            ctx.on_epoch(trial, e)
        if trial.should_prune():  # the quick stage's pruner, or a full run beaten beyond noise
            if ctx.stage == "full":
                stored = trial.study.get_trials(deepcopy=False)
                mine = next(t for t in stored if t.number == trial.number)
                reason = stop_reason(mine, stored, e.epoch, ctx.campaign.full.stop_margin or 0.0)
                trial.set_user_attr(STOPPED_BEATEN, reason or f"stopped at epoch {e.epoch}")
            raise optuna.TrialPruned(f"pruned after epoch {e.epoch}")

    def on_written(e: EpochResult) -> None:  # on the trainer's background writer, after the PNG exists
        if e.preview and ctx.artifact_store is not None:
            upload_preview(trial, ctx.artifact_store, e)

    started = time.perf_counter()
    result = train(cfg, on_epoch_end=on_epoch, resume=is_retry, progress=ctx.progress, data=ctx.data,
                   on_epoch_written=on_written)
    trial.set_user_attr("start_epoch", result.start_epoch)
    trial.set_user_attr("val_psnr", result.best_psnr)
    trial.set_user_attr("val_ssim", result.best_ssim)
    trial.set_user_attr("trivial_psnr", round(result.trivial_psnr, 4))  # each patch's mean: the reference
    trial.set_user_attr("trivial_ssim", round(result.trivial_ssim, 5))
    below = below_trivial({"val_psnr": result.best_psnr, "trivial_psnr": result.trivial_psnr})
    if below:  # shown among its user attrs on the dashboard
        trial.set_user_attr("below_trivial", below)
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("param_count", result.params)
    trial.set_user_attr("device", result.device)
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
    return objective_value(ctx, result.best_psnr, result.best_ssim)


def resume_line(study: optuna.Study, retry: FrozenTrial, original: int, done: int, epochs: int) -> str:
    """'trial 9 resumes trial 4 from epoch 6 of 8: worker stopped by SIGTERM', or '... its worker
    stopped sending heartbeats (failed as stale after 120 s)'."""
    chain = [t for t in study.get_trials(deepcopy=False)
             if t.state == TrialState.FAIL and original_number(t) == original and t.number < retry.number]
    last = max(chain, key=lambda t: t.number) if chain else None
    why = None if last is None else last.user_attrs.get("fail_reason")
    if why is None:
        grace = heartbeat_of(rdb_of(study))[1]
        why = f"its worker stopped sending heartbeats (failed as stale after {grace:g} s)"
    where = f"from epoch {done + 1} of {epochs}" if done else f"from the start of {epochs} epochs (no checkpoint left)"
    return f"trial {retry.number} resumes trial {last.number if last else original} {where}: {why}"


def upload_preview(trial: Trial, store: ArtifactStore, e: EpochResult) -> None:
    """The epoch's preview.png as a trial artifact (the dashboard shows it on the trial page).

    Uploaded as preview-epochNNN.png: the artifact keeps the file's name, and a trial has one
    preview per new best epoch, which a person tells apart by that name.
    """
    try:
        with tempfile.TemporaryDirectory() as tmp:
            named = Path(tmp) / f"preview-epoch{e.epoch:03d}.png"
            shutil.copyfile(str(e.preview), named)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                artifact_id = upload_artifact(artifact_store=store, file_path=str(named), study_or_trial=trial,
                                              mimetype="image/png")
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else None  # os_reason names the file only when it is elsewhere
        raise OutputError(where or "the artifact store", os_reason(exc, where)) from None
    trial.set_user_attr("preview_artifact", artifact_id)
    trial.set_user_attr("preview_epoch", e.epoch)


def _epoch_attrs(e: EpochResult) -> dict[str, Any]:
    attrs = {"epoch": e.epoch, "psnr": round(e.val_psnr, 4), "ssim": round(e.val_ssim, 5),
             "loss": e.train_loss, "seconds": round(e.seconds, 3), "device": e.device}
    if e.train_seconds is not None:
        attrs["train_seconds"] = round(e.train_seconds, 3)
    return attrs
