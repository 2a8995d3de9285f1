"""What several commands share: argument types, the storage and campaign options, opening them.

Heavy imports (torch, Optuna) happen inside the functions that need them, so `sarsweep status`
and friends start without the training stack.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from errors import UsageError

if TYPE_CHECKING:
    from search.campaign.config import CampaignConfig
    from storage.rdb import ResilientRDBStorage

Subparsers = argparse._SubParsersAction  # argparse's own name for what add_subparsers returns

DEVICE_HELP = "where to train or score: auto (CUDA when a GPU is visible, else the CPU), cpu, cuda or cuda:N"



def sarsweep_version() -> str:
    try:
        return version("sarsweep")
    except PackageNotFoundError:
        return "unknown"


# ---- argument types ------------------------------------------------------------------------------

def whole_number(text: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
    return value


def port(text: str) -> int:
    """argparse type of a TCP port to listen on (a number past 65535 was a traceback from bind)."""
    return whole_number(text, 1, 65535)


def at_least_one(text: str) -> int:
    """argparse type of a count: `--top-k 0` would otherwise mean "the default" or do nothing."""
    return whole_number(text, 1)


def index(text: str) -> int:
    """argparse type of a 0-based index (a worker's number among its peers)."""
    return whole_number(text, 0)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _scaled(text: str, number: str, unit: str, units: dict[str, int], examples: str) -> float:
    """float(number) * units[unit], never negative, or argparse's one-line error with `examples`."""
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {examples}, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def age(text: str) -> float:
    """argparse type of an age: '30d', '12h', '90m', '45s', '2w' -> seconds."""
    return _scaled(text, text[:-1], text[-1:].lower(), AGE_UNITS, "an age like 30d, 12h or 90m")


def byte_size(text: str) -> int:
    """argparse type of a size: '50G', '500M', '1.5GiB', '0' -> bytes (powers of 1024, as sizes are shown)."""
    lowered = text.strip().lower().removesuffix("b").removesuffix("i")
    number, unit = (lowered[:-1], lowered[-1]) if lowered[-1:].isalpha() else (lowered, "")
    return int(_scaled(text, number, unit, SIZE_UNITS, "a size like 50G, 500M or 0"))


# ---- options several commands take ---------------------------------------------------------------

def heartbeat_args(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """--heartbeat-interval and --grace-period: a worker's own; a reaper's or status's must match the workers'."""
    # Whole seconds from 1: 0 fell back to the default unsaid, a negative interval was Optuna's traceback.
    parser.add_argument("--heartbeat-interval", type=at_least_one,
                        help=f"{whose}seconds between heartbeats (default 30)")
    parser.add_argument("--grace-period", type=at_least_one,
                        help=f"{whose}seconds without a heartbeat before a running trial is stale and retried "
                             "(default 120)")


def storage_args(p: argparse.ArgumentParser, artifacts: bool = False) -> None:
    p.add_argument("--storage", help="storage URL (default: $SARSWEEP_STORAGE, else sqlite:///sarsweep.db)")
    p.add_argument("--storage-file", help="file holding the storage URL (keeps a password off the command line)")
    if artifacts:
        p.add_argument("--artifacts", help="checkpoint root (default: $SARSWEEP_ARTIFACTS, else ./sarsweep-artifacts)")


def campaign_command(commands: Subparsers, name: str, help: str, artifacts: bool = False) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=help)
    p.add_argument("--campaign", required=True, help="campaign YAML")
    storage_args(p, artifacts)
    return p


# ---- opening what the options name ---------------------------------------------------------------

def open_storage_of(args: argparse.Namespace, role: str, heartbeat_interval: int | None = None,
                    grace_period: int | None = None, create_schema: bool = False,
                    claims_trials: bool = False) -> ResilientRDBStorage:
    """The storage the options (or the environment) name, for a process in `role`; the heartbeat
    settings of a command that has heartbeat_args (None: the defaults)."""
    from search.campaign.roles import NOISE_OF
    from storage import StorageSettings, open_storage, resolve_url
    from storage.urls import require_sqlite_file

    settings = StorageSettings(
        role=role,
        heartbeat_interval=heartbeat_interval or StorageSettings.heartbeat_interval,
        grace_period=grace_period or StorageSettings.grace_period,
        claims_trials=claims_trials,
        not_best=(NOISE_OF,),  # seed re-runs are measurements: never Optuna's (or the dashboard's) best trial
    )
    url = resolve_url(args.storage, args.storage_file)
    if not create_schema:
        require_sqlite_file(url)
    return open_storage(url, settings, create_schema=create_schema)


def load_campaign_of(args: argparse.Namespace) -> CampaignConfig:
    from search.campaign.config import load_campaign

    return load_campaign(args.campaign)


def variants_of(campaign: CampaignConfig, variant: str | None) -> list[str]:
    """[variant] when it is one of the campaign's, all of them when None; else a UsageError."""
    if variant is not None and variant not in campaign.variants:
        raise UsageError(f"--variant {variant!r} is not in campaign {campaign.name} ({', '.join(campaign.variants)})")
    return [variant] if variant else list(campaign.variants)


def until_stopped(what: str, run: Callable[[], int]) -> int:
    """run() for a long-running service; SIGTERM (docker stop) or Ctrl-C ends it cleanly, saying
    "<what> stopped (SIGTERM)", with the signal's exit code (143, 130) as a shell reports it."""
    from search.running.signals import WorkerStopped, handled, stop_on_signals

    try:
        with stop_on_signals():
            return run()
    except WorkerStopped as stop:
        handled()
        print(f"{what} stopped ({stop})", flush=True)
        return stop.exit_code
