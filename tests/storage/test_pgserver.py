"""`sarsweep db`: a PostgreSQL server of the campaign's own, from init to stop, with real processes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import run_cli
from optuna.trial import TrialState
from support import LOADTEST


@pytest.fixture
def db_dir() -> Iterator[Path]:
    """A folder the server's user can reach (pytest's tmp_path is root's, mode 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="sarsweep-dbtest-"))
    parent.chmod(0o755)
    yield parent / "db"
    subprocess.run([str(Path(sys.executable).parent / "sarsweep"), "db", "stop", "--dir", str(parent / "db")],
                   capture_output=True, timeout=120)
    shutil.rmtree(parent, ignore_errors=True)


def sarsweep_db(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("db", *args, cwd=cwd, timeout=300)


def test_a_campaign_s_own_server_from_init_to_stop_through_an_outage(db_dir: Path, tmp_path: Path) -> None:
    """init (scram-sha-256, a 0600 password file, logins from one network), start, url to a 0600
    file, workers on it through `db stop` + `db start` mid-run (an outage: nothing failed, the
    budget exact), status, stop; a second start is refused, and a wrong password too, in one
    line that shows no password."""
    init = sarsweep_db("init", "--dir", str(db_dir), "--allow", "127.0.0.1/32", "--workers", "4", "--host",
                       "127.0.0.1", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    server = json.loads((db_dir / "server.json").read_text())
    assert server["max_connections"] == 20 and server["allow"] == "127.0.0.1/32"
    password = (db_dir / "password").read_text().strip()
    assert stat.S_IMODE((db_dir / "password").stat().st_mode) == 0o600 and len(password) >= 24
    hba = (db_dir / "data" / "pg_hba.conf").read_text()
    assert [line for line in hba.splitlines() if line and not line.startswith("#")] == [
        "local all all scram-sha-256", "host all all 127.0.0.1/32 scram-sha-256"]
    assert password not in init.stdout + init.stderr

    assert sarsweep_db("start", "--dir", str(db_dir), cwd=tmp_path).returncode == 0
    again = sarsweep_db("start", "--dir", str(db_dir), cwd=tmp_path)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert again.stderr.startswith(f"sarsweep: error: a server already runs on {db_dir} (pid ")
    url_file = tmp_path / "storage-url"
    url = sarsweep_db("url", "--dir", str(db_dir), "--file", str(url_file), cwd=tmp_path)
    assert url.returncode == 0 and url.stdout.strip() == f"SARSWEEP_STORAGE_FILE={url_file}"
    assert password not in url.stdout and stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert url_file.read_text().strip() == f"postgresql://sarsweep:{password}@127.0.0.1:{server['port']}/sarsweep"

    base = [sys.executable, str(LOADTEST), "--storage-file", str(url_file), "--study", "s"]
    created = subprocess.run([*base, "--create"], capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    budget = 24
    workers = [subprocess.Popen([*base, "--trials", str(budget), "--sleep", "0.5", "--heartbeat", "1", "--grace", "3"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    storage = optuna.storages.RDBStorage(url_file.read_text().strip().replace("postgresql://", "postgresql+psycopg2://"))

    def done() -> int:
        return sum(t.state == TrialState.COMPLETE for t in optuna.load_study(study_name="s", storage=storage).trials)

    try:
        deadline = time.monotonic() + 60
        while done() < 4:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        storage.engine.dispose()
        assert sarsweep_db("stop", "--dir", str(db_dir), cwd=tmp_path).returncode == 0
        assert sarsweep_db("status", "--dir", str(db_dir), cwd=tmp_path).returncode == 3  # not running
        time.sleep(3)
        assert sarsweep_db("start", "--dir", str(db_dir), cwd=tmp_path).returncode == 0
        outs = [w.communicate(timeout=180) for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], [o[1][-1500:] for o in outs]
    trials = optuna.load_study(study_name="s", storage=storage).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(budget))  # exact, and no trial failed
    assert all(t.state == TrialState.COMPLETE for t in trials)
    storage.engine.dispose()

    status = sarsweep_db("status", "--dir", str(db_dir), "--json", cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["running"] is True
    wrong = url_file.read_text().strip().replace(password, "not-the-password")
    refused = run_cli("status", "--campaign", str(write_tiny(tmp_path)), "--storage", wrong, cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "password authentication failed" in refused.stderr and "not-the-password" not in refused.stderr
    assert password not in refused.stderr
    stopped = sarsweep_db("stop", "--dir", str(db_dir), cwd=tmp_path)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"stopped the server on {db_dir}"


def write_tiny(tmp_path: Path) -> Path:
    import yaml
    from conftest import tiny_campaign_dict

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_campaign_dict()))
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["--allow", "everyone"], "--allow: 'everyone' is no network; give one like 10.1.0.0/16 or 127.0.0.1/32"),
    (["--allow", "127.0.0.1/32", "--run-as", "nobody-here"],
     "--run-as nobody-here: no such user (as root the server must run as another user: initdb refuses root)"),
])
def test_db_init_refuses_bad_options_in_one_line(args: list[str], message: str, db_dir: Path, tmp_path: Path) -> None:
    if "--run-as" in args and os.geteuid() != 0:
        pytest.skip("--run-as is for root")
    done = sarsweep_db("init", "--dir", str(db_dir), *args, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"sarsweep: error: {message}\n")
    assert not db_dir.exists()


def test_db_commands_on_a_folder_without_a_server_say_so(tmp_path: Path) -> None:
    done = sarsweep_db("start", "--dir", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == (
        f"sarsweep: error: {tmp_path / 'none'} holds no sarsweep database: run `sarsweep db init --dir "
        f"{tmp_path / 'none'}` first\n")
