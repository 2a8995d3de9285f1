"""Read one SAR raster into normalised bands: (C, H, W) float32 in [0, 1].

GeoTIFF (tifffile) and .npy hold physical values: complex (complex dtype, or I/Q channel pairs),
amplitude or intensity. They become amplitude, then log, then are clipped at per-band robust
percentiles and scaled to [0, 1]. PNG/JPEG are 8-bit renderings that are already scaled: they
are only divided by their dtype's maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def polarisations(bands: np.ndarray, kind: str, path: Path) -> list[np.ndarray]:
    """The file's polarisations, as views of its raw array: one (H, W) band each, or an (I, Q) pair
    of bands for complex data stored as band pairs (`kind: complex`, or `auto` and any negative value)."""
    if np.iscomplexobj(bands):
        return list(bands)
    if not np.issubdtype(bands.dtype, np.number) or bands.dtype == np.bool_:
        raise RasterReadError(path, f"unsupported dtype {bands.dtype}")
    has_negative = any(_has_negative(band) for band in bands)
    if kind == "complex" or (kind == "auto" and has_negative):
        if bands.shape[0] % 2:
            raise RasterReadError(
                path, f"complex data needs I/Q band pairs, got {bands.shape[0]} band(s)"
                + (" with negative values" if kind == "auto" else ""),
            )
        return [bands[i : i + 2] for i in range(0, bands.shape[0], 2)]
    if has_negative:
        raise RasterReadError(path, f"{kind} raster has negative values; is it complex (kind: complex)?")
    return list(bands)


def _has_negative(band: np.ndarray) -> bool:
    """A finite value below zero (NaN and infinities are no data, read as 0)."""
    if np.issubdtype(band.dtype, np.unsignedinteger):
        return False
    if np.issubdtype(band.dtype, np.integer):
        return bool((band < 0).any())
    return bool(((band < 0) & (band != -np.inf)).any())


def _physical(band: np.ndarray) -> np.ndarray:
    """A raw band as float64, NaN and infinities (no data) as 0."""
    return np.nan_to_num(band.astype(np.float64), copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def to_amplitude(pol: np.ndarray, kind: str) -> np.ndarray:
    """One polarisation (see polarisations) -> its amplitude band, float64, (H, W)."""
    if np.iscomplexobj(pol):
        return np.abs(pol).astype(np.float64)
    if pol.ndim == 3:  # an I/Q pair
        i = _physical(pol[0])
        return np.hypot(i, _physical(pol[1]), out=i)
    values = _physical(pol)
    return np.sqrt(values, out=values) if kind == "intensity" else values


def normalise_band(band: np.ndarray, percentiles: list[float], out: np.ndarray) -> None:
    """Amplitude `band` (float64; overwritten) -> `out`: log-amplitude, clipped at the given
    percentiles, scaled to [0, 1]. In place, so a band of a large scene is held about twice
    (itself and the copy np.percentile sorts), not once per step."""
    out[...] = 0.0
    low = band.min(where=band > 0, initial=np.inf)
    if low == np.inf:  # nothing positive
        return
    # Zeros (no-data, or exact zeros in sigma0) take the smallest real value, not -inf.
    log_band = np.log(np.maximum(band, low, out=band), out=band)
    lo, hi = np.percentile(log_band, percentiles)
    if hi > lo:
        log_band -= lo
        log_band /= hi - lo
        out[...] = np.clip(log_band, 0.0, 1.0, out=log_band)


def normalise(amplitude: np.ndarray, percentiles: list[float]) -> np.ndarray:
    """Per band of a (C, H, W) amplitude array: see normalise_band (the array is not changed)."""
    out = np.empty(amplitude.shape, dtype=np.float32)
    for i, band in enumerate(amplitude):
        normalise_band(np.array(band, dtype=np.float64), percentiles, out[i])
    return out


Bands = Sequence[np.ndarray] | np.ndarray


def select_bands(bands: Bands, cfg: DataConfig, path: Path) -> Bands:
    """Keep `cfg.channels` bands: all of them, or band `cfg.band` when one is wanted."""
    n = len(bands)
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
    # One polarisation at a time, only the chosen ones: a dual-pol scene of H x W uint16 pixels
    # (a Sentinel-1 GRD is ~25,000 x 16,700) is held as float64 one band at a time.
    chosen = select_bands(polarisations(channels_first(arr, path), cfg.kind, path), cfg, path)
    out = np.empty((len(chosen), *chosen[0].shape[-2:]), dtype=np.float32)
    for i, pol in enumerate(chosen):
        normalise_band(to_amplitude(pol, cfg.kind), cfg.clip_percentiles, out[i])
    return out
