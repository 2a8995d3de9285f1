"""Every error sarsweep reports to a user, in one module (as `optuna.exceptions` is for Optuna).

It is a room of its own below all the others (`errors`, beside models, training, storage and
search) and imports nothing, so every room imports its errors from here and from nowhere else,
and no room has to import `models` (torch's room) to raise one. The CLI shows any
`SarsweepError` as one line and exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SarsweepError(Exception):
    """Root of every error sarsweep reports to a user as one line."""


class UsageError(SarsweepError):
    """The command line asks for something that cannot be: options that do not go together, a
    variant the campaign does not have, an index out of range."""


class ModelError(SarsweepError, ValueError):
    """A model was asked for with a name, argument or input shape it cannot serve."""


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


class StorageError(SarsweepError):
    """The storage cannot be used: a malformed URL, an unreachable server, a missing schema."""


class StudyError(SarsweepError):
    """A study is missing, or belongs to a different campaign config or stage."""


class QuickUnfinished(SarsweepError):
    """A variant's quick stage still has trials to run, and a partial promotion was not asked for.
    `progress` says what it has left (search.campaign.studies.StageProgress)."""

    def __init__(self, variant: str, progress: object, sentence: str) -> None:
        self.variant, self.progress = variant, progress
        super().__init__(f"{variant}: quick stage not finished ({sentence})")
