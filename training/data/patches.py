"""Cut (C, H, W) images into square patches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def patch_rows(image: np.ndarray, size: int, stride: int, small: str = "skip") -> Iterator[np.ndarray]:
    """The `size`x`size` windows at `stride`, one row of windows at a time, each (n, C, size, size).

    A row at a time keeps a large scene cut at a small stride from holding all its overlapping
    windows (stride 4 on 32 px patches is 64 times the scene) in memory at once. An image smaller
    than one patch gives no patch ("skip") or is mirror-padded up to one patch along its short
    sides ("pad").
    """
    c, h, w = image.shape
    if (h < size or w < size) and small == "pad":
        pad = ((0, 0), (0, max(size - h, 0)), (0, max(size - w, 0)))
        image = np.pad(image, pad, mode="symmetric")
        c, h, w = image.shape
    if h < size or w < size:
        return
    lefts = range(0, w - size + 1, stride)
    for top in range(0, h - size + 1, stride):
        yield np.stack([image[:, top : top + size, x : x + size] for x in lefts])


def filled(rows: Iterator[np.ndarray], max_nodata: float, dropped: list[int]) -> Iterator[np.ndarray]:
    """`rows` (see patch_rows) without the patches whose share of no-data pixels (NaN, the same in
    every channel: see read_raster) is above `max_nodata`; in the rest no-data reads as 0. Counts
    what it drops in dropped[0]."""
    for row in rows:
        gaps = np.isnan(row[:, 0]).mean(axis=(1, 2))
        if gaps.any():
            keep = gaps <= max_nodata
            dropped[0] += int((~keep).sum())
            row = np.nan_to_num(row[keep], copy=False, nan=0.0)
        if len(row):
            yield row


def extract_patches(image: np.ndarray, size: int, stride: int, small: str = "skip") -> np.ndarray:
    """All windows of `patch_rows` as one (N, C, size, size) array."""
    rows = list(patch_rows(image, size, stride, small))
    return np.concatenate(rows) if rows else np.empty((0, image.shape[0], size, size), dtype=image.dtype)
