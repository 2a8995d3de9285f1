"""The one config schema: `TrainConfig` describes one training run, everywhere.

`sarsweep train --config run.yaml` reads it, a search trial builds it from sampled values, an
export writes it back, and every checkpoint carries it. Load with `load_train_config(path)`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from errors import ConfigError
from training.schema import build, require, to_plain

DEFAULT_INCLUDE = ["**/*.tif", "**/*.tiff", "**/*.npy", "**/*.png", "**/*.jpg", "**/*.jpeg"]


@dataclass
class SyntheticConfig:
    """Generated speckled scenes: the embedded default data set (no download needed)."""

    scenes: int = 24
    """Number of scenes (files) to generate; the train/val split is made over scenes."""
    size: int = 128
    """Side of each square scene in pixels."""
    looks: int = 4
    """Number of looks L of the Gamma(L, 1/L) intensity speckle; 1 is the harshest."""
    seed: int = 0
    """Seed of the scene generator: the same seed gives the same scenes on every machine."""

    def __post_init__(self) -> None:
        require(self.scenes >= 2, "scenes", f"must be at least 2 (one to train, one to validate), got {self.scenes}")
        require(self.size >= 8, "size", f"must be at least 8 pixels, got {self.size}")
        require(self.looks >= 1, "looks", f"must be at least 1, got {self.looks}")


@dataclass
class DataConfig:
    """Where the SAR rasters come from and how they become normalised patches."""

    root: str | None = None
    """Directory of SAR rasters (searched recursively); null = generated synthetic scenes."""
    include: list[str] = field(default_factory=lambda: list(DEFAULT_INCLUDE))
    """Glob patterns, relative to `root`, of the files to read."""
    kind: Literal["auto", "amplitude", "intensity", "complex"] = "auto"
    """What the numbers are. auto: complex dtypes and rasters with negative values are complex
    (I/Q channel pairs), everything else amplitude. Intensity (e.g. sigma0) must be said."""
    channels: int = 1
    """Channels fed to the model (1 single-pol, 2 dual-pol); also the model's in_channels."""
    band: int = -1
    """With channels=1, which polarisation band of a multi-band raster to keep (-1 = last,
    VV in OpenSARShip's [VH, VV] order)."""
    patch_size: int = 32
    """Side of the square training patches; must be a multiple of the model's downsampling."""
    stride: int | None = None
    """Step between patches; null = patch_size (no overlap)."""
    small_chips: Literal["skip", "pad"] = "skip"
    """Chips smaller than a patch: skip them, or pad them (mirror) up to one patch."""
    cover_borders: bool = False
    """Also cut a window flush with a raster's right and bottom borders where the stride stops short
    of them, so every pixel lies in a patch (`sarsweep evaluate --data` scores rasters whole so)."""
    clip_percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])
    """Per-image percentiles of log-amplitude mapped to 0 and 1 (values beyond are clipped)."""
    val_fraction: float = 0.2
    """Share of source files (or tiles, see split) held out for validation (never split by patch)."""
    split: Literal["files", "tiles"] = "files"
    """What validation holds out: whole files, or, for one or a few large scenes, whole square
    tiles of tile_size px (a patch across a tile border is dropped, so no pixel is in both)."""
    tile_size: int = 1024
    """With split: tiles, the side of a tile in pixels (at least patch_size)."""
    seed: int = 0
    """Seed of the train/val split and of the nested train subsets."""
    val_max_patches: int | None = None
    """Cap on validation patches (a fixed seeded subset), to bound validation time."""
    nodata: float | Literal["auto"] | None = "auto"
    """Raw value of pixels without data, e.g. 0 for the zero-filled borders of a Sentinel-1 GRD
    scene. auto: a GeoTIFF's GDAL_NODATA tag where it has one, else none; null: none. NaN and
    infinities are always no-data. No-data pixels are left out of the percentiles and read as 0."""
    max_nodata: float = 0.1
    """Largest share of no-data pixels a patch may have; patches with more (a scene's border)
    are dropped."""
    on_error: Literal["raise", "skip"] = "raise"
    """A corrupt or unreadable file: stop with an error naming it, or warn and skip it."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Generator settings, used only when root is null."""

    def __post_init__(self) -> None:
        require(self.channels >= 1, "channels", f"must be at least 1, got {self.channels}")
        require(self.patch_size >= 8, "patch_size", f"must be at least 8, got {self.patch_size}")
        require(self.stride is None or self.stride >= 1, "stride", f"must be positive, got {self.stride}")
        require(len(self.include) > 0, "include", "needs at least one glob pattern")
        lo_hi = self.clip_percentiles
        require(
            len(lo_hi) == 2 and 0.0 <= lo_hi[0] < lo_hi[1] <= 100.0, "clip_percentiles",
            f"must be [low, high] with 0 <= low < high <= 100, got {lo_hi}",
        )
        require(0.0 < self.val_fraction < 1.0, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        require(self.split != "tiles" or self.tile_size >= self.patch_size, "tile_size",
                f"must be at least patch_size {self.patch_size}, got {self.tile_size}")
        require(0.0 <= self.max_nodata < 1.0, "max_nodata", f"must be in [0, 1), got {self.max_nodata}")
        require(self.nodata is None or self.nodata == "auto" or math.isfinite(self.nodata), "nodata",
                f"must be a finite number, auto or null, got {self.nodata} (NaN and infinities are always no-data)")
        require(
            self.val_max_patches is None or self.val_max_patches >= 1, "val_max_patches",
            f"must be positive or null, got {self.val_max_patches}",
        )

    @property
    def effective_stride(self) -> int:
        return self.stride or self.patch_size


@dataclass
class TrainConfig:
    """One training run of one autoencoder variant."""

    variant: str = "baseline"
    """Model name from the registry: baseline, resnet_lite, residual, attention."""
    base_channels: int = 64
    """Width of the first level; deeper levels are multiples of it."""
    latent_channels: int = 16
    """Channels of the latent code at 1/8 resolution."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data set (see DataConfig)."""
    fraction: float = 1.0
    """Share of the training split to train on (nested subsets: 0.05 lies inside 0.2)."""
    epochs: int = 20
    """Passes over the training subset."""
    batch_size: int = 32
    """Patches per optimisation step."""
    lr: float = 1e-3
    """Peak learning rate, reached at the end of warmup."""
    warmup_epochs: int = 0
    """Epochs of linear warmup from lr/10 to lr (applied per step)."""
    schedule: Literal["constant", "cosine"] = "constant"
    """After warmup: hold lr (the seed trainer's behaviour) or cosine-decay it to 0."""
    optimizer: Literal["adam", "adamw"] = "adam"
    """Adam (L2 penalty in the gradient) or AdamW (decoupled weight decay)."""
    weight_decay: float = 0.0
    """Weight decay of the optimizer."""
    grad_clip: float | None = 1.0
    """Max global gradient norm; 0 or null turns clipping off."""
    loss: Literal["mse", "l1"] = "mse"
    """Reconstruction loss."""
    seed: int = 0
    """Seed of model init and batch order: on CPU the same seed repeats a run exactly."""
    device: str = "auto"
    """auto (CUDA when available), cpu, cuda or cuda:N."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto = bf16 autocast + channels_last on CUDA, fp32 on CPU."""
    out_dir: str = "runs/train"
    """Directory for best.pt, last.pt and preview.png (the best epoch's; preview-last.png the last's)."""
    preview_patches: int = 4
    """Validation patches drawn in preview.png (input, reconstruction, error) at each new best
    epoch and at the end; 0 = no previews."""
    threads: int | None = None
    """CPU threads of a run on the CPU; null = a share of this node's cores among the sarsweep
    processes training on it (training/threads.py). The count a run used is recorded in its
    config (a trial's, an exported YAML), so `sarsweep train` repeats it: results depend on it."""
    compile: bool = False
    """Train through torch.compile. On an H100 (bench/gpu_speed.py) it made the bf16 step 1.1-1.7x
    faster for residual and attention, at 24-53 s of compiling the first time a worker meets a
    model shape (later trials of that shape reuse it; compiled kernels persist in the sarsweep
    cache): worth it for long runs of the big variants, not for baseline (it was slower there)."""

    def __post_init__(self) -> None:
        from models.catalog import downsample_factor, known_variants  # torch-free (models/catalog.py)

        require(self.variant in known_variants(), "variant",
                 f"unknown variant {self.variant!r}; known: {', '.join(known_variants())}")
        require(self.base_channels >= 1, "base_channels", f"must be at least 1, got {self.base_channels}")
        require(self.latent_channels >= 1, "latent_channels", f"must be at least 1, got {self.latent_channels}")
        require(0.0 < self.fraction <= 1.0, "fraction", f"must be in (0, 1], got {self.fraction}")
        require(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        require(0 <= self.preview_patches <= 16, "preview_patches",
                f"must be between 0 and 16, got {self.preview_patches}")
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.threads is None or self.threads >= 1, "threads", f"must be at least 1 or null, got {self.threads}")
        require(math.isfinite(self.lr) and self.lr > 0, "lr", f"must be a positive number, got {self.lr}")
        require(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs",
                 f"must be between 0 and epochs ({self.epochs}), got {self.warmup_epochs}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.grad_clip is None or self.grad_clip >= 0, "grad_clip",
                 f"must be >= 0 or null, got {self.grad_clip}")
        require(self.device == "auto" or self.device == "cpu" or self.device.split(":")[0] == "cuda",
                 "device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        factor = downsample_factor(self.variant)
        require(self.data.patch_size % factor == 0, "data.patch_size",
                 f"{self.data.patch_size} is not a multiple of {self.variant}'s downsampling factor {factor}")

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"base_channels": self.base_channels, "latent_channels": self.latent_channels,
                "in_channels": self.data.channels}

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> TrainConfig:
        try:
            return build(cls, data)
        except ConfigError as exc:
            raise exc.within(source=source) from None

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with top-level fields changed."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def with_absolute_root(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config dict (TrainConfig.to_dict()) whose data.root is absolute (~ expanded, made absolute
    against the working folder), so that it names its data from any folder. Symbolic links are kept
    as written (`../shared` that links to a mount stays `<repo>/../shared`, normalised, not the
    mount's own path, which may differ from node to node)."""
    root = cfg["data"].get("root")
    if root is None:
        return cfg
    return {**cfg, "data": {**cfg["data"], "root": os.path.normpath(os.path.abspath(os.path.expanduser(root)))}}


def config_hash(obj: Any) -> str:
    """Short stable hash of a config (or any plain tree), for cache keys and study guards."""
    text = json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that `1e-3` is a float. PyYAML follows YAML 1.1, where a
    float needs a dot (`1.0e-3`), and read `lr: 1e-3`, the way people write learning rates, as the
    string '1e-3'; YAML 1.2 (and JSON) read it as a number."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")  # 1e-3, 5E4, 2.5e-4
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    """yaml.safe_load with `1e-3` read as a float (see _Loader)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | Path) -> Any:
    """`yaml.safe_load` of a file, every failure turned into one ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", "config file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read config file ({exc.__class__.__name__}: {exc})", str(path)) from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", f"invalid YAML{where}: {problem}", str(path)) from None


