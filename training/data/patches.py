"""Cut (C, H, W) images into square patches."""

from __future__ import annotations

import numpy as np


def extract_patches(image: np.ndarray, size: int, stride: int, small: str = "skip") -> np.ndarray:
    """All `size`x`size` windows at `stride` as (N, C, size, size).

    An image smaller than one patch gives no patch ("skip") or is mirror-padded up to one
    patch along its short sides ("pad").
    """
    c, h, w = image.shape
    if (h < size or w < size) and small == "pad":
        pad = ((0, 0), (0, max(size - h, 0)), (0, max(size - w, 0)))
        image = np.pad(image, pad, mode="symmetric")
        c, h, w = image.shape
    if h < size or w < size:
        return np.empty((0, c, size, size), dtype=image.dtype)
    tops = range(0, h - size + 1, stride)
    lefts = range(0, w - size + 1, stride)
    return np.stack([image[:, t : t + size, x : x + size] for t in tops for x in lefts])
