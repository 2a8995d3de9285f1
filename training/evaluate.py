"""Score a trained checkpoint: PSNR and SSIM per file and over all patches.

    sarsweep evaluate --checkpoint runs/train_sentinel1/best.pt --data /data/held-out-scenes
    sarsweep evaluate --checkpoint runs/train_sentinel1/best.pt    # its own validation split

With `data`, every raster under that folder is cut and normalised exactly as the checkpoint's
config says (kind, band, patch size, stride, clip percentiles), scored whole (a last window flush
with the right and bottom borders where the stride stops short: every pixel is in a patch; the
count of pixels scored is reported): a held-out test set. Without it,
the checkpoint's own validation patches, scored as its run scored them, so the numbers repeat
the ones the run reported (a check that the file is the run it claims to be).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from errors import ConfigError, DataError
from training.checkpoint import config_of, load_checkpoint, model_of
from training.config import TrainConfig
from training.data.dataset import prepare, validation_indices
from training.files import require_dir
from training.inference import (
    amp_dtype,
    eval_batch_size,
    memory_format,
    reconstruct,
    resolve_device,
    score_batches,
    trivial_batches,
)


@dataclass
class FileScore:
    file: str
    """Relative to the data root."""
    patches: int
    psnr: float
    """Mean over the file's patches, dB."""
    ssim: float
    trivial_psnr: float = 0.0
    """The trivial reconstruction's (each patch's mean) on the same patches: the reference."""
    trivial_ssim: float = 0.0
    pixels: int | None = None
    """Pixels of the file inside a scored patch (with --data), of pixels_total."""
    pixels_total: int | None = None


@dataclass
class Evaluation:
    checkpoint: str
    variant: str
    params: int
    epoch: int
    """Epochs the checkpoint had trained."""
    trained: dict[str, float]
    """The val metrics stored in the checkpoint by its run."""
    data: str
    """The data root, or "validation split of <root>"."""
    patch_size: int
    stride: int
    patches: int
    psnr: float
    """Mean over all patches (as the trainer's validation averages), dB."""
    ssim: float
    trivial_psnr: float = 0.0
    """The trivial reconstruction (each patch's mean) on the same patches: what psnr means beside."""
    trivial_ssim: float = 0.0
    pixels: int | None = None
    """Pixels inside a scored patch (held-out data: all of them but no-data), of pixels_total."""
    pixels_total: int | None = None
    files: list[FileScore] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    device: str = "cpu"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# How the command line spells the data fields an evaluation may change.
OPTION = {"data.root": "--data", "data.include": "--include", "data.patch_size": "--patch-size",
          "data.stride": "--stride", "data.on_error": "--on-error"}


def eval_config(cfg: TrainConfig, data: str | None, include: list[str] | None,
                patch_size: int | None, stride: int | None, on_error: str | None = None) -> TrainConfig:
    """The checkpoint's config with the evaluation data swapped in, validated like any config; an
    error names the option (a patch size the model cannot take: `--patch-size`)."""
    changes: dict[str, Any] = {}
    if data is not None:  # held-out rasters are scored whole, per file, whatever held out its validation
        changes.update(root=data, split="files", cover_borders=True)
    if include:
        changes["include"] = include
    if patch_size is not None:
        changes["patch_size"] = patch_size
    if stride is not None:
        changes["stride"] = stride
    if on_error is not None:
        changes["on_error"] = on_error
    if not changes:
        return cfg
    try:
        return cfg.replace(data={**cfg.to_dict()["data"], **changes})
    except ConfigError as exc:  # name the option the user passed, not the checkpoint's field
        raise ConfigError(OPTION.get(exc.field, exc.field), exc.message) from None


