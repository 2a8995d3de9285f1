"""`sarsweep evaluate`: a checkpoint scored on held-out real Sentinel-1 scenes, or its own val split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from conftest import run_cli, tiny_config_dict
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from support.trained import model_from_checkpoint

from search.cli import main
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data import prepare
from training.evaluate import evaluate
from training.trainer import train

TRAIN_SCENE = "S1A_IW_GRDH_1SDV_20150902T102505_20150902T102534_007535_00A699_2D00"
TEST_SCENE = "S1A_IW_GRDH_1SDV_20160131T101646_20160131T101715_009737_00E392_36F7"


@pytest.fixture(scope="module")
def trained(s1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a tiny baseline trained 2 epochs on one real Sentinel-1 scene."""
    out = tmp_path_factory.mktemp("evaluate") / "run"
    data = {"root": str(s1 / TRAIN_SCENE), "include": ["Patch/*.tif"], "patch_size": 32, "small_chips": "pad"}
    cfg = TrainConfig.from_dict(tiny_config_dict(out, epochs=2, data=data))
    return train(cfg, progress=False).best_path


def test_its_own_validation_split_repeats_what_the_run_reported(trained: Path) -> None:
    stored = load_checkpoint(trained)["metrics"]
    result = evaluate(trained)
    assert result.psnr == pytest.approx(stored["val_psnr"], abs=1e-9)
    assert result.ssim == pytest.approx(stored["val_ssim"], abs=1e-9)
    assert result.data.startswith("validation split of ") and result.epoch == 2
    assert sum(f.patches for f in result.files) == result.patches > 0
    # The split is by file: no validation file is one the run trained on.
    assert len(result.files) == len({f.file for f in result.files}) < 13


def test_a_held_out_scene_is_scored_per_file_as_scikit_image_scores_it(trained: Path, s1: Path) -> None:
    result = evaluate(trained, data=str(s1 / TEST_SCENE))
    files = sorted(p.relative_to(s1 / TEST_SCENE).as_posix() for p in (s1 / TEST_SCENE).glob("Patch/*.tif"))
    assert [f.file for f in result.files] == files  # every file of the folder, none of the training scene
    assert sum(f.patches for f in result.files) == result.patches
    weighted = sum(f.psnr * f.patches for f in result.files) / result.patches
    assert result.psnr == pytest.approx(weighted, rel=1e-12)

    # One file, scored independently: the checkpoint's model, scikit-image's PSNR and SSIM.
    cfg = TrainConfig.from_dict(load_checkpoint(trained)["config"])
    # Cut as evaluate --data cuts held-out rasters: whole, with windows flush with the far borders.
    prepared = prepare(cfg.replace(data={**cfg.to_dict()["data"], "root": str(s1 / TEST_SCENE),
                                         "cover_borders": True}).data)
    busiest = max(range(len(result.files)), key=lambda i: result.files[i].patches)
    index = prepared.files.index(result.files[busiest].file)
    x = torch.from_numpy(np.ascontiguousarray(prepared.patches[prepared.patch_file == index]))
    model, _ = model_from_checkpoint(trained)
    with torch.no_grad():
        y = model(x).clamp(0, 1).numpy()
    x = x.numpy()
    psnrs = [peak_signal_noise_ratio(a[0].astype(np.float64), b[0].astype(np.float64), data_range=1.0)
             for a, b in zip(x, y, strict=True)]
    ssims = [structural_similarity(a[0].astype(np.float64), b[0].astype(np.float64), data_range=1.0)
             for a, b in zip(x, y, strict=True)]
    assert len(psnrs) == result.files[busiest].patches >= 2
    assert result.files[busiest].psnr == pytest.approx(np.mean(psnrs), abs=1e-4)
    assert result.files[busiest].ssim == pytest.approx(np.mean(ssims), abs=1e-4)


