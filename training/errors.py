"""Errors raised by the training room; all are `SarsweepError`s shown to users as one line."""

from __future__ import annotations

from models.errors import SarsweepError


class ConfigError(SarsweepError, ValueError):
    """A config value is missing, unknown or invalid. `field` is its dotted path."""

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        self.message = message
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.field}: {self.message}" if self.field else f"{where}{self.message}"

    def within(self, prefix: str | None = None, source: str | None = None) -> ConfigError:
        """The same error, seen from an enclosing section or file."""
        field = f"{prefix}.{self.field}" if prefix and self.field else (prefix or self.field)
        return ConfigError(field, self.message, source or self.source)


class DataError(SarsweepError):
    """The data set cannot be built: a missing directory, no files, or zero patches."""


class RasterReadError(DataError):
    """One raster file could not be read or interpreted; the message names the file."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot read SAR raster {self.path}: {reason}")


class OutputError(SarsweepError):
    """A file sarsweep writes (checkpoint, preview, cache, exported config) could not be written:
    a read-only or full disk, a missing mount, a file where a folder should be."""

    def __init__(self, path: object, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot write {self.path}: {reason}")


class DeviceError(SarsweepError):
    """The device asked for is not on this machine (no CUDA build, no visible GPU, a wrong index)."""


class CheckpointError(SarsweepError):
    """A checkpoint is missing, corrupt, or was made by a different config."""


class NonFiniteLossError(SarsweepError, FloatingPointError):
    """The training loss became NaN or infinite; the run cannot continue."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        self.epoch, self.step, self.value = epoch, step, value
        super().__init__(
            f"non-finite training loss ({value}) at epoch {epoch}, step {step}; "
            "lower the learning rate or enable gradient clipping"
        )
