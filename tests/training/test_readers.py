"""Every format and kind in ../shared/data/sar, and broken files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from errors import RasterReadError
from training.config import DataConfig
from training.data.readers import normalise, read_raster

GRD_DUAL = "S1A_IW_GRDH_1SDV_20150823T221233_20150823T221258_007396_00A2CA_54D0/Patch/Cargo_x10661_y11170.tif"
GRD_SINGLE = "S1A_IW_GRDH_1SSV_20160131T204259_20160131T204324_009743_00E3C6_E792/Patch/Cargo_x10109_y8125.tif"
SLC_SINGLE = "S1A_IW_SLC__1SSV_20150217T204257_20150217T204324_004668_005C34_2DC9/Patch/Cargo_x24622_y4443.tif"
SLC_DUAL = "S1A_IW_SLC__1SDV_20160606T221231_20160606T221258_011596_011B8A_3FF3/Patch/Cargo_x25277_y9768.tif"
CAL_WITH_ZEROS = "S1A_IW_SLC__1SDV_20160606T221231_20160606T221258_011596_011B8A_3FF3/Patch_Cal/Cargo_x25277_y9768.tif"
PCT = [1.0, 99.0]


def cfg(**kw: object) -> DataConfig:
    return DataConfig(**kw)  # type: ignore[arg-type]


def test_grd_dual_pol_amplitude_keeps_both_bands_or_the_chosen_one(s1: Path) -> None:
    raw = tifffile.imread(s1 / GRD_DUAL)
    both = read_raster(s1 / GRD_DUAL, cfg(channels=2))
    assert both.shape == (2, *raw.shape[:2]) and both.dtype == np.float32
    np.testing.assert_array_equal(read_raster(s1 / GRD_DUAL, cfg(channels=1, band=-1))[0], both[1])
    np.testing.assert_array_equal(read_raster(s1 / GRD_DUAL, cfg(channels=1, band=0))[0], both[0])
    np.testing.assert_allclose(both, normalise(np.moveaxis(raw, -1, 0).astype(np.float64), PCT))


def test_normalised_values_span_zero_to_one_with_percentile_clipping(s1: Path) -> None:
    band = read_raster(s1 / GRD_SINGLE, cfg())[0]
    assert band.min() == 0.0 and band.max() == 1.0
    assert 0.005 <= float((band == 0.0).mean()) <= 0.03  # ~1 % clipped at the low percentile
    assert 0.005 <= float((band == 1.0).mean()) <= 0.03


def test_single_pol_raster_cannot_feed_two_channels(s1: Path) -> None:
    with pytest.raises(RasterReadError, match=f"{GRD_SINGLE}: has 1 polarisation band.*data.channels is 2"):
        read_raster(s1 / GRD_SINGLE, cfg(channels=2))


def test_slc_iq_pairs_become_amplitude(s1: Path) -> None:
    iq = tifffile.imread(s1 / SLC_SINGLE).astype(np.float64)
    assert (iq < 0).any()  # what auto-detection keys on
    expected = normalise(np.hypot(iq[..., 0], iq[..., 1])[None], PCT)
    np.testing.assert_allclose(read_raster(s1 / SLC_SINGLE, cfg()), expected)
    np.testing.assert_allclose(read_raster(s1 / SLC_SINGLE, cfg(kind="complex")), expected)


def test_slc_dual_pol_four_bands_are_two_iq_pairs(s1: Path) -> None:
    iq = np.moveaxis(tifffile.imread(s1 / SLC_DUAL), -1, 0).astype(np.float64)
    out = read_raster(s1 / SLC_DUAL, cfg(channels=2))
    np.testing.assert_allclose(out, normalise(np.hypot(iq[0::2], iq[1::2]), PCT))


def test_iq_data_declared_amplitude_is_refused(s1: Path) -> None:
    with pytest.raises(RasterReadError, match="amplitude raster has negative values; is it complex"):
        read_raster(s1 / SLC_SINGLE, cfg(kind="amplitude"))


def test_sigma0_intensity_with_exact_zeros_stays_finite(s1: Path) -> None:
    raw = tifffile.imread(s1 / CAL_WITH_ZEROS)
    assert (raw == 0).any()
    out = read_raster(s1 / CAL_WITH_ZEROS, cfg(kind="intensity", channels=2))
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    # log(sqrt(I)) = log(I)/2: after percentile scaling, intensity and amplitude readings agree.
    np.testing.assert_allclose(out, read_raster(s1 / CAL_WITH_ZEROS, cfg(kind="amplitude", channels=2)), atol=1e-5)


def test_npy_complex_pairs_match_the_amplitude_file(tsx: Path, tmp_path: Path) -> None:
    from_pairs = read_raster(tsx / "test_image_data.npy", cfg())
    from_amplitude = read_raster(tsx / "noisy_test_image_data.npy", cfg())
    assert from_pairs.shape == (1, 256, 256)
    np.testing.assert_allclose(from_pairs, from_amplitude, atol=1e-4)
    pairs = np.load(tsx / "test_image_data.npy")
    np.save(tmp_path / "complex.npy", (pairs[..., 0] + 1j * pairs[..., 1]).astype(np.complex64))
    np.testing.assert_allclose(read_raster(tmp_path / "complex.npy", cfg()), from_pairs, atol=1e-5)


@pytest.mark.parametrize("name", ["entire_sar2sar_noisy.png", "entire_noisy.png", "crop_noisy_test_image_data.png"])
def test_png_renderings_follow_the_normalisation_options(tsx: Path, name: str, tmp_path: Path) -> None:
    """Renderings were only divided by 255, whatever clip_percentiles, kind and nodata said. Under
    kind auto their display values are clipped at the percentiles and scaled (no log); kind
    amplitude reads them as physical values, exactly as the same numbers in a .npy read."""
    pixels = np.asarray(Image.open(tsx / name))
    grey = (pixels if pixels.ndim == 2 else pixels[..., 0]).astype(np.float64)  # RGBA with grey content
    lo, hi = np.percentile(grey, [1.0, 99.0])
    out = read_raster(tsx / name, cfg())
    assert out.shape == (1, *grey.shape)
    np.testing.assert_allclose(out[0], np.clip((grey - lo) / (hi - lo), 0, 1), atol=1e-6)
    lo, hi = grey.min(), grey.max()
    np.testing.assert_allclose(read_raster(tsx / name, cfg(clip_percentiles=[0.0, 100.0]))[0],
                               (grey - lo) / (hi - lo), atol=1e-6)
    np.save(tmp_path / "same.npy", grey)
    for kind in ("amplitude", "intensity"):
        np.testing.assert_array_equal(read_raster(tsx / name, cfg(kind=kind)), read_raster(tmp_path / "same.npy",
                                                                                            cfg(kind=kind)))
    dark = read_raster(tsx / name, cfg(nodata=float(grey.min())))  # the darkest grey value as no data
    assert np.isnan(dark[0][grey == grey.min()]).all() and np.isfinite(dark[0][grey != grey.min()]).all()


def test_a_rendering_refuses_kind_complex_and_says_once_that_colour_was_converted(
        tsx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(RasterReadError, match=r"data\.kind: complex does not apply to a PNG/JPEG rendering"):
        read_raster(tsx / "crop_noisy_test_image_data.png", cfg(kind="complex"))
    rgb = np.asarray(Image.open(tsx / "coordinates_noisy_test_image_data.png").convert("L"))
    coloured = np.stack([rgb, rgb // 2, rgb // 3], axis=-1).astype(np.uint8)
    Image.fromarray(coloured).save(tmp_path / "colour.png")
    (tmp_path / "rgba.png").symlink_to(tsx / "entire_noisy.png")  # a path this process has not read yet
    with caplog.at_level("WARNING", logger="sarsweep.data"):
        for _ in range(2):
            out = read_raster(tmp_path / "colour.png", cfg(clip_percentiles=[0.0, 100.0]))
        read_raster(tmp_path / "rgba.png", cfg())
    said = [r.getMessage() for r in caplog.records]
    assert said.count(f"{tmp_path / 'colour.png'} is a RGB picture: read as one band, colour averaged (mean of R, "
                      "G, B)") == 1  # once, not at every read
    assert f"{tmp_path / 'rgba.png'} is a RGBA picture: read as one band, its grey band kept, alpha dropped" in said
    mean = coloured.astype(np.float64).mean(axis=-1)
    np.testing.assert_allclose(out[0], (mean - mean.min()) / (mean.max() - mean.min()), atol=1e-6)


def test_every_sample_file_reads_into_the_unit_interval(sar_data: Path) -> None:
    files = [p for p in sorted(sar_data.rglob("*")) if p.suffix in {".tif", ".npy", ".png"}]
    assert len(files) >= 700
    for path in files:
        out = read_raster(path, cfg())
        assert out.ndim == 3 and out.shape[0] == 1, path
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0, path


def _truncated(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[:300])
    return dst


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d, s1, tsx: _truncated(s1 / GRD_DUAL, d / "truncated.tif"), "cannot read SAR raster"),
        (lambda d, s1, tsx: (d / "junk.tif").write_bytes(b"not a tiff at all" * 10) and d / "junk.tif", "TiffFileError"),
        (lambda d, s1, tsx: _truncated(tsx / "noisy_test_image_data.npy", d / "cut.npy"), "cannot read SAR raster"),
        (lambda d, s1, tsx: _truncated(tsx / "entire_noisy.png", d / "cut.png"), "cannot read SAR raster"),
        (lambda d, s1, tsx: np.save(d / "pickled.npy", np.array([{"a": 1}], dtype=object)) or d / "pickled.npy",
         "Object arrays cannot be loaded"),
        (lambda d, s1, tsx: np.save(d / "line.npy", np.ones(5)) or d / "line.npy", "expected a 2-D or 3-D array"),
        (lambda d, s1, tsx: np.save(d / "odd.npy", -np.ones((9, 9, 3))) or d / "odd.npy", "I/Q band pairs"),
        (lambda d, s1, tsx: (d / "notes.txt").write_text("x") and d / "notes.txt", "unsupported file type"),
    ],
)
def test_broken_files_are_named(tmp_path: Path, s1: Path, tsx: Path, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path, s1, tsx)
    with pytest.raises(RasterReadError, match=reason) as err:
        read_raster(path, cfg())
    assert str(path) in str(err.value)


def test_channels_first_arrays_are_accepted(s1: Path, tmp_path: Path) -> None:
    raw = tifffile.imread(s1 / GRD_DUAL)
    np.save(tmp_path / "chw.npy", np.moveaxis(raw, -1, 0))
    shutil.copy(s1 / GRD_DUAL, tmp_path / "hwc.tif")
    np.testing.assert_array_equal(read_raster(tmp_path / "chw.npy", cfg(channels=2)),
                                  read_raster(tmp_path / "hwc.tif", cfg(channels=2)))


BIG_GRD = "S1A_IW_GRDH_1SDV_20161018T095407_20161018T095432_013543_015ACD_AB15/Patch/Tanker_x15342_y11582.tif"


def _bordered(chip: np.ndarray, top: int, left: int, size: tuple[int, int], fill: float) -> np.ndarray:
    """`chip` (H, W, C) placed at (top, left) in a `size` scene of `fill`, as a scene's edge is."""
    scene = np.full((*size, chip.shape[2]), fill, dtype=chip.dtype)
    scene[top : top + chip.shape[0], left : left + chip.shape[1]] = chip
    return scene


