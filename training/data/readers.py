"""Read one SAR raster into normalised bands: (C, H, W) float32 in [0, 1].

GeoTIFF (tifffile) and .npy hold physical values: complex (complex dtype, or I/Q channel pairs),
amplitude or intensity. They become amplitude, then log, then are clipped at per-band robust
percentiles and scaled to [0, 1]. PNG/JPEG are renderings: with `kind: auto` their grey values
are display values already (log-like), so they are clipped at the same percentiles and scaled
to [0, 1] in their own scale, without a log; `kind: amplitude` or `intensity` says the grey
values are physical, and they take the physical path. `kind: complex` cannot apply to them (a
rendering holds no phase) and is refused. A colour file is made one band (the mean of R, G and B;
alpha dropped) and says so, once.

Pixels without data (NaN, infinities, the file's GDAL_NODATA value or `data.nodata`) take no
part in the percentiles and come out as NaN; cutting patches drops those with too many of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from errors import RasterReadError
from training.config import DataConfig

log = logging.getLogger("sarsweep.data")

PHYSICAL_SUFFIXES = {".tif", ".tiff", ".npy"}
RENDERING_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_BANDS = 16
GDAL_NODATA_TAG = 42113


def load_array(path: Path) -> tuple[np.ndarray, str | None]:
    """The file's raw array and the no-data value it declares, as written (a GeoTIFF's GDAL_NODATA
    tag, else None); any failure to decode is a RasterReadError naming the file."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if not len(tif.pages):  # tifffile reads junk or a cut-off file as a TIFF of no image
                    raise RasterReadError(path, "not a valid TIFF (no image in it: truncated, or no TIFF at all)")
                tag = tif.pages[0].tags.get(GDAL_NODATA_TAG)
                return np.asarray(tif.asarray()), None if tag is None else str(tag.value)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix in RENDERING_SUFFIXES:
            from PIL import Image

            with Image.open(path) as image:
                return np.asarray(image), None
    except (OSError, ValueError, EOFError, SyntaxError) as exc:  # what the decoders raise on junk
        raise RasterReadError(path, f"{exc.__class__.__name__}: {exc}") from None
    raise RasterReadError(path, f"unsupported file type {suffix!r}")


def declared_nodata(text: str | None, path: Path) -> float | None:
    """GDAL writes a band's no-data value as text in TIFF tag 42113 (e.g. "0", "-9999", "nan")."""
    if text is None:
        return None
    text = text.strip().strip("\x00").strip()
    try:
        return float(text)
    except ValueError:
        raise RasterReadError(path, f"its GDAL_NODATA tag {text!r} is not a number; set data.nodata") from None


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


def polarisations(bands: np.ndarray, kind: str, path: Path, nodata: float | None = None) -> list[np.ndarray]:
    """The file's polarisations, as views of its raw array: one (H, W) band each, or an (I, Q) pair
    of bands for complex data stored as band pairs (`kind: complex`, or `auto` and any negative
    value that is not the no-data value)."""
    if np.iscomplexobj(bands):
        return list(bands)
    if not np.issubdtype(bands.dtype, np.number) or bands.dtype == np.bool_:
        raise RasterReadError(path, f"unsupported dtype {bands.dtype}")
    has_negative = any(_has_negative(band, nodata) for band in bands)
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


def _has_negative(band: np.ndarray, nodata: float | None = None) -> bool:
    """A finite value below zero that is not the no-data value (NaN and infinities are no data)."""
    if np.issubdtype(band.dtype, np.unsignedinteger):
        return False
    negative = band < 0
    if np.issubdtype(band.dtype, np.floating):
        negative &= band != -np.inf
    if nodata is not None and nodata < 0:
        negative &= band != nodata
    return bool(negative.any())


def no_data(pols: Sequence[np.ndarray], nodata: float | None) -> np.ndarray | None:
    """(H, W) mask of the pixels without data in any of `pols` (see polarisations): non-finite in
    any part, or equal to `nodata` in every part (I and Q both); None when every pixel has data."""
    mask: np.ndarray | None = None
    for pol in pols:
        parts = list(pol) if pol.ndim == 3 else [pol]
        missing = np.logical_and.reduce([part == nodata for part in parts]) if nodata is not None else None
        for part in parts:
            if part.dtype.kind in "fc":
                bad = ~np.isfinite(part)
                missing = bad if missing is None else missing | bad
        if missing is not None:
            mask = missing if mask is None else mask | missing
    return mask if mask is not None and mask.any() else None


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


