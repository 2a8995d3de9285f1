"""Split by file, nested deterministic subsets, the patch cache, and the synthetic generator."""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.trained import extract_patches

import training.data.dataset as dataset
from errors import ConfigError, DataError, RasterReadError
from training.config import DataConfig, SyntheticConfig
from training.data import describe_split, load_data, nested_subset, prepare, split
from training.data.readers import read_raster
from training.data.synthetic import reflectivity, speckled_scene
from training.files import write_npy_rows


def s1_cfg(s1: Path, **kw: object) -> DataConfig:
    return DataConfig(root=str(s1), include=["*/Patch/*.tif"], patch_size=16, **kw)  # type: ignore[arg-type]


def rows(a: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in a}


@pytest.fixture
def chips(s1: Path, tmp_path: Path) -> Path:
    """A private copy of eight real chips, so tests may change and break files."""
    folder = tmp_path / "chips"
    folder.mkdir()
    for src in sorted((s1 / "S1A_IW_GRDH_1SSV_20160131T204259_20160131T204324_009743_00E3C6_E792" / "Patch").glob("*.tif"))[:8]:
        shutil.copy(src, folder / src.name)
    return folder


def test_no_patch_of_a_validation_file_ever_trains(s1: Path) -> None:
    cfg = s1_cfg(s1)
    prepared = prepare(cfg)
    data = split(prepared, cfg, 1.0)
    assert set(data.train_files).isdisjoint(data.val_files)
    assert len(data.train_files) + len(data.val_files) == len(prepared.files)
    owner = {prepared.patches[i].tobytes(): prepared.files[prepared.patch_file[i]] for i in range(len(prepared.patches))}
    assert {owner[r] for r in rows(data.val)} <= set(data.val_files)
    assert {owner[r] for r in rows(data.train)} <= set(data.train_files)
    assert rows(data.train).isdisjoint(rows(data.val))


def test_split_and_subsets_are_deterministic_for_a_seed(s1: Path) -> None:
    a, b = load_data(s1_cfg(s1), 0.2), load_data(s1_cfg(s1), 0.2)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.val, b.val)
    other = load_data(s1_cfg(s1, seed=1), 0.2)
    assert other.val_files != a.val_files


def test_fraction_subsets_are_nested(s1: Path) -> None:
    small, medium, full = (load_data(s1_cfg(s1), f) for f in (0.05, 0.2, 1.0))
    n = full.total_train_patches
    assert len(small.train) == int(0.05 * n) and len(medium.train) == int(0.2 * n) and len(full.train) == n
    assert rows(small.train) <= rows(medium.train) <= rows(full.train)
    np.testing.assert_array_equal(small.val, full.val)  # validation never depends on the fraction


@pytest.mark.parametrize("n", [1, 7, 100, 1001])
def test_nested_subset_indices(n: int) -> None:
    subsets = [set(nested_subset(n, f, seed=4).tolist()) for f in (0.05, 0.2, 0.5, 1.0)]
    assert all(a <= b for a, b in itertools.pairwise(subsets))
    assert subsets[-1] == set(range(n))


def test_val_max_patches_caps_validation_with_a_fixed_subset(s1: Path) -> None:
    capped = load_data(s1_cfg(s1, val_max_patches=50), 1.0)
    assert len(capped.val) == 50
    assert rows(capped.val) <= rows(load_data(s1_cfg(s1), 1.0).val)


