"""What each `sarsweep` command does (search/cli.py builds the parser and maps errors to exit codes).

Heavy imports (torch, Optuna) happen inside the commands, so `sarsweep status` and friends start
without the training stack.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def sarsweep_version() -> str:
    try:
        return version("sarsweep")
    except PackageNotFoundError:
        return "unknown"


def cmd_train(args: argparse.Namespace) -> int:
    from models.errors import SarsweepError
    from training.checkpoint import earlier_run
    from training.config import load_train_config
    from training.data import describe_split
    from training.trainer import train

    changes = [(f"--set {item}", *_setting(item)) for item in args.set]
    for flag, key, value in (("--out-dir", "out_dir", args.out_dir), ("--device", "device", args.device),
                             ("--epochs", "epochs", args.epochs)):
        if value is not None:  # `--epochs 0` is refused by the schema, not dropped
            changes.append((f"{flag} {value}", key, value))
    cfg = load_train_config(args.config, changes)
    out_dir = Path(cfg.out_dir)
    earlier = None if args.resume or args.overwrite else earlier_run(out_dir)
    if earlier:  # its best.pt would be replaced by this run's first epoch, its last.pt lost
        go_on = "--resume with more --epochs trains it on" if earlier.finished else "--resume continues it"
        raise SarsweepError(f"{out_dir} holds an earlier run: {earlier}; {go_on}, --overwrite starts over in "
                            "its place, --out-dir trains elsewhere")
    done = [0]  # the last epoch this run reported

    def report(epoch: object) -> None:
        e = epoch  # EpochResult
        done[0] = e.epoch
        mark = " *" if e.is_best else ""
        print(f"epoch {e.epoch}/{cfg.epochs}  loss {e.train_loss:.5f}  val PSNR {e.val_psnr:.2f} dB  "
              f"SSIM {e.val_ssim:.4f}  lr {e.lr:.2e}  {e.seconds:.1f}s{mark}", flush=True)

    print(f"training {cfg.variant} (base_channels={cfg.base_channels}) for {cfg.epochs} epoch(s) "
          f"on {cfg.data.root or 'synthetic SAR scenes'}, fraction {cfg.fraction}", flush=True)
    def data_line(data) -> None:  # type: ignore[no-untyped-def]
        print(describe_split(data, cfg.data, cfg.fraction), flush=True)

    try:
        result = train(cfg, on_epoch_end=report, resume=args.resume, on_data=data_line)
    except KeyboardInterrupt:
        # train() has finished writing last.pt before it lets this through. Before this run's first
        # epoch, with --overwrite, the folder's last.pt is the earlier run's: say nothing then.
        kept = earlier_run(out_dir) if done[0] or args.resume else None
        if kept and (out_dir / "last.pt").is_file():
            print(f"{out_dir} holds {kept}: the same command with --resume continues it", file=sys.stderr)
        raise
    print(f"val PSNR {result.best_psnr:.2f} dB, SSIM {result.best_ssim:.4f} (best epoch {result.best_epoch}), "
          f"{result.params:,} parameters, checkpoint {result.best_path}")
    return 0


def _setting(item: str) -> tuple[str, object]:
    """'data.root=/mnt/sar' -> ('data.root', '/mnt/sar'); the value read as YAML (1e-3, null, [1, 99])."""
    import yaml

    from training.config import parse_yaml
    from training.errors import ConfigError

    key, sep, text = item.partition("=")
    if not sep:
        raise ConfigError("", "expected KEY=VALUE, such as lr=1e-3 or data.root=/mnt/sar", f"--set {item}")
    try:
        value = parse_yaml(text) if text.strip() else text
    except yaml.YAMLError as exc:
        if text.lstrip()[:1] in ("[", "{"):  # meant as a list or mapping: say why it is not one
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError("", f"invalid YAML ({problem}); quote glob patterns, e.g. "
                                  "data.include=['*.tif']", f"--set {item}") from None
        value = text  # a plain word YAML will not take (e.g. a path with ': '): the text as given
    return key.strip(), value


def _storage(args: argparse.Namespace, role: str, create_schema: bool = False):  # type: ignore[no-untyped-def]
    from storage import StorageSettings, open_storage, resolve_url
    from storage.urls import require_sqlite_file

    settings = StorageSettings(
        role=role,
        heartbeat_interval=getattr(args, "heartbeat_interval", None) or StorageSettings.heartbeat_interval,
        grace_period=getattr(args, "grace_period", None) or StorageSettings.grace_period,
    )
    url = resolve_url(args.storage, args.storage_file)
    if not create_schema:
        require_sqlite_file(url)
    return open_storage(url, settings, create_schema=create_schema)


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
    if role:
        from storage.roles import check_readonly_role
        from storage.urls import resolve_url

        check_readonly_role(resolve_url(args.storage, args.storage_file), role)
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
    def data_line(data) -> None:  # type: ignore[no-untyped-def]
        from training.data import describe_split

        print(describe_split(data, campaign.train.data, campaign.stage(args.stage).fraction), flush=True)

    summary = run_worker(storage, campaign, args.variant, args.stage, artifacts_root(args.artifacts),
                         device=args.device, worker_index=args.worker_index, on_trial=report, on_data=data_line)
    print(summary.line(), flush=True)
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    from search.launch import launch, parse_gpus

    worker_args = [a for a in args.worker_args if a != "--"]
    return launch(parse_gpus(args.gpus), args.per_gpu, worker_args)


def cmd_promote(args: argparse.Namespace) -> int:
    import time

    from models.errors import SarsweepError
    from search.promote import QuickUnfinished, promote

    if args.poll is not None and not args.wait:
        raise SarsweepError("--poll is for --wait (the seconds between looks at the quick stage)")
    campaign = _campaign(args)
    storage = _storage(args, "promote")
    pending = list(_variants(campaign, args.variant))
    said: dict[str, str] = {}
    while True:
        for variant in list(pending):
            try:
                promotions = promote(storage, campaign, variant, args.top_k, partial=args.partial)
            except QuickUnfinished as exc:
                line = f"{exc}; {'waiting for it' if args.wait else 'not promoted'}"
                if said.get(variant) != line:  # with --wait, once per change of its progress
                    print(line, flush=True)
                said[variant] = line
                continue
            pending.remove(variant)
            if not promotions:
                print(f"{variant}: no COMPLETE quick trial to promote")
            for p in promotions:
                state = "enqueued" if p.enqueued else "already promoted"
                print(f"{variant}: quick trial {p.quick_trial} (value {p.quick_value:.4f}) {state} "
                      f"in {campaign.study_name(variant, 'full')}", flush=True)
        if not pending or not args.wait:
            break
        time.sleep(args.poll or 30.0)
    if pending:
        print(f"sarsweep: not promoted while their quick stage runs: {', '.join(pending)}; `promote --wait` "
              "promotes each when it ends, `--partial` from the trials finished so far", file=sys.stderr)
        return 1
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from training.evaluate import evaluate, report_lines
    from training.files import atomic_write, ensure_writable

    if args.checkpoint:  # they pick a campaign's trial: beside a checkpoint they were silently ignored
        given = [flag for flag, value in (("--variant", args.variant), ("--stage", args.stage),
                                          ("--trial", args.trial)) if value is not None]
        if given:
            from training.errors import SarsweepError

            raise SarsweepError(f"{', '.join(given)} pick a trial of --campaign; with --checkpoint there is none "
                                f"to pick")
    outputs = [Path(p) for p in (args.json, args.preview) if p]
    for path in outputs:  # before the work: an hour of scoring must not end in "cannot write"
        ensure_writable(path.parent)
    checkpoint = Path(args.checkpoint) if args.checkpoint else _trial_checkpoint(args)
    result = evaluate(checkpoint, data=args.data, include=args.include, patch_size=args.patch_size,
                      stride=args.stride, device=args.device or "auto",
                      preview=Path(args.preview) if args.preview else None)
    if args.json:
        text = json.dumps(result.to_dict(), indent=2) + "\n"
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(text))
    print("\n".join(report_lines(result, per_file=args.per_file)))
    return 0


def _trial_checkpoint(args: argparse.Namespace) -> Path:
    from search.export import choose_trial, trial_checkpoint
    from storage import artifacts_root

    if not args.variant:
        from search.studies import StudyError

        raise StudyError("--variant is needed with --campaign (which variant's trial to evaluate)")
    campaign = _campaign(args)
    _variants(campaign, args.variant)
    study, trial = choose_trial(_storage(args, "evaluate"), campaign, args.variant, args.stage, args.trial,
                                purpose="evaluate")
    stage = study.study_name.rsplit(".", 1)[1]
    path = trial_checkpoint(campaign, args.variant, stage, trial, artifacts_root(args.artifacts))
    print(f"{study.study_name} trial {trial.number} (value {trial.value:.4f}): {path}", flush=True)
    return path


def cmd_status(args: argparse.Namespace) -> int:
    from search.status import campaign_status, render, render_running, waiting_promotions
    from storage.rdb import heartbeat_of

    campaign = _campaign(args)
    storage = _storage(args, "status")
    rows = campaign_status(storage, campaign)
    if args.json:
        import json

        from search.status import to_json

        print(json.dumps(to_json(campaign, rows, heartbeat_of(storage)[1]), indent=2))
        return 0
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

    from search.report import held_out_lines, summary_line, write_report
    from storage import artifacts_root
    from training.files import require_dir

    campaign = _campaign(args)
    html_path = Path(args.html) if args.html else None
    held_out = None
    if args.held_out:
        require_dir(args.held_out, "--held-out")
        held_out = (artifacts_root(args.artifacts), args.held_out, args.held_out_include)
    report = write_report(_storage(args, "report"), campaign, Path(args.output), html_path, held_out)
    print(summary_line(report))
    for line in held_out_lines(report):
        print(line)
    for f in report.fidelity:
        print(f.sentence())
    print(f"report written to {args.output}" + (f" and {args.html}" if args.html else ""))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from search.demo import run_demo
    from storage import artifacts_root, redact
    from training.files import ensure_writable

    ensure_writable(Path(args.output).parent)  # best.yaml and the report go there: say so now, not after the demo
    storage = _storage(args, "demo", create_schema=True)
    print(f"sarsweep demo on {redact(storage.url)}; checkpoints under {artifacts_root(args.artifacts)}", flush=True)
    run_demo(storage, artifacts_root(args.artifacts), Path(args.output), args.trials, args.epochs, args.device)
    return 0


def _cache_root() -> Path:
    from training.cache import cache_root
    from training.errors import ConfigError

    root = cache_root()
    if root.exists() and not root.is_dir():
        raise ConfigError("$SARSWEEP_CACHE", f"{root} is a file, not a folder")
    return root


def cmd_cache_list(args: argparse.Namespace) -> int:
    import json
    import shutil

    from training.cache import contents, listing

    found = contents(_cache_root())
    if not args.json:
        print("\n".join(listing(found)))
        return 0
    free = shutil.disk_usage(found.root).free if found.root.is_dir() else None
    print(json.dumps({"root": str(found.root), "bytes": found.bytes, "free_bytes": free,
                      "inductor_bytes": found.inductor_bytes, "entries": [e.to_dict() for e in found.entries]},
                     indent=2))
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    import sys

    from training.cache import prune, prune_lines

    def waiting() -> None:
        print("waiting for data preparation under way on this cache to finish...", file=sys.stderr, flush=True)

    if args.older_than is None and args.max_size is None:
        print("without --older-than or --max-size, only leftovers of killed preparations go")
    result = prune(args.older_than, args.max_size, args.dry_run, _cache_root(), on_wait=waiting)
    print("\n".join(prune_lines(result, args.dry_run)))
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
