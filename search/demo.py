"""`sarsweep demo`: the whole service end to end on generated data, SQLite and the CPU.

init -> quick search of every variant -> promote the top 2 -> full runs -> export the best
config -> status table. Re-running it on the same storage resumes where it stopped (each step
is idempotent).
"""

from __future__ import annotations

import dataclasses
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import Trial, TrialState

from errors import ConfigError, StudyError
from search.campaign.config import STAGES, CampaignConfig
from search.campaign.export import export_trial
from search.campaign.roles import role_of
from search.campaign.studies import ensure_study
from search.policy.best import best_complete
from search.report.collect import held_out_lines, summary_line
from search.report.render import write_report
from search.report.status import campaign_status, render
from search.running.promote import promote
from search.running.worker import run_worker
from storage.trials import frozen
from training.config import TrainConfig
from training.files import atomic_write
from training.schema import build


def demo_campaign_dict(trials: int | None = None, epochs: int | None = None,
                       noise_seeds: int | None = None) -> dict[str, Any]:
    """The demo's campaign file (search/demo_campaign.yaml) with the demo's options applied."""
    from training.config import parse_yaml

    raw: dict[str, Any] = parse_yaml(files("search").joinpath("demo_campaign.yaml").read_text())
    if noise_seeds is not None:
        raw["noise_seeds"] = noise_seeds
    if trials is not None:
        raw["quick"]["trials"] = trials
    if epochs is not None:
        raw["quick"]["epochs"] = raw["full"]["epochs"] = epochs
        # A trial is judged one epoch after its warmup, before the stage's last epoch: keep that possible.
        top = min(raw["search"]["warmup_epochs"]["high"], epochs - 2)
        raw["search"]["warmup_epochs"] = {"low": 0, "high": top} if top > 0 else {"choices": [0]}
        if epochs < 2:
            raw["quick"]["pruner"] = "none"
    return raw


def demo_campaign(trials: int | None = None, epochs: int | None = None,
                  noise_seeds: int | None = None) -> CampaignConfig:
    try:
        return build(CampaignConfig, demo_campaign_dict(trials, epochs, noise_seeds))
    except ConfigError as exc:
        raise exc.within(source="demo campaign") from None


def write_campaign_file(path: Path, raw: dict[str, Any]) -> Path:
    """The campaign the demo ran, as a file `status`, `report` and `export` take."""
    import yaml

    header = ("# The campaign `sarsweep demo` ran (its options applied), so the other commands can look at it:\n"
              f"#   sarsweep status --campaign {path.name}\n#   sarsweep report --campaign {path.name}\n")
    return atomic_write(path, lambda tmp: tmp.write_text(header + yaml.safe_dump(raw, sort_keys=False)))


class Progress:
    """Prints each trial as it ends, with the demo's trials done of about how many, and time left."""

    def __init__(self, campaign: CampaignConfig, top_k: int) -> None:
        per_stage = campaign.noise_seeds
        self.total = len(campaign.variants) * (campaign.quick_budget() + per_stage + top_k + per_stage)
        self.done = 0
        self.started = time.perf_counter()

    def __call__(self, trial: Trial, state: TrialState) -> None:
        self.done += 1
        done = frozen(trial.study, trial)
        value = f"{done.value:.2f} dB" if done.value is not None else done.user_attrs.get("fail_reason", "")
        role = role_of(done)
        if role:  # a seed re-run above the best says what it is: it is never the best
            value += f" ({role})"
        spent = time.perf_counter() - self.started
        left = max(0.0, spent / self.done * (self.total - self.done))
        print(f"  trial {trial.number:>2} {state.name.lower():<8} {value:<10} [{self.done} of about {self.total} "
              f"trials, about {left / 60:.0f} min left]", flush=True)


