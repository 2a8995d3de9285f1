"""Where one quick trial's wall time goes, through the real worker code path.

    python bench/trial_overhead.py [--variant resnet_lite] [--base 32] [--patch 64] [--epochs 4]
                                   [--train-patches 512] [--val-patches 128] [--device auto]
                                   [--storage URL] [--assume-train-patches 100000]
    python bench/trial_overhead.py --smoke       # seconds; what CI runs

Runs `sarsweep worker`'s own `run_worker` for two quick trials on generated scenes (SQLite in a
temporary folder unless --storage names a database) and times, with wrappers around the real
functions: data preparation (cold, then cached, as a worker does once per stage), storage calls
made by the trial's thread, run set-up (model build, optimizer, patches to the device),
training, validation, checkpointing (best.pt/last.pt), previews (render + artifact upload),
and what is left (glue: claim, sampling, config checks). The first trial warms the process up
(imports, allocator); the second is reported, from the end of the first to its own end.
Per-epoch costs are measured on a scaled-down epoch of --train-patches; the last line
extrapolates to the default quick stage (5 % of --assume-train-patches training patches,
20 epochs, validation capped at 2000 patches), and says so. A benchmark, not a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

import search.running.trial
import training.data
import training.preview
import training.trainer
from search.campaign.config import CampaignConfig
from search.running.worker import run_worker
from storage import StorageSettings, open_storage
from training.data import load_data
from training.schema import build

COMPONENTS = ("storage", "setup", "training", "validation", "checkpoint", "preview")


class Clock:
    """Seconds per component, counted on the trial's own thread only (heartbeats run beside it)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.background: dict[str, float] = defaultdict(float)
        self.depth = 0
        self.main = threading.current_thread()

    def wrap(self, name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            # Only the outermost timed call counts: a preview upload's storage calls are preview time.
            if threading.current_thread() is not self.main:
                # The background writer: off the critical path, reported apart.
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.background[name] += time.perf_counter() - t0
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()  # charge queued GPU work to the part that queued it
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1
                self.depth -= 1

        return timed

    def patch(self, owner: Any, attr: str, name: str) -> None:
        setattr(owner, attr, self.wrap(name, getattr(owner, attr)))


def campaign_for(args: argparse.Namespace, scenes: int) -> CampaignConfig:
    return build(CampaignConfig, {
        "name": "bench", "variants": [args.variant],
        "train": {
            "base_channels": args.base, "batch_size": args.batch, "device": args.device,
            "preview_patches": 4,
            "data": {"patch_size": args.patch, "val_fraction": 0.2, "val_max_patches": args.val_patches,
                     "synthetic": {"scenes": scenes, "size": args.scene}},
        },
        "search": {"lr": {"choices": [0.001]}, "warmup_epochs": {"choices": [1]}},
        "quick": {"fraction": 1.0, "epochs": args.epochs, "trials": 2, "pruner": "none"},
        "noise_seeds": 0,  # exactly the two trials timed; seed-noise re-runs would add two more
        "full": {"fraction": 1.0, "epochs": 1, "top_k": 1},
    })


def instrument(clock: Clock, storage: Any) -> None:
    for name in dir(storage):
        attr = getattr(storage, name)
        if not name.startswith("_") and callable(attr) and name != "record_heartbeat":
            setattr(storage, name, clock.wrap("storage", attr))
    run = training.trainer.Run
    clock.patch(run, "__init__", "setup")
    clock.patch(run, "train_epoch", "training")
    clock.patch(run, "validate", "validation")
    clock.patch(run, "save", "checkpoint")
    clock.patch(run, "preview", "preview")
    clock.patch(search.running.trial, "upload_preview", "preview upload")
    clock.patch(training.preview, "render_preview", "preview render")
    clock.patch(training.trainer, "save_atomic", "checkpoint write")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="resnet_lite")
    parser.add_argument("--base", type=int, default=32)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--scene", type=int, default=256, help="side of each generated scene")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-patches", type=int, default=512, help="patches per scaled-down epoch")
    parser.add_argument("--val-patches", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--storage", help="database URL (default: SQLite in a temporary folder)")
    parser.add_argument("--assume-train-patches", type=int, default=100_000,
                        help="training split size assumed for the extrapolation to the default quick stage")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; the CI check")
    args = parser.parse_args()
    if args.smoke:
        args.base, args.patch, args.scene, args.batch, args.epochs = 4, 16, 64, 8, 2
        args.train_patches, args.val_patches = 32, 16

    work = Path(tempfile.mkdtemp(prefix="sarsweep-trial-overhead-"))
    os.environ["SARSWEEP_CACHE"] = str(work / "cache")
    per_scene = (args.scene // args.patch) ** 2
    scenes = max(4, -(-args.train_patches * 5 // 4 // per_scene) + 1)
    campaign = campaign_for(args, scenes)
    url = args.storage or f"sqlite:///{work / 'bench.db'}"
    settings = StorageSettings(role="bench")
    storage = open_storage(url, settings, create_schema=True)

    data_cfg = campaign.train.data
    t0 = time.perf_counter()
    data = load_data(data_cfg, 1.0)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_data(data_cfg, 1.0)
    cached = time.perf_counter() - t0
    n_train = min(len(data.train), args.train_patches)

    def stage_data(cfg: Any, fraction: float) -> Any:
        d = load_data(cfg, fraction)
        d.train = d.train[:n_train]
        return d

    training.data.load_data = stage_data  # run_worker imports it at call time
    clock = Clock()
    instrument(clock, storage)
    marks: list[float] = []

    def after_trial(_trial: Any, _state: Any) -> None:
        # Trial 1 warms the process (imports, allocator, matplotlib): only trial 2 is reported.
        marks.append(time.perf_counter())
        if len(marks) == 1:
            clock.seconds.clear()
            clock.calls.clear()
            clock.background.clear()

    summary = run_worker(storage, campaign, args.variant, "quick", work / "artifacts", create_study=True,
                         progress=False, worker_index=0, on_trial=after_trial)
    assert summary.states.get("COMPLETE") == 2, summary.line()
    wall = marks[1] - marks[0]

    accounted = sum(clock.seconds[c] for c in COMPONENTS)
    clock.seconds["glue"] = wall - accounted
    device = training.trainer.resolve_device(args.device)
    print(f"# {platform.node()} | torch {torch.__version__} | device {device} | {args.variant} base {args.base} | "
          f"{args.patch}x{args.patch} patches, batch {args.batch} | {n_train} train + {len(data.val)} val patches | "
          f"{args.epochs} epochs | storage {url.split(':')[0]}")
    print(f"data preparation (once per worker and stage, not per trial): cold {cold:.3f} s, cached {cached:.3f} s")
    print(f"{'component':<12} {'seconds':>9} {'per epoch':>10} {'calls':>6} {'share %':>8}")
    for name in (*COMPONENTS, "glue"):
        s = clock.seconds[name]
        print(f"{name:<12} {s:>9.3f} {s / args.epochs:>10.4f} {clock.calls.get(name, 0):>6} {100 * s / wall:>8.2f}")
    print(f"{'trial wall':<12} {wall:>9.3f}")
    print("on the background writer, overlapping training (not in the wall time): " +
          (", ".join(f"{k} {v:.3f} s" for k, v in sorted(clock.background.items())) or "nothing"))
    outside = wall - clock.seconds["training"]
    outside_val = outside - clock.seconds["validation"]
    print(f"measured: not training {100 * outside / wall:.2f} % of the trial; "
          f"not training or validating {100 * outside_val / wall:.2f} %")

    # Extrapolation: training scales with train patches, validation with val patches; the rest
    # is per epoch (checkpoint, preview, storage reports) or per trial (set-up, glue).
    quick_train = int(0.05 * args.assume_train_patches)
    quick_val = 2000
    step_s = clock.seconds["training"] / args.epochs / max(1, n_train // args.batch)
    val_s_per_patch = clock.seconds["validation"] / args.epochs / len(data.val)
    train_s = 20 * max(1, quick_train // args.batch) * step_s
    val_s = 20 * quick_val * val_s_per_patch
    per_epoch_fixed = (clock.seconds["checkpoint"] + clock.seconds["preview"] + clock.seconds["storage"]) / args.epochs
    fixed = clock.seconds["setup"] + clock.seconds["glue"] + 20 * per_epoch_fixed
    total = train_s + val_s + fixed
    print(f"extrapolated to the default quick stage ({quick_train} train patches = 5 % of {args.assume_train_patches}, "
          f"{quick_val} val, 20 epochs; an assumption, not a measurement): trial {total:.0f} s, "
          f"validation {100 * val_s / total:.2f} %")
    print(f"ratio not-training share = {100 * (val_s + fixed) / total:.2f} %, "
          f"sarsweep overhead (not training or validating) = {100 * fixed / total:.2f} % (goal < 1 %)")


if __name__ == "__main__":
    main()
