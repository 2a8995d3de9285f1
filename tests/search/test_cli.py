"""`sarsweep train` as a user runs it: a real subprocess, its output and exit code."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import on_a_small_disk, tiny_config_dict
from conftest import run_cli as sarsweep


def test_train_prints_progress_and_one_summary_line(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", epochs=2)))
    done = sarsweep("train", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]
    # 6 generated 32 px scenes, 4 patches of 16 px each; one scene validates (val_fraction 0.2)
    assert lines[1] == "data: 20 training patches from 5 files, 4 validation patches from 1 file"
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


def test_a_run_into_a_folder_holding_an_earlier_run_is_refused_until_told(tmp_path: Path) -> None:
    """Without --resume the first epoch replaced the earlier run's best.pt and its last.pt was lost:
    hours of a long run gone to a forgotten flag."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", epochs=2)))
    assert sarsweep("train", "--config", str(config), cwd=tmp_path).returncode == 0
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = sarsweep("train", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 2 and again.stdout == ""
    assert re.fullmatch(rf"sarsweep: error: {out} holds an earlier run: epoch 2 of 2 done \(last\.pt\), best val "
                        r"PSNR \d+\.\d\d dB at epoch [12]; --resume with more --epochs trains it on, --overwrite "
                        r"starts over in its place, --out-dir trains elsewhere", again.stderr.strip()), again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "preview-last.png").write_bytes(b"the earlier run's last epoch")
    over = sarsweep("train", "--config", str(config), "--overwrite", "--epochs", "1", cwd=tmp_path)
    assert over.returncode == 0, over.stderr
    assert [line.split()[1] for line in over.stdout.splitlines() if line.startswith("epoch ")] == ["1/1"]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]  # no stale preview beside them
    assert (out / "last.pt").read_bytes() != before["last.pt"]
    both = sarsweep("train", "--config", str(config), "--overwrite", "--resume", cwd=tmp_path)
    assert both.returncode == 2 and "argument --resume: not allowed with argument --overwrite" in both.stderr


def test_an_interrupted_run_says_how_to_resume_it(tmp_path: Path) -> None:
    from conftest import start_cli

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", epochs=500)))
    proc = start_cli("train", "--config", str(config), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        while not proc.stdout.readline().startswith("epoch 2/500"):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1] == "sarsweep: interrupted"
    match = re.fullmatch(rf"{tmp_path / 'out'} holds epoch (\d+) of 500 done \(last\.pt\), best val PSNR \d+\.\d\d dB "
                         r"at epoch \d+: the same command with --resume continues it", lines[-2])
    assert match and int(match[1]) >= 2, lines
    resumed = sarsweep("train", "--config", str(config), "--resume", "--epochs", str(int(match[1]) + 1), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch ")] == [
        f"{int(match[1]) + 1}/{int(match[1]) + 1}"]


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


