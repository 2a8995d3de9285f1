"""Record a table of real learning curves: configs x seeds x fidelities x every epoch.

    python bench/curves.py record --campaign bench/curves/campaign_s1.yaml --out bench/curves/s1-cpu \
        [--configs 64] [--seeds 3] [--jobs 2] [--variants baseline resnet_lite]
    python bench/curves.py record --smoke --out /tmp/curves-smoke      # seconds: what CI runs
    python bench/curves.py export --table bench/curves/s1-cpu          # syne-tune's blackbox layout

Per variant of the campaign, a design of `--configs` points of its search space (a scrambled
Sobol sequence, the campaign's reference configs first: the seed's hand pick) is trained with
`--seeds` seeds at each fidelity (a share of the training split and its epochs): the campaign's
quick stage, its full stage, and the quick stage's cost spent otherwise (twice the data for half
the epochs). Every run goes through sarsweep's own TrainConfig and trainer (the config a trial of
the campaign would build, search.trials.trial_config), and its every epoch's validation PSNR and
SSIM, the trivial reference and the epoch's seconds are appended to runs.jsonl as the run ends.
A killed recording continues where it stopped: finished runs are skipped. The schedule is
constant after warmup, so the first e epochs of a curve are what an e-epoch run gives (the
simulator reads shorter fidelities off the recorded prefix).

Runs go to `--jobs` processes at once: on a CPU node each gets its share of the cores; with
`--device cuda` and several GPUs, process i trains on GPU i mod the count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SMOKE_CAMPAIGN = {
    "name": "curves-smoke", "variants": ["baseline"], "noise_seeds": 1,
    "train": {"data": {"root": str(REPO.parent / "shared" / "data" / "sar" / "sentinel1_opensarship"),
                       "include": ["S1A_IW_GRDH_1SDV_20150823*/Patch/*.tif"], "channels": 1, "band": -1,
                       "patch_size": 16, "stride": 16, "small_chips": "pad", "val_max_patches": 32},
              "batch_size": 16, "schedule": "constant", "device": "cpu", "preview_patches": 0},
    "search": {"lr": {"low": 1e-4, "high": 5e-3, "log": True}, "warmup_epochs": {"low": 0, "high": 1},
               "grad_clip": {"choices": [0.0, 1.0]}, "base_channels": {"choices": [4]},
               "optimizer": {"choices": ["adam", "adamw"]}, "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True}},
    "quick": {"fraction": 0.5, "epochs": 2, "trials": 4, "pruner": "none"},
    "full": {"fraction": 1.0, "epochs": 3, "top_k": 2},
}


@dataclass(frozen=True)
class Fidelity:
    fraction: float
    epochs: int

    @property
    def name(self) -> str:
        return f"f{self.fraction:g}"

    @property
    def cost(self) -> float:
        """Patch-epochs as a share of one epoch on the whole training split."""
        return self.fraction * self.epochs


def default_fidelities(campaign: Any) -> list[Fidelity]:
    """The quick stage, twice its data for half its epochs (same cost), and the full stage."""
    quick, full = campaign.quick, campaign.full
    out = [Fidelity(quick.fraction, quick.epochs)]
    if quick.fraction * 2 < full.fraction and quick.epochs >= 2:
        out.append(Fidelity(quick.fraction * 2, quick.epochs // 2))
    out.append(Fidelity(full.fraction, full.epochs))
    return out


def unit_value(spec: Any, u: float, integer: bool) -> Any:
    """The point of one search parameter at u in [0, 1): a choice, or a number in its range."""
    if spec.choices is not None:
        return spec.choices[min(int(u * len(spec.choices)), len(spec.choices) - 1)]
    low, high = float(spec.low), float(spec.high)
    if integer:
        step = int(spec.step or 1)
        return int(low) + step * min(int(u * ((int(high) - int(low)) // step + 1)), (int(high) - int(low)) // step)
    value = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if spec.log else low + u * (high - low)
    return float(f"{value:.4g}")


def design(campaign: Any, variant: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The campaign's reference configs, then Sobol points of the variant's space, n in all."""
    import typing

    from scipy.stats import qmc

    from training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    space = campaign.space(variant)
    points = [dict(p) for p in campaign.reference.values()][:n]
    wanted = max(1, n - len(points))
    sobol = qmc.Sobol(d=len(space), scramble=True, seed=seed).random_base2(max(0, math.ceil(math.log2(wanted))))
    for row in sobol[:wanted][: n - len(points)]:
        points.append({key: unit_value(spec, float(u), hints[key] is int) for (key, spec), u in zip(space.items(), row,
                                                                                                    strict=True)})
    return points


