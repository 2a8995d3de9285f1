"""From a DataConfig to train/val patch arrays: list files, read, cut, cache, split, subset.

The expensive part (decoding and cutting every raster) is cached on disk under a key made of
the data config and the files' sizes and modification times, so every trial of a study after
the first one reads a memory-mapped `.npy`. The first one writes it raster by raster, so
preparing holds one raster's patches in memory, not the data set's. The split and the subsets are computed from the
cached index in microseconds, so they cost nothing per trial.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from errors import DataError, RasterReadError
from training.cache import CACHE_VERSION, cache_root, describe_data, in_use, making, read_patches
from training.config import DataConfig, config_hash
from training.data.patches import patch_rows, too_empty, within_tiles
from training.data.readers import read_raster
from training.data.synthetic import synthetic_dir
from training.files import atomic_write, require_dir, write_npy_rows

log = logging.getLogger("sarsweep.data")


@dataclass
class PreparedData:
    """Every patch of a data config, with the source file of each."""

    patches: np.ndarray
    """(N, C, P, P) float32, usually a read-only memory map."""
    patch_file: np.ndarray
    """(N,) index into `files` of each patch's source file (or tile)."""
    files: list[str]
    """Source files with patches, relative to the data root; with split: tiles, their tiles
    (`<file>@y<top>x<left>`): the groups validation is held out by."""
    skipped: list[str]
    """Files left out because they could not be read (on_error: skip)."""
    cache_path: Path | None = None
    sources: int | None = None
    """Files the include globs matched (None: a cache entry written before this was recorded)."""
    nodata_dropped: int = 0
    """Patches left out for more no-data pixels than data.max_nodata."""
    across_tiles: int = 0
    """Windows left out for crossing a tile border (split: tiles)."""
    pixels: dict[str, list[int]] = field(default_factory=dict)
    """With data.cover_borders, per file: [pixels inside a kept patch, pixels of the raster]."""