def test_a_no_data_border_is_left_out_of_the_normalisation_and_its_patches_dropped(s1: Path, tmp_path: Path) -> None:
    """A GRD scene's edge is zero-filled and tagged GDAL_NODATA=0. Counted as data, the border
    pulled the 1st percentile down to the smallest value and squeezed the real pixels' range."""
    from errors import DataError
    from training.data import describe_split, load_data, prepare, split

    chip = tifffile.imread(s1 / BIG_GRD)  # 185 x 185 x [VH, VV] DN, no zeros of its own
    alone = read_raster(s1 / BIG_GRD, cfg())
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    tifffile.imwrite(scenes / "edge.tif", _bordered(chip, 40, 100, (256, 320), 0.0),
                     extratags=[(42113, "s", 0, "0", True)])  # how GDAL writes a no-data value
    edge = read_raster(scenes / "edge.tif", cfg())
    np.testing.assert_array_equal(edge[:, 40:225, 100:285], alone)  # the same figures as without the border
    border = np.ones(edge.shape[1:], bool)
    border[40:225, 100:285] = False
    assert np.isnan(edge[:, border]).all()
    counted = read_raster(scenes / "edge.tif", cfg(nodata=None))  # the border as data: as before
    assert not np.isnan(counted).any() and np.abs(counted[:, 40:225, 100:285] - alone).max() > 0.05

    prepared = prepare(cfg(root=str(scenes), include=["*.tif"], patch_size=32, stride=32))
    # Patches (top, left) at multiples of 32 in 256 x 320; keep those at most 10 % border.
    kept = [(y, x) for y in range(0, 225, 32) for x in range(0, 289, 32)
            if (~border[y : y + 32, x : x + 32]).mean() >= 0.9]
    assert len(prepared.patches) == len(kept) and prepared.nodata_dropped == 80 - len(kept)
    assert not np.isnan(prepared.patches).any() and len(kept) >= 16
    whole = cfg(root=str(scenes), include=["*.tif"], patch_size=256, stride=64)  # each window is half border
    with pytest.raises(DataError, match=re.escape("no patch of patch_size 256, stride 64 has data: all 2 were more "
                                                  "than 10% no-data pixels (data.max_nodata; data.nodata is 'auto')")):
        split(prepare(whole), whole, 1.0)
    shutil.copy(scenes / "edge.tif", scenes / "edge2.tif")  # two scenes: one to train, one to validate on
    both = cfg(root=str(scenes), include=["*.tif"], patch_size=32, stride=32)
    assert describe_split(load_data(both), both, 1.0) == (
        f"data: {len(kept)} training patches from 1 file, {len(kept)} validation patches from 1 file; "
        f"{2 * (80 - len(kept))} patches left out as more than 10% no-data")


