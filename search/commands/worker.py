"""`sarsweep worker` (a whole campaign, or one study narrowed by --variant and --stage) and
`sarsweep launch` (one worker per GPU)."""

from __future__ import annotations

import argparse
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

    from search.campaign import CampaignConfig
    from search.promote import Promotion
    from search.worker import WorkerSummary
    from storage.rdb import ResilientRDBStorage
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

    launch = commands.add_parser("launch", help="start one worker per GPU (worker options after --)")
    launch.add_argument("--gpus", default="all", help="'all' or GPU indices like 0,1,3 (default all)")
    launch.add_argument("--per-gpu", type=at_least_one, default=1,
                        help="workers per GPU (CPU workers when there is none)")
    launch.add_argument("worker_args", nargs=argparse.REMAINDER, help="-- then `sarsweep worker` options")
    launch.set_defaults(func=run_launch)


def run(args: argparse.Namespace) -> int:
    from search.objective import worker_name

    campaign = load_campaign_of(args)
    variants_of(campaign, args.variant)
    role = f"worker-{args.stage}" if args.stage else "worker"
    storage = open_storage_of(args, role)
    if args.variant and args.stage:
        # The name `sarsweep status` shows beside this worker's running trials.
        print(f"worker {worker_name()} on {campaign.study_name(args.variant, args.stage)}", flush=True)
        summary = one_study(args, storage, campaign)
    else:
        summary = whole_campaign(args, storage, campaign)
    print(summary.line(), flush=True)
    return summary.exit_code


def trial_line(trial: Trial, state: TrialState, prefix: str = "") -> str:
    from storage.trials import frozen

    done = frozen(trial.study, trial)
    attrs = done.user_attrs
    if done.value is not None:
        value = f"value {done.value:.4f}"
        if "seconds" in attrs:
            value += f" in {attrs['seconds']:.1f} s on {attrs.get('device', '?')}"
    else:
        value = attrs.get("fail_reason", "")
    return f"{prefix}trial {trial.number} {state.name.lower()} {value}"


def epoch_line(trial: Trial, e: EpochResult, epochs: int, prefix: str = "") -> str:
    """One line per epoch a trial finishes: a worker is never silent for a whole trial."""
    return (f"{prefix}trial {trial.number} epoch {e.epoch}/{epochs} val PSNR {e.val_psnr:.2f} dB SSIM "
            f"{e.val_ssim:.4f} {e.seconds:.1f} s/epoch")


def one_study(args: argparse.Namespace, storage: ResilientRDBStorage, campaign: CampaignConfig) -> WorkerSummary:
    from search.worker import run_worker
    from storage import artifacts_root
    from training.data import describe_split

    def data_line(data: SplitData) -> None:
        print(describe_split(data, campaign.train.data, campaign.stage(args.stage).fraction), flush=True)

    return run_worker(storage, campaign, args.variant, args.stage, artifacts_root(args.artifacts),
                      device=args.device, worker_index=args.worker_index,
                      on_trial=lambda t, s: print(trial_line(t, s), flush=True), on_data=data_line,
                      threads=args.threads,
                      on_epoch=lambda t, e: print(epoch_line(t, e, campaign.stage(args.stage).epochs), flush=True))


def whole_campaign(args: argparse.Namespace, storage: ResilientRDBStorage, campaign: CampaignConfig) -> WorkerSummary:
    from search.campaign_worker import run_campaign_worker, served_studies
    from search.objective import worker_name
    from storage import artifacts_root
    from training.data import describe_split

    variants = [args.variant] if args.variant else list(campaign.variants)
    stages = [args.stage] if args.stage else ["quick", "full"]
    served = served_studies(campaign, variants, stages)
    names = ", ".join(campaign.study_name(*key) for key in served)
    print(f"worker {worker_name()} on campaign {campaign.name}: {names}", flush=True)
    poll = args.poll or 10.0
    said = [""]

    def waiting(why: str) -> None:
        if why != said[0]:  # once per change of the reason
            print(f"waiting: {why}; looking again every {poll:g}s", flush=True)
        said[0] = why

    def promoted(variant: str, promotions: list[Promotion], already: bool) -> None:
        full = campaign.study_name(variant, "full")
        if promotions:
            picks = ", ".join(f"{p.quick_trial} ({p.quick_value:.4f}"
                              + (f", within the noise band {p.within_noise:.2f}" if p.within_noise else "") + ")"
                              for p in promotions)
            said = f"promoted quick trial(s) {picks} to {full}"
        else:
            said = f"{full} holds its promoted configs already" if already else "no COMPLETE quick trial to promote"
        print(f"{variant}: quick stage ended; {said}", flush=True)

    def data_line(stage: str, data: SplitData) -> None:
        print(f"{stage} stage {describe_split(data, campaign.train.data, campaign.stage(stage).fraction)}",
              flush=True)

    return run_campaign_worker(
        storage, campaign, artifacts_root(args.artifacts), variants, stages, device=args.device,
        worker_index=args.worker_index, threads=args.threads, poll=poll,
        on_trial=lambda t, s: print(trial_line(t, s, f"{t.study.study_name} "), flush=True),
        on_wait=waiting, on_data=data_line, on_promote=promoted,
        on_epoch=lambda t, e: print(epoch_line(t, e, campaign.stage(t.study.study_name.rsplit(".", 1)[1]).epochs,
                                               f"{t.study.study_name} "), flush=True))


def run_launch(args: argparse.Namespace) -> int:
    from search.launch import launch, parse_gpus

    worker_args = [a for a in args.worker_args if a != "--"]
    return launch(parse_gpus(args.gpus), args.per_gpu, worker_args)
