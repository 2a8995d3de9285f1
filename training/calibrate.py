"""What an epoch of a config costs on this machine, measured with the trainer itself.

    cost = calibrate(cfg, data)            # cfg: the run's TrainConfig, data: its SplitData
    cost.epoch(n_train=24_080, batch_size=16)   # seconds of one epoch on that many patches

Trains `cfg` for three epochs on two small slices of the training patches (a few batches each)
with the whole validation set. The faster of epochs 2 and 3 is an epoch's cost (the first pays
one-time start-up: allocation, cuDNN's algorithm search, a compile; what it pays beyond the others
is the trial's start-up, with what `train` spends outside its epochs). The two slices give a
line: the seconds every epoch pays whatever its size (validation, checkpoints, previews) and the
seconds per training step. The same trainer, device, precision, width and patch size as the run
it forecasts.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass

from training.config import TrainConfig
from training.data import SplitData
from training.trainer import steps_per_epoch, train


@dataclass
class EpochCost:
    fixed: float
    """Seconds per epoch that do not grow with the training patches: validation, checkpoints."""
    per_step: float
    """Seconds per training step (one batch)."""
    startup: float = 0.0
    """Seconds a trial's first epoch pays beyond the others."""

    def epoch(self, n_train: int, batch_size: int) -> float:
        return self.fixed + self.per_step * steps_per_epoch(n_train, batch_size)


def _epochs(cfg: TrainConfig, data: SplitData, batches: int) -> tuple[float, float]:
    """(the run's start-up: what the first epoch pays beyond the others plus what `train` spends
    outside its epochs (model, optimizer, data to the device, closing the writer); the faster of
    epochs 2 and 3) on `batches` batches."""
    n = min(len(data.train), batches * cfg.batch_size)
    part = dataclasses.replace(data, train=data.train[:n], _resident={})
    with tempfile.TemporaryDirectory(prefix="sarsweep-calibrate-") as out:
        result = train(cfg.replace(epochs=3, warmup_epochs=0, out_dir=out), progress=False, data=part)
    seconds = [e.seconds for e in result.history]
    epoch = min(seconds[1:])
    return (seconds[0] - epoch) + max(0.0, result.seconds - sum(seconds)), epoch


def calibrate(cfg: TrainConfig, data: SplitData, batches: tuple[int, int] = (2, 10)) -> EpochCost:
    """The epoch cost of `cfg` on `data`'s validation set (see the module docstring)."""
    few, more = batches
    most = steps_per_epoch(len(data.train), cfg.batch_size)
    few, more = min(few, most), min(more, most)
    startup, small = _epochs(cfg, data, few)
    startup = max(0.0, startup)
    if more == few:  # too few patches for two sizes: all of it is one epoch's cost
        return EpochCost(fixed=small, per_step=0.0, startup=startup)
    large = _epochs(cfg, data, more)[1]
    per_step = max(0.0, (large - small) / (more - few))
    return EpochCost(fixed=max(0.0, small - per_step * few), per_step=per_step, startup=startup)
