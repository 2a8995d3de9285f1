"""Peak memory of preparing a data set, against the size of the patch array it prepares.

    python bench/prepare_memory.py                                   # generated scenes, ~1 GB of patches
    python bench/prepare_memory.py --data ../shared/data/sar/terrasarx_deepdespeckling --include "*.png" --stride 4

Preparation decodes every raster, cuts its patches and writes them to the cache once; every
later trial memory-maps the result. A node must be able to do the first step for the whole data
set, so what it holds in memory meanwhile decides the largest data set a node can take. Each case
runs in a fresh process with a cache of its own; its peak RSS is reset just before `prepare`
(Linux's clear_refs) and read after, and the baseline is its RSS at the reset, in the same run. The ratio
line is the peak growth as a multiple of the prepared array (1.0 = one whole copy in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def status_bytes(field: str) -> int:
    """VmRSS or VmHWM (the peak) of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """One measured preparation; prints a JSON line."""
    from training.config import DataConfig
    from training.data import prepare

    cfg = DataConfig(root=args.data, include=args.include, patch_size=args.patch, stride=args.stride)
    # Reset the peak to the current RSS (Linux >= 4.0), so the imports' own peak does not hide ours.
    Path("/proc/self/clear_refs").write_text("5")
    before = status_bytes("VmRSS")
    started = time.perf_counter()
    prepared = prepare(cfg)
    seconds = time.perf_counter() - started
    peak = status_bytes("VmHWM")
    print(json.dumps({"seconds": seconds, "growth": peak - before, "bytes": prepared.patches.nbytes,
                      "patches": len(prepared.patches), "files": len(prepared.files)}))


def measure(args: argparse.Namespace, cache: Path) -> dict:
    command = [sys.executable, __file__, "--child", "--data", args.data, "--include", *args.include,
               "--patch", str(args.patch), "--stride", str(args.stride)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "SARSWEEP_CACHE": str(cache)},
                          check=False)
    if done.returncode != 0:
        sys.exit(f"prepare_memory: the measured process failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def generated(scenes: int, size: int, work: Path) -> str:
    from training.config import SyntheticConfig
    from training.data import synthetic_dir

    return str(synthetic_dir(SyntheticConfig(scenes=scenes, size=size), 1, work / "scenes"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder of rasters (default: generated scenes)")
    parser.add_argument("--include", nargs="+", default=["*.npy"], help="files under --data (default *.npy)")
    parser.add_argument("--scenes", type=int, default=64, help="generated scenes (without --data)")
    parser.add_argument("--size", type=int, default=512, help="generated scene side in pixels")
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that proves the script works")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.smoke:
        args.scenes, args.size, args.patch, args.stride = 4, 64, 16, 16

    with tempfile.TemporaryDirectory(prefix="sarsweep-prepare-memory-") as tmp:
        work = Path(tmp)
        if args.data is None:
            args.data, args.include = generated(args.scenes, args.size, work), ["*.npy"]
        cache = work / "cache"
        cold = measure(args, cache)
        warm = measure(args, cache)  # the same cache: read back, as every later trial does

    import numpy

    print(f"# {platform.node()} | python {platform.python_version()} | numpy {numpy.__version__} | "
          f"{cold['files']} file(s) from {args.data} | patch {args.patch}, stride {args.stride} | "
          f"{cold['patches']:,} patches, {cold['bytes'] / 2**20:,.1f} MiB")
    print(f"{'case':<6} {'seconds':>8} {'peak growth MiB':>16} {'x array':>8}")
    for name, row in (("cold", cold), ("warm", warm)):
        print(f"{name:<6} {row['seconds']:>8.2f} {row['growth'] / 2**20:>16.1f} {row['growth'] / row['bytes']:>8.2f}")
    print(f"ratio peak growth / prepared array: cold {cold['growth'] / cold['bytes']:.2f}, "
          f"warm {warm['growth'] / warm['bytes']:.2f}")


if __name__ == "__main__":
    main()
