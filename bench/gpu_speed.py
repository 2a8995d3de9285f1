"""Training throughput of each variant on a CUDA GPU: fp32 eager vs bf16 autocast + channels_last.

    python bench/gpu_speed.py [--patch 256] [--batch 16] [--steps 30] [--compile] [--graphs] [--json out.json]
    python bench/gpu_speed.py --smoke      # what CI runs: prints a skip line without CUDA

Every mode trains through sarsweep's own `Run.train_epoch` (the code path trials use): patches
resident on the GPU, per-step LR, fused Adam, gradient clipping, batched non-finite checks.
Modes per variant:
  fp32   precision fp32, NCHW (contiguous) tensors: plain eager PyTorch
  bf16   what sarsweep does on CUDA: bf16 autocast + channels_last (+ cudnn.benchmark)
  bf16c  the same under torch.compile (with --compile; the compile time is reported apart)
  bf16g  bf16 under torch.compile(mode="reduce-overhead"): CUDA graphs replay the step's kernels
         without a launch each (with --graphs; a bench-only mode, not a config switch yet)
For each: ms per step (median of --rounds epochs after a warm-up epoch), images/s, peak GPU
memory, input starvation: the share of a step the GPU would save if the batch were already
in place, measured as 1 - (compute-only step time on a fixed batch) / (train_epoch step time),
and host ms: the CPU time to issue one step from an idle queue (no sync inside). When host ms
nears ms/step, the GPU waits on kernel launches, not on math: what CUDA graphs remove.
Ends with the ratio line bf16 / fp32 (issue goal: >= 2.5x). Designed to finish in < 5 minutes
on one H100. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from models import list_models
from training.config import TrainConfig
from training.data import SplitData
from training.trainer import Run

MODES = ("fp32", "bf16", "bf16c", "bf16g")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_data(n_train: int, patch: int, seed: int = 0) -> SplitData:
    rng = np.random.default_rng(seed)
    # Speckle-like values in [0, 1]: the content does not change the work done.
    train = rng.gamma(4.0, 0.25 / 4.0, (n_train, 1, patch, patch)).clip(0, 1).astype(np.float32)
    return SplitData(train=train, val=train[:8].copy(), train_files=["bench"], val_files=["bench"],
                     total_train_patches=n_train)


def build_run(variant: str, mode: str, args: argparse.Namespace, data: SplitData) -> tuple[Run, float]:
    cfg = TrainConfig.from_dict({
        "variant": variant, "base_channels": args.base, "batch_size": args.batch, "epochs": 1000,
        "device": args.device, "precision": "fp32" if mode == "fp32" else "bf16", "grad_clip": 1.0,
        "compile": mode == "bf16c",
        "data": {"patch_size": args.patch}, "out_dir": "/tmp/sarsweep-gpu-speed",
    })
    run = Run(cfg, data)
    if mode == "fp32":
        # The eager fp32 baseline: NCHW everywhere (Run picks channels_last on CUDA).
        run.memory_format = torch.contiguous_format
        run.model.to(memory_format=torch.contiguous_format)
    compile_s = 0.0
    if mode == "bf16g":
        run.model = torch.compile(run.net, mode="reduce-overhead")
    if mode in ("bf16c", "bf16g"):
        t0 = time.perf_counter()
        run.train_epoch(progress=False)  # compiles forward and backward
        sync()
        compile_s = time.perf_counter() - t0
    return run, compile_s


def time_epochs(run: Run, rounds: int) -> list[float]:
    run.train_epoch(progress=False)  # warm-up: cudnn autotuning, allocator growth
    sync()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run.train_epoch(progress=False)
        sync()
        times.append((time.perf_counter() - t0) / run.steps)
    return times


def compute_only(run: Run, steps: int) -> tuple[float, float]:
    """The same step on one batch already in place: no indexing, no per-step host work.
    Returns (seconds per step, median host seconds to issue one step from an idle queue)."""
    x = run.train_x[: run.cfg.batch_size].contiguous(memory_format=run.memory_format)
    model, opt = run.model, run.optimizer

    def step() -> None:
        with run.autocast():
            loss = run.loss(model(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.cfg.grad_clip)
        opt.step()

    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    per_step = (time.perf_counter() - t0) / steps
    issue = []
    for _ in range(5):
        sync()
        t0 = time.perf_counter()
        step()
        issue.append(time.perf_counter() - t0)
    sync()
    return per_step, statistics.median(issue)


def measure(variant: str, mode: str, args: argparse.Namespace, data: SplitData) -> dict:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run, compile_s = build_run(variant, mode, args, data)
    step_s = statistics.median(time_epochs(run, args.rounds))
    fixed_s, host_s = compute_only(run, run.steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    row = {
        "variant": variant, "mode": mode, "params": run.params, "ms_per_step": 1e3 * step_s,
        "images_per_s": args.batch / step_s, "peak_mem_gib": peak,
        "starvation_pct": max(0.0, 100.0 * (1.0 - fixed_s / step_s)), "compile_s": compile_s,
        "host_ms_per_step": 1e3 * host_s,
    }
    del run
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list_models())
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--base", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per mode (median taken)")
    parser.add_argument("--compile", action="store_true", help="also time bf16 under torch.compile")
    parser.add_argument("--graphs", action="store_true",
                        help="also time bf16 under torch.compile(mode='reduce-overhead') (CUDA graphs)")
    parser.add_argument("--compile-budget", type=float, default=150.0,
                        help="seconds after which no further variant is compiled (keeps the run < 5 min)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; the CI check")
    parser.add_argument("--device", default="cuda", help="cuda (cpu only to test this script's own logic)")
    args = parser.parse_args()
    if args.smoke:
        args.patch, args.base, args.batch, args.steps, args.rounds = 32, 4, 4, 2, 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_speed: skipped, no CUDA device (torch {torch.__version__} on {platform.machine()})")
        return

    torch.backends.cuda.matmul.allow_tf32 = True  # what a user's fp32 run gets by default in cuDNN convs
    started = time.perf_counter()
    data = make_data(args.steps * args.batch, args.patch)
    rows = []
    for variant in args.variants:
        modes = ["fp32", "bf16"]
        for flag, mode in ((args.compile, "bf16c"), (args.graphs, "bf16g")):
            if flag and time.perf_counter() - started < args.compile_budget:
                modes.append(mode)
        for mode in modes:
            rows.append(measure(variant, mode, args, data))
            r = rows[-1]
            print(f"  {variant} {mode}: {r['ms_per_step']:.1f} ms/step", flush=True)

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"# {name} | torch {torch.__version__} | CUDA {torch.version.cuda} | {args.patch}x{args.patch} patches, "
          f"batch {args.batch}, base_channels {args.base}, {args.steps} steps/epoch, median of {args.rounds} | "
          f"{time.perf_counter() - started:.0f} s")
    print(f"{'variant':<12} {'mode':<6} {'params':>11} {'ms/step':>8} {'img/s':>8} {'peak GiB':>9} "
          f"{'starved %':>9} {'compile s':>9} {'host ms':>8}")
    for r in rows:
        print(f"{r['variant']:<12} {r['mode']:<6} {r['params']:>11,} {r['ms_per_step']:>8.2f} "
              f"{r['images_per_s']:>8.0f} {r['peak_mem_gib']:>9.2f} {r['starvation_pct']:>9.1f} {r['compile_s']:>9.1f} "
              f"{r['host_ms_per_step']:>8.2f}")
    by = {(r["variant"], r["mode"]): r for r in rows}
    parts = []
    for variant in args.variants:
        fp32, bf16 = by[(variant, "fp32")], by[(variant, "bf16")]
        part = f"{variant} {fp32['ms_per_step'] / bf16['ms_per_step']:.2f}x"
        for mode, label in (("bf16c", "compiled"), ("bf16g", "graphs")):
            if (variant, mode) in by:
                part += f" ({label} {fp32['ms_per_step'] / by[(variant, mode)]['ms_per_step']:.2f}x)"
        parts.append(part)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "host": platform.node(),
                                         "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    print("ratio bf16/fp32 speed-up: " + ", ".join(parts) + " (goal >= 2.5x)")


if __name__ == "__main__":
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", "/tmp/sarsweep-inductor")
    main()
