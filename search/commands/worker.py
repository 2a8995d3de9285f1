"""`sarsweep worker`: run the campaign's trials (every study, or those of --variant and --stage).

    sarsweep worker --campaign configs/campaign.yaml                                   # the whole campaign
    sarsweep worker --campaign configs/campaign.yaml --variant baseline --stage quick  # one study
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from search.commands.common import (
    DEVICE_HELP,
    Subparsers,
    at_least_one,
    campaign_command,
    heartbeat_args,
    index,
    load_campaign_of,
    open_storage_of,
    positive_seconds,
    variants_of,
)

if TYPE_CHECKING:
    from optuna.trial import Trial, TrialState

    from search.campaign.config import CampaignConfig
    from search.running.promote import Promotion
    from training.data import SplitData
    from training.trainer import EpochResult


def add(commands: Subparsers) -> None:
    worker = campaign_command(commands, "worker", "run the campaign's trials (all studies, or those of --variant "
                                                  "and --stage) until it is done", artifacts=True)
    worker.add_argument("--variant", help="only this variant's studies (default: every variant)")
    worker.add_argument("--stage", choices=["quick", "full"], metavar="{quick,full}",
                        help="only this stage (default both; with --variant too: that one study, which this "
                             "worker leaves when it has nothing to claim, as before campaign workers)")
    worker.add_argument("--device", help=f"{DEVICE_HELP} (default: the campaign's train.device)")
    worker.add_argument("--worker-index", type=index, help="makes this worker's sampler seed reproducible")
    worker.add_argument("--threads", type=at_least_one,
                        help="CPU threads per trial (default: the campaign's, else $OMP_NUM_THREADS, else a share "
                             "of this node's cores among its sarsweep processes)")
    worker.add_argument("--poll", type=positive_seconds,
                        help="seconds between looks while waiting for work another worker may make (default 10)")
    heartbeat_args(worker)
    worker.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search.running.source import Hooks, served_studies
    from search.running.trial import worker_name
    from search.running.worker import run_campaign_worker
    from storage import artifacts_root
    from training.data import describe_split

    campaign = load_campaign_of(args)
    variants_of(campaign, args.variant)
    storage = open_storage_of(args, f"worker-{args.stage}" if args.stage else "worker", args.heartbeat_interval,
                              args.grace_period, claims_trials=True)
    variants = [args.variant] if args.variant else list(campaign.variants)
    stages = [args.stage] if args.stage else ["quick", "full"]
    served = served_studies(campaign, variants, stages)
    one = bool(args.variant and args.stage)  # one study: it leaves when the study has nothing to claim
    names = ", ".join(campaign.study_name(*key) for key in served)
    # The name `sarsweep status` shows beside this worker's running trials.
    print(f"worker {worker_name()} on {names}" if one else
          f"worker {worker_name()} on campaign {campaign.name}: {names}", flush=True)
    poll = args.poll or 10.0

    def prefix(trial: Trial) -> str:
        return "" if one else f"{trial.study.study_name} "

    def data_line(stage: str, data: SplitData) -> None:
        line = describe_split(data, campaign.train.data, campaign.stage(stage).fraction)
        print(line if one else f"{stage} stage {line}", flush=True)

    def epoch(trial: Trial, stage: str, e: EpochResult) -> None:
        print(epoch_line(trial, e, campaign.stage(stage).epochs, prefix(trial)), flush=True)

    hooks = Hooks(on_trial=lambda t, s: print(trial_line(t, s, campaign.objective, prefix(t)), flush=True),
                  on_wait=waiting(poll), on_data=data_line, on_promote=promoted(campaign), on_epoch=epoch,
                  on_resume=lambda t, line: print(f"{prefix(t)}{line}", flush=True))
    summary = run_campaign_worker(storage, campaign, artifacts_root(args.artifacts), variants, stages,
                                  device=args.device, worker_index=args.worker_index, threads=args.threads,
                                  poll=poll, hooks=hooks, one_study=one)
    print(summary.line(), flush=True)
    return summary.exit_code


def trial_line(trial: Trial, state: TrialState, objective: str, prefix: str = "") -> str:
    """'trial 3 complete (seed re-run 1 of trial 2: ...): val PSNR 14.81 dB in 0.1 s on cpu', then
    '(BELOW the trivial reference: ...)' where it is."""
    from search.campaign.roles import role_of
    from search.policy.verdicts import below_trivial
    from storage.trials import frozen

    done = frozen(trial.study, trial)
    attrs = done.user_attrs
    role = role_of(done)
    if done.value is not None:
        value = f": {metric_text(objective, done.value)}"
        if "seconds" in attrs:
            value += f" in {attrs['seconds']:.1f} s on {attrs.get('device', '?')}"
        below = below_trivial(attrs)
        if below:
            value += f" ({below})"
    else:
        value = f": {attrs['fail_reason']}" if attrs.get("fail_reason") else ""
    return f"{prefix}trial {trial.number} {state.name.lower()}{f' ({role})' if role else ''}{value}"


def metric_text(objective: str, value: float) -> str:
    """'val PSNR 17.17 dB' or 'val SSIM 0.8123' (status's value_text, named, with its unit)."""
    from search.report.status import value_text

    return f"val {objective.upper()} {value_text(value, objective)}" + (" dB" if objective == "psnr" else "")


def epoch_line(trial: Trial, e: EpochResult, epochs: int, prefix: str = "") -> str:
    """One line per epoch a trial finishes: a worker is never silent for a whole trial."""
    return (f"{prefix}trial {trial.number} epoch {e.epoch}/{epochs} val PSNR {e.val_psnr:.2f} dB SSIM "
            f"{e.val_ssim:.4f} {e.seconds:.1f} s/epoch")


def waiting(poll: float) -> Callable[[str], None]:
    """Says why the worker waits, once per change of the reason."""
    said = [""]

    def say(why: str) -> None:
        if why != said[0]:
            print(f"waiting: {why}; looking again every {poll:g}s", flush=True)
        said[0] = why

    return say


def promoted(campaign: CampaignConfig) -> Callable[[str, list[Promotion], bool], None]:
    def say(variant: str, promotions: list[Promotion], already: bool) -> None:
        full = campaign.study_name(variant, "full")
        if promotions:
            picks = ", ".join(f"{p.quick_trial} ({metric_text(campaign.objective, p.quick_value)}"
                              + (f", within the noise band {p.within_noise:.2f}" if p.within_noise else "") + ")"
                              for p in promotions)
            said = (f"promoted quick trial(s) {picks} to {full}, the stage's best configs"
                    + (" (seed re-runs measure noise: never candidates)" if campaign.noise_seeds else ""))
        else:
            said = f"{full} holds its promoted configs already" if already else "no COMPLETE quick trial to promote"
        print(f"{variant}: quick stage ended; {said}", flush=True)

    return say
