"""Reconstruction previews: a PNG of fixed validation patches, input | reconstruction | |error|.

So a person sees what a PSNR of 21 dB looks like on their SAR data. Rendered with matplotlib's
Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.files import atomic_write

PANEL_INCHES = 1.6
DPI = 100


def render_preview(inputs: np.ndarray, outputs: np.ndarray, path: Path, title: str = "") -> Path:
    """Write a (patches x 3) grid PNG of (N, C, H, W) arrays in [0, 1]; the first channel is shown."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = len(inputs)
    fig = Figure(figsize=(3 * PANEL_INCHES, n * PANEL_INCHES + (0.4 if title else 0.1)), dpi=DPI)
    axes = fig.subplots(n, 3, squeeze=False)
    error = np.abs(outputs - inputs)
    for row in range(n):
        panels = ((inputs[row, 0], "input", "gray", 1.0), (outputs[row, 0], "reconstruction", "gray", 1.0),
                  (error[row, 0], "|error|", "magma", max(float(error[:, 0].max()), 1e-6)))
        for col, (image, name, cmap, vmax) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(image, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