def test_the_command_prints_writes_json_and_a_preview(trained: Path, s1: Path, tmp_path: Path) -> None:
    done = run_cli("evaluate", "--checkpoint", str(trained), "--data", str(s1 / TEST_SCENE), "--per-file",
                   "--json", str(tmp_path / "out" / "scores.json"), "--preview", str(tmp_path / "out" / "p.png"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "out" / "scores.json").read_text())
    lines = done.stdout.splitlines()
    assert lines[-1].startswith(f"PSNR {figures['psnr']:.2f} dB, SSIM {figures['ssim']:.4f} (its run's validation: ")
    assert f"{figures['patches']:,} patches of 32x32 (stride 32) from {len(figures['files'])} file(s)" in lines[0]
    assert len(lines) == 1 + 1 + len(figures["files"]) + 1  # summary, table header, a line per file, result
    first = figures["files"][0]
    assert lines[2].split() == [first["file"], str(first["patches"]), f"{first['psnr']:.2f}", f"{first['ssim']:.4f}"]
    assert (tmp_path / "out" / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--checkpoint", "{tmp}/none.pt"], "checkpoint not found: {tmp}/none.pt"),
    (["--checkpoint", "{tmp}/garbage.pt"], "cannot load checkpoint {tmp}/garbage.pt: "),
    (["--checkpoint", "{ckpt}", "--data", "{tmp}/nowhere"], "--data: directory not found: {tmp}/nowhere"),
    (["--checkpoint", "{ckpt}", "--data", "{tmp}"], "data.include: no file under {tmp} matches Patch/*.tif"),
    (["--checkpoint", "{ckpt}", "--patch-size", "64"],
     "--patch-size: only with --data; the validation split is the one its run used"),
    (["--checkpoint", "{ckpt}", "--data", "{tmp}", "--patch-size", "20"],
     "--patch-size: 20 is not a multiple of baseline's downsampling factor 8"),
    (["--checkpoint", "{ckpt}", "--device", "cuda:0"], "device: cuda:0 asked for, but "),
    (["--checkpoint", "{ckpt}", "--json", "{tmp}/garbage.pt/out.json"],
     "cannot write {tmp}/garbage.pt: {tmp}/garbage.pt is a file, not a folder"),
    (["--checkpoint", "{relative}"], "the data.root it was trained on, ../s1, is not a directory from {tmp}; "
                                     "run from where it trained, or pass --data"),
    (["--campaign", "{tmp}/c.yaml"], "--variant is needed with --campaign"),
    (["--checkpoint", "{ckpt}", "--trial", "3", "--stage", "full"],
     "--stage, --trial pick a trial of --campaign; with --checkpoint there is none to pick"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args: list[str], message: str, trained: Path,
                                                         tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if message.startswith("device:") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    state = load_checkpoint(trained)
    state["config"]["data"]["root"] = "../s1"  # as `sarsweep train` run from another folder recorded it
    torch.save(state, tmp_path / "relative.pt")
    before = sorted(tmp_path.rglob("*"))
    fill = {"tmp": str(tmp_path), "ckpt": str(trained), "relative": str(tmp_path / "relative.pt")}
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", *(a.format(**fill) for a in args)])
    err = capfd.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("sarsweep: error: " + message.format(**fill)), err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_campaign_trial_is_found_through_storage_even_after_its_artifacts_moved(
        pg_url: str, write_campaign, tmp_path: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from search.campaign.config import load_campaign
    from search.running.worker import run_worker
    from storage import open_storage

    monkeypatch.chdir(tmp_path)  # in process (torch is loaded already): the default artifacts root is here
    monkeypatch.delenv("SARSWEEP_ARTIFACTS", raising=False)
    path = write_campaign(quick={"trials": 2})
    assert main(["init", "--campaign", str(path), "--storage", pg_url]) == 0
    storage = open_storage(pg_url)
    run_worker(storage, load_campaign(path), "baseline", "quick", tmp_path / "art", progress=False)
    best = optuna.load_study(study_name="t.baseline.quick", storage=storage).best_trial
    args = ["evaluate", "--campaign", str(path), "--variant", "baseline", "--storage", pg_url]
    capfd.readouterr()

    assert main(args) == 0
    out = capfd.readouterr().out.splitlines()
    assert out[0].startswith(f"t.baseline.quick trial {best.number} (value {best.value:.4f}): ")
    assert out[-1].startswith(f"PSNR {best.user_attrs['val_psnr']:.2f} dB")

    # The artifacts as another machine mounts them: the recorded path is gone, --artifacts finds them.
    shutil.move(tmp_path / "art", tmp_path / "mounted")
    assert main(args) == 2
    recorded = best.user_attrs["checkpoint"]
    assert capfd.readouterr().err.strip() == (
        f"sarsweep: error: trial {best.number} of t.baseline.quick: its checkpoint is neither at {recorded} nor at "
        f"sarsweep-artifacts/t/baseline/quick/trial_{best.number:04d}/best.pt; pass --artifacts (or set "
        "$SARSWEEP_ARTIFACTS) to where it lies")
    assert main([*args, "--artifacts", str(tmp_path / "mounted")]) == 0
    assert capfd.readouterr().out.splitlines()[-1] == out[-1]


def test_a_run_split_by_tiles_scores_held_out_rasters_whole_and_per_file(tsx: Path, tmp_path: Path) -> None:
    """Validation by tiles drops windows across tile borders; held-out rasters are no split, so
    `--data` scores every window, per file."""
    data = {"root": str(tsx), "include": ["entire_sar2sar_noisy.png"], "patch_size": 32, "split": "tiles",
            "tile_size": 128}
    best = train(TrainConfig.from_dict(tiny_config_dict(tmp_path / "run", data=data)), progress=False).best_path
    own = evaluate(best)
    assert {f.file.split("@")[0] for f in own.files} == {"entire_sar2sar_noisy.png"} and len(own.files) >= 2
    held = evaluate(best, data=str(tsx), include=["crop_noisy_test_image_data.png"], stride=16)
    assert [f.file for f in held.files] == ["crop_noisy_test_image_data.png"]
    # Every window of the 760 x 664 rendering, and one more flush with each far border (632 and
    # 728 are no multiples of 16): every pixel is scored, and the count says so.
    assert held.patches == ((664 - 32) // 16 + 2) * ((760 - 32) // 16 + 2)
    assert held.pixels == held.pixels_total == 760 * 664 and held.files[0].pixels == 760 * 664


def test_a_sentinel1_model_scored_per_file_on_terrasarx_renderings(trained: Path, tsx: Path, tmp_path: Path) -> None:
    """The cross-sensor form docs/data.md shows: --include picks the PNG renderings only, --per-file
    gives one row each, --json holds the same figures."""
    pngs = sorted(p.name for p in tsx.glob("*.png"))
    done = run_cli("evaluate", "--checkpoint", str(trained), "--per-file", "--data", str(tsx), "--include", "*.png",
                   "--json", str(tmp_path / "scores.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "scores.json").read_text())
    assert sorted(Path(f["file"]).name for f in figures["files"]) == pngs and len(pngs) == 4
    assert sum(f["patches"] for f in figures["files"]) == figures["patches"] > 0
    for row in figures["files"]:
        assert f"{row['psnr']:.2f}" in done.stdout


def test_train_and_evaluate_count_the_validation_files_alike(s1: Path, tmp_path: Path) -> None:
    """With data.val_max_patches keeping a subset, training said "256 validation patches from 324
    files" (the split's files) where evaluate said "256 patches from 189 file(s)" (the files they
    come from): both now count the files the scored patches come from."""
    from training.data import describe_split, load_data

    data = {"root": str(s1), "include": ["*/Patch/*.tif"], "patch_size": 16, "val_max_patches": 12}
    cfg = TrainConfig.from_dict(tiny_config_dict(tmp_path / "run", epochs=1, data=data))
    split = load_data(cfg.data, cfg.fraction)
    line = describe_split(split, cfg.data, cfg.fraction)
    result = evaluate(train(cfg, progress=False).best_path)
    assert result.patches == len(split.val) == 12
    assert len(result.files) == split.val_patch_files < len(split.val_files)
    assert f"from {len(result.files)} of the {len(split.val_files)} files held for validation" in line, line
    assert f"(a fixed 12 of {split.total_val_patches:,}, data.val_max_patches)" in line
