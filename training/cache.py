"""The node-local cache of prepared data: where it is, what it holds, and keeping it in bounds.

    sarsweep cache list                                # every entry: what data, size, last use
    sarsweep cache prune --older-than 30d --max-size 50G

Under `cache_root()` ($SARSWEEP_CACHE, else ~/.cache/sarsweep):

    patches/<key>.npy + <key>.json   every patch of one data config; the .json, written last,
                                     marks it complete and is touched at each use
    synthetic/<key>/                 generated scenes of one generator config (touched at each use)
    inductor/                        torch.compile's kernels; torch manages it, prune leaves it
    locks/<key>.lock                 one process makes an entry, the others wait (see making)

Every data config and every held-out folder that `evaluate` scores adds an entry, and a dataset
whose files change gets a new key, so without pruning the cache only grows.

Preparing data holds a shared lock on `<root>/.lock`; pruning holds it exclusively, so no entry
is deleted while a process decodes into it or reads scenes from it. A process that already has
an entry memory-mapped keeps reading it after it is deleted (POSIX unlink semantics), so a
running trial never needs the lock. Anything half-written found under the exclusive lock is a
leftover of a killed preparation and goes with every prune.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errors import OutputError
from training.files import human_bytes, os_reason

LOCK_NAME = ".lock"
CACHE_VERSION = 3
"""Of how data is prepared, part of every entry's key (2: no-data pixels out of the percentiles)."""
LOCKS = "locks"


def cache_root() -> Path:
    """Where prepared data lives: $SARSWEEP_CACHE, else ~/.cache/sarsweep (node-local)."""
    return Path(os.environ.get("SARSWEEP_CACHE") or Path.home() / ".cache" / "sarsweep")


@contextlib.contextmanager
def _flock(lock: Path, mode: int, on_wait: Callable[[], None] | None = None,
           required: bool = False) -> Iterator[None]:
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+b")  # noqa: SIM115 - held across the yield
    except OSError as exc:
        if required:
            raise OutputError(lock.parent, os_reason(exc, lock)) from None
        # A read-only cache (a shared, pre-filled mount): nobody can prune it or write to it
        # either, and a write that needs the lock fails with its own message.
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, mode)
        yield  # closing the handle releases the lock, as does the holder's death


def in_use(root: Path) -> contextlib.AbstractContextManager[None]:
    """Held (shared) while data is prepared: `prune` waits for it."""
    return _flock(root / LOCK_NAME, fcntl.LOCK_SH)