def load_train_config(path: str | Path, changes: list[tuple[str, str, Any]] | None = None) -> TrainConfig:
    """The train config in `path`, with `changes` applied: (option, dotted key, value) each, such
    as ("--set data.root=/mnt/sar", "data.root", "/mnt/sar"). The file must be valid on its own
    (its errors name it); an error a change causes names that option."""
    raw = read_yaml(path)
    cfg = TrainConfig.from_dict(raw, source=str(path))
    if not changes:
        return cfg
    for option, key, value in changes:
        set_dotted(raw, key, value, option)
    try:
        return TrainConfig.from_dict(raw)
    except ConfigError as exc:
        for option, key, _ in changes:
            if exc.field == key or exc.field.startswith(key + "."):
                raise ConfigError("", exc.message, option) from None
        options = ", ".join(option for option, _, _ in changes)
        raise exc.within(source=f"{path} with {options}") from None


def set_dotted(data: dict[str, Any], key: str, value: Any, option: str) -> None:
    """data['a']['b'] = value for key 'a.b', making missing sections; a ConfigError naming
    `option` when a part of the key is no section."""
    *sections, last = key.split(".")
    if not all((*sections, last)):
        raise ConfigError("", f"{key!r} is no dotted key such as lr or data.root", option)
    node = data
    for i, name in enumerate(sections):
        child = node.setdefault(name, {})
        if child is None:
            child = node[name] = {}
        if not isinstance(child, dict):
            raise ConfigError("", f"{'.'.join(sections[:i + 1])} is {child!r}, not a section", option)
        node = child
    node[last] = value


def dump_yaml(data: dict[str, Any], header: str = "") -> str:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + body
