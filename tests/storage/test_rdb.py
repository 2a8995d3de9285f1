"""Storage URLs and settings (storage/rdb.py, storage/urls.py) as a user meets them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from support.campaigns import quick_done, trials_of

from storage import StorageSettings


def test_storage_errors_are_one_line_without_the_password(write_campaign, tmp_path: Path) -> None:
    path = str(write_campaign())
    cases = {
        "postgresql://postgres:s3cret@127.0.0.1:1/nodb": "(host 127.0.0.1, port 1, database nodb): connection to server",
        "postgresql://postgres:s3cret@127.0.0.1:5432/sarsweep_absent_db": 'database "sarsweep_absent_db" does not exist',
        "postgresql://postgres:s3cret@:::/x": "malformed storage URL",
        "mysql://u:s3cret@127.0.0.1/x": "unsupported storage URL mysql://u:***@127.0.0.1/x",
    }
    for url, expected in cases.items():
        for how in ("flag", "env"):
            args = ["status", "--campaign", path] + (["--storage", url] if how == "flag" else [])
            done = run_cli(*args, cwd=tmp_path, env={"SARSWEEP_STORAGE": url} if how == "env" else None)
            assert done.returncode == 2, (url, done.stdout)
            assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr
            assert "s3cret" not in done.stderr + done.stdout


def test_plain_optuna_cli_reads_our_studies(pg_url: str, write_campaign, tmp_path: Path) -> None:
    import sys

    quick_done(pg_url, write_campaign, tmp_path, trials=2)
    optuna_cli = str(Path(sys.executable).parent / "optuna")
    url = pg_url.replace("postgresql://", "postgresql+psycopg2://")
    studies = subprocess.run([optuna_cli, "studies", "--storage", url], capture_output=True, text=True, timeout=60)
    assert studies.returncode == 0, studies.stderr
    assert "t.baseline.quick" in studies.stdout and "t.baseline.full" in studies.stdout
    best = subprocess.run([optuna_cli, "best-trial", "--study-name", "t.baseline.quick", "--storage", url, "-f", "yaml"],
                          capture_output=True, text=True, timeout=60)
    assert best.returncode == 0, best.stderr
    top = max(trials_of(pg_url, "t.baseline.quick"), key=lambda t: t.value)
    assert yaml.safe_load(best.stdout)["number"] == top.number


def test_heartbeat_settings_must_leave_room(pg_url: str) -> None:
    from errors import StorageError

    with pytest.raises(StorageError, match="grace period"):
        StorageSettings(heartbeat_interval=10, grace_period=10)