def best_overall(storage: RDBStorage, campaign: CampaignConfig) -> tuple[str, str]:
    """(variant, stage) of the best COMPLETE trial, full stage preferred over quick; a seed re-run
    is never it (search.policy.best.best_complete, as status, report and export pick)."""
    for stage in ("full", "quick"):
        best: tuple[float, str] | None = None
        for variant in campaign.variants:
            study = optuna.load_study(study_name=campaign.study_name(variant, stage), storage=storage)
            top = best_complete(study.get_trials(deepcopy=False))
            if top is not None and (best is None or float(top.value) > best[0]):  # type: ignore[arg-type]
                best = (float(top.value), variant)  # type: ignore[arg-type]
        if best:
            return best[1], stage
    raise StudyError(f"no trial of campaign {campaign.name} completed")


def held_out_scenes(campaign: CampaignConfig) -> Path:
    """Scenes no demo trial saw: the training scenes' generator with the next seed. The report
    scores each variant's chosen config on them, as `report --held-out` does with real rasters."""
    from training.data import cache_root, synthetic_dir

    data = campaign.train.data
    scenes = dataclasses.replace(data.synthetic, seed=data.synthetic.seed + 1, scenes=12)
    return synthetic_dir(scenes, data.channels, cache_root())


def run_demo(storage: RDBStorage, artifacts: Path, out: Path, trials: int | None = None,
             epochs: int | None = None, device: str | None = None, noise_seeds: int | None = None) -> Path:
    started = time.perf_counter()
    campaign = demo_campaign(trials, epochs, noise_seeds)
    campaign_file = write_campaign_file(out.with_name("demo-campaign.yaml"),
                                        demo_campaign_dict(trials, epochs, noise_seeds))
    for variant in campaign.variants:
        for stage in STAGES:
            ensure_study(storage, campaign, variant, stage)
    tally = Progress(campaign, top_k=2)
    for variant in campaign.variants:
        print(f"quick search: {campaign.study_name(variant, 'quick')}", flush=True)
        run_worker(storage, campaign, variant, "quick", artifacts, device=device, worker_index=0,
                   progress=False, on_trial=tally)
        for p in promote(storage, campaign, variant, top_k=2):
            print(f"  promoted quick trial {p.quick_trial} ({p.quick_value:.2f} dB)"
                  + ("" if p.enqueued else " (already)"), flush=True)
        print(f"full runs: {campaign.study_name(variant, 'full')}", flush=True)
        run_worker(storage, campaign, variant, "full", artifacts, device=device, worker_index=0,
                   progress=False, on_trial=tally)
    variant, stage = best_overall(storage, campaign)
    path, study, trial = export_trial(storage, campaign, variant, out, stage=stage)
    print()
    print(render(campaign_status(storage, campaign), campaign.objective))
    print()
    cfg = TrainConfig.from_dict(trial.user_attrs["config"])
    print(f"best: {study.study_name} trial {trial.number}, val PSNR {trial.user_attrs['val_psnr']:.2f} dB, "
          f"SSIM {trial.user_attrs['val_ssim']:.4f} "
          f"({cfg.variant}, base_channels {cfg.base_channels}, lr {cfg.lr:.2e})")
    report = write_report(storage, campaign, out.with_name("report.md"), out.with_name("report.html"),
                          held_out=(artifacts, str(held_out_scenes(campaign)), ["*.npy"]),
                          held_out_label=f"12 generated synthetic scenes of seed "
                                         f"{campaign.train.data.synthetic.seed + 1} (no trial saw them)",
                          say=lambda line: print(f"report: {line}", flush=True))
    print(summary_line(report))
    for line in held_out_lines(report):
        print(line)
    print(f"demo finished in {time.perf_counter() - started:.0f}s; best config written to {path}")
    print(f"retrain it with: sarsweep train --config {path}")
    print(f"report: {out.with_name('report.md')} and {out.with_name('report.html')}")
    print(f"look again: sarsweep status --campaign {campaign_file}; sarsweep dashboard (then open the link)")
    return path
