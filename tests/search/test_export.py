"""`sarsweep export`: a trial as a train config that retrains to the same value."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import run_cli
from support.campaigns import init, quick_done, trials_of


def test_export_then_train_reproduces_the_trial(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, _ = quick_done(pg_url, write_campaign, tmp_path)
    done = run_cli("export", "--campaign", str(path), "--variant", "baseline", "--storage", pg_url,
                   "-o", str(tmp_path / "best.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "quick" in done.stdout  # the full stage has no result yet: falls back to quick
    text = (tmp_path / "best.yaml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "study t.baseline.quick, trial" in header[0] and "optuna 5." in text and "data fraction 1.0" in text
    # Generated data has no folder to be absolute about: the header says how it comes back instead.
    assert "# data: generated scenes (data.root null): made again from their seed on any machine" in header
    best = max(trials_of(pg_url, "t.baseline.quick"), key=lambda t: t.value)
    exported = yaml.safe_load(text)
    assert {k: exported[k] for k in best.params} == best.params
    trained = run_cli("train", "--config", str(tmp_path / "best.yaml"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert f"val PSNR {best.user_attrs['val_psnr']:.2f} dB" in trained.stdout.splitlines()[-1]
    blocked = run_cli("export", "--campaign", str(path), "--variant", "baseline", "--storage", pg_url,
                      "-o", str(tmp_path / "best.yaml" / "again.yaml"), cwd=tmp_path)  # a file where a folder goes
    assert blocked.returncode == 2 and blocked.stderr.strip() == (
        f"sarsweep: error: cannot write {tmp_path / 'best.yaml' / 'again.yaml'}: {tmp_path / 'best.yaml'} is a file, "
        "not a folder")


def test_export_without_a_complete_trial_is_a_clear_error(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path = write_campaign()
    init(path, pg_url, tmp_path)
    done = run_cli("export", "--campaign", str(path), "--variant", "baseline", "--storage", pg_url,
                   "-o", str(tmp_path / "x.yaml"), cwd=tmp_path)
    assert done.returncode == 2 and not (tmp_path / "x.yaml").exists()
    assert done.stderr.strip() == "sarsweep: error: no COMPLETE trial to export in the full or quick stage of t.baseline"