def normalise_band(band: np.ndarray, percentiles: list[float], out: np.ndarray,
                   missing: np.ndarray | None = None) -> None:
    """Amplitude `band` (float64; overwritten) -> `out`: log-amplitude, clipped at the given
    percentiles, scaled to [0, 1]. In place, so a band of a large scene is held about twice
    (itself and the copy np.percentile sorts), not once per step. Pixels `missing` (no data) take
    no part in the percentiles; what they get in `out` is for the caller to overwrite."""
    out[...] = 0.0
    if missing is not None:
        band[missing] = 0.0
    low = band.min(where=band > 0, initial=np.inf)
    if low == np.inf:  # nothing positive
        return
    # Zeros (no-data, or exact zeros in sigma0) take the smallest real value, not -inf.
    log_band = np.log(np.maximum(band, low, out=band), out=band)
    lo, hi = np.percentile(log_band if missing is None else log_band[~missing], percentiles)
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


_said_converted: set[str] = set()


def rendering_band(arr: np.ndarray, path: Path) -> np.ndarray:
    """An 8-bit (or 16-bit) picture's one grey band, float64 in its own units (0 to the dtype's
    maximum): colour averaged, alpha dropped, each said once per file and process."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise RasterReadError(path, f"expected an integer image, got dtype {arr.dtype}")
    if arr.ndim == 2:
        return arr.astype(np.float64)
    if arr.ndim != 3:
        raise RasterReadError(path, f"unexpected image shape {arr.shape}")
    colour = arr[..., :3] if arr.shape[-1] in (3, 4) else arr[..., :1]
    if str(path) not in _said_converted:
        _said_converted.add(str(path))
        grey = colour.shape[-1] == 1 or bool((colour == colour[..., :1]).all())
        what = {1: "grey", 2: "grey with alpha", 3: "RGB", 4: "RGBA"}.get(arr.shape[-1], f"{arr.shape[-1]}-channel")
        how = "its grey band kept" if grey else "colour averaged (mean of R, G, B)"
        log.warning("%s is a %s picture: read as one band, %s%s", path, what, how,
                    ", alpha dropped" if arr.shape[-1] in (2, 4) else "")
    return colour.mean(axis=-1)


def stretch_band(band: np.ndarray, percentiles: list[float], out: np.ndarray, missing: np.ndarray | None) -> None:
    """Display values `band` -> `out` in [0, 1]: clipped at the given percentiles of the pixels
    with data and scaled, without a log (a rendering's values are display values already)."""
    out[...] = 0.0
    values = band if missing is None else band[~missing]
    if not values.size:
        return
    lo, hi = np.percentile(values, percentiles)
    if hi > lo:
        out[...] = np.clip((band - lo) / (hi - lo), 0.0, 1.0)


def read_rendering(arr: np.ndarray, path: Path, cfg: DataConfig) -> np.ndarray:
    """A PNG/JPEG -> (1, H, W) float32 in [0, 1], NaN where a pixel is the no-data value."""
    if cfg.kind == "complex":
        raise RasterReadError(path, "data.kind: complex does not apply to a PNG/JPEG rendering (it holds no "
                                    "phase); use kind: auto, amplitude or intensity")
    grey = rendering_band(arr, path)
    nodata = None if cfg.nodata == "auto" else cfg.nodata  # a picture declares none
    missing = grey == nodata if nodata is not None else None
    if missing is not None and not missing.any():
        missing = None
    out = np.empty((1, *grey.shape), dtype=np.float32)
    if cfg.kind == "auto":
        stretch_band(grey, cfg.clip_percentiles, out[0], missing)
    else:  # the grey values are physical amplitude or intensity, as the config says
        normalise_band(to_amplitude(grey, cfg.kind), cfg.clip_percentiles, out[0], missing)
    if missing is not None:
        out[:, missing] = np.nan
    return out


def read_raster(path: str | Path, cfg: DataConfig) -> np.ndarray:
    """One file -> (cfg.channels, H, W) float32 in [0, 1], NaN where a pixel has no data (see
    DataConfig.nodata)."""
    path = Path(path)
    arr, declared = load_array(path)
    if path.suffix.lower() in RENDERING_SUFFIXES:
        return select_bands(read_rendering(arr, path, cfg), cfg, path)
    # One polarisation at a time, only the chosen ones: a dual-pol scene of H x W uint16 pixels
    # (a Sentinel-1 GRD is ~25,000 x 16,700) is held as float64 one band at a time.
    nodata = declared_nodata(declared, path) if cfg.nodata == "auto" else cfg.nodata
    chosen = select_bands(polarisations(channels_first(arr, path), cfg.kind, path, nodata), cfg, path)
    missing = no_data(chosen, nodata)
    out = np.empty((len(chosen), *chosen[0].shape[-2:]), dtype=np.float32)
    for i, pol in enumerate(chosen):
        normalise_band(to_amplitude(pol, cfg.kind), cfg.clip_percentiles, out[i], missing)
    if missing is not None:
        out[:, missing] = np.nan
    return out
