"""One run of one config: `train(cfg, on_epoch_end=...)`.

Reads top to bottom like nanoGPT's train.py: build, (resume), then per epoch: shuffle, steps
(warmup LR, forward, loss, backward, clip, step), validate, checkpoint, callback. The callback
gets an EpochResult after the epoch's checkpoint state is taken; an exception it raises (a pruner's, say)
ends the run and propagates. Checkpoints and previews are written by a background thread (training/writer.py)
while the next epoch trains; every write has finished by the time `train` returns or raises.
Run from the shell as `sarsweep train --config run.yaml`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from errors import CheckpointError, NonFiniteLossError
from models import count_parameters, create_model
from training.checkpoint import FORMAT, checkpoint_bytes, config_of, held_bytes, load_checkpoint, save_atomic
from training.config import TrainConfig, with_absolute_root
from training.data import SplitData, cache_root, load_data
from training.files import ensure_free, ensure_writable
from training.inference import (
    amp_dtype,
    autocast,
    eval_batch_size,
    memory_format,
    reconstruct,
    resolve_device,
    score,
    trivial_score,
)
from training.writer import BackgroundWriter, host_copy

# Fields a resumed run may change: where it runs and how long it goes on.
RESUMABLE_CHANGES = {"epochs", "out_dir", "device", "compile", "threads"}


@dataclass
class EpochResult:
    epoch: int
    """Epochs completed (1-based)."""
    train_loss: float
    val_psnr: float
    val_ssim: float
    lr: float
    """Learning rate of the epoch's last step."""
    seconds: float
    device: str
    is_best: bool
    preview: str | None = None
    """preview.png written after this epoch (new best or last epoch), if previews are on."""
    train_seconds: float | None = None
    """Of `seconds`, the training steps (the part that grows with the training patches; validation
    does not): what `sarsweep status` scales from one stage's data to another's."""


@dataclass
class TrainResult:
    best_psnr: float
    best_ssim: float
    trivial_psnr: float
    """Val PSNR of the trivial reconstruction (each patch's mean) on the same patches: the
    reference best_psnr means something beside."""
    trivial_ssim: float
    best_epoch: int
    params: int
    best_path: Path
    last_path: Path
    device: str
    start_epoch: int
    """Epochs already done when this call began (0 unless resumed)."""
    history: list[EpochResult] = field(default_factory=list)
    seconds: float = 0.0