def making(root: Path, key: str, on_wait: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[None]:
    """Held (exclusive, inside in_use) while the entry `key` is made. The workers that `launch`
    starts together on a node all find the cache cold: one prepares, the others wait and then read
    its entry, instead of each decoding every raster beside it (N times the memory and the CPU).
    The lock files stay, empty, under locks/ until a prune (which no holder can overlap)."""
    return _flock(root / LOCKS / f"{key}.lock", fcntl.LOCK_EX, on_wait)


def touch(path: Path) -> None:
    """Record a use; a read-only cache stays as it is."""
    with contextlib.suppress(OSError):
        os.utime(path)


def read_patches(directory: Path, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The memory-mapped patches and index of a complete entry, or None."""
    array_path, index_path = directory / f"{key}.npy", directory / f"{key}.json"
    try:
        index = json.loads(index_path.read_text())
        patches = np.load(array_path, mmap_mode="r")
    except FileNotFoundError:  # not prepared yet, or pruned between two looks
        return None
    touch(index_path)
    return patches, index


def describe_data(relevant: dict[str, Any], n_patches: int) -> dict[str, Any]:
    """What `cache list` shows of an entry, stored in its index (the key alone is a hash)."""
    meta = {k: v for k, v in relevant.items() if k != "files"}
    meta.update(files=len(relevant["files"]), patches=n_patches,
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    return meta


# ---- listing and pruning -----------------------------------------------------------------

@dataclass
class Entry:
    """One removable thing in the cache."""

    kind: str
    """'patches', 'scenes', or 'leftover' (a killed preparation's partial files)."""
    paths: list[Path]
    bytes: int
    last_used: float
    """Seconds since the epoch."""
    what: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.paths[0].name.split(".")[0] or self.paths[0].name

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "paths": [str(p) for p in self.paths], "bytes": self.bytes,
                "last_used": dt.datetime.fromtimestamp(self.last_used, dt.UTC).isoformat(timespec="seconds"),
                "what": self.what, **({"data": self.meta} if self.meta else {})}


@dataclass
class Contents:
    root: Path
    entries: list[Entry]
    inductor_bytes: int

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.entries)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _patch_entry(index_path: Path) -> Entry:
    array_path = index_path.with_suffix(".npy")
    index = json.loads(index_path.read_text())
    meta = index.get("data", {})
    if meta:
        root = str(meta["root"])
        if "/synthetic/" in root:
            root = f"generated scenes {Path(root).name}"
        what = (f"{root}: {meta['patches']:,} patches of {meta['patch_size']} px, stride {meta['stride']}, "
                f"kind {meta['kind']}, from {meta['files']} file(s)")
        if meta.get("split") == "tiles":
            what += f", tiles of {meta['tile_size']} px"
        if meta.get("nodata") not in (None, "auto"):
            what += f", nodata {meta['nodata']:g}"
        if meta.get("version") != CACHE_VERSION:  # no key of this sarsweep matches it: it only ages
            what += " (prepared by an older sarsweep: never read again)"
    else:  # written by sarsweep before entries described themselves
        shape = np.load(array_path, mmap_mode="r").shape
        what = f"{shape[0]:,} patches of {shape[-1]} px from {len(index['files'])} file(s) (no record of where)"
    return Entry("patches", [index_path, array_path], _size(index_path) + _size(array_path),
                 index_path.stat().st_mtime, what, meta)


def _scenes_entry(folder: Path) -> Entry:
    scenes = sorted(folder.glob("*.npy"))
    size = np.load(scenes[0], mmap_mode="r").shape[0] if scenes else 0
    return Entry("scenes", [folder], _size(folder), folder.stat().st_mtime,
                 f"generated scenes: {len(scenes)} of {size}x{size}")


def _leftover(path: Path) -> Entry:
    return Entry("leftover", [path], _size(path), path.stat().st_mtime,
                 "partial files: a preparation under way, or one that was killed")


def _looked_at(describe: Callable[[Path], Entry], path: Path) -> list[Entry]:
    """[describe(path)], or [] when a concurrent writer or prune took it away meanwhile."""
    try:
        return [describe(path)]
    except FileNotFoundError:
        return []


def contents(root: Path | None = None) -> Contents:
    """Every entry under the cache root, least recently used first."""
    root = root or cache_root()
    entries: list[Entry] = []
    patches, synthetic = root / "patches", root / "synthetic"
    if patches.is_dir():
        complete = set()
        for index_path in patches.glob("*.json"):
            if index_path.with_suffix(".npy").is_file():
                entries += _looked_at(_patch_entry, index_path)
                complete.update({index_path.name, index_path.with_suffix(".npy").name})
        for path in patches.iterdir():
            if path.name not in complete:
                entries += _looked_at(_leftover, path)
    if synthetic.is_dir():
        for folder in synthetic.iterdir():
            entries += _looked_at(_leftover if folder.name.startswith(".") else _scenes_entry, folder)
    inductor = root / "inductor"
    entries.sort(key=lambda e: e.last_used)
    return Contents(root, entries, _size(inductor) if inductor.is_dir() else 0)


@dataclass
class Pruned:
    removed: list[Entry]
    left: Contents


def prune(older_than: float | None = None, max_bytes: int | None = None, dry_run: bool = False,
          root: Path | None = None, on_wait: Callable[[], None] | None = None) -> Pruned:
    """Remove leftovers, entries unused for `older_than` seconds, then the least recently used
    until the rest fit in `max_bytes`. Waits (calling `on_wait` first) while data is prepared."""
    root = root or cache_root()
    if not root.is_dir():
        return Pruned([], Contents(root, [], 0))
    with _flock(root / LOCK_NAME, fcntl.LOCK_EX, on_wait, required=True):
        found = contents(root)
        now = time.time()
        doomed = [e for e in found.entries
                  if e.kind == "leftover" or (older_than is not None and now - e.last_used > older_than)]
        kept = [e for e in found.entries if e not in doomed]
        while max_bytes is not None and kept and sum(e.bytes for e in kept) > max_bytes:
            doomed.append(kept.pop(0))  # least recently used first
        if not dry_run:
            for entry in doomed:
                _remove(entry)
            shutil.rmtree(root / LOCKS, ignore_errors=True)  # held by no one while we hold the root's
    return Pruned(doomed, Contents(root, kept, found.inductor_bytes))


def _remove(entry: Entry) -> None:
    for path in entry.paths:  # a patch entry's index first: without it the entry is not complete
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(path, os_reason(exc, path)) from None


# ---- what `sarsweep cache` prints ----------------------------------------------------------

def age(seconds: float) -> str:
    """95 -> '2m', 7200 -> '2.0h', 3 days -> '3.0d'."""
    if seconds < 3600:
        return f"{max(seconds, 0) / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def summary(found: Contents) -> str:
    where = f"{len(found.entries)} entr{'y' if len(found.entries) == 1 else 'ies'}, {human_bytes(found.bytes)}"
    kernels = f"; torch.compile kernels {human_bytes(found.inductor_bytes)} in {found.root / 'inductor'}, " \
              "not pruned (delete it when no worker runs)" if found.inductor_bytes else ""
    return f"cache {found.root}: {where}{kernels}"


def entry_line(e: Entry, now: float) -> str:
    return f"{e.kind:<9} {e.name[:16]:<16} {human_bytes(e.bytes):>10}  {age(now - e.last_used):>6}  {e.what}"


def listing(found: Contents) -> list[str]:
    now = time.time()
    free = f" ({human_bytes(shutil.disk_usage(found.root).free)} free on its disk)" if found.root.is_dir() else ""
    lines = [summary(found) + free]
    if found.entries:
        lines.append(f"{'kind':<9} {'entry':<16} {'size':>10}  {'unused':>6}  what")
        lines += [entry_line(e, now) for e in reversed(found.entries)]  # most recently used first
    return lines


def prune_lines(result: Pruned, dry_run: bool) -> list[str]:
    if not result.removed:
        return ["nothing to remove; " + summary(result.left)]
    now = time.time()
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {entry_line(e, now)}" for e in result.removed]
    freed = human_bytes(sum(e.bytes for e in result.removed))
    lines.append(f"{'would free' if dry_run else 'freed'} {freed}; left: " + summary(result.left))
    return lines
