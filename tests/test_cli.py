"""`sarsweep train` as a user runs it: a real subprocess, its output and exit code."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import run_cli as sarsweep
from conftest import tiny_config_dict


def test_train_prints_progress_and_one_summary_line(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", epochs=2)))
    done = sarsweep("train", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]
    last = lines[-1]
    assert last.startswith("val PSNR ") and " dB, SSIM 0." in last
    assert "parameters" in last and last.endswith(f"checkpoint {tmp_path / 'out' / 'best.pt'}")
    assert (tmp_path / "out" / "best.pt").is_file() and (tmp_path / "out" / "last.pt").is_file()


def test_resume_flag_continues_a_finished_run(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", epochs=1)))
    assert sarsweep("train", "--config", str(config), cwd=tmp_path).returncode == 0
    done = sarsweep("train", "--config", str(config), "--resume", "--epochs", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("epoch ")] == ["2/2"]


def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    cfg = tiny_config_dict(tmp_path / "out")
    cfg["data"]["patch_size"] = 20
    config.write_text(yaml.safe_dump(cfg))
    done = sarsweep("train", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"sarsweep: error: {config}: data.patch_size: 20 is not a multiple of baseline's downsampling factor 8"
    )
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "out").exists()


def test_missing_data_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", data={"root": str(tmp_path / "nowhere")})))
    done = sarsweep("train", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"sarsweep: error: data.root: directory not found: {tmp_path / 'nowhere'}"
    assert not (tmp_path / "out").exists()


def test_missing_config_file_is_one_line_exit_2(tmp_path: Path) -> None:
    done = sarsweep("train", "--config", "absent.yaml", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == "sarsweep: error: absent.yaml: config file not found"