@dataclass
class SplitData:
    """The arrays one run trains and validates on."""

    train: np.ndarray
    val: np.ndarray
    train_files: list[str]
    val_files: list[str]
    total_train_patches: int
    """Train-split patches before the fraction was taken."""
    nodata_dropped: int = 0
    """Patches left out for more no-data pixels than data.max_nodata (both splits)."""
    across_tiles: int = 0
    """Windows left out for crossing a tile border (split: tiles)."""
    val_patch_files: int | None = None
    """Files (or tiles) the validation patches come from: fewer than val_files when data.val_max_patches
    keeps a subset. What `sarsweep evaluate` counts on the same split (None: as val_files)."""
    total_val_patches: int | None = None
    """Validation-split patches before data.val_max_patches (None: as val)."""
    _resident: dict[str, tuple[Any, torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, repr=False, compare=False)

    def resident(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) as tensors on `device`, copied there once and reused by every trial of a
        worker (a stage's subset stays on the GPU instead of crossing PCIe per trial)."""
        key = str(device)
        cached = self._resident.get(key)
        if cached is None or cached[0] is not self.train:
            self._resident.clear()  # one device at a time: never hold two copies
            train = torch.from_numpy(np.ascontiguousarray(self.train)).to(device)
            val = torch.from_numpy(np.ascontiguousarray(self.val)).to(device)
            cached = self._resident[key] = (self.train, train, val)
        return cached[1], cached[2]

    def release(self) -> None:
        """Drop the device copies resident() made (a worker switching to another stage's data)."""
        self._resident.clear()


def data_root(cfg: DataConfig) -> Path:
    if cfg.root is None:
        return synthetic_dir(cfg.synthetic, cfg.channels, cache_root())
    return require_dir(cfg.root, "data.root")


def list_sources(root: Path, include: list[str]) -> list[Path]:
    """Files under root matching any pattern, sorted by relative path (so order is stable)."""
    found = {p for pattern in include for p in root.glob(pattern) if p.is_file()}
    if not found:
        raise DataError(f"data.include: no file under {root} matches {', '.join(include)}")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


SKIP_HINT = "data.on_error: skip (evaluate: --on-error skip) leaves unreadable files out"


def with_skip_hint(exc: RasterReadError) -> RasterReadError:
    """The error, saying how to leave such files out (data.on_error: skip)."""
    reason = str(exc).split(": ", 1)[1] if ": " in str(exc) else str(exc)
    return RasterReadError(exc.path, f"{reason} ({SKIP_HINT})")


def check_sources(cfg: DataConfig) -> str:
    """What a worker reads first, checked before any study is made (`sarsweep init`): the root, the
    include globs matching files, and the first of them read. One line saying what was found; the
    same one-line errors a worker would give. Generated data (no root) is made by the workers."""
    if cfg.root is None:
        return "data: generated SAR-like scenes (made by each node on first use)"
    root = data_root(cfg)
    sources = list_sources(root, cfg.include)
    first = sources[0]
    try:
        image = read_raster(first, cfg)
    except RasterReadError as exc:
        if cfg.on_error == "raise":
            raise with_skip_hint(exc) from None
        return (f"data: {len(sources)} file(s) under {root} match data.include; the first, "
                f"{first.relative_to(root).as_posix()}, cannot be read and is left out (data.on_error: skip)")
    return (f"data: {len(sources)} file(s) under {root} match data.include; read "
            f"{first.relative_to(root).as_posix()} ({image.shape[-2]}x{image.shape[-1]} px)")


def _cache_relevant(cfg: DataConfig, root: Path, sources: list[Path]) -> dict[str, Any]:
    """Everything the prepared patches depend on; its hash is the cache key."""
    stats = [(p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in sources]
    return {
        "version": CACHE_VERSION, "root": str(root.resolve()), "files": stats,
        **{k: getattr(cfg, k) for k in ("kind", "channels", "band", "patch_size", "small_chips",
                                        "clip_percentiles", "nodata", "max_nodata", "split", "tile_size",
                                        "on_error")},
        **({"cover_borders": True} if cfg.cover_borders else {}),  # entries made before it stay valid
        "stride": cfg.effective_stride,
    }


def _images(cfg: DataConfig, root: Path, sources: list[Path], skipped: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(file, its normalised image) for each source, one raster in memory at a time; unreadable
    files go to `skipped` when on_error is skip."""
    for path in sources:
        rel = path.relative_to(root).as_posix()
        try:
            image = read_raster(path, cfg)
        except RasterReadError as exc:
            if cfg.on_error == "raise":
                raise with_skip_hint(exc) from None
            log.warning("skipping %s", exc)
            skipped.append(rel)
            continue
        yield rel, image


class _Cutter:
    """Cuts images into rows of the patches to keep, each with its group: the file, or with
    `split: tiles` the tile of the file it lies in (named `<file>@y<top>x<left>`, in pixels).
    Groups are numbered in the order their first patch comes."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.groups: dict[str, int] = {}
        self.nodata_dropped = 0
        self.across_tiles = 0
        self.pixels: dict[str, list[int]] = {}

    def rows(self, rel: str, image: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cfg, gaps = self.cfg, bool(np.isnan(image).any())
        # Which pixels lie in a kept patch, when every pixel is meant to (cover_borders): a mask
        # of one byte a pixel, the size of the raster's own float32 band divided by four.
        covered = np.zeros(image.shape[-2:], bool) if cfg.cover_borders else None
        size = cfg.patch_size
        for row in patch_rows(image, size, cfg.effective_stride, cfg.small_chips, cfg.cover_borders):
            keep = np.ones(len(row.lefts), bool)
            if cfg.split == "tiles":
                keep, column = within_tiles(row, cfg.patch_size, cfg.tile_size)
                self.across_tiles += int((~keep).sum())
            if gaps:
                empty = too_empty(row.patches, cfg.max_nodata)
                self.nodata_dropped += int((empty & keep).sum())
                keep &= ~empty
            if not keep.any():
                continue
            if covered is not None:
                for left in row.lefts[keep].tolist():
                    covered[row.top:row.top + size, left:left + size] = True
            patches = row.patches if keep.all() else row.patches[keep]
            if gaps:
                np.nan_to_num(patches, copy=False, nan=0.0)
            if cfg.split == "tiles":  # a name per tile in the row, not per window
                tile, top = cfg.tile_size, row.top // cfg.tile_size * cfg.tile_size
                columns, where = np.unique(column[keep], return_inverse=True)
                ids = np.array([self._group(f"{rel}@y{top}x{c * tile}") for c in columns], np.int32)
                owner = ids[where]
            else:
                owner = np.full(len(patches), self._group(rel), np.int32)
            yield patches, owner
        if covered is not None:
            self.pixels[rel] = [int(covered.sum()), int(image.shape[-2] * image.shape[-1])]

    def _group(self, name: str) -> int:
        return self.groups.setdefault(name, len(self.groups))


def _write_patches(cfg: DataConfig, root: Path, sources: list[Path], array_path: Path) -> dict[str, Any]:
    """Decode and cut every source straight into the cache's .npy; returns its index."""
    skipped: list[str] = []
    owners: list[np.ndarray] = []
    cutter = _Cutter(cfg)

    def chunks() -> Iterator[np.ndarray]:
        # A file too small for one patch is in no group: it can be neither train nor val.
        for rel, image in _images(cfg, root, sources, skipped):
            for patches, owner in cutter.rows(rel, image):
                owners.append(owner)
                yield patches

    row = (cfg.channels, cfg.patch_size, cfg.patch_size)
    atomic_write(array_path, lambda tmp: write_npy_rows(tmp, chunks(), row))
    owner = np.concatenate(owners) if owners else np.empty(0, np.int32)
    return {"files": list(cutter.groups), "skipped": skipped, "patch_file": owner.tolist(), "sources": len(sources),
            "nodata_dropped": cutter.nodata_dropped, "across_tiles": cutter.across_tiles, "pixels": cutter.pixels}


def prepare(cfg: DataConfig) -> PreparedData:
    """All patches for `cfg`, from the on-disk cache when it has them.

    The cache's shared lock is held throughout, so `sarsweep cache prune` never deletes the
    generated scenes being read or the entry being written."""
    with in_use(cache_root()):
        root = data_root(cfg)
        sources = list_sources(root, cfg.include)
        relevant = _cache_relevant(cfg, root, sources)
        directory, key = cache_root() / "patches", config_hash(relevant)
        array_path = directory / f"{key}.npy"
        cached = read_patches(directory, key)
        if cached is None:
            wait = functools.partial(log.info, "waiting: another process prepares the same data (%s)", root)
            with making(cache_root(), f"patches-{key}", on_wait=wait):
                cached = read_patches(directory, key)  # it may have while we waited
                if cached is None:
                    cached = _make_entry(cfg, root, sources, relevant, directory, key)
        patches, index = cached
        return PreparedData(patches, np.asarray(index["patch_file"], np.int32), index["files"], index["skipped"],
                            array_path, index.get("sources"), index.get("nodata_dropped", 0),
                            index.get("across_tiles", 0), index.get("pixels", {}))


def _make_entry(cfg: DataConfig, root: Path, sources: list[Path], relevant: dict[str, Any], directory: Path,
                key: str) -> tuple[np.ndarray, dict[str, Any]]:
    array_path = directory / f"{key}.npy"
    index = _write_patches(cfg, root, sources, array_path)
    index["data"] = describe_data(relevant, len(index["patch_file"]))
    # the index is written last: it marks the entry complete
    atomic_write(directory / f"{key}.json", lambda tmp: Path(tmp).write_text(json.dumps(index)))
    return np.load(array_path, mmap_mode="r"), index


def split_files(n_files: int, val_fraction: float, seed: int, by: str = "files") -> np.ndarray:
    """Sorted indices of the files (or tiles) held out for validation (at least one, never all)."""
    if n_files < 2:
        if by == "tiles":
            raise DataError(f"need at least 2 tiles with patches to split train/val, got {n_files}; "
                            "lower data.tile_size")
        raise DataError(f"need at least 2 source files with patches to split train/val, got {n_files}; "
                        "to hold out parts of one large scene, set data.split: tiles")
    n_val = min(max(1, round(val_fraction * n_files)), n_files - 1)
    order = np.random.default_rng([seed, 0]).permutation(n_files)
    return np.sort(order[:n_val])


def nested_subset(n: int, fraction: float, seed: int, stream: int = 1) -> np.ndarray:
    """Sorted indices of the first `floor(fraction * n)` of one seeded permutation of range(n).

    The permutation does not depend on the fraction, so smaller subsets lie inside larger ones.
    """
    count = n if fraction >= 1.0 else int(fraction * n)
    return np.sort(np.random.default_rng([seed, stream]).permutation(n)[:count])


def split(prepared: PreparedData, cfg: DataConfig, fraction: float) -> SplitData:
    """Train subset (`fraction` of the train split) and validation patches, as arrays in RAM."""
    desc = f"patch_size {cfg.patch_size}, stride {cfg.effective_stride}"
    if len(prepared.patches) == 0:
        skipped = prepared.skipped
        if prepared.sources is not None and len(skipped) >= prepared.sources:
            raise DataError(f"none of the {prepared.sources} file(s) data.include matched could be read "
                            f"(data.on_error: skip left them all out, e.g. {skipped[0]})")
        if prepared.nodata_dropped:
            raise DataError(f"no patch of {desc} has data: all {prepared.nodata_dropped} were more than "
                            f"{cfg.max_nodata:.0%} no-data pixels (data.max_nodata; data.nodata is {cfg.nodata!r})")
        read = "" if prepared.sources is None else f"{prepared.sources - len(skipped)} "  # none gave a patch
        raise DataError(f"no patch of {desc} could be cut: the {read}readable file(s) are all smaller than "
                        f"{cfg.patch_size} px; lower data.patch_size or set data.small_chips: pad")
    val_files = split_files(len(prepared.files), cfg.val_fraction, cfg.seed, cfg.split)
    train_idx = np.flatnonzero(~np.isin(prepared.patch_file, val_files))
    chosen = train_idx[nested_subset(len(train_idx), fraction, cfg.seed)]
    if len(chosen) == 0:
        raise DataError(f"fraction {fraction} of {len(train_idx)} training patches ({desc}) "
                        "selects no patch; raise the fraction or use more data")
    val_idx = validation_indices(prepared, cfg)
    val_set = set(val_files.tolist())
    return SplitData(
        train=np.ascontiguousarray(prepared.patches[chosen]),
        val=np.ascontiguousarray(prepared.patches[val_idx]),
        train_files=[f for i, f in enumerate(prepared.files) if i not in val_set],
        val_files=[prepared.files[i] for i in val_files],
        total_train_patches=len(train_idx),
        nodata_dropped=prepared.nodata_dropped,
        across_tiles=prepared.across_tiles,
        val_patch_files=len(np.unique(prepared.patch_file[val_idx])),
        total_val_patches=int(np.isin(prepared.patch_file, val_files).sum()),
    )


def describe_split(data: SplitData, cfg: DataConfig, fraction: float) -> str:
    """One line on what a run trains and validates on, e.g. 'data: 1,204 training patches (0.05 of
    24,080 from 280 files), 2,000 validation patches from 71 files'."""
    def groups(n: int) -> str:
        return f"{n} {'tile' if cfg.split == 'tiles' else 'file'}{'' if n == 1 else 's'}"

    source = groups(len(data.train_files))
    source = f"({fraction:g} of {data.total_train_patches:,} from {source})" if fraction < 1 else f"from {source}"
    used = data.val_patch_files if data.val_patch_files is not None else len(data.val_files)
    val = f"{len(data.val):,} validation patches"
    if data.total_val_patches is not None and data.total_val_patches > len(data.val):  # data.val_max_patches
        val += f" (a fixed {len(data.val):,} of {data.total_val_patches:,}, data.val_max_patches)"
    val += (f" from {groups(used)}" if used == len(data.val_files)
            else f" from {used} of the {groups(len(data.val_files))} held for validation")
    line = f"data: {len(data.train):,} training patches {source}, {val}"
    if data.nodata_dropped:
        line += f"; {data.nodata_dropped:,} patches left out as more than {cfg.max_nodata:.0%} no-data"
    if data.across_tiles:
        line += f"; {data.across_tiles:,} across tile borders left out"
    return line


def validation_indices(prepared: PreparedData, cfg: DataConfig) -> np.ndarray:
    """Sorted indices of the validation patches: those of the held-out files, capped at
    `val_max_patches` by a fixed seeded subset."""
    val_files = split_files(len(prepared.files), cfg.val_fraction, cfg.seed, cfg.split)
    val_idx = np.flatnonzero(np.isin(prepared.patch_file, val_files))
    if cfg.val_max_patches is not None and len(val_idx) > cfg.val_max_patches:
        val_idx = val_idx[nested_subset(len(val_idx), cfg.val_max_patches / len(val_idx), cfg.seed, 2)]
    return val_idx


def load_data(cfg: DataConfig, fraction: float = 1.0) -> SplitData:
    """The one call the trainer makes: prepared (cached) data, split and subset."""
    return split(prepare(cfg), cfg, fraction)