EpochCallback = Callable[[EpochResult], None]


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Linear warmup from base_lr/10 to base_lr over warmup_steps, then constant or cosine to 0."""
    if step < warmup_steps:
        return base_lr * (0.1 + 0.9 * step / warmup_steps)
    if schedule == "constant":
        return base_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Full batches only (a 1-sample tail batch breaks batch norm); at least one batch."""
    return max(1, n_train // batch_size)


class Run:
    """The mutable state of one training run."""

    def __init__(self, cfg: TrainConfig, data: SplitData) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        on_cuda = self.device.type == "cuda"
        if on_cuda:
            # Fixed patch shapes: let cuDNN pick the fastest convolution algorithms once.
            torch.backends.cudnn.benchmark = True
        if self.device.type == "cpu" and cfg.threads:
            torch.set_num_threads(cfg.threads)  # before the first op: results depend on the count
        self.amp_dtype = amp_dtype(cfg.precision, self.device)
        self.memory_format = memory_format(self.device)
        torch.manual_seed(cfg.seed)
        # net: the module whose weights are saved; model: what the training steps call. With
        # compile on they differ (torch.compile wraps net; its state_dict keys would carry an
        # "_orig_mod." prefix). Validation and previews run net eagerly: eval mode and the
        # validation batch shape would each cost a recompile for a forward-only minority of time.
        self.net = create_model(cfg.variant, **cfg.model_kwargs).to(self.device, memory_format=self.memory_format)
        if cfg.compile:
            # Compiled kernels go beside the prepared patches (node-local; a volume in compose) instead
            # of /tmp, so a restarted worker or a new container reuses them (docs/benchmarks.md).
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "inductor"))
        self.model: nn.Module = torch.compile(self.net) if cfg.compile else self.net  # type: ignore[assignment]
        self.params = count_parameters(self.net)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 **({"fused": True} if on_cuda else {}))
        self.batch_rng = torch.Generator().manual_seed(cfg.seed)
        # Resident for the whole run (on the GPU when there is one), shared by a worker's trials.
        self.train_x, self.val_x = data.resident(self.device)
        self.steps = steps_per_epoch(len(self.train_x), cfg.batch_size)
        self.warmup_steps = cfg.warmup_epochs * self.steps
        self.total_steps = cfg.epochs * self.steps
        self.step = 0
        self.epoch = 0
        self.best: dict[str, float] = {"psnr": -math.inf, "ssim": 0.0, "epoch": 0}
        self.history: list[EpochResult] = []
        # The reference the run's figures mean something beside, on the same validation patches.
        self.trivial = trivial_score(self.val_x, eval_batch_size(cfg.batch_size))
        # Non-finite checks force a host sync; on CUDA they are batched.
        self.check_every = 32 if on_cuda else 1

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.amp_dtype)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = out.float()
        return F.l1_loss(out, target) if self.cfg.loss == "l1" else F.mse_loss(out, target)

    def train_epoch(self, progress: bool | None) -> tuple[float, float]:
        cfg, model = self.cfg, self.model
        model.train()
        order = torch.randperm(len(self.train_x), generator=self.batch_rng).to(self.device)
        losses = torch.zeros(self.steps, device=self.device)
        # disable=None: tqdm shows the bar only on a terminal.
        bar = tqdm(total=self.steps, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=None if progress is None else not progress, leave=False, dynamic_ncols=True)
        lr = cfg.lr
        for i in range(self.steps):
            x = self.train_x[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
            x = x.contiguous(memory_format=self.memory_format)
            lr = lr_at(self.step, cfg.lr, self.warmup_steps, self.total_steps, cfg.schedule)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self.autocast():
                loss = self.loss(model(x), x)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            self.optimizer.step()
            losses[i] = loss.detach()
            self.step += 1
            if (i + 1) % self.check_every == 0 or i + 1 == self.steps:
                self._check_finite(losses, i)
                bar.set_postfix(loss=f"{losses[i].item():.4g}", lr=f"{lr:.2e}", refresh=False)
            bar.update(1)
        bar.close()
        return float(losses.mean()), lr

    def _check_finite(self, losses: torch.Tensor, upto: int) -> None:
        bad = torch.nonzero(~torch.isfinite(losses[: upto + 1]))
        if len(bad):
            i = int(bad[0])
            step_in_run = self.step - (upto + 1) + i
            raise NonFiniteLossError(self.epoch + 1, step_in_run, float(losses[i]))

    def validate(self) -> tuple[float, float]:
        """Mean PSNR and SSIM over the validation patches (`sarsweep evaluate` scores the same way)."""
        psnrs, ssims = score(self.net, self.val_x, eval_batch_size(self.cfg.batch_size), self.amp_dtype)
        return float(psnrs.mean()), float(ssims.mean())

    @torch.no_grad()
    def preview(self, path: Path, title: str, writer: BackgroundWriter) -> str:
        """Render the first validation patches (always the same ones) through the model.

        The forward pass runs here (the weights of this epoch); the PNG is composed and written
        by `writer` in the background."""
        from training.preview import render_preview

        batch = self.val_x[: self.cfg.preview_patches]
        out = reconstruct(self.net, batch, self.amp_dtype)
        inputs, outputs = batch.float().cpu().numpy(), out.cpu().numpy()
        writer.submit(lambda: render_preview(inputs, outputs, path, title))
        return str(path)

    def state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "batch": self.batch_rng.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": FORMAT, "config": self.cfg.to_dict(), "epoch": self.epoch, "step": self.step,
            "params": self.params, "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(), "rng": rng, "best": dict(self.best),
            "history": [asdict(h) for h in self.history],
            "metrics": {"val_psnr": self.best["psnr"], "val_ssim": self.best["ssim"],
                        "trivial_psnr": self.trivial[0], "trivial_ssim": self.trivial[1]},
        }

    def save(self, out_dir: Path, is_best: bool, writer: BackgroundWriter) -> None:
        """best.pt (when is_best) and last.pt, written by `writer` in the background."""
        state = host_copy(self.state())
        files = [(state, out_dir / "last.pt")]
        if is_best:
            keep = ("format", "config", "epoch", "params", "model", "metrics")
            files.insert(0, ({k: state[k] for k in keep}, out_dir / "best.pt"))

        def write() -> None:
            for obj, path in files:
                save_atomic(obj, path)

        writer.submit(write)

    def restore(self, path: Path, state: dict[str, Any] | None = None) -> None:
        """Continue from last.pt at `path` (`state`: that file, loaded already)."""
        state = state if state is not None else load_checkpoint(path)
        # data.root compared resolved: a trial records it absolute now, and a retry must still
        # resume a last.pt whose config recorded the relative root it was given.
        saved, wanted = (with_absolute_root(c) for c in (config_of(state, path).to_dict(), self.cfg.to_dict()))
        for key in sorted(set(saved) | set(wanted)):
            if key not in RESUMABLE_CHANGES and saved.get(key) != wanted.get(key):
                raise CheckpointError(
                    f"{path} was made with {key}={saved.get(key)!r}, this run has {key}={wanted.get(key)!r}; "
                    f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change on resume"
                )
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        self.batch_rng.set_state(state["rng"]["batch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best = dict(state["best"])
        self.history = [EpochResult(**h) for h in state["history"]]


def train(
    cfg: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
    resume: bool | str | Path = False,
    progress: bool | None = None,
    data: SplitData | None = None,
    on_epoch_written: EpochCallback | None = None,
    on_data: Callable[[SplitData], None] | None = None,
) -> TrainResult:
    """Train `cfg` to its last epoch and return the best validation metrics.

    resume: True continues from `out_dir/last.pt` when it exists, a path continues from that
    file (which must exist). progress: None shows a bar only on a terminal. on_epoch_written:
    called on the background writer once that epoch's checkpoint and preview files exist
    (uploads go there); all of them have run by the time `train` returns or raises. on_data: shown
    the data once it is prepared, before anything is written.
    """
    started = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    resolve_device(cfg.device)  # a device this machine lacks is an error before minutes of data preparation
    last = Path(resume) if isinstance(resume, (str, Path)) else out_dir / "last.pt"
    # A truncated or foreign last.pt is an error before minutes of data preparation, too.
    saved = load_checkpoint(last) if isinstance(resume, (str, Path)) or (resume and last.is_file()) else None
    data = data if data is not None else load_data(cfg.data, cfg.fraction)  # a data error writes nothing
    if on_data is not None:
        on_data(data)
    # Now, not at the first checkpoint an epoch later. A resumed run's own files are space it has.
    ensure_writable(out_dir)
    ensure_free(out_dir, checkpoint_bytes(cfg.variant, cfg.model_kwargs) - held_bytes(out_dir), "its checkpoints")
    run = Run(cfg, data)
    if saved is not None:
        run.restore(last, saved)
    start_epoch = run.epoch
    if start_epoch == 0:  # a run started over in a used folder: the earlier run's last-epoch preview would stay
        (out_dir / "preview-last.png").unlink(missing_ok=True)
    writer = BackgroundWriter()
    try:
        _epochs(run, cfg, out_dir, writer, on_epoch_end, on_epoch_written, progress)
    finally:
        writer.close()  # also when a callback (a pruner, a signal) ends the run: last.pt is whole
    return TrainResult(
        best_psnr=run.best["psnr"], best_ssim=run.best["ssim"], trivial_psnr=run.trivial[0],
        trivial_ssim=run.trivial[1], best_epoch=int(run.best["epoch"]),
        params=run.params, best_path=out_dir / "best.pt", last_path=out_dir / "last.pt",
        device=str(run.device), start_epoch=start_epoch, history=run.history,
        seconds=time.perf_counter() - started,
    )


def _epochs(run: Run, cfg: TrainConfig, out_dir: Path, writer: BackgroundWriter, on_epoch_end: EpochCallback | None,
            on_epoch_written: EpochCallback | None, progress: bool | None) -> None:
    while run.epoch < cfg.epochs:
        t0 = time.perf_counter()
        train_loss, lr = run.train_epoch(progress)
        trained = time.perf_counter() - t0
        val_psnr, val_ssim = run.validate()
        run.epoch += 1
        is_best = val_psnr > run.best["psnr"]
        if is_best:
            run.best = {"psnr": val_psnr, "ssim": val_ssim, "epoch": run.epoch}
        preview = None
        if cfg.preview_patches and (is_best or run.epoch == cfg.epochs):
            title = f"{cfg.variant}, epoch {run.epoch}: val PSNR {val_psnr:.2f} dB, SSIM {val_ssim:.3f}"
            # preview.png always shows best.pt's epoch; a final epoch that is no best goes beside it.
            preview = run.preview(out_dir / ("preview.png" if is_best else "preview-last.png"), title, writer)
        result = EpochResult(run.epoch, train_loss, val_psnr, val_ssim, lr,
                             time.perf_counter() - t0, str(run.device), is_best, preview, trained)
        run.history.append(result)
        run.save(out_dir, is_best, writer)
        if on_epoch_written is not None:
            writer.submit(functools.partial(on_epoch_written, result))
        if on_epoch_end is not None:
            on_epoch_end(result)