def test_nan_is_no_data_and_a_set_value_too(s1: Path, tmp_path: Path) -> None:
    chip = tifffile.imread(s1 / BIG_GRD)
    alone = read_raster(s1 / BIG_GRD, cfg())
    for name, fill, extra in (("nan.npy", np.nan, {}), ("minus.npy", -9999.0, {"nodata": -9999})):
        np.save(tmp_path / name, _bordered(chip, 10, 20, (200, 210), fill))
        read = read_raster(tmp_path / name, cfg(**extra))  # -9999 is not read as a sign of I/Q data
        np.testing.assert_array_equal(read[:, 10:195, 20:205], alone)
        assert np.isnan(read[:, :10]).all() and np.isnan(read[:, :, :20]).all()


def test_bad_no_data_settings_name_the_field(s1: Path, tmp_path: Path) -> None:
    from errors import ConfigError
    from training.config import TrainConfig

    for data, message in (({"max_nodata": 1.0}, "data.max_nodata: must be in [0, 1), got 1.0"),
                          ({"nodata": ".nan"}, "data.nodata: expected one of float | 'auto' | null, got '.nan'"),
                          ({"nodata": float("inf")}, "data.nodata: must be a finite number, auto or null")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            TrainConfig.from_dict({"data": data})
    tifffile.imwrite(tmp_path / "odd.tif", tifffile.imread(s1 / BIG_GRD), extratags=[(42113, "s", 0, "none", True)])
    with pytest.raises(RasterReadError, match="its GDAL_NODATA tag 'none' is not a number; set data.nodata"):
        read_raster(tmp_path / "odd.tif", cfg())
    assert read_raster(tmp_path / "odd.tif", cfg(nodata=None)).shape == (1, 185, 185)


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits"])
def test_compressed_geotiffs_read_as_the_uncompressed_file(s1: Path, tmp_path: Path, compression: str) -> None:
    """GDAL users write LZW (or Deflate, ZSTD); without imagecodecs tifffile could not decode
    LZW at all ("requires the 'imagecodecs' package")."""
    raw = tifffile.imread(s1 / GRD_DUAL)
    tifffile.imwrite(tmp_path / "c.tif", raw, compression=compression)
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        assert tif.pages[0].compression.name != "NONE"
    np.testing.assert_array_equal(read_raster(tmp_path / "c.tif", cfg(channels=2)), read_raster(s1 / GRD_DUAL, cfg(channels=2)))
