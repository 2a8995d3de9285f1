"""Batched PSNR and SSIM in torch, defined as scikit-image defines them (data_range=1).

SSIM follows `skimage.metrics.structural_similarity` defaults: 7x7 uniform window, K1=0.01,
K2=0.03, sample covariance (N/(N-1)), mean over the positions whose window fits entirely inside
the image (skimage crops (7-1)/2 pixels of each border), averaged over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WINDOW = 7
K1, K2 = 0.01, 0.03
MAX_PSNR = 100.0  # a perfect reconstruction has infinite PSNR; cap it to keep means finite


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, shape (B,)."""
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(dim=1)
    value = 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-30))
    return value.clamp_max(MAX_PSNR)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM, shape (B,), for (B, C, H, W) inputs with H, W >= 7."""
    if min(pred.shape[-2:]) < WINDOW:
        raise ValueError(f"SSIM needs images of at least {WINDOW}x{WINDOW}, got {tuple(pred.shape[-2:])}")
    x, y = pred.double(), target.double()
    b, c, h, w = x.shape
    # One pooling call over the five statistics, every channel as its own image.
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1).reshape(b * 5 * c, 1, h, w)
    mu_x, mu_y, xx, yy, xy = F.avg_pool2d(stats, WINDOW, stride=1).reshape(b, 5, c, h - 6, w - 6).unbind(1)
    n = WINDOW * WINDOW
    cov_norm = n / (n - 1)
    var_x = cov_norm * (xx - mu_x * mu_x)
    var_y = cov_norm * (yy - mu_y * mu_y)
    cov_xy = cov_norm * (xy - mu_x * mu_y)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(dim=1)


def mean_image(target: torch.Tensor) -> torch.Tensor:
    """Each image replaced by its own mean, per channel: the trivial reconstruction a model must
    beat (a constant patch scores a PSNR of 10 log10(1 / variance))."""
    return target.double().mean(dim=(-2, -1), keepdim=True).expand_as(target)


def trivial_scores(target: torch.Tensor, data_range: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR and SSIM of the trivial reconstruction (mean_image) of `target`."""
    trivial = mean_image(target)
    return psnr(trivial, target, data_range), ssim(trivial, target, data_range)
