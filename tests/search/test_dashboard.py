"""Reconstruction previews (trainer -> PNG -> Optuna artifact) and `sarsweep dashboard` over HTTP."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import start_cli
from PIL import Image
from support.cluster import free_port
from support.web import get as _get

from search.campaign.config import load_campaign
from search.running.worker import run_worker
from storage import open_storage
from training.trainer import train


# Each patch a column of 3 panels of 160 px (input, reconstruction, |error|), up to 4 side by
# side, under a 56 px header band (title, row names, the |error| colour scale): close to the 4:3
# of the dashboard's artifact cards.
def preview_size(patches: int) -> tuple[int, int]:
    blocks = -(-patches // 4)
    return min(patches, 4) * 160, blocks * 3 * 160 + 56


def test_trainer_writes_a_preview_at_new_bests_and_at_the_end(tiny_config) -> None:  # type: ignore[no-untyped-def]
    result = train(tiny_config(epochs=3, preview_patches=3), progress=False)
    for h in result.history:
        assert (h.preview is not None) == (h.is_best or h.epoch == 3)
        if h.preview is not None:
            assert Path(h.preview).name == ("preview.png" if h.is_best else "preview-last.png")
    image = Image.open(Path(result.history[-1].preview))
    assert image.format == "PNG" and image.size == preview_size(3) == (480, 536)
    pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # real content, not a blank canvas
    # The |error| row's colour scale in the header: magma from its darkest to its brightest.
    from training.preview import SCALE_AT, SCALE_SIZE, _magma

    rgb = np.asarray(image.convert("RGB"))
    (x, y), (width, height) = SCALE_AT, SCALE_SIZE
    bar = rgb[y + height // 2, x + 58: x + 58 + width]
    assert (bar[0] == _magma()[0]).all() and (bar[-1] == _magma()[255]).all()
    assert np.all(np.diff(bar.astype(int).sum(axis=1)) >= -3)  # darker to brighter, left to right


def test_previews_can_be_turned_off(tiny_config) -> None:  # type: ignore[no-untyped-def]
    result = train(tiny_config(epochs=2, preview_patches=0), progress=False)
    assert all(h.preview is None for h in result.history)
    assert not (result.best_path.parent / "preview.png").exists()


def test_dashboard_serves_our_studies_and_trial_previews(pg_url: str, write_campaign, tmp_path: Path) -> None:
    campaign = load_campaign(write_campaign(quick={"trials": 2, "epochs": 2}, train={
        "batch_size": 8, "device": "cpu", "preview_patches": 2,
        "data": {"patch_size": 16, "synthetic": {"scenes": 6, "size": 32, "seed": 3}}}))
    art = tmp_path / "art"
    run_worker(open_storage(pg_url, create_schema=True), campaign, "baseline", "quick", art,
               create_study=True, progress=False)
    trial = optuna.load_study(study_name="t.baseline.quick", storage=open_storage(pg_url)).trials[0]
    assert trial.user_attrs["preview_artifact"] and trial.user_attrs["preview_epoch"] >= 1

    port = free_port()
    server = start_cli("dashboard", "--storage", pg_url, "--artifacts", str(art), "--port", str(port), cwd=tmp_path)
    try:
        studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))["study_summaries"]
        ours = {s["study_name"]: s["study_id"] for s in studies}
        assert "t.baseline.quick" in ours
        detail = json.loads(_get(f"http://127.0.0.1:{port}/api/studies/{ours['t.baseline.quick']}"))
        assert [t["number"] for t in detail["trials"]] == [0, 1]
        first = detail["trials"][0]
        previews = [a for a in first["artifacts"] if a["mimetype"] == "image/png"]
        assert trial.user_attrs["preview_artifact"] in {a["artifact_id"] for a in previews}
        assert {a["filename"] for a in previews} <= {f"preview-epoch{n:03d}.png" for n in (1, 2)}
        png = _get(f"http://127.0.0.1:{port}/artifacts/{ours['t.baseline.quick']}/{first['trial_id']}/"
                   f"{trial.user_attrs['preview_artifact']}")
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size == preview_size(2) == (320, 536)
    finally:
        server.terminate()  # docker stop
        out, err = server.communicate(timeout=30)
    assert server.returncode == 143, err  # 128 + SIGTERM, as a shell reports a process it stopped
    assert out.rstrip().endswith("dashboard stopped (SIGTERM)")
    assert f"open http://127.0.0.1:{port}/dashboard" in out
    assert "postgres" in out and "Listening on http://127.0.0.1:" in out + err


@pytest.mark.parametrize("source", ["flag", "env"])
def test_storage_url_can_come_from_a_file(source: str, pg_url: str, write_campaign, tmp_path: Path) -> None:
    from conftest import run_cli

    secret = tmp_path / "storage-url"
    secret.write_text(pg_url + "\n")
    args = ["init", "--campaign", str(write_campaign())]
    env = {"SARSWEEP_STORAGE": ""}
    if source == "flag":
        args += ["--storage-file", str(secret)]
    else:
        env["SARSWEEP_STORAGE_FILE"] = str(secret)
    done = run_cli(*args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "created t.baseline.quick" in done.stdout
    missing = run_cli("init", "--campaign", str(write_campaign()), "--storage-file", str(tmp_path / "nope"),
                      cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "cannot read storage URL file" in missing.stderr


def test_dashboard_serves_from_a_read_only_artifacts_mount_with_no_store_yet(pg_url: str, tmp_path: Path) -> None:
    """compose mounts the artifacts read-only into the dashboard, which may start before any
    worker made the preview store: it serves, and creates nothing (it raised "Read-only file
    system" making the store's folder)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (CI runs as root)")
    open_storage(pg_url, create_schema=True)
    art = tmp_path / "art"
    art.mkdir()
    port = free_port()
    script = Path(sys.executable).parent / "sarsweep"
    server = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount --bind "{art}" "{art}" && mount -o remount,bind,ro "{art}" && '
         f'exec "{script}" dashboard --storage "{pg_url}" --artifacts "{art}" --port {port}'],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))["study_summaries"] == []
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert server.returncode == 143 and "Traceback" not in err, err  # stopped by SIGTERM, cleanly
    assert out.startswith("optuna-dashboard on ") and list(art.iterdir()) == []


def test_a_port_it_cannot_listen_on_is_one_line_exit_2(tmp_path: Path) -> None:
    """A second dashboard on the same port used to print Bottle's "Listening on ..." banner and
    then an OSError traceback."""
    import socket

    from conftest import run_cli

    optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'd.db'}")  # the database exists: only the address is wrong
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for host, reason in [("127.0.0.1", "Address already in use"), ("nowhere.invalid", "")]:
            done = run_cli("dashboard", "--storage", f"sqlite:///{tmp_path / 'd.db'}", "--host", host,
                           "--port", str(port), cwd=tmp_path, timeout=60)
            assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
            assert done.stderr.startswith(f"sarsweep: error: --host {host} --port {port}: cannot listen there: "
                                          f"{reason}") and len(done.stderr.splitlines()) == 1, done.stderr
