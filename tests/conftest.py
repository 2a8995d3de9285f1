"""Shared fixtures: the real SAR samples (a hard failure when missing), tiny configs, a patch cache."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def sar_data_dir() -> Path:
    """../shared/data/sar beside the repo, or $SARSWEEP_SAR_DATA."""
    return Path(os.environ.get("SARSWEEP_SAR_DATA") or REPO.parent / "shared" / "data" / "sar")


@pytest.fixture(scope="session")
def sar_data() -> Path:
    path = sar_data_dir()
    if not (path / "sentinel1_opensarship").is_dir() or not (path / "terrasarx_deepdespeckling").is_dir():
        # Fail, never skip: a suite that silently stops reading real SAR data proves nothing.
        pytest.fail(f"real SAR samples not found at {path} (set SARSWEEP_SAR_DATA)")
    return path


@pytest.fixture(scope="session")
def s1(sar_data: Path) -> Path:
    return sar_data / "sentinel1_opensarship"


@pytest.fixture(scope="session")
def tsx(sar_data: Path) -> Path:
    return sar_data / "terrasarx_deepdespeckling"


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One patch cache for the session, never the user's ~/.cache."""
    os.environ["SARSWEEP_CACHE"] = str(tmp_path_factory.mktemp("sarsweep-cache"))


def tiny_config_dict(out_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A run that takes well under a second per epoch on 2 CPU cores."""
    data = {"patch_size": 16, "synthetic": {"scenes": 6, "size": 32, "seed": 3}}
    data.update(overrides.pop("data", {}))
    cfg = {
        "variant": "baseline", "base_channels": 4, "epochs": 1, "batch_size": 8, "lr": 2e-3,
        "warmup_epochs": 0, "device": "cpu", "out_dir": str(out_dir), "data": data,
        "preview_patches": 0,  # rendering is tested on its own (tests/test_dashboard.py)
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def tiny_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    from training.config import TrainConfig

    def make(**overrides: Any) -> TrainConfig:
        out_dir = overrides.pop("out_dir", tmp_path / "run")
        return TrainConfig.from_dict(tiny_config_dict(out_dir, **overrides))

    return make


# --- PostgreSQL: every test gets a database of its own on the shared server -------------------

PG_SERVER = os.environ.get("SARSWEEP_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def _admin():  # type: ignore[no-untyped-def]
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(PG_SERVER + "/postgres")
    try:
        conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username or "postgres",
                                password=url.password, dbname="postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        # Fail, never skip: these tests exist to prove the service works on a real PostgreSQL.
        pytest.fail(f"PostgreSQL not reachable at {PG_SERVER} (set SARSWEEP_TEST_PG): {exc}")
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def temp_database() -> Iterator[str]:
    """A fresh database on the shared server, dropped afterwards (even with connections open)."""
    import uuid

    name = f"sarsweep_test_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temp_database() as url:
        yield url


def tiny_campaign_dict(name: str = "t", **overrides: Any) -> dict[str, Any]:
    """A campaign whose trials take about a second on 2 CPU cores."""
    campaign: dict[str, Any] = {
        "name": name,
        "variants": ["baseline"],
        "train": {"batch_size": 8, "device": "cpu",
                  "data": {"patch_size": 16, "synthetic": {"scenes": 6, "size": 32, "seed": 3}}},
        "search": {"lr": {"low": 1e-3, "high": 5e-3, "log": True}, "warmup_epochs": {"low": 0, "high": 1},
                   "grad_clip": {"choices": [0.0, 1.0]}, "base_channels": {"choices": [4, 8]},
                   "optimizer": {"choices": ["adam", "adamw"]},
                   "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True}},
        "quick": {"fraction": 1.0, "epochs": 1, "trials": 4, "pruner": "none"},
        "full": {"fraction": 1.0, "epochs": 1, "top_k": 2},
        "noise_seeds": 0,  # seed-noise re-runs have tests of their own (tests/search/test_trust.py)
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(campaign.get(key), dict):
            campaign[key] = {**campaign[key], **value}
        else:
            campaign[key] = value
    return campaign


@pytest.fixture
def write_campaign(tmp_path: Path):  # type: ignore[no-untyped-def]
    import yaml

    def write(name: str = "t", filename: str = "campaign.yaml", **overrides: Any) -> Path:
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(tiny_campaign_dict(name, **overrides)))
        return path

    return write


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):  # type: ignore[no-untyped-def]
    """`sarsweep ARGS` as a user runs it: the installed console script, a real process."""
    import subprocess
    import sys

    script = Path(sys.executable).parent / "sarsweep"
    assert script.is_file(), f"{script} missing: install the package (make test does)"
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def start_cli(*args: str, cwd: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    script = Path(sys.executable).parent / "sarsweep"
    return subprocess.Popen([str(script), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def on_a_small_disk(disk: Path, size: str, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` (sh) with a tmpfs of `size` on `disk`, in a mount namespace of its own (the
    mount is gone when it exits). Needs root, which this machine and its CI have."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk.mkdir()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f'mount -t tmpfs -o size={size} tmpfs "{disk}" && {script}'],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert "mount:" not in done.stderr and "unshare:" not in done.stderr, done.stderr  # the disk was there
    return done
