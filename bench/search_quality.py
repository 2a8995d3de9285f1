"""Does sarsweep's two-stage search pick better configs than random search or ASHA, at equal budget?

    python bench/search_quality.py [--variants baseline resnet_lite residual attention] [--repeats 3] [--jobs 2]
    python bench/search_quality.py --smoke      # one variant, one repeat, tiny stages: what CI runs

Data: the real Sentinel-1 GRDH chips in ../shared/data/sar (16 px patches, stride 16, chips under
16 px mirror-padded), five scenes for the search (their own validation split by file) and the sixth
(20161018) held out for scoring, with the TerraSAR-X amplitude crop as a second, other-sensor held-out
set. Per variant and repetition (other sampler and trial seeds), three arms, at the same total
training budget counted in patch-epochs (epochs trained x training patches per epoch, pruned and
re-run trials included):
- sarsweep: the two stages as a campaign runs them (worker, promote, worker on SQLite): quick 12
  trials x 3 epochs on 25 % of the training split (median pruner after warmup), top 6 promoted to
  6 epochs on all of it, seed noise measured with 2 re-runs per stage; its budget sets the others';
- random: random configs trained at full scale (6 epochs, all of it) until the budget is spent;
- asha: one-stage Optuna, TPE with SuccessiveHalvingPruner (min resource 1 epoch, factor 3), at
  full scale, trials until the budget is spent.
Each arm's chosen config is its best trial that trained all 6 epochs on all the data; its best.pt
is scored on the held-out rasters as `sarsweep evaluate --data` scores them (whole, every pixel).
Prints per variant: each arm's chosen val and held-out PSNR (mean and min-max over repetitions),
the trivial reference on the held-out patches, sarsweep's quick->full rank agreement over its 6
promoted configs and its full-stage noise band, and whether sarsweep's lead exceeds that band. A
benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
S1 = REPO.parent / "shared" / "data" / "sar" / "sentinel1_opensarship"
TSX = REPO.parent / "shared" / "data" / "sar" / "terrasarx_deepdespeckling"
HELD_OUT_SCENE = "S1A_IW_GRDH_1SDV_20161018T095407_20161018T095432_013543_015ACD_AB15"
SEARCH_SCENES = ["S1A_IW_GRDH_1SDV_2015*/Patch/*.tif", "S1A_IW_GRDH_1SDV_2016013*/Patch/*.tif",
                 "S1A_IW_GRDH_1SDV_20160518*/Patch/*.tif", "S1A_IW_GRDH_1SSV_*/Patch/*.tif"]
VARIANTS = ["baseline", "resnet_lite", "residual", "attention"]


def campaign_dict(name: str, variant: str, seed: int, sizes: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name, "variants": [variant], "noise_seeds": sizes["noise"],
        "train": {"batch_size": 32, "device": "cpu", "preview_patches": 0, "threads": 1,
                  "data": {"root": str(S1), "include": SEARCH_SCENES, "patch_size": 16, "stride": 16,
                           "small_chips": "pad", "val_max_patches": sizes["val"]}},
        "search": {"lr": {"low": 5e-5, "high": 5e-3, "log": True}, "warmup_epochs": {"low": 0, "high": 1},
                   "grad_clip": {"choices": [0.0, 0.5, 1.0]}, "base_channels": {"choices": [4, 8]},
                   "optimizer": {"choices": ["adam", "adamw"]},
                   "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True}},
        "quick": {"fraction": 0.25, "epochs": sizes["quick_epochs"], "trials": sizes["quick_trials"],
                  "sampler_seed": seed, "pruner": "median" if sizes["quick_epochs"] >= 3 else "none"},
        "full": {"fraction": 1.0, "epochs": sizes["full_epochs"], "top_k": sizes["top_k"], "max_k": sizes["top_k"]},
    }


def cost(trials: list[Any], per_epoch: dict[str, int], stage: str) -> int:
    """Patch-epochs the trials trained (a retry's resumed epochs counted once, by their trial)."""
    return sum(len(t.user_attrs.get("epochs", [])) - int(t.user_attrs.get("start_epoch", 0)) for t in trials) * \
        per_epoch[stage]


def held_out(best: str) -> dict[str, float]:
    from training.evaluate import evaluate

    s1 = evaluate(best, data=str(S1 / HELD_OUT_SCENE), include=["Patch/*.tif"], device="cpu")
    tsx = evaluate(best, data=str(TSX), include=["noisy_test_image_data.npy"], device="cpu")
    return {"s1": s1.psnr, "s1_trivial": s1.trivial_psnr, "tsx": tsx.psnr, "tsx_trivial": tsx.trivial_psnr}


def chosen_of(trials: list[Any], epochs: int) -> Any:
    """The best trial that trained all `epochs` at full scale (no seed-noise re-run)."""
    from optuna.trial import TrialState

    full = [t for t in trials if t.state == TrialState.COMPLETE and len(t.user_attrs.get("epochs", [])) == epochs
            and "noise_of" not in t.user_attrs]
    return max(full, key=lambda t: (t.value, -t.number))


def sarsweep_arm(variant: str, seed: int, sizes: dict[str, Any], tmp: Path, per_epoch: dict[str, int]) -> dict:
    from search.campaign.config import CampaignConfig
    from search.campaign.studies import ensure_study
    from search.policy.seeds import band
    from search.report.collect import collect
    from search.running.promote import promote
    from search.running.worker import run_worker
    from storage import open_storage
    from training.schema import build

    campaign = build(CampaignConfig, campaign_dict(f"sq{seed}", variant, seed, sizes))
    tmp.mkdir(parents=True, exist_ok=True)
    storage = open_storage(f"sqlite:///{tmp / 'sarsweep.db'}", create_schema=True)
    for stage in ("quick", "full"):
        ensure_study(storage, campaign, variant, stage)
    run_worker(storage, campaign, variant, "quick", tmp / "art", worker_index=0, progress=False)
    promote(storage, campaign, variant)
    run_worker(storage, campaign, variant, "full", tmp / "art", worker_index=0, progress=False)
    report = collect(storage, campaign)
    trials = {s: report.studies[variant, s].get_trials(deepcopy=False) for s in ("quick", "full")}
    best = chosen_of(trials["full"], sizes["full_epochs"])
    (fidelity,) = report.fidelity
    full_band = band(trials["full"])
    # Where the full-stage winner stood among the promoted configs by quick value (1 = the quick
    # winner): how many promotions it took to include it.
    finished = sorted((p for p in report.results[0].promoted if p.full_value is not None),
                      key=lambda p: -p.quick_value)
    winner = max(finished, key=lambda p: float(p.full_value or 0)) if finished else None
    rank = None if winner is None else finished.index(winner) + 1
    return {"budget": cost(trials["quick"], per_epoch, "quick") + cost(trials["full"], per_epoch, "full"),
            "full_trials": len(trials["full"]), "val": best.value, **held_out(best.user_attrs["checkpoint"]),
            "rho": fidelity.rho, "tau": fidelity.agreement.tau if fidelity.agreement else None,
            "p": fidelity.p_value, "n": len(fidelity.pairs), "same_winner": fidelity.same_winner,
            "regret": fidelity.regret, "full_band": full_band.spread if full_band else None,
            "winner_quick_rank": rank}


def one_stage_arm(arm: str, variant: str, seed: int, sizes: dict[str, Any], tmp: Path, per_epoch: dict[str, int],
                  budget: int) -> dict:
    """Random search or TPE + SuccessiveHalving of full runs, until `budget` patch-epochs are spent."""
    import optuna

    from search.campaign.config import CampaignConfig
    from search.running.trial import TrialContext, run_trial
    from storage import open_storage
    from training.data import load_data
    from training.schema import build

    raw = campaign_dict(f"{arm}{seed}", variant, seed, sizes)
    raw["quick"] = {"fraction": 1.0, "epochs": sizes["full_epochs"], "trials": 10_000, "pruner": "none"}
    raw["full"] = {"fraction": 1.0, "epochs": sizes["full_epochs"], "top_k": 1}
    campaign = build(CampaignConfig, raw)
    tmp.mkdir(parents=True, exist_ok=True)
    storage = open_storage(f"sqlite:///{tmp / f'{arm}.db'}", create_schema=True)
    if arm == "random":
        sampler, pruner = optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner()
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    study = optuna.create_study(study_name=f"{arm}{seed}", storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize")
    data = load_data(campaign.train.data, 1.0)
    ctx = TrialContext(campaign, variant, "quick", tmp / "art", data, "cpu", False, None, 1)
    spent = 0
    while spent < budget:
        if arm == "random" and budget - spent < per_epoch["full"] * sizes["full_epochs"] / 2:
            break  # a run that would overshoot the budget by more than half is not run
        trial = study.ask()
        try:
            study.tell(trial, run_trial(trial, ctx))
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        spent += cost([study.trials[-1]], per_epoch, "full")
    trials = study.get_trials(deepcopy=False)
    best = chosen_of(trials, sizes["full_epochs"])
    full_runs = sum(len(t.user_attrs.get("epochs", [])) == sizes["full_epochs"] for t in trials)
    return {"budget": spent, "full_trials": full_runs, "trials": len(trials), "val": best.value,
            **held_out(best.user_attrs["checkpoint"])}


def job(args: argparse.Namespace) -> None:
    """One (variant, repetition): the three arms, in this process; one JSON line."""
    import torch

    from training.config import DataConfig
    from training.data import load_data

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sizes = json.loads(args.sizes)
    data = DataConfig(**campaign_dict("x", args.variant, 0, sizes)["train"]["data"])
    per_epoch = {"quick": len(load_data(data, 0.25).train), "full": len(load_data(data, 1.0).train)}
    with tempfile.TemporaryDirectory(prefix="sarsweep-quality-") as name:
        tmp = Path(name)
        ours = sarsweep_arm(args.variant, args.seed, sizes, tmp / "a", per_epoch)
        out = {"variant": args.variant, "seed": args.seed, "per_epoch": per_epoch, "sarsweep": ours}
        for arm in ("random", "asha"):
            out[arm] = one_stage_arm(arm, args.variant, args.seed, sizes, tmp / arm, per_epoch, ours["budget"])
    print(json.dumps(out), flush=True)


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def summarise(results: list[dict]) -> None:
    print(f"{'variant':<12} {'arm':<9} {'budget':>8} {'full runs':>9} {'val PSNR':>18} {'held-out S1':>18} "
          f"{'held-out TSX':>18}")
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]
        for arm in ("sarsweep", "random", "asha"):
            got = [r[arm] for r in rows]
            print(f"{variant:<12} {arm:<9} {statistics.mean(g['budget'] for g in got):>8.0f} "
                  f"{statistics.mean(g['full_trials'] for g in got):>9.1f} {spread([g['val'] for g in got]):>18} "
                  f"{spread([g['s1'] for g in got]):>18} {spread([g['tsx'] for g in got]):>18}")
        trivial = rows[0]["sarsweep"]
        print(f"{variant:<12} {'trivial':<9} {'':>8} {'':>9} {'':>18} {trivial['s1_trivial']:>18.2f} "
              f"{trivial['tsx_trivial']:>18.2f}")
        ours = [r["sarsweep"] for r in rows]
        rhos = ", ".join("-" if o["rho"] is None else f"{o['rho']:.2f} (p {o['p']:.3g}, n {o['n']})" for o in ours)
        bands = [o["full_band"] for o in ours if o["full_band"] is not None]
        band = statistics.mean(bands) if bands else None
        ranks = ", ".join(str(o.get("winner_quick_rank", "-")) for o in ours)
        print(f"{variant}: quick->full Spearman rho per repetition: {rhos}; quick winner won at full scale in "
              f"{sum(bool(o['same_winner']) for o in ours)} of {len(ours)}; the full winner's rank by quick value: "
              f"{ranks}; full-stage noise band " + ("-" if band is None else f"{band:.2f} dB (mean of {len(bands)})"))
        for other in ("random", "asha"):
            for where in ("val", "s1"):
                lead = [r["sarsweep"][where] - r[other][where] for r in rows]
                mean = statistics.mean(lead)
                verdict = "noise not measured" if band is None else (
                    "beyond the noise band" if abs(mean) > band else "within the noise band")
                print(f"ratio {variant} sarsweep - {other} ({'validation' if where == 'val' else 'held-out S1'}): "
                      f"{mean:+.2f} dB (per repetition {', '.join(f'{x:+.2f}' for x in lead)}): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="(variant, repetition) pairs run at once, 1 thread each")
    parser.add_argument("--smoke", action="store_true", help="baseline, 1 repetition, 3 quick trials, 2+2 epochs")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job(args)
        return
    sizes = {"quick_trials": 12, "quick_epochs": 3, "full_epochs": 6, "top_k": 6, "noise": 2, "val": 512}
    if args.smoke:
        args.variants, args.repeats = ["baseline"], 1
        sizes = {"quick_trials": 3, "quick_epochs": 2, "full_epochs": 2, "top_k": 2, "noise": 1, "val": 128}
    print(f"# {os.cpu_count()} CPUs, {args.jobs} job(s) at once, 1 thread each; {args.repeats} repetition(s); "
          f"stages {json.dumps(sizes)}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SARSWEEP_CACHE": os.environ.get(
        "SARSWEEP_CACHE", str(Path(tempfile.gettempdir()) / "sarsweep-quality-cache"))}

    def run(pair: tuple[str, int]) -> dict:
        done = subprocess.run([sys.executable, __file__, "--job", "--variant", pair[0], "--seed", str(pair[1]),
                               "--sizes", json.dumps(sizes)], capture_output=True, text=True, env=env)
        if done.returncode:
            raise SystemExit(f"search_quality: {pair} exited {done.returncode}: {done.stderr.strip()[-600:]}")
        line = done.stdout.strip().splitlines()[-1]
        print(f"# {line}", flush=True)
        return json.loads(line)

    pairs = [(v, r) for r in range(args.repeats) for v in args.variants]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, pairs))
    summarise(results)


if __name__ == "__main__":
    main()
