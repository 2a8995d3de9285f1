"""The small things a user trips on, each with the defect it was (docs/troubleshooting.md)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import types
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import run_cli, tiny_config_dict
from support.campaigns import init, quick_done, trials_of

from search.cli import build_parser


def every_option(parser: argparse.ArgumentParser, prefix: str = "sarsweep") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:  # argparse keeps them nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += every_option(sub, f"{prefix} {name}")
        elif not isinstance(action, argparse._HelpAction):
            found.append((prefix, action))
    return found


def test_every_option_says_what_it_is_and_device_is_worded_once() -> None:
    """`export --variant` and `worker --stage` had no help text; --device read differently in
    each command."""
    options = every_option(build_parser())
    assert len(options) > 80
    missing = [f"{where} {'/'.join(a.option_strings) or a.dest}" for where, a in options if not a.help]
    assert missing == []
    devices = {a.help.split(" (default")[0] for _, a in options if "--device" in a.option_strings}
    assert len(devices) == 1 and devices.pop().startswith("where to train or score: auto")


def test_a_postgres_url_is_taken_like_a_postgresql_one(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path = write_campaign()
    init(path, pg_url.replace("postgresql://", "postgres://"), tmp_path)
    done = run_cli("status", "--campaign", str(path), "--storage", pg_url.replace("postgresql://", "postgres://"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "t.baseline.quick" in {s.study_name for s in optuna.get_all_study_summaries(
        pg_url.replace("postgresql://", "postgresql+psycopg2://"))}


@pytest.mark.parametrize(("content", "says"), [
    (b"", "the file is empty (0 bytes)"),
    (b"garbage, not a checkpoint", "not a sarsweep checkpoint (not a file torch.save writes)"),
    (None, "the file is truncated ("),
])
def test_a_bad_checkpoint_is_said_in_sarsweeps_words_before_any_data_is_prepared(
        content: bytes | None, says: str, tmp_path: Path) -> None:
    """torch said `EOFError`, or advised weights_only=False ("can result in arbitrary code
    execution"); `train --resume` prepared the data before it found out."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", epochs=1)))
    assert run_cli("train", "--config", str(config), cwd=tmp_path).returncode == 0
    last = tmp_path / "out" / "last.pt"
    last.write_bytes(last.read_bytes()[:600] if content is None else content)
    cache = tmp_path / "cache"
    done = run_cli("train", "--config", str(config), "--resume", "--epochs", "2", cwd=tmp_path,
                   env={"SARSWEEP_CACHE": str(cache)})
    assert done.returncode == 2 and done.stderr.startswith(f"sarsweep: error: cannot load checkpoint {last}: {says}")
    assert "weights_only" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not cache.exists() or not any(cache.rglob("*.npy"))  # no data prepared first


def test_a_corrupt_tiff_says_it_is_no_valid_tiff_and_evaluate_can_skip_it(s1: Path, tmp_path: Path) -> None:
    """It said `expected a 2-D or 3-D array, got shape (0,)`; evaluate had no way past it."""
    from training.config import TrainConfig
    from training.trainer import train

    held = tmp_path / "held"
    held.mkdir()
    chips = sorted((s1 / "S1A_IW_GRDH_1SDV_20161018T095407_20161018T095432_013543_015ACD_AB15" / "Patch").glob("*.tif"))
    for chip in chips[:3]:
        (held / chip.name).symlink_to(chip)
    (held / "zz_cut.tif").write_bytes(chips[0].read_bytes()[:100])
    data = {"root": str(s1), "include": ["*/Patch/*.tif"], "patch_size": 16, "small_chips": "pad"}
    best = train(TrainConfig.from_dict(tiny_config_dict(tmp_path / "run", data=data)), progress=False).best_path
    done = run_cli("evaluate", "--checkpoint", str(best), "--data", str(held), "--include", "*.tif", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"sarsweep: error: cannot read SAR raster {held / 'zz_cut.tif'}: not a valid TIFF (no image in it: truncated, "
        "or no TIFF at all) (data.on_error: skip (evaluate: --on-error skip) leaves unreadable files out)")
    skipped = run_cli("evaluate", "--checkpoint", str(best), "--data", str(held), "--include", "*.tif", "--on-error",
                      "skip", cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 1 unreadable file(s): zz_cut.tif" in skipped.stdout and " from 3 file(s) of " in skipped.stdout


def test_an_export_retrains_from_any_folder(pg_url: str, write_campaign, tmp_path: Path, s1: Path) -> None:
    """The exported YAML kept a relative data.root: `sarsweep train --config best.yaml` failed
    from any other folder, though its header said that command retrains it."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "s1").symlink_to(s1)
    train = {"batch_size": 8, "device": "cpu", "preview_patches": 0,
             "data": {"root": "s1", "include": ["S1A_IW_GRDH_1SDV_2015*/Patch/*.tif"], "patch_size": 16,
                      "small_chips": "pad"}}
    path = write_campaign(train=train, quick={"trials": 1})
    assert run_cli("init", "--campaign", str(path), "--storage", pg_url, cwd=work).returncode == 0
    ran = run_cli("worker", "--campaign", str(path), "--storage", pg_url, "--variant", "baseline", "--stage", "quick",
                  "--artifacts", str(tmp_path / "art"), cwd=work)
    assert ran.returncode == 0, ran.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = elsewhere / "best.yaml"
    assert run_cli("export", "--campaign", str(path), "--storage", pg_url, "--variant", "baseline", "-o", str(out),
                   cwd=elsewhere).returncode == 0
    exported = yaml.safe_load(out.read_text())
    # Absolute, and the link as the user wrote it (work/s1), not the folder it points to.
    assert exported["data"]["root"] == str(work / "s1") != str((work / "s1").resolve())
    assert "retrains from any folder" in out.read_text()
    retrained = run_cli("train", "--config", str(out), cwd=elsewhere)
    assert retrained.returncode == 0, retrained.stderr
    (trial,) = trials_of(pg_url, "t.baseline.quick")
    assert f"val PSNR {trial.user_attrs['val_psnr']:.2f} dB" in retrained.stdout.splitlines()[-1]


def test_init_refuses_a_data_root_that_is_not_there(write_campaign, tmp_path: Path) -> None:
    path = write_campaign(train={"device": "cpu", "data": {"root": "no-such-folder"}})
    done = run_cli("init", "--campaign", str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"sarsweep: error: {path}: train.data.root: directory not found: "
                                                 f"no-such-folder (from {tmp_path})\n")
    assert not (tmp_path / "x.db").exists()


def test_report_prints_no_matplotlib_chatter_and_status_keeps_two_decimals(pg_url: str, write_campaign,
                                                                          tmp_path: Path) -> None:
    path, _ = quick_done(pg_url, write_campaign, tmp_path, trials=3)
    mpl = tmp_path / "mpl"  # an empty matplotlib cache: it builds its font list and says so at INFO
    done = run_cli("report", "--campaign", str(path), "--storage", pg_url, "-o", "r.md", cwd=tmp_path,
                   env={"MPLCONFIGDIR": str(mpl)})
    assert done.returncode == 0, done.stderr
    assert "fontManager" not in done.stdout + done.stderr and "matplotlib" not in done.stderr
    status = run_cli("status", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    best = [line.split()[10] for line in status.stdout.splitlines() if line.startswith("baseline     quick")]
    assert len(best) == 1 and re.fullmatch(r"\d+\.\d\d", best[0]), status.stdout
    assert re.search(r"; best: baseline quick #\d+ \d+\.\d\d$", status.stdout.strip().splitlines()[-1])


def test_a_worker_says_each_epoch_and_launch_says_which_worker_speaks(pg_url: str, write_campaign,
                                                                       tmp_path: Path) -> None:
    """A worker printed nothing between its data line and `trial N complete` (minutes); launch
    interleaved its workers' lines with no worker id."""
    path = write_campaign(quick={"trials": 2, "epochs": 2})
    init(path, pg_url, tmp_path)
    done = run_cli("launch", "--per-gpu", "2", "--", "--campaign", str(path), "--variant", "baseline", "--stage",
                   "quick", "--storage", pg_url, "--artifacts", str(tmp_path / "art"), cwd=tmp_path,
                   env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    epochs = [line for line in lines if " epoch " in line]
    assert len(epochs) == 4 and all(re.fullmatch(
        r"\[w[01] cpu\] trial \d epoch [12]/2 val PSNR \d+\.\d\d dB SSIM \d\.\d{4} \d+\.\d s/epoch", e) for e in epochs)
    assert {line.split("]")[0] for line in lines if line.startswith("[w")} == {"[w0 cpu", "[w1 cpu"}
    assert lines[-1].startswith("all workers exited (2 ok")  # launch's own lines have no prefix


def test_the_dashboard_names_the_metric_and_describes_studies_and_trials(pg_url: str, write_campaign,
                                                                          tmp_path: Path) -> None:
    """The objective read "Objective 0"; a trial's config was one JSON line running off the page."""
    from optuna_dashboard import get_note

    path, _ = quick_done(pg_url, write_campaign, tmp_path, trials=1)
    storage = optuna.storages.RDBStorage(pg_url.replace("postgresql://", "postgresql+psycopg2://"))
    study = optuna.load_study(study_name="t.baseline.quick", storage=storage)
    assert study.metric_names == ["val_psnr_db"]
    note = get_note(study)
    assert note.startswith("## t.baseline.quick") and "**quick** stage: 1 of the training split, 1 epochs" in note
    (trial,) = study.trials
    trial_note = get_note(types.SimpleNamespace(storage=study._storage, study=study, _trial_id=trial._trial_id))
    assert "```yaml" in trial_note and f"lr: {trial.params['lr']}" in trial_note
    storage.engine.dispose()


def test_the_help_runs_without_a_traceback() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "sarsweep"), "db", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "init" in done.stdout and "url" in done.stdout
