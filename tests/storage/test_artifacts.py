"""storage/artifacts.py: where checkpoints and previews live, and what a finished trial keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.artifacts import artifact_dir, artifact_store, artifacts_root, drop_resume_state, trial_dir


def test_the_root_comes_from_the_option_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SARSWEEP_ARTIFACTS", raising=False)
    assert artifacts_root() == Path("sarsweep-artifacts")
    monkeypatch.setenv("SARSWEEP_ARTIFACTS", "/env/art")
    assert artifacts_root() == Path("/env/art")
    assert artifacts_root("/opt/art") == Path("/opt/art")


def test_layout_by_campaign_variant_stage_and_trial(tmp_path: Path) -> None:
    assert trial_dir(tmp_path, "c", "baseline", "quick", 7) == tmp_path / "c" / "baseline" / "quick" / "trial_0007"
    assert artifact_dir(tmp_path) == tmp_path / "optuna-artifacts"


def test_a_reader_s_store_creates_nothing(tmp_path: Path) -> None:
    artifact_store(tmp_path / "ro", create=False)
    assert not (tmp_path / "ro").exists()
    artifact_store(tmp_path / "rw")
    assert (tmp_path / "rw" / "optuna-artifacts").is_dir()


def test_drop_resume_state_deletes_last_pt_and_keeps_best(tmp_path: Path) -> None:
    best, last = tmp_path / "best.pt", tmp_path / "last.pt"
    best.write_bytes(b"b")
    last.write_bytes(b"l")
    drop_resume_state(best)
    assert best.is_file() and not last.exists()
    drop_resume_state(best)  # already gone: nothing to do
    drop_resume_state(None)  # a trial that failed before it had a checkpoint


def test_drop_resume_state_only_warns_when_it_cannot_delete(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "trial"
    (folder / "last.pt").mkdir(parents=True)  # a folder where the file was: unlink fails
    drop_resume_state(folder / "best.pt")
    assert "could not delete" in caplog.text and (folder / "last.pt").is_dir()
