"""Helpers of the search tests: a campaign's studies read back, `sarsweep init`, a finished quick stage."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import optuna
from conftest import run_cli

from search.campaign.config import CampaignConfig, load_campaign
from search.running.worker import run_worker
from storage import open_storage


def trials_of(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url)
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def init(campaign: Path, url: str, tmp_path: Path) -> None:
    done = run_cli("init", "--campaign", str(campaign), "--storage", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def quick_done(pg_url: str, write_campaign, tmp_path: Path, trials: int = 4) -> tuple[Path, CampaignConfig]:  # type: ignore[no-untyped-def]
    path = write_campaign(quick={"trials": trials})
    init(path, pg_url, tmp_path)
    campaign = load_campaign(path)
    run_worker(open_storage(pg_url), campaign, "baseline", "quick", tmp_path / "art", progress=False)
    return path, campaign


def first_checkpoint(art: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    last = art / "t" / "baseline" / "quick" / "trial_0000" / "last.pt"
    deadline = time.monotonic() + timeout
    while not last.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def running_row(campaign: Path, url: str, tmp_path: Path, grace: int, stale: bool = False) -> list[str]:
    """The one running trial's row of `sarsweep status`, split; its STALE mark checked."""
    done = run_cli("status", "--campaign", str(campaign), "--storage", url, "--heartbeat-interval", "1",
                   "--grace-period", str(grace), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("running trials")), None)
    assert at is not None, done.stdout
    assert f"stale after {grace}s" in lines[at] and lines[at + 1].split()[:3] == ["variant", "stage", "trial"]
    rows = [line for line in lines[at + 3:] if line.startswith("baseline")]
    assert len(rows) == 1, done.stdout
    assert ("STALE" in rows[0]) == stale, rows[0]
    return rows[0].split("  STALE")[0].split()
