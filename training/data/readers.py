"""Read one SAR raster into normalised bands: (C, H, W) float32 in [0, 1].

GeoTIFF (tifffile) and .npy hold physical values: complex (complex dtype, or I/Q channel pairs),
amplitude or intensity. They become amplitude, then log, then are clipped at per-band robust
percentiles and scaled to [0, 1]. PNG/JPEG are 8-bit renderings that are already scaled: they
are only divided by their dtype's maximum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import DataConfig
from training.errors import RasterReadError

PHYSICAL_SUFFIXES = {".tif", ".tiff", ".npy"}
RENDERING_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_BANDS = 16


def load_array(path: Path) -> np.ndarray:
    """The file's raw array; any failure to decode is a RasterReadError naming the file."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix in RENDERING_SUFFIXES:
            from PIL import Image

            with Image.open(path) as image:
                return np.asarray(image)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:  # what the decoders raise on junk
        raise RasterReadError(path, f"{exc.__class__.__name__}: {exc}") from None
    raise RasterReadError(path, f"unsupported file type {suffix!r}")


def channels_first(arr: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) or (H, W, C) or (C, H, W) -> (C, H, W); the band axis is the short one."""
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise RasterReadError(path, f"expected a 2-D or 3-D array, got shape {arr.shape}")
    if arr.shape[-1] <= MAX_BANDS and arr.shape[-1] < min(arr.shape[:2]):
        return np.moveaxis(arr, -1, 0)
    if arr.shape[0] <= MAX_BANDS and arr.shape[0] < min(arr.shape[1:]):
        return arr
    raise RasterReadError(path, f"cannot tell the band axis of shape {arr.shape}")


def to_amplitude(bands: np.ndarray, kind: str, path: Path) -> np.ndarray:
    """Physical bands -> amplitude bands (float64), according to `kind`."""
    if np.iscomplexobj(bands):
        return np.abs(bands).astype(np.float64)
    if not np.issubdtype(bands.dtype, np.number) or bands.dtype == np.bool_:
        raise RasterReadError(path, f"unsupported dtype {bands.dtype}")
    values = np.nan_to_num(bands.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    has_negative = bool((values < 0).any())
    if kind == "complex" or (kind == "auto" and has_negative):
        if values.shape[0] % 2:
            raise RasterReadError(
                path, f"complex data needs I/Q band pairs, got {values.shape[0]} band(s)"
                + (" with negative values" if kind == "auto" else ""),
            )
        return np.hypot(values[0::2], values[1::2])
    if has_negative:
        raise RasterReadError(path, f"{kind} raster has negative values; is it complex (kind: complex)?")
    return np.sqrt(values) if kind == "intensity" else values


def normalise(amplitude: np.ndarray, percentiles: list[float]) -> np.ndarray:
    """Per band: log-amplitude, clipped at the given percentiles, scaled to [0, 1]."""
    out = np.zeros(amplitude.shape, dtype=np.float32)
    for i, band in enumerate(amplitude):
        positive = band[band > 0]
        if positive.size == 0:
            continue
        # Zeros (no-data, or exact zeros in sigma0) take the smallest real value, not -inf.
        log_band = np.log(np.maximum(band, positive.min()))
        lo, hi = np.percentile(log_band, percentiles)
        if hi > lo:
            out[i] = np.clip((log_band - lo) / (hi - lo), 0.0, 1.0)
    return out


def select_bands(bands: np.ndarray, cfg: DataConfig, path: Path) -> np.ndarray:
    """Keep `cfg.channels` bands: all of them, or band `cfg.band` when one is wanted."""
    n = bands.shape[0]
    if n == cfg.channels:
        return bands
    if cfg.channels == 1:
        if not -n <= cfg.band < n:
            raise RasterReadError(path, f"data.band {cfg.band} is out of range for {n} band(s)")
        return bands[cfg.band : cfg.band + 1 or None]
    raise RasterReadError(path, f"has {n} polarisation band(s); data.channels is {cfg.channels}")


def read_rendering(arr: np.ndarray, path: Path) -> np.ndarray:
    """8-bit (or 16-bit) picture -> one band in [0, 1]; colour is averaged, alpha dropped."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise RasterReadError(path, f"expected an integer image, got dtype {arr.dtype}")
    scale = float(np.iinfo(arr.dtype).max)
    if arr.ndim == 3:
        colour = arr[..., :3] if arr.shape[-1] in (3, 4) else arr[..., :1]
        arr = colour.mean(axis=-1)
    elif arr.ndim != 2:
        raise RasterReadError(path, f"unexpected image shape {arr.shape}")
    return (arr / scale).astype(np.float32)[None]


def read_raster(path: str | Path, cfg: DataConfig) -> np.ndarray:
    """One file -> (cfg.channels, H, W) float32 in [0, 1]."""
    path = Path(path)
    arr = load_array(path)
    if path.suffix.lower() in RENDERING_SUFFIXES:
        bands = read_rendering(arr, path)
        return select_bands(bands, cfg, path)
    bands = channels_first(arr, path)
    amplitude = to_amplitude(bands, cfg.kind, path)
    return normalise(select_bands(amplitude, cfg, path), cfg.clip_percentiles)
