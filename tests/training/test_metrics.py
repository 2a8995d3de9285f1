"""Torch PSNR/SSIM against scikit-image on real SAR patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from training.config import DataConfig
from training.data import load_data
from training.metrics import psnr, ssim


@pytest.fixture(scope="module")
def real_pairs(s1: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_data(DataConfig(root=str(s1), include=["*GRDH_1SDV*/Patch/*.tif"], channels=2, band=0,
                                patch_size=32, stride=16, small_chips="pad"))
    clean = torch.from_numpy(data.val[:48])
    rng = np.random.default_rng(0)
    noisy = (clean + torch.from_numpy(rng.normal(0, 0.08, clean.shape).astype(np.float32))).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(clean, 3, stride=1, padding=1, count_include_pad=False)
    return clean, torch.cat([noisy[:24], blurred[24:]])


def test_psnr_matches_skimage(real_pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    clean, recon = real_pairs
    ours = psnr(recon, clean).numpy()
    ref = [peak_signal_noise_ratio(c.numpy(), r.numpy(), data_range=1.0) for c, r in zip(clean, recon, strict=True)]
    assert np.abs(ours - ref).max() < 0.01


def test_ssim_matches_skimage_per_channel_mean(real_pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    clean, recon = real_pairs
    ours = ssim(recon, clean).numpy()
    ref = [structural_similarity(c.numpy(), r.numpy(), data_range=1.0, channel_axis=0) for c, r in zip(clean, recon, strict=True)]
    assert np.abs(ours - ref).max() < 0.002
    assert 0.2 < float(np.mean(ref)) < 0.99  # not a degenerate comparison


def test_identical_images_score_perfectly(real_pairs: tuple[torch.Tensor, torch.Tensor]) -> None:
    clean, _ = real_pairs
    assert torch.allclose(ssim(clean, clean), torch.ones(len(clean), dtype=torch.float64))
    assert torch.all(psnr(clean, clean) == 100.0)


def test_ssim_rejects_images_smaller_than_its_window() -> None:
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(1, 1, 6, 8), torch.rand(1, 1, 6, 8))
