"""Running a model forward the way the trainer does: device, precision, memory format, scores.

Shared by the trainer's validation and `sarsweep evaluate`, so a checkpoint scored later gets the
numbers its run reported (same batches, same autocast, same clamp to [0, 1]).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from errors import DeviceError
from training.metrics import psnr, ssim, trivial_scores


def resolve_device(name: str) -> torch.device:
    """auto, cpu, cuda or cuda:N as a torch.device, or a DeviceError saying why this machine has
    no such device (torch itself would fail later, deep in a traceback, at the first .to())."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            why = (f"torch {torch.__version__} is built without CUDA" if torch.version.cuda is None
                   else f"no GPU is visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
            raise DeviceError(f"device: {name} asked for, but {why}; use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device: {name} asked for, but only {count} GPU(s) are visible "
                              f"(cuda:0 to cuda:{count - 1})")
    elif device.type != "cpu":
        raise DeviceError(f"device: {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when asked for, or on CUDA under "auto"; None (fp32) otherwise."""
    return torch.bfloat16 if precision == "bf16" or (precision == "auto" and device.type == "cuda") else None


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (tensor cores want NHWC); the CPU kernels are faster in NCHW."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def eval_batch_size(train_batch_size: int) -> int:
    """Forward-only batches can be larger than training ones; at least 64."""
    return max(train_batch_size, 64)


@torch.no_grad()
def reconstruct(net: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The model's reconstruction of `batch` in fp32, clamped to the inputs' range [0, 1]."""
    net.eval()
    return _forward(net, batch, dtype)


def _forward(net: nn.Module, batch: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """reconstruct() of a net already in eval mode: eval() walks every module (1.3 ms for
    attention at base 64), too much to repeat for each validation batch."""
    batch = batch.contiguous(memory_format=memory_format(batch.device))
    with autocast(batch.device, dtype):
        out = net(batch)
    return out.float().clamp(0.0, 1.0)


def trivial_batches(batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch PSNR and SSIM of the trivial reconstruction (each patch's mean) over batches of
    patches: the reference a model's figures mean something beside (search.report.collect shows model -
    trivial). Where the batches are: no model, no device."""
    psnrs, ssims = [], []
    with torch.no_grad():
        for batch in batches:
            p, s = trivial_scores(batch.float())
            psnrs.append(p)
            ssims.append(s)
    if not psnrs:
        return torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.float64)
    return torch.cat(psnrs), torch.cat(ssims)


def trivial_score(patches: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean PSNR and SSIM over `patches` of the trivial reconstruction (trivial_batches)."""
    psnrs, ssims = trivial_batches(patches.split(batch_size))
    return float(psnrs.mean()), float(ssims.mean())


def score(net: nn.Module, patches: torch.Tensor, batch_size: int,
          dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch PSNR and SSIM (float64, on the patches' device) of the model's reconstructions."""
    return score_batches(net, patches.split(batch_size), dtype, patches.device)


@torch.no_grad()
def score_batches(net: nn.Module, batches: Iterable[torch.Tensor], dtype: torch.dtype | None,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """score() over batches that may come from the host (a memory-mapped test set larger than
    RAM or GPU memory: one batch at a time moves to `device`); results on `device`."""
    net.eval()
    psnrs, ssims = [], []
    for batch in batches:
        batch = batch.to(device, non_blocking=True).float()
        out = _forward(net, batch, dtype)
        psnrs.append(psnr(out, batch))
        ssims.append(ssim(out, batch))
    if not psnrs:
        return torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.float64)
    return torch.cat(psnrs), torch.cat(ssims)
