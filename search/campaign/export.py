"""Export a trial as a train config YAML that `sarsweep train --config` retrains as is.

    sarsweep export --campaign configs/campaign.yaml --variant residual -o best.yaml
"""

from __future__ import annotations

import datetime as dt
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from errors import CheckpointError, StudyError
from search.campaign.config import CampaignConfig
from search.campaign.roles import PROMOTED_FROM_STUDY, PROMOTED_FROM_TRIAL
from search.campaign.studies import load_stage_study
from search.policy.best import best_complete
from search.policy.verdicts import below_trivial
from storage import trial_dir
from storage.lineage import original_number
from training.config import TrainConfig, dump_yaml, with_absolute_root
from training.files import atomic_write


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def choose_trial(storage: RDBStorage, campaign: CampaignConfig, variant: str, stage: str | None,
                 number: int | None, purpose: str = "export") -> tuple[optuna.Study, FrozenTrial]:
    """The trial to export (or evaluate): number N, else the best COMPLETE one (full stage first
    when stage is None)."""
    for s in ([stage] if stage else ["full", "quick"]):
        study = load_stage_study(storage, campaign, variant, s)
        if number is not None:
            match = [t for t in study.get_trials(deepcopy=False) if t.number == number]
            if not match:
                raise StudyError(f"study {study.study_name} has no trial {number}")
            if match[0].state != TrialState.COMPLETE:
                raise StudyError(f"trial {number} of {study.study_name} is {match[0].state.name}, not COMPLETE")
            return study, match[0]
        best = best_complete(study.get_trials(deepcopy=False))
        if best is not None:
            return study, best
    where = stage or "full or quick"
    raise StudyError(f"no COMPLETE trial to {purpose} in the {where} stage of {campaign.name}.{variant}")


def trial_checkpoint(campaign: CampaignConfig, variant: str, stage: str, trial: FrozenTrial, root: Path) -> Path:
    """The trial's best.pt: where its worker wrote it, else at the same place under `root`, this
    machine's artifacts root (a compose worker wrote /artifacts/..., a node mounts it elsewhere)."""
    recorded = Path(trial.user_attrs.get("checkpoint", ""))
    if recorded.is_file():
        return recorded
    number = original_number(trial)  # a retry writes to its original's folder
    local = trial_dir(root, campaign.name, variant, stage, number) / "best.pt"
    if local.is_file():
        return local
    raise CheckpointError(f"trial {trial.number} of {campaign.study_name(variant, stage)}: its checkpoint is "
                          f"neither at {recorded} nor at {local}; pass --artifacts (or set $SARSWEEP_ARTIFACTS) "
                          "to where it lies")


def export_trial(storage: RDBStorage, campaign: CampaignConfig, variant: str, out: Path,
                 stage: str | None = None, number: int | None = None) -> tuple[Path, optuna.Study, FrozenTrial]:
    study, trial = choose_trial(storage, campaign, variant, stage, number)
    cfg = TrainConfig.from_dict(trial.user_attrs["config"])
    cfg = cfg.replace(out_dir=f"runs/{study.study_name}.trial{trial.number}")
    root = cfg.data.root
    where = "generated scenes (data.root null)" if root is None else f"data.root {root}"
    if root is not None and not Path(root).is_absolute():  # a trial of an older sarsweep recorded it as given
        cfg = TrainConfig.from_dict(with_absolute_root(cfg.to_dict()))
        where = f"data.root {cfg.data.root} (recorded as {root}, resolved from {Path.cwd()})"
    a = trial.user_attrs
    lineage = (f"; promoted from {a[PROMOTED_FROM_STUDY]} trial {a[PROMOTED_FROM_TRIAL]}"
               if PROMOTED_FROM_STUDY in a else "")
    stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}"
    below = below_trivial(a)
    header = "\n".join([
        f"sarsweep train config exported from campaign {campaign.name}, study {study.study_name}, trial {trial.number}",
        f"objective ({campaign.objective}) {trial.value:.4f}; val PSNR {a.get('val_psnr', float('nan')):.2f} dB, "
        f"SSIM {a.get('val_ssim', float('nan')):.4f}, {a.get('param_count', 0):,} parameters",
        f"data fraction {cfg.fraction}, {cfg.epochs} epochs, seed {cfg.seed}"
        + (f", {cfg.threads} CPU thread(s)" if cfg.threads else "") + lineage,
        *([f"WARNING: {below} (each patch's mean as its reconstruction): this config learned "
           "less than nothing; look at the report before training it"] if below else []),
        f"sarsweep {_version('sarsweep')}, optuna {optuna.__version__}, exported {stamp}",
        f"data: {where}" + (": made again from their seed on any machine" if root is None
                              else ", absolute: it retrains from any folder"),
        f"retrain: sarsweep train --config {out.name}"
        + (f" (on the CPU with the same {cfg.threads} thread(s), which its result depends on; --threads "
           "changes that)" if cfg.threads else ""),
        "",
    ])
    text = dump_yaml(cfg.to_dict(), header=header)
    atomic_write(out, lambda tmp: tmp.write_text(text))
    return out, study, trial
