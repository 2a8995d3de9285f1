"""Reconstruction previews: a PNG of fixed validation patches, input | reconstruction | |error|.

So a person sees what a PSNR of 21 dB looks like on their SAR data. Composed with numpy and
Pillow, not matplotlib figures: a figure with tight_layout took ~0.2 s per preview, which at a
preview per new best epoch was the largest cost of a GPU trial outside training
(bench/trial_overhead.py); this takes a few milliseconds.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.files import atomic_write

PANEL = 160
"""Pixels per panel side (patches are scaled with nearest-neighbour, so speckle stays visible)."""
BAND = 56
"""Pixels of the header band: the title, the row names, then the |error| row's colour scale."""
SCALE_AT = (4, 42)
"""Where the colour scale's bar starts (x, y) in the header band; SCALE_SIZE its width and height."""
SCALE_SIZE = (96, 10)
GAP = 2
"""White pixels around each panel, so neighbouring patches don't run into each other."""
ROWS = ("input", "reconstruction", "|error|")
PER_BLOCK = 4
"""Patches side by side in one block of three rows; more patches make more blocks, one below the
other. Four patches give 640 x 520 px, close to the 4:3 of optuna-dashboard's artifact cards
(200 px wide), so the thumbnail keeps panels of about 45 px: 3 columns of 4 patches stacked
(480 x 680 px) left them about 35 px."""


@functools.cache
def _magma() -> np.ndarray:
    """matplotlib's magma colormap as a (256, 3) uint8 lookup table."""
    from matplotlib import colormaps

    return (colormaps["magma"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def _panel(image: np.ndarray, vmax: float, colour: bool) -> Image.Image:
    levels = (np.clip(image / vmax, 0.0, 1.0) * 255).round().astype(np.uint8)
    rgb = _magma()[levels] if colour else np.repeat(levels[..., None], 3, axis=2)
    side = PANEL - 2 * GAP
    return Image.fromarray(rgb, "RGB").resize((side, side), Image.Resampling.NEAREST)


def _scale(canvas: Image.Image, draw: ImageDraw.ImageDraw, vmax: float) -> None:
    """The |error| row's colour scale: magma from 0 (left) to the shared maximum (right), labelled
    in the patches' [0, 1] intensity units, so a colour reads as an error size."""
    (x, y), (width, height) = SCALE_AT, SCALE_SIZE
    width = max(16, min(width, canvas.width - 120))  # one patch's preview is 160 px wide
    ramp = _magma()[np.linspace(0, 255, width).round().astype(np.intp)]
    canvas.paste(Image.fromarray(np.repeat(ramp[None], height, axis=0), "RGB"), (x + 58, y))
    draw.text((x, y), "|error| 0", fill="black")
    draw.text((x + 62 + width, y), f"{vmax:.3g}", fill="black")


def preview_size(n: int) -> tuple[int, int]:
    """(width, height) in pixels of the preview of n patches."""
    blocks = max(1, -(-n // PER_BLOCK))
    return min(max(n, 1), PER_BLOCK) * PANEL, blocks * len(ROWS) * PANEL + BAND


def render_preview(inputs: np.ndarray, outputs: np.ndarray, path: Path, title: str = "") -> Path:
    """Write a PNG of (N, C, H, W) arrays in [0, 1], the first channel shown: each patch a column
    of input, reconstruction and |error| (PER_BLOCK patches a block, blocks one below the other).

    The error row shares one scale (its maximum over the shown patches) so patches compare.
    """
    n = len(inputs)
    error = np.abs(outputs - inputs)
    vmax_error = max(float(error[:, 0].max()), 1e-6) if n else 1.0
    canvas = Image.new("RGB", preview_size(n), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill="black")
    draw.text((4, 22), "rows: " + ", ".join(ROWS), fill="black")
    _scale(canvas, draw, vmax_error)
    for i in range(n):
        block, col = divmod(i, PER_BLOCK)
        panels = (_panel(inputs[i, 0], 1.0, False), _panel(outputs[i, 0], 1.0, False),
                  _panel(error[i, 0], vmax_error, True))
        for row, panel in enumerate(panels):
            canvas.paste(panel, (col * PANEL + GAP, BAND + (block * len(ROWS) + row) * PANEL + GAP))
    # compress_level 1: speckle barely compresses anyway, and level 6 costs several times longer.
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG", compress_level=1))