def test_second_prepare_reads_the_cache_not_the_rasters(chips: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DataConfig(root=str(chips), patch_size=16)
    first = prepare(cfg)

    def no_decoding(*_: object) -> None:
        raise AssertionError("rasters decoded again")

    monkeypatch.setattr(dataset, "read_raster", no_decoding)
    second = prepare(cfg)
    assert isinstance(second.patches, np.memmap) and second.cache_path is not None
    np.testing.assert_array_equal(np.asarray(second.patches), first.patches)
    assert not list(second.cache_path.parent.glob(".*.tmp"))


def test_cache_is_rebuilt_when_a_file_changes(chips: Path) -> None:
    cfg = DataConfig(root=str(chips), patch_size=16)
    before = prepare(cfg)
    victim = sorted(chips.glob("*.tif"))[0]
    victim.unlink()
    after = prepare(cfg)
    assert victim.name in before.files and victim.name not in after.files
    assert after.cache_path != before.cache_path


def test_corrupt_file_raises_naming_it_or_is_skipped(chips: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = chips / "Zzz_broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(RasterReadError, match="Zzz_broken.tif"):
        prepare(DataConfig(root=str(chips), patch_size=16))
    with caplog.at_level(logging.WARNING, logger="sarsweep.data"):
        prepared = prepare(DataConfig(root=str(chips), patch_size=16, on_error="skip"))
    assert prepared.skipped == ["Zzz_broken.tif"] and len(prepared.files) == 8
    assert any("Zzz_broken.tif" in r.getMessage() for r in caplog.records)


def test_chips_smaller_than_a_patch_are_skipped_or_padded(chips: Path) -> None:
    import tifffile

    big_enough = {p.name for p in chips.glob("*.tif") if min(tifffile.imread(p).shape[:2]) >= 64}
    assert 0 < len(big_enough) < 8
    skip = prepare(DataConfig(root=str(chips), patch_size=64, small_chips="skip"))
    pad = prepare(DataConfig(root=str(chips), patch_size=64, small_chips="pad"))
    assert set(skip.files) == big_enough and len(pad.files) == 8
    assert pad.patches.shape[1:] == (1, 64, 64)


def test_empty_results_say_what_produced_nothing(chips: Path, tmp_path: Path) -> None:
    # Eight chips were read, all too small; it used to say "from 0 readable file(s)".
    with pytest.raises(DataError, match="no patch of patch_size 512, stride 512 could be cut: the 8 readable "
                                        "file[(]s[)] are all smaller than 512 px; lower data.patch_size"):
        load_data(DataConfig(root=str(chips), patch_size=512))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a.tif", "b.tif"):
        (broken / name).write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match=r"none of the 2 file\(s\) data.include matched could be read "
                                        r"\(data.on_error: skip left them all out, e.g. a.tif\)"):
        load_data(DataConfig(root=str(broken), on_error="skip"))
    with pytest.raises(DataError, match=r"fraction 0.001 of \d+ training patches \(patch_size 16, stride 16\) selects no patch"):
        load_data(DataConfig(root=str(chips), patch_size=16), 0.001)
    with pytest.raises(DataError, match=f"data.root: directory not found: {tmp_path}/absent$"):
        load_data(DataConfig(root=str(tmp_path / "absent")))
    # A relative root is taken from the current folder (not the config file's): the message says which.
    with contextlib.chdir(tmp_path), pytest.raises(DataError, match=rf"data.root: directory not found: "
                                                                     rf"\.\./absent \(from {tmp_path}\)$"):
        load_data(DataConfig(root="../absent"))
    with pytest.raises(DataError, match=r"data.include: no file under .* matches \*\*/\*.h5"):
        load_data(DataConfig(root=str(chips), include=["**/*.h5"]))


def test_extract_patches_counts_and_positions() -> None:
    image = np.arange(40 * 50, dtype=np.float32).reshape(1, 40, 50)
    patches = extract_patches(image, 16, 8)
    assert patches.shape == (4 * 5, 1, 16, 16)
    np.testing.assert_array_equal(patches[1, 0], image[0, 0:16, 8:24])
    padded = extract_patches(image[:, :10, :12], 16, 16, small="pad")
    assert padded.shape == (1, 1, 16, 16)
    np.testing.assert_array_equal(padded[0, 0, :10, :12], image[0, :10, :12])
    assert extract_patches(image[:, :10, :12], 16, 16, small="skip").shape == (0, 1, 16, 16)


def test_synthetic_speckle_is_gamma_with_l_looks() -> None:
    looks = 4
    scene = speckled_scene(np.random.default_rng(11), 256, looks, channels=1)
    truth = reflectivity(np.random.default_rng(11), 256)  # the same draws come first
    ratio = scene[..., 0].astype(np.float64) ** 2 / truth
    assert abs(ratio.mean() - 1.0) < 0.02
    assert abs(ratio.var() - 1.0 / looks) < 0.02


def test_synthetic_data_is_repeatable_and_seeded() -> None:
    a = load_data(DataConfig(synthetic=SyntheticConfig(scenes=4, size=32, seed=1), patch_size=16))
    b = load_data(DataConfig(synthetic=SyntheticConfig(scenes=4, size=32, seed=1), patch_size=16))
    c = load_data(DataConfig(synthetic=SyntheticConfig(scenes=4, size=32, seed=2), patch_size=16))
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.array_equal(a.train, c.train)
    dual = load_data(DataConfig(synthetic=SyntheticConfig(scenes=4, size=32), channels=2, patch_size=16))
    assert dual.train.shape[1] == 2


@pytest.mark.parametrize(("patch_size", "stride"), [(16, 8), (64, 64)])
def test_the_cache_holds_each_files_windows_in_order_written_raster_by_raster(
        chips: Path, tsx: Path, patch_size: int, stride: int) -> None:
    """Preparation streams rows of windows into the .npy; the result must be what cutting each
    file whole and concatenating gives (at 64 px some chips are too small and are left out)."""
    for npy in sorted(tsx.glob("*.npy")):
        shutil.copy(npy, chips / npy.name)
    cfg = DataConfig(root=str(chips), include=["*.tif", "*.npy"], patch_size=patch_size, stride=stride)
    prepared = prepare(cfg)
    expected = [(p.name, extract_patches(read_raster(p, cfg), patch_size, stride))
                for p in sorted([*chips.glob("*.tif"), *chips.glob("*.npy")])]
    expected = [(name, patches) for name, patches in expected if len(patches)]
    assert prepared.files == [name for name, _ in expected]
    np.testing.assert_array_equal(np.load(prepared.cache_path), np.concatenate([p for _, p in expected]))
    owners = np.concatenate([np.full(len(p), i) for i, (_, p) in enumerate(expected)])
    np.testing.assert_array_equal(prepared.patch_file, owners)
    if patch_size == 64:
        assert len(prepared.files) < len(list(chips.iterdir()))  # the small chips really were left out


def test_npy_rows_are_a_valid_npy_whatever_the_count(tmp_path: Path) -> None:
    chunks = [np.random.default_rng(i).random((n, 2, 3), dtype=np.float32) for i, n in enumerate((5, 0, 1_000))]
    assert write_npy_rows(tmp_path / "a.npy", iter(chunks), (2, 3)) == 1005
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.concatenate(chunks))
    assert write_npy_rows(tmp_path / "empty.npy", iter([]), (2, 3)) == 0
    assert np.load(tmp_path / "empty.npy", mmap_mode="r").shape == (0, 2, 3)
    with pytest.raises(ValueError, match=r"chunk of shape \(1, 3, 2\), expected rows of \(2, 3\)"):
        write_npy_rows(tmp_path / "bad.npy", iter([np.zeros((1, 3, 2))]), (2, 3))


