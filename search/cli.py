"""The `sarsweep` command line.

    sarsweep demo                                   # everything, on generated data, SQLite, CPU
    sarsweep train --config configs/train_synthetic.yaml
    sarsweep init --campaign configs/campaign.yaml  # schema + studies (once, before workers)
    sarsweep worker --campaign configs/campaign.yaml --variant baseline --stage quick
    sarsweep launch --gpus all -- --campaign configs/campaign.yaml --variant baseline --stage quick
    sarsweep promote --campaign configs/campaign.yaml
    sarsweep export --campaign configs/campaign.yaml --variant baseline -o best.yaml
    sarsweep status --campaign configs/campaign.yaml

The storage URL comes from --storage, else $SARSWEEP_STORAGE, else sqlite:///sarsweep.db.

Every user-facing failure is a `SarsweepError`: shown as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from models.errors import SarsweepError
from search.process import setup_process

EXIT_USER_ERROR = 2


def _version() -> str:
    try:
        return version("sarsweep")
    except PackageNotFoundError:
        return "unknown"


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.trainer import train

    cfg = load_train_config(args.config)
    overrides = {k: v for k, v in (("out_dir", args.out_dir), ("device", args.device), ("epochs", args.epochs)) if v}
    if overrides:
        cfg = cfg.replace(**overrides)

    def report(epoch: object) -> None:
        e = epoch  # EpochResult
        mark = " *" if e.is_best else ""
        print(f"epoch {e.epoch}/{cfg.epochs}  loss {e.train_loss:.5f}  val PSNR {e.val_psnr:.2f} dB  "
              f"SSIM {e.val_ssim:.4f}  lr {e.lr:.2e}  {e.seconds:.1f}s{mark}", flush=True)

    print(f"training {cfg.variant} (base_channels={cfg.base_channels}) for {cfg.epochs} epoch(s) "
          f"on {cfg.data.root or 'synthetic SAR scenes'}, fraction {cfg.fraction}", flush=True)
    result = train(cfg, on_epoch_end=report, resume=args.resume)
    print(f"val PSNR {result.best_psnr:.2f} dB, SSIM {result.best_ssim:.4f} (best epoch {result.best_epoch}), "
          f"{result.params:,} parameters, checkpoint {result.best_path}")
    return 0


def _storage(args: argparse.Namespace, role: str, create_schema: bool = False):  # type: ignore[no-untyped-def]
    from storage import StorageSettings, open_storage, resolve_url

    settings = StorageSettings(
        role=role,
        heartbeat_interval=getattr(args, "heartbeat_interval", None) or StorageSettings.heartbeat_interval,
        grace_period=getattr(args, "grace_period", None) or StorageSettings.grace_period,
    )
    return open_storage(resolve_url(args.storage, args.storage_file), settings, create_schema=create_schema)


def _heartbeat_args(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """--heartbeat-interval and --grace-period: a worker's own; a reaper's or status's must match the workers'."""
    parser.add_argument("--heartbeat-interval", type=int, help=f"{whose}seconds between heartbeats (default 30)")
    parser.add_argument("--grace-period", type=int,
                        help=f"{whose}seconds without a heartbeat before a running trial is stale and retried "
                             "(default 120)")


def _campaign(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from search.campaign import load_campaign

    return load_campaign(args.campaign)


def _variants(campaign, variant: str | None) -> list[str]:  # type: ignore[no-untyped-def]
    from search.studies import StudyError

    if variant is not None and variant not in campaign.variants:
        raise StudyError(f"--variant {variant!r} is not in campaign {campaign.name} ({', '.join(campaign.variants)})")
    return [variant] if variant else list(campaign.variants)


def cmd_init(args: argparse.Namespace) -> int:
    from search.campaign import STAGES
    from search.studies import ensure_study
    from storage import StorageError, redact

    campaign = _campaign(args)
    role = args.readonly_role or os.environ.get("SARSWEEP_READONLY_ROLE") or None
    password = _readonly_password(args) if role else None
    storage = _storage(args, "init", create_schema=True)
    for variant in campaign.variants:
        for stage in STAGES:
            _, created = ensure_study(storage, campaign, variant, stage)
            print(f"{'created' if created else 'exists '} {campaign.study_name(variant, stage)}")
    if role:
        import psycopg2

        from storage.roles import ensure_readonly_role

        try:
            made = ensure_readonly_role(storage, role, password)
        except psycopg2.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise StorageError(f"--readonly-role {role}: {reason}") from None
        print(f"{'created' if made else 'updated'} read-only role {role} (SELECT only; give it to the dashboard)")
    print(f"storage ready: {redact(storage.url)}")
    return 0


def _readonly_password(args: argparse.Namespace) -> str | None:
    from storage import StorageError

    if args.readonly_password_file:
        try:
            return Path(args.readonly_password_file).read_text().strip() or None
        except OSError as exc:
            raise StorageError(f"--readonly-password-file: cannot read {args.readonly_password_file}: "
                               f"{exc.strerror}") from None
    return os.environ.get("SARSWEEP_READONLY_PASSWORD") or None


def cmd_worker(args: argparse.Namespace) -> int:
    from search.worker import run_worker
    from storage import artifacts_root

    campaign = _campaign(args)
    _variants(campaign, args.variant)
    storage = _storage(args, f"worker-{args.stage}")

    def report(trial, state) -> None:  # type: ignore[no-untyped-def]
        frozen = storage.get_trial(trial._trial_id)
        attrs = frozen.user_attrs
        if frozen.value is not None:
            value = f"value {frozen.value:.4f}"
            if "seconds" in attrs:
                value += f" in {attrs['seconds']:.1f} s on {attrs.get('device', '?')}"
        else:
            value = attrs.get("fail_reason", "")
        print(f"trial {trial.number} {state.name.lower()} {value}", flush=True)

    from search.objective import worker_name

    # The name `sarsweep status` shows beside this worker's running trials.
    print(f"worker {worker_name()} on {campaign.study_name(args.variant, args.stage)}", flush=True)
    summary = run_worker(storage, campaign, args.variant, args.stage, artifacts_root(args.artifacts),
                         device=args.device, worker_index=args.worker_index, on_trial=report)
    print(summary.line(), flush=True)
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from search.launch import launch, parse_gpus

    worker_args = [a for a in args.worker_args if a != "--"]
    return launch(parse_gpus(args.gpus), args.per_gpu, worker_args)


def cmd_promote(args: argparse.Namespace) -> int:
    from search.promote import promote

    campaign = _campaign(args)
    storage = _storage(args, "promote")
    for variant in _variants(campaign, args.variant):
        promotions = promote(storage, campaign, variant, args.top_k)
        if not promotions:
            print(f"{variant}: no COMPLETE quick trial to promote yet")
        for p in promotions:
            state = "enqueued" if p.enqueued else "already promoted"
            print(f"{variant}: quick trial {p.quick_trial} (value {p.quick_value:.4f}) {state} "
                  f"in {campaign.study_name(variant, 'full')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search.export import export_trial

    campaign = _campaign(args)
    _variants(campaign, args.variant)
    path, study, trial = export_trial(_storage(args, "export"), campaign, args.variant, Path(args.output),
                                      stage=args.stage, number=args.trial)
    print(f"exported {study.study_name} trial {trial.number} (value {trial.value:.4f}) to {path}")
    print(f"retrain it with: sarsweep train --config {path}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from search.status import campaign_status, render, render_running, waiting_promotions
    from storage.rdb import heartbeat_of

    campaign = _campaign(args)
    storage = _storage(args, "status")
    rows = campaign_status(storage, campaign)
    print(render(rows, campaign.objective))
    running = render_running(rows, heartbeat_of(storage)[1])
    if running:
        print(running)
    print(f"promotions waiting for full-stage workers: {waiting_promotions(rows)}")
    if all(r.exists for r in rows):  # before `init` there is nothing to summarise
        from search.report import collect, summary_line

        print(summary_line(collect(storage, campaign)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search.report import summary_line, write_report

    campaign = _campaign(args)
    html_path = Path(args.html) if args.html else None
    report = write_report(_storage(args, "report"), campaign, Path(args.output), html_path)
    print(summary_line(report))
    for f in report.fidelity:
        print(f.sentence())
    print(f"report written to {args.output}" + (f" and {args.html}" if args.html else ""))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search.demo import run_demo
    from storage import artifacts_root, redact

    storage = _storage(args, "demo", create_schema=True)
    print(f"sarsweep demo on {redact(storage.url)}; checkpoints under {artifacts_root(args.artifacts)}", flush=True)
    run_demo(storage, artifacts_root(args.artifacts), Path(args.output), args.trials, args.epochs, args.device)
    return 0


def until_stopped(what: str, run: Callable[[], int]) -> int:
    """run() for a long-running service; SIGTERM (docker stop) or Ctrl-C ends it with exit 0 and
    "<what> stopped (SIGTERM)" instead of a death by signal (exit 143 in compose)."""
    from search.worker import WorkerStopped, stop_on_signals

    try:
        with stop_on_signals():
            return run()
    except WorkerStopped as stop:
        print(f"{what} stopped ({stop})", flush=True)
        return 0


def cmd_reaper(args: argparse.Namespace) -> int:
    import time

    from search.reaper import reap_campaign
    from storage.rdb import heartbeat_of

    campaign = _campaign(args)
    storage = _storage(args, "reaper")
    grace = heartbeat_of(storage)[1]
    period = args.period or grace
    print(f"reaper on campaign {campaign.name}: a trial without a heartbeat for {grace:g}s is failed "
          f"and retried" + ("" if args.once else f"; checking every {period:g}s"), flush=True)

    def passes() -> int:  # a study's pass cut short by a signal rolls back whole (one transaction)
        while True:
            for study, numbers in reap_campaign(storage, campaign).items():
                print(f"{study}: stale trial(s) {', '.join(map(str, numbers))} failed and queued for retry",
                      flush=True)
            if args.once:
                return 0
            time.sleep(period)

    return until_stopped("reaper", passes)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from search.dashboard import serve
    from storage import artifacts_root

    storage = _storage(args, "dashboard")

    def run() -> int:
        serve(storage, artifacts_root(args.artifacts), args.host, args.port)
        return 0

    return until_stopped("dashboard", run)


def _add_storage(p: argparse.ArgumentParser, artifacts: bool = False) -> None:
    p.add_argument("--storage", help="storage URL (default: $SARSWEEP_STORAGE, else sqlite:///sarsweep.db)")
    p.add_argument("--storage-file", help="file holding the storage URL (keeps a password off the command line)")
    if artifacts:
        p.add_argument("--artifacts", help="checkpoint root (default: $SARSWEEP_ARTIFACTS, else ./sarsweep-artifacts)")


def _campaign_command(commands: argparse._SubParsersAction, name: str, help: str,
                      artifacts: bool = False) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=help)
    p.add_argument("--campaign", required=True, help="campaign YAML")
    _add_storage(p, artifacts)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sarsweep", description="Hyperparameter search for SAR autoencoders.")
    parser.add_argument("--version", action="version", version=f"sarsweep {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one config (a YAML in the train config schema)")
    train.add_argument("--config", required=True, help="train config YAML")
    train.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if it exists")
    train.add_argument("--out-dir", help="override out_dir (where best.pt and last.pt go)")
    train.add_argument("--device", help="override device: auto, cpu, cuda, cuda:N")
    train.add_argument("--epochs", type=int, help="override epochs")
    train.set_defaults(func=cmd_train)

    init = _campaign_command(commands, "init", "create the schema and the campaign's studies (run once)")
    init.add_argument("--readonly-role", help="also create this SELECT-only PostgreSQL role for the dashboard "
                                              "(default: $SARSWEEP_READONLY_ROLE)")
    init.add_argument("--readonly-password-file",
                      help="file holding that role's password (default: $SARSWEEP_READONLY_PASSWORD)")
    init.set_defaults(func=cmd_init)

    worker = _campaign_command(commands, "worker", "run trials of one study until its budget is spent",
                               artifacts=True)
    worker.add_argument("--variant", required=True, help="which variant's study")
    worker.add_argument("--stage", required=True, choices=["quick", "full"])
    worker.add_argument("--device", help="override the campaign's device: cpu, cuda, cuda:N")
    worker.add_argument("--worker-index", type=int, help="makes this worker's sampler seed reproducible")
    _heartbeat_args(worker)
    worker.set_defaults(func=cmd_worker)

    launch = commands.add_parser("launch", help="start one worker per GPU (worker options after --)")
    launch.add_argument("--gpus", default="all", help="'all' or GPU indices like 0,1,3 (default all)")
    launch.add_argument("--per-gpu", type=int, default=1, help="workers per GPU (CPU workers when there is none)")
    launch.add_argument("worker_args", nargs=argparse.REMAINDER, help="-- then `sarsweep worker` options")
    launch.set_defaults(func=cmd_launch)

    promote = _campaign_command(commands, "promote", "enqueue the best quick configs as full runs (idempotent)")
    promote.add_argument("--variant", help="only this variant (default: all)")
    promote.add_argument("--top-k", type=int, help="configs per variant (default: the campaign's full.top_k)")
    promote.set_defaults(func=cmd_promote)

    export = _campaign_command(commands, "export", "write a trial as a train config YAML")
    export.add_argument("--variant", required=True)
    export.add_argument("--stage", choices=["quick", "full"], help="default: full if it has a result, else quick")
    export.add_argument("--trial", type=int, help="trial number (default: the best)")
    export.add_argument("-o", "--output", required=True, help="YAML file to write")
    export.set_defaults(func=cmd_export)

    status = _campaign_command(commands, "status", "trials by state and the best value per variant and stage")
    _heartbeat_args(status, "the workers' ")
    status.set_defaults(func=cmd_status)

    reaper = _campaign_command(commands, "reaper", "fail and retry stale trials even when no worker starts one")
    reaper.add_argument("--period", type=float, help="seconds between passes (default: the grace period)")
    reaper.add_argument("--once", action="store_true", help="one pass, then exit")
    _heartbeat_args(reaper, "the workers' ")
    reaper.set_defaults(func=cmd_reaper)

    report = _campaign_command(commands, "report", "comparison table, quick->full fidelity and cost per stage")
    report.add_argument("-o", "--output", default="report.md", help="Markdown report (default report.md)")
    report.add_argument("--html", help="also write a self-contained HTML report with the plots")
    report.set_defaults(func=cmd_report)

    dashboard = commands.add_parser("dashboard", help="optuna-dashboard on the storage, with trial previews")
    dashboard.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    _add_storage(dashboard, artifacts=True)
    dashboard.set_defaults(func=cmd_dashboard)

    demo = commands.add_parser("demo", help="run a small campaign end to end on generated data")
    demo.add_argument("-o", "--output", default="best.yaml", help="where the best config goes (default best.yaml)")
    demo.add_argument("--trials", type=int, help="quick trials per variant (default 6)")
    demo.add_argument("--epochs", type=int, help="epochs of both stages (default 4 quick, 6 full)")
    demo.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when available)")
    _add_storage(demo, artifacts=True)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_process("sarsweep", logging.DEBUG if args.verbose else logging.INFO)
    # tifffile logs its own warning about a corrupt TIFF before raising; our error names the file.
    logging.getLogger("tifffile").setLevel(logging.ERROR)
    if args.command != "train":  # Optuna's per-study INFO lines drown our own; -v brings them back
        import optuna

        optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    try:
        return int(args.func(args))
    except SarsweepError as exc:
        print(f"sarsweep: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sarsweep: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sarsweep status | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own recipe
        return 141  # 128 + SIGPIPE, what a shell reports for a killed writer


if __name__ == "__main__":
    sys.exit(main())
