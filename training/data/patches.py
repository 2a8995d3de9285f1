"""Cut (C, H, W) images into square patches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    """One row of windows of an image."""

    top: int
    lefts: np.ndarray
    """(n,) left edge of each window."""
    patches: np.ndarray
    """(n, C, size, size), a new array (free to change in place)."""


def window_starts(length: int, size: int, stride: int, cover: bool = False) -> np.ndarray:
    """Where windows of `size` start along a side of `length`, every `stride`; with `cover`, one
    more flush with the far border when the stride stops short of it (every pixel in a window)."""
    starts = np.arange(0, length - size + 1, stride)
    if cover and len(starts) and starts[-1] != length - size:
        starts = np.append(starts, length - size)
    return starts


def patch_rows(image: np.ndarray, size: int, stride: int, small: str = "skip", cover: bool = False) -> Iterator[Row]:
    """The `size`x`size` windows at `stride`, one row of windows at a time (with `cover`, also
    those flush with the right and bottom borders: see window_starts).

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
    lefts = window_starts(w, size, stride, cover)
    for top in window_starts(h, size, stride, cover).tolist():
        yield Row(top, lefts, np.stack([image[:, top : top + size, x : x + size] for x in lefts]))


def within_tiles(row: Row, size: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the windows inside one `tile`x`tile` tile, the index of each one's tile column).

    A window across a tile border would put the same pixels in two tiles, and so maybe in both
    train and validation: it is left out. The tile row is row.top // tile for every window."""
    column = row.lefts // tile
    inside = ((row.lefts + size - 1) // tile == column) & ((row.top + size - 1) // tile == row.top // tile)
    return inside, column


def too_empty(patches: np.ndarray, max_nodata: float) -> np.ndarray:
    """Mask of the patches whose share of no-data pixels (NaN, the same in every channel: see
    read_raster) is above `max_nodata`."""
    return np.isnan(patches[:, 0]).mean(axis=(1, 2)) > max_nodata