def test_set_overrides_any_key_of_the_config(tmp_path: Path, s1: Path) -> None:
    """An exported config names the data where the search ran and its stage's fraction; retraining
    it elsewhere or on all the data needed an edited copy. Here a config made for generated
    scenes retrains on real Sentinel-1 chips, half of them, at another learning rate."""
    import torch

    config = tmp_path / "exported.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out")))
    done = sarsweep("train", "--config", str(config), "--set", f"data.root={s1}", "--set", 'data.include=["*/Patch/*.tif"]',
                    "--set", "data.val_max_patches=64", "--set", "fraction=0.5", "--set", "lr=1e-3", "--epochs", "1",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"on {s1}, fraction 0.5" in done.stdout
    saved = torch.load(tmp_path / "out" / "best.pt", weights_only=True)["config"]
    assert (saved["data"]["root"], saved["data"]["include"], saved["data"]["val_max_patches"]) == (
        str(s1), ["*/Patch/*.tif"], 64)
    assert (saved["fraction"], saved["lr"], saved["epochs"]) == (0.5, 1e-3, 1)


def test_bad_overrides_name_the_option_exit_2_and_write_nothing(tmp_path: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    from search.cli import main  # in-process: a dozen CLI runs, each refused before any data is read

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out")))
    cases = {  # `--epochs 0` used to be dropped (0 is falsy) and the run trained the file's epochs
        ("--epochs", "0"): "--epochs 0: must be at least 1, got 0",
        ("--set", "lr"): "--set lr: expected KEY=VALUE, such as lr=1e-3 or data.root=/mnt/sar",
        ("--set", "learning_rate=0.1"): "--set learning_rate=0.1: unknown key; known keys here: base_channels,",
        ("--set", "lr.x=1"): "--set lr.x=1: lr is 0.002, not a section",
        ("--set", "data.patch_size=20"): "--set data.patch_size=20: 20 is not a multiple of baseline's downsampling",
        ("--set", "data..root=x"): "--set data..root=x: 'data..root' is no dotted key such as lr or data.root",
        ("--set", "data.include=[*.tif]"): "--set data.include=[*.tif]: invalid YAML (expected alphabetic or numeric "
                                           "character, but found '.'); quote glob patterns, e.g. data.include=['*.tif']",
        ("--set", "variant=residual", "--set", "base_channels=0"): "--set base_channels=0: must be at least 1, got 0",
    }
    for args, expected in cases.items():
        capfd.readouterr()
        assert main(["train", "--config", str(config), *args]) == 2, args
        out, err = capfd.readouterr()
        assert err.startswith(f"sarsweep: error: {expected}") and len(err.splitlines()) == 1, (args, err)
        assert out == "" and not (tmp_path / "out").exists()
    # An error in the file itself still names the file, with or without overrides.
    config.write_text(config.read_text().replace("patch_size: 16", "patch_size: 20"))
    assert main(["train", "--config", str(config), "--set", "lr=1e-3"]) == 2
    assert capfd.readouterr().err.startswith(f"sarsweep: error: {config}: data.patch_size: 20 is not")


def test_missing_data_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", data={"root": str(tmp_path / "nowhere")})))
    done = sarsweep("train", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"sarsweep: error: data.root: directory not found: {tmp_path / 'nowhere'}"
    assert not (tmp_path / "out").exists()


def test_a_device_this_machine_lacks_is_one_line_exit_2_before_any_data_is_prepared(tmp_path: Path) -> None:
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out")))
    done = sarsweep("train", "--config", str(config), "--device", "cuda:1", cwd=tmp_path,
                    env={"SARSWEEP_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 2 and done.stderr.strip() == (
        f"sarsweep: error: device: cuda:1 asked for, but torch {torch.__version__} is built without CUDA; "
        "use --device cpu or auto")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_missing_config_file_is_one_line_exit_2(tmp_path: Path) -> None:
    done = sarsweep("train", "--config", "absent.yaml", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == "sarsweep: error: absent.yaml: config file not found"


def test_an_unwritable_out_dir_is_one_line_exit_2_before_any_epoch(tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where the run's folder should go")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(blocker / "out", epochs=2)))
    done = sarsweep("train", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"sarsweep: error: cannot write {blocker / 'out'}: {blocker} is a file, not a folder"
    assert "epoch " not in done.stdout  # found before training, not at the first checkpoint
    assert blocker.read_text() == "a file where the run's folder should go"


def test_an_unwritable_data_cache_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", data={"synthetic": {"seed": 11}})))
    done = sarsweep("train", "--config", str(config), cwd=tmp_path, env={"SARSWEEP_CACHE": str(blocker / "sarsweep")})
    assert done.returncode == 2
    line = done.stderr.strip()
    assert line.startswith(f"sarsweep: error: cannot write {blocker / 'sarsweep' / 'synthetic'}/") and "\n" not in line
    assert line.endswith(f": {blocker} is a file, not a folder") and not (tmp_path / "out").exists()


def test_a_disk_that_refuses_a_checkpoint_is_one_line_exit_2_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """The OS refuses a write mid-file, as a full disk does: here EFBIG from a file-size limit
    (needs no privileges; ENOSPC takes the same path). The tiny run's patch cache files are
    under the limit, its 70 KB best.pt is over it."""
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process

    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(out, epochs=2)))
    script = Path(sys.executable).parent / "sarsweep"
    done = subprocess.run([str(script), "train", "--config", str(config)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit_file_size)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"sarsweep: error: cannot write {out / 'best.pt'}: File too large"
    assert list(out.iterdir()) == []  # no half checkpoint, no temp file


def test_a_disk_too_small_for_the_checkpoints_is_refused_before_training(tmp_path: Path) -> None:
    """A run's out_dir on a 64 KiB disk: a zero-byte probe passes there, the first checkpoint
    (an epoch later, ~40 MiB for residual at base 16) would not. Refused up front, with the sizes."""
    disk = tmp_path / "disk"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(disk / "out", epochs=2, variant="residual", base_channels=16)))
    script = Path(sys.executable).parent / "sarsweep"
    done = on_a_small_disk(disk, "64k", f'"{script}" train --config "{config}"; rc=$?; ls -A "{disk}/out"; exit $rc',
                           tmp_path)
    assert done.returncode == 2, done.stderr
    assert re.fullmatch(rf"sarsweep: error: cannot write {re.escape(str(disk / 'out'))}: "
                        r"\d+\.\d KiB free, its checkpoints need up to \d+\.\d MiB\n", done.stderr), done.stderr
    assert not any(line.startswith("epoch ") for line in done.stdout.splitlines())  # not one epoch spent
    lines = done.stdout.strip().splitlines()  # `ls -A` printed nothing: nothing left in out
    assert lines[-2].startswith("training residual") and lines[-1].startswith("data: 20 training patches")


def test_a_disk_that_fills_during_a_checkpoint_write_names_the_reason(tmp_path: Path) -> None:
    """Another process filled the disk after the up-front check: a real ENOSPC inside torch's
    writer, whose own message ("unexpected pos") names no reason; save_atomic's must."""
    disk = tmp_path / "disk"
    code = ("import sys, torch; from pathlib import Path; from training.checkpoint import save_atomic\n"
            "from errors import OutputError\n"
            "try: save_atomic({'w': torch.zeros(1 << 16)}, Path(sys.argv[1]))\n"
            "except OutputError as exc: print(exc); sys.exit(3)")
    done = on_a_small_disk(disk, "64k", f'"{sys.executable}" -c "{code}" "{disk}/best.pt"; rc=$?; ls -A "{disk}"; '
                           'exit $rc', tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == [f"cannot write {disk / 'best.pt'}: No space left on device"]  # and no temp file


def test_a_full_cache_disk_is_one_line_exit_2_and_leaves_no_scene(tmp_path: Path) -> None:
    """The patch cache's disk fills while the synthetic scenes are generated (numpy's own
    message for it is "N requested and M written")."""
    disk = tmp_path / "cache"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path / "out", data={"synthetic": {"seed": 12}})))
    script = Path(sys.executable).parent / "sarsweep"
    done = on_a_small_disk(disk, "16k", f'SARSWEEP_CACHE="{disk}" "{script}" train --config "{config}"; rc=$?; '
                            f'ls -A "{disk}/synthetic"; exit $rc', tmp_path)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert line.startswith(f"sarsweep: error: cannot write {disk / 'synthetic'}/") and "\n" not in line
    assert line.endswith(": No space left on device")
    assert done.stdout.strip().splitlines()[-1].startswith("training baseline")  # `ls -A`: no scene, no staging folder


def test_every_command_s_help_opens_with_its_purpose_and_ends_with_an_example_that_parses() -> None:
    import argparse
    import shlex

    from search.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(sub.choices) == 15
    for name, command in sub.choices.items():
        text = command.format_help()
        purpose = text.split("\n\n")[1]
        assert purpose[:1].isupper() and not purpose.startswith(("usage", "positional", "options")), (name, text)
        examples = text.split("example")[-1].splitlines()[1:]
        assert examples and all(e.startswith(f"  sarsweep {name}") for e in examples if e.strip()), (name, text)
        for example in filter(str.strip, examples):
            argv = shlex.split(example, comments=True)[1:]
            if name == "launch":
                argv = argv[:argv.index("--") + 1] if "--" in argv else argv
            parser.parse_args(argv)  # raises SystemExit if an example does not parse
