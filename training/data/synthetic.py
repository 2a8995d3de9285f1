"""Speckled synthetic SAR scenes: the embedded default data set.

Reflectivity is piecewise smooth (Voronoi regions with their own level, a smooth field inside,
a few bright point targets); the observed intensity is reflectivity times Gamma(L, 1/L)
speckle, the standard L-look model. Scenes are stored as amplitude `.npy` files and then read
like any real raster.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from skimage.filters import gaussian

from errors import OutputError
from training.cache import in_use, making, touch
from training.config import SyntheticConfig, config_hash
from training.files import os_reason, write_npy

GENERATOR_VERSION = 1


def reflectivity(rng: np.random.Generator, size: int) -> np.ndarray:
    """Piecewise-smooth log-normal reflectivity map of one scene."""
    n_regions = int(rng.integers(4, 12))
    seeds = rng.uniform(0, size, (n_regions, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    distance = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    levels = rng.normal(0.0, 1.0, n_regions)[distance.argmin(axis=-1)]
    smooth = gaussian(rng.normal(0.0, 1.0, (size, size)), sigma=size / 10, preserve_range=True)
    log_r = levels + 0.5 * smooth / (smooth.std() + 1e-12)
    for _ in range(int(rng.integers(1, 6))):  # ships, buildings: strong point scatterers
        y, x = rng.integers(2, size - 2, 2)
        log_r[y - 1 : y + 2, x - 1 : x + 2] += rng.uniform(3.0, 5.0)
    return np.exp(log_r)


def speckled_scene(rng: np.random.Generator, size: int, looks: int, channels: int) -> np.ndarray:
    """(size, size, channels) float32 amplitude; bands share structure, not speckle."""
    base = reflectivity(rng, size)
    bands = []
    for band in range(channels):
        ratio = 1.0 if band == 0 else rng.uniform(0.1, 0.5)  # cross-pol is weaker
        speckle = rng.gamma(shape=looks, scale=1.0 / looks, size=(size, size))
        bands.append(np.sqrt(base * ratio * speckle))
    return np.stack(bands, axis=-1).astype(np.float32)


def synthetic_dir(cfg: SyntheticConfig, channels: int, cache_root: Path) -> Path:
    """Directory of generated scenes for this config, created once (atomically) on first use.

    The cache's shared lock is held, so `sarsweep cache prune` neither takes the scenes away
    between the check and the return nor mistakes the staging folder for a killed one's."""
    key = config_hash({"synthetic": cfg, "channels": channels, "version": GENERATOR_VERSION})
    with in_use(cache_root), making(cache_root, f"synthetic-{key}"):  # workers started together generate once
        return _generated(cfg, channels, cache_root, key)


def _generated(cfg: SyntheticConfig, channels: int, cache_root: Path, key: str) -> Path:
    target = cache_root / "synthetic" / key
    if target.is_dir():
        touch(target)  # a use, for `sarsweep cache prune`
        return target
    staging = cache_root / "synthetic" / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir(parents=True)
        rng = np.random.default_rng(cfg.seed)
        for i in range(cfg.scenes):
            write_npy(staging / f"scene_{i:04d}.npy", speckled_scene(rng, cfg.size, cfg.looks, channels))
        os.replace(staging, target)
    except OSError as exc:
        if not target.is_dir():  # a concurrent writer did not win either: a real failure
            raise OutputError(target, os_reason(exc, target)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
