"""Seconds per epoch of each variant on small patches, in one process on this machine.

    python bench/epoch_time.py [--patch 32] [--base 64] [--patches 256] [--epochs 2]

Trains each variant on the same generated patches (the first epoch warms up allocators and is
reported apart) and prints a table plus each variant's time relative to baseline, measured in
the same run. A benchmark, not a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch

from models import count_parameters, create_model, list_models
from training.config import TrainConfig
from training.data import load_data
from training.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--base", type=int, default=64, help="base_channels (64 = the seed's full size)")
    parser.add_argument("--patches", type=int, default=256, help="training patches per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    scenes = max(4, 2 * args.patches * args.patch**2 // 128**2)
    os.environ.setdefault("SARSWEEP_CACHE", tempfile.mkdtemp(prefix="sarsweep-bench-"))
    rows = []
    for variant in list_models():
        cfg = TrainConfig.from_dict({
            "variant": variant, "base_channels": args.base, "epochs": args.epochs, "batch_size": args.batch,
            "device": args.device, "out_dir": tempfile.mkdtemp(prefix="sarsweep-bench-run-"),
            "data": {"patch_size": args.patch, "synthetic": {"scenes": scenes, "size": 128}},
        })
        data = load_data(cfg.data)
        data.train = data.train[: args.patches]
        t0 = time.perf_counter()
        result = train(cfg, data=data, progress=False)
        total = time.perf_counter() - t0
        steady = [h.seconds for h in result.history[1:]] or [result.history[0].seconds]
        n_val = len(data.val)
        rows.append((variant, count_parameters(create_model(variant, base_channels=args.base)),
                     result.history[0].seconds, sum(steady) / len(steady), total, result.device))

    print(f"# {platform.node()} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"patch {args.patch} | base_channels {args.base} | {args.patches} train patches, batch {args.batch} | "
          f"an epoch includes validating {n_val} patches")
    print(f"{'variant':<12} {'params':>12} {'epoch 1 s':>10} {'epoch s':>9} {'img/s':>8} {'device':>7}")
    base = dict((r[0], r[3]) for r in rows)["baseline"]
    for variant, params, first, epoch_s, _total, device in rows:
        print(f"{variant:<12} {params:>12,} {first:>10.2f} {epoch_s:>9.2f} {args.patches / epoch_s:>8.0f} {device:>7}")
    print("ratio vs baseline (epoch s): " + ", ".join(f"{r[0]} {r[3] / base:.2f}x" for r in rows))


if __name__ == "__main__":
    main()
