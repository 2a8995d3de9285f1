"""Checkpoints: written atomically, loaded only with `weights_only=True`, always carrying their config.

Both kinds are plain dicts of tensors and primitives:
- best.pt: {"format", "config", "epoch", "metrics", "params", "model"}
- last.pt: the same plus "optimizer", "step", "rng", "best", "history" (everything resume needs).
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from errors import CheckpointError, ConfigError
from training.config import TrainConfig
from training.files import atomic_write

FORMAT = 1


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save through a temp file and a rename: readers never see half a checkpoint."""
    def write(tmp: Path) -> None:
        # Through a Python file: on a full disk torch.save(path) says only "[enforce fail at
        # inline_container.cc] unexpected pos"; with a file object the OSError (ENOSPC) is its context.
        with open(tmp, "wb") as file:
            try:
                torch.save(obj, file)
            except RuntimeError as exc:
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from None
                raise

    atomic_write(path, write)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint dict; anything unreadable, truncated or unsafe is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    problem = file_problem(path)
    if problem:
        raise CheckpointError(f"cannot load checkpoint {path}: {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own text advises weights_only=False: never for a file like this
        raise CheckpointError(f"cannot load checkpoint {path}: not a sarsweep checkpoint (it holds objects no "
                              "checkpoint holds, and loading them would run code)") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "config" not in state:
        raise CheckpointError(f"{path} is not a sarsweep checkpoint (format {FORMAT})")
    return state


ZIP_MAGIC = b"PK\x03\x04"
"""How a zip archive, and so every checkpoint torch.save writes, begins."""


def file_problem(path: Path) -> str | None:
    """What is wrong with a file meant to be a checkpoint, in words, before torch reads it: empty,
    truncated (a zip begun but not ended: a write cut short, a copy unfinished), or no checkpoint."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        return exc.strerror or str(exc)
    if size == 0:
        return "the file is empty (0 bytes)"
    if head != ZIP_MAGIC:
        return "not a sarsweep checkpoint (not a file torch.save writes)"
    if not zipfile.is_zipfile(path):
        return f"the file is truncated ({size:,} bytes, its end missing: a write cut short or a copy not finished)"
    return None


def config_of(state: dict[str, Any], path: str | Path) -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the config it carries is invalid: {exc}") from None


def model_of(state: dict[str, Any], cfg: TrainConfig) -> nn.Module:
    """The model of a loaded checkpoint `state` (made from `cfg`), with its weights, in eval mode."""
    from models import create_model

    model = create_model(cfg.variant, **cfg.model_kwargs)
    model.load_state_dict(state["model"])
    return model.eval()


def held_bytes(out_dir: Path) -> int:
    """What a run's checkpoints in `out_dir` take on disk now (best.pt and last.pt, where they
    exist): space checkpoint_bytes counts that the run already has."""
    return sum(p.stat().st_size for p in (out_dir / "best.pt", out_dir / "last.pt") if p.is_file())


@dataclass
class EarlierRun:
    """What a folder holds of an earlier run (see earlier_run)."""

    said: str
    """In words: "epoch 3 of 10 done (last.pt), best val PSNR 20.44 dB at epoch 3"."""
    finished: bool
    """It trained all its epochs (False also when its checkpoint cannot be read)."""

    def __str__(self) -> str:
        return self.said


def earlier_run(out_dir: Path) -> EarlierRun | None:
    """What `out_dir` holds of an earlier run, or None when it holds no checkpoint."""
    found = [p for p in (out_dir / "last.pt", out_dir / "best.pt") if p.is_file()]
    if not found:
        return None
    try:
        state = load_checkpoint(found[0])
        epoch, epochs = int(state["epoch"]), int(state["config"]["epochs"])
        psnr, at = (state["best"]["psnr"], state["best"]["epoch"]) if "best" in state else \
            (state["metrics"]["val_psnr"], epoch)
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        why = exc if isinstance(exc, CheckpointError) else f"{found[0].name} is unreadable"
        return EarlierRun(f"{', '.join(p.name for p in found)} ({why})", False)
    return EarlierRun(f"epoch {epoch} of {epochs} done ({found[0].name}), best val PSNR {psnr:.2f} dB at epoch {at}",
                      epoch >= epochs)


# Measured on torch 2.13 (torch.save zip format): ~300 bytes per tensor beyond its data, and
# a few KB for the config and the history; both rounded up here.
_TENSOR_OVERHEAD = 512
_FILE_OVERHEAD = 1 << 16


def checkpoint_bytes(variant: str, model_kwargs: dict[str, int]) -> int:
    """The most disk one run's checkpoints hold at once, in bytes.

    best.pt (weights and buffers), last.pt (those and Adam's two moments per parameter) and,
    while last.pt is rewritten, its temp copy: the rename frees the old one only after. Sizes
    come from the model built on the meta device (no memory, a few ms), fp32 as saved.
    """
    from models import create_model

    with torch.device("meta"):
        model = create_model(variant, **model_kwargs)
    state = model.state_dict()
    params = [p for p in model.parameters() if p.requires_grad]
    best = sum(t.numel() * t.element_size() for t in state.values()) + _TENSOR_OVERHEAD * len(state)
    moments = 2 * sum(p.numel() * p.element_size() + _TENSOR_OVERHEAD for p in params)
    last = best + moments + _TENSOR_OVERHEAD * len(params)  # Adam's per-parameter step counts
    return best + 2 * last + 3 * _FILE_OVERHEAD