# ---- one run, in a worker process ---------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init(devices: list[str], threads: int, counter: Any) -> None:
    import warnings

    import torch

    warnings.simplefilter("ignore")
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _STATE["device"] = devices[index % len(devices)]
    _STATE["threads"] = threads
    _STATE["data"] = {}
    torch.set_num_threads(threads)


def _run(job: dict[str, Any]) -> dict[str, Any]:
    from search.campaign.config import CampaignConfig
    from search.running.trial import trial_config
    from training.data import load_data
    from training.schema import build
    from training.trainer import train

    campaign = build(CampaignConfig, job["campaign"])
    device = _STATE["device"]
    fraction, epochs = job["fraction"], job["epochs"]
    data = _STATE["data"].get(fraction)
    if data is None:
        data = _STATE["data"][fraction] = load_data(campaign.train.data, fraction)
    with tempfile.TemporaryDirectory(prefix="sarsweep-curve-") as out:
        cfg = trial_config(campaign, job["variant"], fraction, epochs, job["params"], job["seed"], out,
                           device=device, threads=_STATE["threads"] if device == "cpu" else None)
        result = train(cfg, progress=False, data=data)
    return {**{k: job[k] for k in ("variant", "config", "seed_index", "seed", "fraction", "epochs", "params")},
            "curve": [{"epoch": h.epoch, "psnr": round(h.val_psnr, 4), "ssim": round(h.val_ssim, 5),
                       "loss": h.train_loss, "seconds": round(h.seconds, 4)} for h in result.history],
            "trivial_psnr": round(result.trivial_psnr, 4), "trivial_ssim": round(result.trivial_ssim, 5),
            "param_count": result.params, "device": result.device, "threads": cfg.threads,
            "train_patches": len(data.train), "val_patches": len(data.val)}


# ---- the table -----------------------------------------------------------------------------------

def run_key(r: dict[str, Any]) -> tuple[str, int, int, float]:
    return r["variant"], int(r["config"]), int(r["seed_index"]), float(r["fraction"])


def read_runs(table: Path) -> list[dict[str, Any]]:
    """Finished runs; a line cut short by a kill is skipped (its run is recorded again)."""
    path = table / "runs.jsonl"
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def jobs_for(campaign: Any, raw: dict[str, Any], variants: list[str], n: int, seeds: int,
             fidelities: list[Fidelity]) -> list[dict[str, Any]]:
    """Seed by seed, so a table cut short holds every config at its first seeds."""
    from search.campaign.studies import derived_seed

    designs = {v: design(campaign, v, n) for v in variants}
    jobs = []
    for s in range(seeds):
        for c in range(n):
            for v in variants:
                for f in fidelities:
                    jobs.append({"campaign": raw, "variant": v, "config": c, "seed_index": s,
                                 "seed": derived_seed(campaign.name, v, c, s), "fraction": f.fraction,
                                 "epochs": f.epochs, "params": designs[v][c]})
    return jobs


def record(args: argparse.Namespace) -> None:
    import multiprocessing as mp

    from search.campaign.config import CampaignConfig
    from training.config import read_yaml
    from training.schema import build

    raw = SMOKE_CAMPAIGN if args.smoke else read_yaml(args.campaign)
    campaign = build(CampaignConfig, raw)
    raw = campaign.to_dict()
    raw["train"]["data"]["root"] = str(Path(campaign.train.data.root).resolve())  # workers anywhere
    fidelities = default_fidelities(campaign)
    n, seeds = (3, 2) if args.smoke else (args.configs, args.seeds)
    variants = args.variants or list(campaign.variants)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"campaign": raw, "configs": n, "seeds": seeds, "variants": variants,
            "fidelities": [{"fraction": f.fraction, "epochs": f.epochs} for f in fidelities],
            "command": " ".join(["python", *sys.argv]), "machine": f"{platform.node()} {platform.machine()}, "
            f"{os.cpu_count()} cores", "device": args.device, "jobs": args.jobs}
    meta_path = out / "table.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old["campaign"] != raw or old["fidelities"] != meta["fidelities"]:
            sys.exit(f"error: {meta_path} was recorded for another campaign or fidelities; use another --out")
        meta["started"] = old.get("started")
    meta.setdefault("started", datetime.now(UTC).isoformat(timespec="seconds"))
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    done = {run_key(r) for r in read_runs(out)}
    todo = [j for j in jobs_for(campaign, raw, variants, n, seeds, fidelities) if run_key(j) not in done]
    print(f"curves: {len(done)} runs recorded, {len(todo)} to go, {args.jobs} process(es)", flush=True)
    devices = [args.device]
    if args.device == "cuda":
        import torch

        devices = [f"cuda:{i}" for i in range(max(1, torch.cuda.device_count()))]
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.device == "cpu" else 1
    ctx = mp.get_context("spawn")
    started, finished = time.perf_counter(), 0
    counter = ctx.Value("i", 0)
    with ProcessPoolExecutor(args.jobs, ctx, initializer=_init, initargs=(devices, threads, counter)) as pool, \
            open(out / "runs.jsonl", "a") as sink:
        queue = iter(todo)
        running = {pool.submit(_run, j) for j in [next(queue) for _ in range(min(len(todo), args.jobs * 2))]}
        while running:
            ended, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in ended:
                sink.write(json.dumps({**fut.result(), "recorded": datetime.now(UTC).isoformat(timespec="seconds")})
                           + "\n")
                sink.flush()
                os.fsync(sink.fileno())
                finished += 1
                nxt = next(queue, None)
                if nxt is not None:
                    running.add(pool.submit(_run, nxt))
            if finished % 20 == 0 or not running:
                rate = finished / max(1e-9, time.perf_counter() - started)
                left = (len(todo) - finished) / max(rate, 1e-9)
                print(f"curves: {finished}/{len(todo)} runs, about {left / 60:.0f} min left", flush=True)