def evaluate(checkpoint: str | Path, data: str | None = None, include: list[str] | None = None,
             patch_size: int | None = None, stride: int | None = None, device: str = "auto",
             preview: Path | None = None, preview_patches: int = 8, on_error: str | None = None) -> Evaluation:
    """Score `checkpoint` on the rasters under `data` (all of them), or on its validation split."""
    started = time.perf_counter()
    state = load_checkpoint(checkpoint)
    trained_cfg = config_of(state, checkpoint)
    if data is None:  # the split is by file among those that yield patches: other patches, other split
        for option, value in (("--include", include), ("--patch-size", patch_size), ("--stride", stride),
                              ("--on-error", on_error)):
            if value is not None:
                raise ConfigError(option, "only with --data; the validation split is the one its run used")
        root = trained_cfg.data.root
        if root is not None and not Path(root).expanduser().is_dir():  # a relative root, another folder
            raise DataError(f"the data.root it was trained on, {root}, is not a directory from {Path.cwd()}; "
                            "run from where it trained, or pass --data")
    else:
        require_dir(data, "--data")
    cfg = eval_config(trained_cfg, data, include, patch_size, stride, on_error)
    prepared = prepare(cfg.data)
    if data is None:
        chosen = validation_indices(prepared, cfg.data)
        where = f"validation split of {cfg.data.root or 'synthetic SAR scenes'}"
    else:
        chosen = np.arange(len(prepared.patches))
        where = str(Path(data))
    if len(chosen) == 0:
        raise DataError(f"{where}: no patch of patch_size {cfg.data.patch_size}, stride "
                        f"{cfg.data.effective_stride} could be cut; pass a smaller --patch-size")

    target = resolve_device(device)
    net = model_of(state, cfg).to(target, memory_format=memory_format(target))
    dtype = amp_dtype(cfg.precision, target)
    # Batch by batch from the patch cache's memory map: a test set need not fit in memory.
    size = eval_batch_size(cfg.batch_size)
    def batches() -> Iterator[torch.Tensor]:
        return (torch.from_numpy(np.ascontiguousarray(prepared.patches[chosen[i:i + size]]))
                for i in range(0, len(chosen), size))

    psnrs, ssims = score_batches(net, batches(), dtype, target)
    trivial_psnrs, trivial_ssims = trivial_batches(batches())

    owner = prepared.patch_file[chosen]
    counts = np.bincount(owner, minlength=len(prepared.files))

    def per_file(values: torch.Tensor) -> np.ndarray:
        return np.bincount(owner, weights=values.cpu().numpy(), minlength=len(prepared.files)) / np.maximum(counts, 1)

    means = [per_file(v) for v in (psnrs, ssims, trivial_psnrs, trivial_ssims)]
    files = []
    for i in np.flatnonzero(counts):
        name = prepared.files[i]
        covered, total = prepared.pixels.get(name, (None, None))
        files.append(FileScore(name, int(counts[i]), *(float(m[i]) for m in means), covered, total))
    pixels = [prepared.pixels[f.file] for f in files if f.file in prepared.pixels]
    if preview is not None and preview_patches > 0:
        title = (f"{cfg.variant} on {Path(data).name if data else 'its validation split'}: "
                 f"PSNR {float(psnrs.mean()):.2f} dB, SSIM {float(ssims.mean()):.4f}")
        _render(net, prepared.patches, chosen, preview_patches, dtype, target, preview, title)
    return Evaluation(
        checkpoint=str(checkpoint), variant=cfg.variant, params=int(state.get("params", 0)),
        epoch=int(state.get("epoch", 0)), trained={k: float(v) for k, v in state.get("metrics", {}).items()},
        data=where, patch_size=cfg.data.patch_size, stride=cfg.data.effective_stride, patches=len(chosen),
        psnr=float(psnrs.mean()), ssim=float(ssims.mean()), trivial_psnr=float(trivial_psnrs.mean()),
        trivial_ssim=float(trivial_ssims.mean()),
        pixels=sum(p[0] for p in pixels) if pixels else None,
        pixels_total=sum(p[1] for p in pixels) if pixels else None,
        files=files, skipped=list(prepared.skipped),
        device=str(target), seconds=time.perf_counter() - started,
    )


def _render(net: torch.nn.Module, patches: np.ndarray, chosen: np.ndarray, count: int, dtype: torch.dtype | None,
            device: torch.device, path: Path, title: str) -> None:
    """preview.png of `count` of the chosen patches, spread evenly over them (so several files show)."""
    from training.preview import render_preview

    pick = chosen[np.unique(np.linspace(0, len(chosen) - 1, min(count, len(chosen))).round().astype(int))]
    batch = torch.from_numpy(np.ascontiguousarray(patches[pick])).to(device)
    out = reconstruct(net, batch, dtype)
    render_preview(batch.float().cpu().numpy(), out.cpu().numpy(), path, title)


def report_lines(ev: Evaluation, per_file: bool = False) -> list[str]:
    """What `sarsweep evaluate` prints: what was scored, the per-file table if asked, the result."""
    covered = ""
    if ev.pixels is not None and ev.pixels_total:
        share = 100 * ev.pixels / ev.pixels_total
        covered = f", {ev.pixels:,} of their {ev.pixels_total:,} pixels in a scored patch ({share:.1f} %)"
    lines = [f"{ev.checkpoint}: {ev.variant}, {ev.params:,} parameters, epoch {ev.epoch}; "
             f"{ev.patches:,} patches of {ev.patch_size}x{ev.patch_size} (stride {ev.stride}) from "
             f"{len(ev.files)} file(s) of {ev.data}{covered}, on {ev.device} in {ev.seconds:.1f} s"]
    if ev.skipped:
        lines.append(f"skipped {len(ev.skipped)} unreadable file(s): {', '.join(ev.skipped[:5])}"
                     + (" ..." if len(ev.skipped) > 5 else ""))
    if per_file:
        width = max([len("file"), *(len(f.file) for f in ev.files)])
        lines.append(f"{'file':<{width}}  {'patches':>7}  {'PSNR dB':>7}  {'SSIM':>6}")
        lines += [f"{f.file:<{width}}  {f.patches:>7}  {f.psnr:>7.2f}  {f.ssim:>6.4f}" for f in ev.files]
    trained = ev.trained
    run = (f" (its run's validation: PSNR {trained['val_psnr']:.2f} dB, SSIM {trained['val_ssim']:.4f})"
           if {"val_psnr", "val_ssim"} <= trained.keys() else "")
    lines.append(f"PSNR {ev.psnr:.2f} dB, SSIM {ev.ssim:.4f}{run}; the trivial reference on the same patches (each "
                 f"patch's mean): PSNR {ev.trivial_psnr:.2f} dB, SSIM {ev.trivial_ssim:.4f}, so the model is "
                 f"{ev.psnr - ev.trivial_psnr:+.2f} dB over it")
    return lines
