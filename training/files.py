"""Writing files so that readers never see half of one."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from errors import OutputError


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a unique temp file beside `path`, then rename it over `path`.

    The rename is atomic on one filesystem, so concurrent writers (N workers preparing the same
    cache, say) and readers only ever see a whole file; the temp file is removed on failure.
    An OSError (read-only or full disk, a file where a folder should be) is an OutputError
    naming the file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(path, os_reason(exc, path)) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def write_npy(path: Path, array: np.ndarray) -> None:
    """`array` as a .npy at exactly `path` (np.save(path) would append ".npy"), synced to disk;
    a full disk is an OSError with its reason (write_npy_rows, one chunk)."""
    write_npy_rows(path, [array], array.shape[1:], array.dtype)


NPY_HEADER_BYTES = 128
"""A fixed-size .npy v1.0 header, so it can be rewritten in place once the row count is known."""


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The .npy format's header (NEP 1: magic, version 1.0, length, dict literal padded with
    spaces and ending in a newline) for a C-order array, always NPY_HEADER_BYTES long."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    body = text.ljust(NPY_HEADER_BYTES - 11) + "\n"
    if len(body) != NPY_HEADER_BYTES - 10:
        raise ValueError(f"shape {shape} does not fit a {NPY_HEADER_BYTES}-byte .npy header")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


def write_npy_rows(path: Path, chunks: Iterable[np.ndarray], row_shape: tuple[int, ...],
                   dtype: str | np.dtype = "float32") -> int:
    """Write the concatenation of `chunks` (each (n, *row_shape)) as one .npy, chunk by chunk, and
    return its row count. Only one chunk is in memory at a time; np.concatenate would hold them
    all and then a second copy. Synced to disk; a full disk is an OSError with its reason."""
    rows, kind = 0, np.dtype(dtype)
    with open(path, "wb") as handle:
        handle.write(npy_header((0, *row_shape), kind))
        for chunk in chunks:
            data = np.ascontiguousarray(chunk, dtype=kind)
            if data.shape[1:] != row_shape:
                raise ValueError(f"chunk of shape {data.shape}, expected rows of {row_shape}")
            if data.size:  # a memoryview of no bytes cannot be cast
                handle.write(memoryview(data).cast("B"))
            rows += len(data)
        handle.seek(0)
        handle.write(npy_header((rows, *row_shape), kind))
        handle.flush()
        os.fsync(handle.fileno())
    return rows


def ensure_writable(directory: Path) -> None:
    """Create `directory` and prove a file can be written in it, or raise OutputError naming it.

    Called before work that would otherwise find out at its first checkpoint, an epoch or an
    hour later."""
    probe = directory / ".sarsweep-write-check"
    try:
        atomic_write(probe, lambda tmp: tmp.write_bytes(b""))
    except OutputError as exc:
        raise OutputError(directory, exc.reason) from None
    with contextlib.suppress(OSError):
        probe.unlink()


def ensure_free(directory: Path, need: int, what: str) -> None:
    """Raise OutputError naming `directory` when its filesystem has under `need` bytes free.

    A zero-byte probe (ensure_writable) passes on a full disk; this is the check sized to what
    is about to be written, so a run stops before it starts, not at its first checkpoint."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        raise OutputError(directory, os_reason(exc, directory)) from None
    if free < need:
        raise OutputError(directory, f"{human_bytes(free)} free, {what} need up to {human_bytes(need)}")


def require_dir(path: str | Path, label: str) -> Path:
    """`path` (~ expanded) when it is a directory, else a DataError naming `label`; a relative
    path is taken from the current folder (not a config file's), and the message says which."""
    from errors import DataError

    folder = Path(path).expanduser()
    if not folder.is_dir():
        where = "" if folder.is_absolute() else f" (from {Path.cwd()})"
        raise DataError(f"{label}: directory not found: {path}{where}")
    return folder


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB', 677_000_000 -> '645.6 MiB'."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.0f} bytes" if i == 0 else f"{n:.1f} {units[i]}"


def os_reason(exc: OSError, path: Path | None = None) -> str:
    """'Read-only file system', 'No space left on device': the part a user acts on, and the
    file it is about when that is not `path`, its folder or a temp file beside it. When a file
    stands where one of `path`'s folders should be, that file is named."""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR) and path is not None:  # mkdir met a file
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    if exc.filename and not (path and Path(exc.filename).is_relative_to(path.parent)):  # not a temp file beside it
        reason += f" ({exc.filename})"
    return reason