def export_blackbox(table_dir: Path, out: Path) -> None:
    """The table in syne-tune's blackbox layout, written by syne-tune's own serializer: one folder
    per fraction (its epochs are the fidelity), one task per variant, each with
    hyperparameters.parquet, objectives_evaluations.npy (configs x seeds x epochs x objectives:
    metric_psnr, metric_ssim, metric_elapsed_time, the last cumulative seconds), fidelity values,
    the configuration space and metadata.json (the table's provenance)."""
    import numpy as np
    import pandas as pd
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular, serialize
    from syne_tune.config_space import randint

    from bench.simulate import syne_tune_space
    from search.simulation.table import CurveTable

    table = CurveTable.load(table_dir)
    meta = json.loads((table_dir / "table.json").read_text())
    for fraction, epochs in table.fidelities:
        tasks = {}
        for variant in table.variants:
            n, seeds = len(table.configs[variant]), table.seeds[variant]
            evals = np.zeros((n, seeds, epochs, 3))
            for c in range(n):
                for s in range(seeds):
                    curve = table.curve(variant, c, s, fraction)
                    evals[c, s] = np.stack([curve.values, curve.ssim, np.cumsum(curve.seconds)], axis=1)[:epochs]
            tasks[variant] = BlackboxTabular(
                hyperparameters=pd.DataFrame(table.configs[variant]),
                configuration_space=syne_tune_space(table, variant), fidelity_space={"epoch": randint(1, epochs)},
                objectives_evaluations=evals, fidelity_values=np.arange(1, epochs + 1),
                objectives_names=["metric_psnr", "metric_ssim", "metric_elapsed_time"])
        folder = out / f"f{fraction:g}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        provenance = {k: meta.get(k) for k in ("command", "machine", "started", "device")}
        serialize(tasks, str(folder), metadata={"fraction": fraction, "epochs": epochs, "provenance": provenance,
                                                "data": meta["campaign"]["train"]["data"]})
        print(f"curves: wrote {folder} ({', '.join(tasks)}; {epochs} epochs at fraction {fraction:g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record (or continue recording) a curve table")
    rec.add_argument("--campaign", default=str(REPO / "bench" / "curves" / "campaign_s1.yaml"))
    rec.add_argument("--out", required=True, help="the table's folder (runs.jsonl, table.json)")
    rec.add_argument("--configs", type=int, default=64)
    rec.add_argument("--seeds", type=int, default=3)
    rec.add_argument("--variants", nargs="*")
    rec.add_argument("--jobs", type=int, default=2)
    rec.add_argument("--device", default="cpu", help="cpu, or cuda (one process per GPU round-robin)")
    rec.add_argument("--smoke", action="store_true", help="a tiny table in seconds")
    exp = sub.add_parser("export", help="write the table in syne-tune's blackbox layout")
    exp.add_argument("--table", required=True)
    exp.add_argument("--out", help="default: TABLE/blackbox")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    else:
        export_blackbox(Path(args.table), Path(args.out) if args.out else Path(args.table) / "blackbox")


if __name__ == "__main__":
    main()
