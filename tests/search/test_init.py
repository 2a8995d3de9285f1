"""`sarsweep init`: the schema, the studies and their attrs, the read-only role."""

from __future__ import annotations

import contextlib
from pathlib import Path

import optuna
import pytest
from conftest import run_cli
from support.campaigns import init

from errors import StorageError
from search.campaign.config import load_campaign
from storage import open_storage


def test_init_creates_named_studies_with_stage_attrs(pg_url: str, write_campaign, tmp_path: Path) -> None:
    campaign = write_campaign("sar-t", variants=["baseline", "resnet_lite"])
    init(campaign, pg_url, tmp_path)
    again = run_cli("init", "--campaign", str(campaign), "--storage", pg_url, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("exists ") == 4  # safe to run again
    storage = open_storage(pg_url)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["sar-t.baseline.full", "sar-t.baseline.quick", "sar-t.resnet_lite.full", "sar-t.resnet_lite.quick"]
    attrs = optuna.load_study(study_name="sar-t.baseline.quick", storage=storage).user_attrs
    assert attrs["stage"] == "quick" and attrs["variant"] == "baseline" and attrs["fraction"] == 1.0
    assert attrs["epochs"] == 1 and attrs["budget"] == 4 and attrs["fingerprint"] == load_campaign(campaign).fingerprint()


def test_worker_before_init_is_told_to_init(pg_url: str, write_campaign, tmp_path: Path) -> None:
    done = run_cli("worker", "--campaign", str(write_campaign()), "--variant", "baseline", "--stage", "quick",
                   "--storage", pg_url, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("run `sarsweep init` first")


def test_init_refuses_a_readonly_role_before_it_creates_anything(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """The role was checked after the schema and studies were made: a refused role (SQLite, a bad
    name) still left a new database file, or tables and studies, behind an exit code of 2."""
    import psycopg2

    path = write_campaign()
    db = tmp_path / "new.db"
    for storage, role, message in (
            (f"sqlite:///{db}", "sarsweep_ro", "--readonly-role needs PostgreSQL storage (SQLite has no roles)"),
            (pg_url, "Dash-RO", "--readonly-role: 'Dash-RO' is not a plain role name (lower-case letters, digits, _)"),
            (pg_url, "postgres", "--readonly-role: 'postgres' is the role sarsweep itself connects as")):
        done = run_cli("init", "--campaign", str(path), "--storage", storage, "--readonly-role", role, cwd=tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", f"sarsweep: error: {message}\n")
    assert not db.exists()
    with contextlib.closing(psycopg2.connect(pg_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cur.fetchone() == (0,)  # no schema, so no study


def test_init_checks_the_data_before_it_makes_a_study(pg_url: str, write_campaign, tmp_path: Path,
                                                      sar_data: Path) -> None:
    """The include globs must match readable files: counted and one read at init, with a worker's
    one-line errors, and nothing made when they do not. A corrupt file's error says how to skip it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no rasters here")
    chips = sar_data / "sentinel1_opensarship"
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.tif").write_bytes(b"II*\x00 not really a tiff")
    cases = {
        "no image": ({"root": str(empty), "include": ["**/*.tif"]}, "data.include: no file under"),
        "corrupt": ({"root": str(corrupt), "include": ["*.tif"]}, "(data.on_error: skip (evaluate: --on-error skip) leaves unreadable files out)"),
    }
    for name, (data, message) in cases.items():
        path = write_campaign(f"c{len(name)}", train={"batch_size": 8, "device": "cpu",
                                                      "data": {"patch_size": 16, "channels": 1, **data}})
        done = run_cli("init", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, (name, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (name, done.stderr)
        with pytest.raises(StorageError, match="no sarsweep schema"):  # nothing made, not even the schema
            open_storage(pg_url)
    good = write_campaign("ok", train={"batch_size": 8, "device": "cpu", "data": {
        "root": str(chips), "include": ["*/Patch/*.tif"], "patch_size": 16, "channels": 1, "band": -1,
        "small_chips": "pad"}})
    done = run_cli("init", "--campaign", str(good), "--storage", pg_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    count = len(list(chips.glob("*/Patch/*.tif")))
    assert f"data: {count} file(s) under {chips} match data.include; read " in done.stdout, done.stdout


def test_two_inits_at_once_on_a_fresh_sqlite_file_both_succeed(write_campaign, tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write_campaign()
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    exe = str(Path(sys.executable).parent / "sarsweep")
    for _ in range(3):  # the race is a matter of timing: three tries at it
        (tmp_path / "fresh.db").unlink(missing_ok=True)
        procs = [subprocess.Popen([exe, "init", "--campaign", str(path), "--storage", url], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert sum(o[0].count("created t.baseline.quick") for o in outs) == 1, outs  # made once, found once