def test_one_large_scene_is_split_by_tiles_with_no_pixel_in_both(tsx: Path) -> None:
    """A single scene cannot be split by file. split: tiles holds out whole tiles; the windows
    across a tile border (which would share pixels between train and validation) are dropped."""
    scene = "entire_sar2sar_noisy.png"  # a real 1000 x 500 rendering
    by_file = DataConfig(root=str(tsx), include=[scene], patch_size=32, stride=16)
    with pytest.raises(DataError, match="got 1; to hold out parts of one large scene, set data.split: tiles"):
        load_data(by_file)
    cfg = DataConfig(root=str(tsx), include=[scene], patch_size=32, stride=16, split="tiles", tile_size=128)
    prepared = prepare(cfg)
    image = read_raster(tsx / scene, cfg)
    assert image.shape == (1, 500, 1000)
    tiles = [(top, left) for top in range(0, 500, 128) for left in range(0, 1000, 128)]
    assert prepared.files == [f"{scene}@y{t}x{x}" for t, x in tiles]  # all 32 tiles hold patches
    for group, (top, left) in enumerate(tiles):  # each tile's patches: its own windows, nothing else
        mine = np.asarray(prepared.patches[prepared.patch_file == group])
        np.testing.assert_array_equal(mine, extract_patches(image[:, top : top + 128, left : left + 128], 32, 16))
    every = extract_patches(image, 32, 16)
    assert len(every) - len(prepared.patches) > 0  # the windows across tile borders
    data = split(prepared, cfg, 1.0)
    assert not set(data.train_files) & set(data.val_files) and len(data.val_files) == round(0.2 * 32)
    assert describe_split(data, cfg, 1.0) == (
        f"data: {len(data.train):,} training patches from 26 tiles, {len(data.val):,} validation patches from "
        f"6 tiles; {len(every) - len(prepared.patches):,} across tile borders left out")
    assert len(data.train) + len(data.val) == len(prepared.patches)
    with pytest.raises(ConfigError, match=r"tile_size: must be at least patch_size 32, got 16"):
        DataConfig(patch_size=32, split="tiles", tile_size=16)
    assert DataConfig(patch_size=2048).tile_size == 1024  # unused by split: files, so not refused
