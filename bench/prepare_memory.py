"""Peak memory of preparing a data set, against the size of the patch array it prepares.

    python bench/prepare_memory.py                                   # generated scenes, ~1 GB of patches
    python bench/prepare_memory.py --data ../shared/data/sar/terrasarx_deepdespeckling --include "*.png" --stride 4
    python bench/prepare_memory.py --grd 8000x6000 --patch 256 --stride 256   # one large dual-pol scene
    python bench/prepare_memory.py --grd 8000x6000 --patch 256 --stride 256 --together 4

Preparation decodes every raster, cuts its patches and writes them to the cache once; every
later trial memory-maps the result. A node must be able to do the first step for the whole data
set, so what it holds in memory meanwhile decides the largest data set a node can take. Each case
runs in a fresh process with a cache of its own; its peak RSS is reset just before `prepare`
(Linux's clear_refs) and read after, and the baseline is its RSS at the reset, in the same run. The ratio
line is the peak growth as a multiple of the prepared array (1.0 = one whole copy in memory), and
of the largest file: decoding a raster holds it at least once, so for a data set of large scenes
(a Sentinel-1 GRD is ~25,000 x 16,700 pixels, 2 bands of uint16, ~1.6 GB) that is the figure that
decides what a node can take.
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
    largest = max(Path(args.data, f).stat().st_size for f in prepared.files)
    print(json.dumps({"seconds": seconds, "growth": peak - before, "bytes": prepared.patches.nbytes,
                      "patches": len(prepared.patches), "files": len(prepared.files), "largest": largest}))


def measure(args: argparse.Namespace, cache: Path, processes: int = 1) -> dict:
    """One child's figures; with processes > 1, that many children started at once on the same
    cold cache (the workers `launch` starts on a node): the slowest one's seconds and the sum of
    their peak growths (what the node holds)."""
    command = [sys.executable, __file__, "--child", "--data", args.data, "--include", *args.include,
               "--patch", str(args.patch), "--stride", str(args.stride)]
    env = {**os.environ, "SARSWEEP_CACHE": str(cache)}
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for _ in range(processes)]
    rows = []
    for child_process in children:
        out, err = child_process.communicate()
        if child_process.returncode != 0:
            sys.exit(f"prepare_memory: the measured process failed:\n{err}")
        rows.append(json.loads(out.splitlines()[-1]))
    return {**rows[0], "seconds": max(r["seconds"] for r in rows), "growth": sum(r["growth"] for r in rows)}


def generated(scenes: int, size: int, work: Path) -> str:
    from training.config import SyntheticConfig
    from training.data import synthetic_dir

    return str(synthetic_dir(SyntheticConfig(scenes=scenes, size=size), 1, work / "scenes"))


def grd_scene(size: str, work: Path) -> str:
    """A folder with one dual-pol uint16 GeoTIFF of `size` ("WxH"), (VH, VV) as a Sentinel-1 GRD
    stores its amplitudes: speckle-like Gamma(1) values, scaled to typical digital numbers."""
    import numpy as np
    import tifffile

    width, height = (int(x) for x in size.lower().split("x"))
    folder = work / "grd"
    folder.mkdir()
    rng = np.random.default_rng(0)
    bands = np.empty((2, height, width), dtype=np.uint16)
    for band, scale in zip(bands, (60.0, 200.0), strict=True):  # VH is weaker than VV
        band[...] = np.minimum(rng.gamma(1.0, scale, size=(height, width)), 65535)
    tifffile.imwrite(folder / "scene.tif", bands)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder of rasters (default: generated scenes)")
    parser.add_argument("--include", nargs="+", default=["*.npy"], help="files under --data (default *.npy)")
    parser.add_argument("--scenes", type=int, default=64, help="generated scenes (without --data)")
    parser.add_argument("--size", type=int, default=512, help="generated scene side in pixels")
    parser.add_argument("--grd", metavar="WxH", help="instead: one generated dual-pol uint16 GeoTIFF of this size")
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--together", type=int, default=0, metavar="N",
                        help="also start N processes at once on a cold cache (as launch starts a node's workers)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that proves the script works")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.smoke:
        args.scenes, args.size, args.patch, args.stride = 4, 64, 16, 16
        args.grd = "96x64" if args.grd else None

    with tempfile.TemporaryDirectory(prefix="sarsweep-prepare-memory-") as tmp:
        work = Path(tmp)
        if args.grd:
            args.data, args.include = grd_scene(args.grd, work), ["*.tif"]
        elif args.data is None:
            args.data, args.include = generated(args.scenes, args.size, work), ["*.npy"]
        cache = work / "cache"
        cold = measure(args, cache)
        warm = measure(args, cache)  # the same cache: read back, as every later trial does
        together = measure(args, work / "cache-together", args.together) if args.together > 1 else None

    import numpy

    print(f"# {platform.node()} | python {platform.python_version()} | numpy {numpy.__version__} | "
          f"{cold['files']} file(s) from {args.data} | patch {args.patch}, stride {args.stride} | "
          f"{cold['patches']:,} patches, {cold['bytes'] / 2**20:,.1f} MiB | "
          f"largest file {cold['largest'] / 2**20:,.1f} MiB")
    print(f"{'case':<16} {'seconds':>8} {'peak growth MiB':>16} {'x array':>8} {'x largest file':>15}")
    cases = [("cold", cold), ("warm", warm)] + ([(f"{args.together} cold at once", together)] if together else [])
    for name, row in cases:
        print(f"{name:<16} {row['seconds']:>8.2f} {row['growth'] / 2**20:>16.1f} {row['growth'] / row['bytes']:>8.2f} "
              f"{row['growth'] / row['largest']:>15.2f}")
    print(f"ratio peak growth / prepared array: cold {cold['growth'] / cold['bytes']:.2f}, "
          f"warm {warm['growth'] / warm['bytes']:.2f}; / largest file: cold {cold['growth'] / cold['largest']:.2f}"
          + (f"; {args.together} at once / one cold: summed peak growth {together['growth'] / cold['growth']:.2f}, "
             f"slowest seconds {together['seconds'] / cold['seconds']:.2f}" if together else ""))


if __name__ == "__main__":
    main()
