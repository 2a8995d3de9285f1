"""Helpers the training tests share: whole-image patching and a model rebuilt from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from training.checkpoint import config_of, load_checkpoint, model_of
from training.config import TrainConfig
from training.data.patches import patch_rows


def extract_patches(image: np.ndarray, size: int, stride: int, small: str = "skip") -> np.ndarray:
    """All windows of `patch_rows` as one (N, C, size, size) array."""
    rows = [r.patches for r in patch_rows(image, size, stride, small)]
    return np.concatenate(rows) if rows else np.empty((0, image.shape[0], size, size), dtype=image.dtype)


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model a checkpoint was made from, with its weights, in eval mode."""
    state = load_checkpoint(path)
    cfg = config_of(state, path)
    return model_of(state, cfg), cfg
