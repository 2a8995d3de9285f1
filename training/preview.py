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
BAND = 40
"""Pixels of the header band: the title, then the column names."""
GAP = 2
"""White pixels around each panel, so neighbouring patches don't run into each other."""
COLUMNS = ("input", "reconstruction", "|error|")


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


def render_preview(inputs: np.ndarray, outputs: np.ndarray, path: Path, title: str = "") -> Path:
    """Write a (patches x 3) grid PNG of (N, C, H, W) arrays in [0, 1]; the first channel is shown.

    The error column shares one scale (its maximum over the shown patches) so rows compare.
    """
    n = len(inputs)
    error = np.abs(outputs - inputs)
    vmax_error = max(float(error[:, 0].max()), 1e-6) if n else 1.0
    canvas = Image.new("RGB", (3 * PANEL, n * PANEL + BAND), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill="black")
    for col, name in enumerate(COLUMNS):
        draw.text((col * PANEL + 4, BAND - 16), name, fill="black")
    for row in range(n):
        panels = (_panel(inputs[row, 0], 1.0, False), _panel(outputs[row, 0], 1.0, False),
                  _panel(error[row, 0], vmax_error, True))
        for col, panel in enumerate(panels):
            canvas.paste(panel, (col * PANEL + GAP, BAND + row * PANEL + GAP))
    # compress_level 1: speckle barely compresses anyway, and level 6 costs several times longer.
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG", compress_level=1))
