"""Compare search strategies on a table of recorded learning curves, at equal worker-hours.

    python bench/simulate.py compare  --table bench/curves/s1-cpu [--replays 50] [--workers 4] [--jobs 2]
    python bench/simulate.py fidelity --table bench/curves/s1-cpu      # which quick fidelity ranks best
    python bench/simulate.py schedule --table bench/curves/s1-cpu --workers 2 8 32
    python bench/simulate.py --smoke                                  # seconds, a tiny table: what CI runs

Needs the bench extra (`pip install -e .[bench]`: syne-tune 0.16 and what its simulator needs).

compare: per replay r, sarsweep's campaign (search.simulation.replay: its own sampler, pruner,
promotion, seed re-runs and claim order, N workers) spends S_v worker-seconds on variant v; each
peer then gets S_v on v with the same N workers, at the full fidelity:
- random, asha, bohb: syne-tune 0.16's RandomSearch, ASHA and BOHB through its simulator backend
  (UserBlackboxBackend) over the same table;
- tpe-hyperband: Optuna's TPESampler with its HyperbandPruner (min 1 epoch, factor 3), replayed
  by the same engine as sarsweep's campaign, one stage.
Every arm's point is looked up at its nearest recorded config and a recorded seed; its choice is
the best run it finished at the full fidelity, and its regret is the table's best config's true
value (mean over seeds) minus its choice's. Reported per variant: mean and IQM regret with
bootstrap 95 % intervals, and the paired per-replay difference sarsweep - peer with its interval
(negative: sarsweep chose better). Also sarsweep at half and twice its quick trials, and each
peer's incumbent at those spends: regret against worker-hours.

fidelity: quick->full Spearman rho over all configs (one recorded seed per config, as a campaign
sees it; bootstrap over configs and seeds) for each quick fidelity the table holds, with its
cost, and the probability that the full winner is among the top k by quick value.

schedule: worker-hours, wall time and idle share of the campaign with N workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import os
import sys
import tempfile
import typing
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEERS = ("random", "asha", "bohb", "tpe-hyperband")


# ---- statistics -----------------------------------------------------------------------------------

def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half (what syne-tune's benchmarking reports)."""
    x = np.sort(np.asarray(x, dtype=float))
    n = len(x)
    lo, hi = int(np.floor(n * 0.25)), int(np.ceil(n * 0.75))
    return float(x[lo:hi].mean()) if hi > lo else float(x.mean())


def bootstrap(x: np.ndarray, stat: Any = np.mean, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The statistic and its percentile bootstrap 95 % interval over the replays."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.array([stat(x[rng.integers(0, len(x), len(x))]) for _ in range(n)])
    return float(stat(x)), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho; nan where one side is constant (a resample of few configs can be)."""
    from scipy.stats import spearmanr

    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


# ---- the peers ------------------------------------------------------------------------------------

def syne_tune_space(table: Any, variant: str) -> dict[str, Any]:
    from syne_tune.config_space import choice, loguniform, randint, uniform

    from training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    space = {}
    for key, spec in table.campaign.space(variant).items():
        if spec.choices is not None:
            space[key] = choice(list(spec.choices))
        elif hints[key] is int:
            space[key] = randint(int(spec.low), int(spec.high))
        else:
            space[key] = loguniform(spec.low, spec.high) if spec.log else uniform(spec.low, spec.high)
    return space


def table_blackbox(table: Any, variant: str, replay: int) -> Any:
    """The table as a syne-tune Blackbox: a config is looked up at its nearest recorded one (as for
    sarsweep), at a recorded seed drawn from the config itself and the replay (a trial keeps its
    seed when ASHA resumes it)."""
    from syne_tune.blackbox_repository.blackbox import Blackbox

    campaign = table.campaign
    epochs, fraction = campaign.full.epochs, campaign.full.fraction
    space = syne_tune_space(table, variant)

    class TableBlackbox(Blackbox):
        def __init__(self) -> None:
            from syne_tune.config_space import randint

            super().__init__(configuration_space=space, fidelity_space={"epoch": randint(1, epochs)},
                             objectives_names=["value", "elapsed"])

        @property
        def fidelity_values(self) -> np.ndarray:
            return np.arange(1, epochs + 1)

        def _objective_function(self, configuration: dict[str, Any], fidelity: dict | None = None,
                                seed: int | None = None) -> Any:
            config = table.nearest(variant, configuration)
            key = json.dumps([replay, configuration], sort_keys=True, default=str).encode()
            s = int(hashlib.sha256(key).hexdigest()[:8], 16) % table.seeds[variant]
            curve = table.curve(variant, config, s, fraction)
            out = np.stack([curve.values[:epochs], np.cumsum(curve.seconds[:epochs])], axis=1)
            if fidelity is not None:
                return dict(zip(self.objectives_names, out[int(fidelity["epoch"]) - 1], strict=True))
            return out

    return TableBlackbox()


def syne_tune_arm(arm: str, table: Any, variant: str, workers: int, budget: float, replay: int) -> dict[str, Any]:
    """One syne-tune run of `arm` until `budget` worker-seconds are spent; its incumbents over time."""
    os.environ.setdefault("SYNETUNE_FOLDER", tempfile.mkdtemp(prefix="sarsweep-synetune-"))
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.optimizer.baselines import ASHA, BOHB, RandomSearch

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    np.random.seed(replay)
    space = syne_tune_space(table, variant)
    epochs = table.campaign.full.epochs
    if arm == "random":
        scheduler: Any = RandomSearch(space, metrics=["value"], do_minimize=False, random_seed=replay)
    elif arm == "asha":
        scheduler = ASHA(space, metric="value", time_attr="epoch", max_t=epochs, do_minimize=False, random_seed=replay)
    else:
        scheduler = BOHB(space, metric="value", time_attr="epoch", max_t=epochs, do_minimize=False,
                         random_seed=replay)
    backend = UserBlackboxBackend(blackbox=table_blackbox(table, variant, replay), elapsed_time_attr="elapsed")
    callback = SimulatorCallback()
    # Simulated time is not worker-seconds (start and stop delays, the tail): run well past the
    # budget's time and read each level off the spend actually accumulated (spend_times).
    tuner = Tuner(trial_backend=backend, scheduler=scheduler, n_workers=workers, sleep_time=0,
                  stop_criterion=StoppingCriterion(max_wallclock_time=2.5 * budget / workers), callbacks=[callback],
                  save_tuner=False, print_update_interval=1e12, results_update_interval=1e12)
    with redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.run()
    df = callback.dataframe()
    finished = []  # (simulated time it finished, its value, its config in the table)
    for _, rows in df.groupby("trial_id"):
        last = rows.sort_values("epoch").iloc[-1]
        if int(last["epoch"]) == epochs:
            config = {k[len("config_"):]: last[k] for k in rows.columns if k.startswith("config_")}
            config = {k: (v.item() if hasattr(v, "item") else v) for k, v in config.items() if k in space}
            finished.append((float(last["st_tuner_time"]), float(rows["value"].max()),
                             table.nearest(variant, config)))
    spent = float(df.groupby("trial_id")["elapsed"].max().sum()) if len(df) else 0.0
    return {"finished": sorted(finished), "spent": spent, "trials": int(df["trial_id"].nunique()) if len(df) else 0,
            "spend_curve": spend_curve(df)}


def spend_curve(df: Any) -> list[tuple[float, float]]:
    """(simulated time, worker-seconds spent by then), from each trial's cumulative elapsed seconds."""
    steps = []
    for _, rows in df.groupby("trial_id"):
        rows = rows.sort_values("epoch")
        elapsed = rows["elapsed"].to_numpy()
        deltas = np.diff(np.concatenate([[0.0], elapsed]))
        steps += list(zip(rows["st_tuner_time"].to_numpy(), np.maximum(deltas, 0.0), strict=True))
    steps.sort()
    total, curve = 0.0, []
    for t, d in steps:
        total += float(d)
        curve.append((float(t), total))
    return curve


def time_of_spend(arm: dict[str, Any], spend: float, workers: int) -> float:
    """When the arm had spent `spend` worker-seconds (its own spend curve; else spend / workers)."""
    curve = arm.get("spend_curve")
    if not curve:
        return spend / workers
    for t, total in curve:
        if total >= spend:
            return t
    return float("inf")


def tpe_hyperband_arm(table: Any, variant: str, workers: int, budget: float, replay: int) -> dict[str, Any]:
    import optuna

    from search.simulation.replay import CONFIG_ATTR, END_ATTR, replay_campaign

    epochs = table.campaign.full.epochs
    result = replay_campaign(
        table, table.campaign, workers, seed=replay, one_stage=True, variants=[variant],
        sampler=lambda v, w: optuna.samplers.TPESampler(seed=replay * 1000 + w),
        pruner=lambda s: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3),
        budget_seconds={variant: budget * 1.05})
    trials = result.studies[variant, "quick"].get_trials(deepcopy=False)
    finished = sorted((float(t.user_attrs[END_ATTR]), float(t.value), int(t.user_attrs[CONFIG_ATTR]))
                      for t in trials if t.value is not None and len(t.intermediate_values) == epochs)
    return {"finished": finished, "spent": result.busy, "trials": len(trials)}


def incumbent_regret(arm: dict[str, Any], truth: np.ndarray, until: float | None = None) -> float:
    """Regret of the best run the arm had finished (by `until`, simulated seconds), by the value it saw."""
    done = [f for f in arm["finished"] if until is None or f[0] <= until]
    if not done:
        return float("nan")
    best = max(done, key=lambda f: (f[1], -f[0]))
    return float(truth.max() - truth[best[2]])


# ---- one replay ----------------------------------------------------------------------------------

def one_replay(args: tuple[str, int, int, list[str], list[str], list[str]]) -> dict[str, Any]:
    import optuna

    from search.simulation.replay import replay_campaign
    from search.simulation.table import CurveTable

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path, replay, workers, arms, variants, changes = args
    table = CurveTable.load(path)
    campaign = with_changes(table.campaign, changes)
    out: dict[str, Any] = {"replay": replay, "variants": {}}
    levels = {"half": max(2, campaign.quick.trials // 2), "default": campaign.quick.trials,
              "double": campaign.quick.trials * 2}
    runs = {}
    for level, trials in levels.items():
        c = dataclasses.replace(campaign, quick=dataclasses.replace(campaign.quick, trials=trials))
        runs[level] = replay_campaign(table, c, workers, seed=replay, variants=variants)
    for variant in variants:
        truth = table.values(variant, campaign.full.fraction, campaign.full.epochs).mean(axis=1)
        row: dict[str, Any] = {}
        for level, result in runs.items():
            o = result.variants[variant]
            row[f"sarsweep.{level}"] = {"regret": o.regret, "spent": sum(o.seconds.values()),
                                        "seconds": o.seconds, "winner_promoted": o.winner_promoted,
                                        "promoted": len(o.promoted), "trials": o.trials}
        double = row["sarsweep.double"]["spent"]
        for arm in arms:
            if arm == "sarsweep":
                continue
            run = (tpe_hyperband_arm(table, variant, workers, double, replay) if arm == "tpe-hyperband"
                   else syne_tune_arm(arm, table, variant, workers, double, replay))
            for level in levels:
                spend = row[f"sarsweep.{level}"]["spent"]
                row[f"{arm}.{level}"] = {"regret": incumbent_regret(run, truth, time_of_spend(run, spend, workers)),
                                         "spent": spend, "reached": run["spent"] >= spend}
            row[f"{arm}.default"]["trials"] = run["trials"]
        out["variants"][variant] = row
    out["wall"] = runs["default"].wall
    out["idle_share"] = runs["default"].idle_share
    return out


def compare(args: argparse.Namespace) -> dict[str, Any]:
    from search.simulation.table import CurveTable

    table = CurveTable.load(args.table)
    variants = args.variants or table.variants
    arms = ["sarsweep", *[a for a in args.arms if a != "sarsweep"]]
    jobs = [(args.table, r, args.workers, arms, variants, args.changes) for r in range(args.replays)]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            replays = list(pool.map(one_replay, jobs))
    else:
        replays = [one_replay(j) for j in jobs]
    summary: dict[str, Any] = {"table": str(args.table), "replays": args.replays, "workers": args.workers,
                               "changes": args.changes, "variants": {}}
    for variant in variants:
        rows = [r["variants"][variant] for r in replays]
        seconds_full_run = float(table.seconds(variant, table.campaign.full.fraction,
                                               table.campaign.full.epochs).mean())
        v: dict[str, Any] = {"full_run_seconds": seconds_full_run, "arms": {}, "paired": {}, "budgets": {}}
        for level in ("half", "default", "double"):
            spent = np.array([r[f"sarsweep.{level}"]["spent"] for r in rows])
            v["budgets"][level] = {"worker_seconds": float(spent.mean()),
                                   "full_runs": float(spent.mean() / seconds_full_run)}
            for arm in arms:
                regret = np.array([r[f"{arm}.{level}"]["regret"] for r in rows])
                v["arms"].setdefault(arm, {})[level] = {"mean": bootstrap(regret), "iqm": bootstrap(regret, iqm),
                                                        "missing": int(np.isnan(regret).sum())}
        base = np.array([r["sarsweep.default"]["regret"] for r in rows])
        for arm in arms[1:]:
            other = np.array([r[f"{arm}.default"]["regret"] for r in rows])
            v["paired"][arm] = bootstrap(base - other)
        v["winner_promoted"] = float(np.mean([r["sarsweep.default"]["winner_promoted"] for r in rows]))
        v["promoted"] = float(np.mean([r["sarsweep.default"]["promoted"] for r in rows]))
        summary["variants"][variant] = v
    summary["idle_share"] = float(np.mean([r["idle_share"] for r in replays]))
    return summary


def interval(x: list[float] | tuple[float, float, float]) -> str:
    return f"{x[0]:.3f} [{x[1]:.3f}, {x[2]:.3f}]"


def print_compare(s: dict[str, Any]) -> None:
    print(f"{s['replays']} replays, {s['workers']} workers; regret in dB of true full-fidelity value "
          "(mean over the table's seeds) below the table's best config; [95 % bootstrap interval]")
    for variant, v in s["variants"].items():
        print(f"\n{variant}: one full run = {v['full_run_seconds']:.1f} worker-s; the winner was promoted in "
              f"{v['winner_promoted']:.0%} of replays ({v['promoted']:.1f} configs promoted on average)")
        heads = [f"{level} ({b['full_runs']:.1f} full runs)" for level, b in v["budgets"].items()]
        print(f"  {'arm':<14} " + " ".join(f"{h:>30}" for h in heads))
        for arm, levels in v["arms"].items():
            cells = [interval(x["mean"]) for x in levels.values()]
            print(f"  {arm:<14} " + " ".join(f"{c:>30}" for c in cells))
        for arm, (d, lo, hi) in v["paired"].items():
            verdict = "sarsweep better" if hi < 0 else "peer better" if lo > 0 else "no difference beyond the interval"
            print(f"  sarsweep - {arm:<14} {d:+.3f} dB [{lo:+.3f}, {hi:+.3f}]: {verdict}")
    print(f"\nidle worker share (sarsweep, default): {s['idle_share']:.1%}")


# ---- fidelity --------------------------------------------------------------------------------------

def fidelity(args: argparse.Namespace) -> dict[str, Any]:
    from search.simulation.table import CurveTable

    table = CurveTable.load(args.table)
    campaign = table.campaign
    out: dict[str, Any] = {"variants": {}}
    rng = np.random.default_rng(0)
    full_f, full_e = campaign.full.fraction, campaign.full.epochs
    quick_cost = campaign.quick.fraction * campaign.quick.epochs
    for variant in args.variants or table.variants:
        truth = table.values(variant, full_f, full_e).mean(axis=1)
        n, seeds = len(truth), table.seeds[variant]
        cands = []
        for f, e_max in table.fidelities:
            for e in range(1, e_max + 1):
                if abs(f * e - quick_cost) < 1e-9 or (f, e) == (campaign.quick.fraction, campaign.quick.epochs):
                    cands.append((f, e))
        full_runs = table.values(variant, full_f, full_e)
        sd_full = float(np.sqrt(np.mean(full_runs.var(axis=1, ddof=1))))
        near = set(np.flatnonzero(truth >= truth.max() - sd_full).tolist())  # within one seed sd of the winner
        rows = {}
        for f, e in sorted(set(cands)):
            vals = table.values(variant, f, e)  # configs x seeds
            secs = table.seconds(variant, f, e).mean()
            rhos, inside = [], {k: [] for k in (1, 2, 3, 4, 6, 8)}
            close = {k: [] for k in inside}
            for _ in range(1000):
                pick = vals[np.arange(n), rng.integers(0, seeds, n)]  # one seed a config, as a campaign sees it
                idx = rng.integers(0, n, n)  # configs resampled: the interval covers other designs too
                rhos.append(spearman(pick[idx], truth[idx]))
                order = np.argsort(-pick)
                for k in inside:
                    inside[k].append(int(np.argmax(truth)) in order[:k])
                    close[k].append(bool(near & set(order[:k].tolist())))
            rho = spearman(vals.mean(axis=1), truth)
            rows[f"{f:g}x{e}"] = {"fraction": f, "epochs": e, "seconds": float(secs),
                                  "rho_one_seed": [float(np.nanmedian(rhos)), float(np.nanpercentile(rhos, 2.5)),
                                                   float(np.nanpercentile(rhos, 97.5))],
                                  "rho_seed_mean": rho,
                                  "winner_in_top_k": {k: float(np.mean(v)) for k, v in inside.items()},
                                  "near_winner_in_top_k": {k: float(np.mean(v)) for k, v in close.items()}}
        noise = table.values(variant, full_f, full_e)
        out["variants"][variant] = {"configs": n, "seeds": seeds, "fidelities": rows, "near_winners": len(near),
                                    "full_seed_sd": float(np.sqrt(np.mean(noise.var(axis=1, ddof=1)))),
                                    "full_spread": float(truth.max() - truth.min()),
                                    "trivial": float(np.mean([c.trivial for c in table.runs.values()]))}
    return out


def print_fidelity(s: dict[str, Any]) -> None:
    for variant, v in s["variants"].items():
        print(f"\n{variant}: {v['configs']} configs x {v['seeds']} seeds; full-fidelity seed sd "
              f"{v['full_seed_sd']:.3f} dB (pooled), configs' true values span {v['full_spread']:.2f} dB; "
              f"trivial reference {v['trivial']:.2f} dB")
        print(f"  {'quick fidelity':<16} {'s/config':>9} {'rho, one seed [95 %]':>26} {'rho, seed mean':>15}  "
              "P(full winner in top k), k = 1 2 3 4 6 8 | P(one of the "
              f"{v['near_winners']} configs within a seed sd of it in top k)")
        for name, r in v["fidelities"].items():
            m, lo, hi = r["rho_one_seed"]
            tops = " ".join(f"{p:.2f}" for p in r["winner_in_top_k"].values())
            near = " ".join(f"{p:.2f}" for p in r["near_winner_in_top_k"].values())
            print(f"  {name:<16} {r['seconds']:>9.1f} {f'{m:.2f} [{lo:.2f}, {hi:.2f}]':>26} {r['rho_seed_mean']:>15.2f}"
                  f"  {tops} | {near}")


# ---- sweep: candidate defaults ------------------------------------------------------------------------

def with_changes(campaign: Any, changes: list[str]) -> Any:
    """The campaign with dotted changes such as full.top_k=5, noise_rule=race, full.stop_margin=3."""
    import yaml

    from search.campaign.config import CampaignConfig
    from training.schema import build

    raw = campaign.to_dict()
    for change in changes:
        key, _, value = change.partition("=")
        *parents, leaf = key.split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[leaf] = yaml.safe_load(value)
    return build(CampaignConfig, raw)


def sweep_one(args: tuple[str, list[str], int, int]) -> dict[str, Any]:
    import optuna

    from search.simulation.replay import replay_campaign
    from search.simulation.table import CurveTable

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    path, changes, workers, replay = args
    table = CurveTable.load(path)
    campaign = with_changes(table.campaign, changes)
    result = replay_campaign(table, campaign, workers, seed=replay)
    return {"wall": result.wall, "busy": result.busy, "idle": result.idle_share,
            "variants": {v: {"regret": o.regret, "spent": sum(o.seconds.values()), "named": o.named_winner,
                             "promoted_winner": o.winner_promoted, "full_trials": o.trials.get("full", 0),
                             "winner_stopped": o.winner_stopped, "full_spent": o.seconds.get("full", 0.0),
                             "pruned": o.pruned}
                         for v, o in result.variants.items()}}


def series(runs: list[dict[str, Any]], variant: str, key: str) -> np.ndarray:
    return np.array([float(r["variants"][variant][key]) for r in runs])


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Each candidate (a set of changes to the table's campaign) replayed `replays` times."""
    from search.simulation.table import CurveTable

    table = CurveTable.load(args.table)
    out: dict[str, Any] = {}
    candidates = [c.split(",") if c else [] for c in args.candidates]
    with ProcessPoolExecutor(args.jobs) as pool:
        for changes in candidates:
            runs = list(pool.map(sweep_one, [(args.table, changes, args.workers, r) for r in range(args.replays)]))
            name = ",".join(changes) or "as recorded"
            row: dict[str, Any] = {"wall": float(np.mean([r["wall"] for r in runs])),
                                   "idle": float(np.mean([r["idle"] for r in runs])), "variants": {}}
            for v in table.variants:
                full_run = float(table.seconds(v, table.campaign.full.fraction, table.campaign.full.epochs).mean())
                regret, spent = series(runs, v, "regret"), series(runs, v, "spent")
                row["variants"][v] = {"regret": bootstrap(regret), "full_runs": float(spent.mean() / full_run),
                                      "named": float(series(runs, v, "named").mean()),
                                      "promoted_winner": float(series(runs, v, "promoted_winner").mean()),
                                      "winner_stopped": float(series(runs, v, "winner_stopped").mean()),
                                      "full_runs_in_full_stage": float(series(runs, v, "full_spent").mean() / full_run),
                                      "regrets": regret.tolist(), "spent": spent.tolist()}
            out[name] = row
            cells = "; ".join(f"{v} regret {interval(x['regret'])}, {x['full_runs']:.1f} full runs, "
                              f"named {x['named']:.0%}, winner promoted {x['promoted_winner']:.0%}"
                              + (f", winner stopped {x['winner_stopped']:.0%}" if x["winner_stopped"] else "")
                              for v, x in row["variants"].items())
            print(f"{name:<48} wall {row['wall'] / 3600:.2f} h, idle {row['idle']:.1%}; {cells}", flush=True)
    return out


# ---- schedule ---------------------------------------------------------------------------------------

def schedule(args: argparse.Namespace) -> dict[str, Any]:
    import optuna

    from search.simulation.replay import replay_campaign
    from search.simulation.table import CurveTable

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table = CurveTable.load(args.table)
    out: dict[str, Any] = {}
    campaign = with_changes(table.campaign, getattr(args, "changes", []))
    for n in args.workers_list:
        results = [replay_campaign(table, campaign, n, seed=r) for r in range(args.replays)]
        regret = {v: float(np.nanmean([r.variants[v].regret for r in results])) for v in table.variants}
        named = {v: float(np.mean([r.variants[v].named_winner for r in results])) for v in table.variants}
        out[str(n)] = {"worker_hours": float(np.mean([r.busy for r in results]) / 3600), "named_winner": named,
                       "wall_hours": float(np.mean([r.wall for r in results]) / 3600),
                       "idle_share": float(np.mean([r.idle_share for r in results])), "regret": regret,
                       "winner_promoted": {v: float(np.mean([r.variants[v].winner_promoted for r in results]))
                                           for v in table.variants}}
        row = out[str(n)]
        print(f"{n:>3} workers: {row['worker_hours']:.2f} worker-h, wall {row['wall_hours']:.2f} h, "
              f"idle {row['idle_share']:.1%}, regret " + ", ".join(f"{v} {x:.3f}" for v, x in regret.items()))
    return out


# ---- smoke --------------------------------------------------------------------------------------------

def smoke() -> None:
    """Record a tiny table (bench/curves.py --smoke) and run every command on it: what CI runs."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="sarsweep-sim-smoke-") as tmp:
        subprocess.run([sys.executable, str(REPO / "bench" / "curves.py"), "record", "--smoke", "--out", tmp,
                        "--jobs", "1"], check=True)
        subprocess.run([sys.executable, str(REPO / "bench" / "curves.py"), "export", "--table", tmp], check=True)
        from syne_tune.blackbox_repository.blackbox_tabular import deserialize

        from search.simulation.table import CurveTable

        table = CurveTable.load(tmp)
        for fraction, epochs in table.fidelities:
            tasks = deserialize(str(Path(tmp) / "blackbox" / f"f{fraction:g}"))
            recorded = table.curve("baseline", 1, 1, fraction).values[:epochs]
            read = tasks["baseline"].objectives_evaluations[1, 1, :, 0]
            print(f"blackbox f{fraction:g}: {len(tasks['baseline'].hyperparameters)} configs x "
                  f"{tasks['baseline'].num_seeds} seeds x {epochs} epochs read back by syne-tune, "
                  f"{'equal to' if np.allclose(read, recorded) else 'DIFFERENT FROM'} the table")
        ns = argparse.Namespace(table=tmp, replays=2, workers=2, jobs=1, arms=["sarsweep", *PEERS], changes=[],
                                variants=None, workers_list=[1, 2])
        print_compare(compare(ns))
        print_fidelity(fidelity(ns))
        schedule(ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    sub = parser.add_subparsers(dest="command")
    for name in ("compare", "fidelity", "schedule", "sweep"):
        p = sub.add_parser(name)
        p.add_argument("--table", default=str(REPO / "bench" / "curves" / "s1-cpu"))
        p.add_argument("--variants", nargs="*")
        p.add_argument("--replays", type=int, default=50)
        p.add_argument("--json", help="also write the results here")
        if name == "compare":
            p.add_argument("--workers", type=int, default=4)
            p.add_argument("--jobs", type=int, default=2)
            p.add_argument("--arms", nargs="*", default=["sarsweep", *PEERS])
            p.add_argument("--changes", nargs="*", default=[],
                           help="sarsweep's campaign with dotted changes, e.g. full.top_k=5 noise_rule=race")
        if name == "schedule":
            p.add_argument("--workers", dest="workers_list", type=int, nargs="*", default=[2, 8, 32])
            p.add_argument("--changes", nargs="*", default=[], help="dotted changes, e.g. noise_rule=race")
        if name == "sweep":
            p.add_argument("--workers", type=int, default=4)
            p.add_argument("--jobs", type=int, default=2)
            p.add_argument("candidates", nargs="*", default=[""],
                           help="comma-separated dotted changes per candidate, e.g. full.top_k=5,noise_seeds=0")
    args = parser.parse_args()
    if args.smoke:
        smoke()
        return
    if args.command is None:
        parser.error("a command (compare, fidelity, schedule) or --smoke")
    result = {"compare": compare, "fidelity": fidelity, "schedule": schedule, "sweep": sweep}[args.command](args)
    if args.command == "compare":
        print_compare(result)
    elif args.command == "fidelity":
        print_fidelity(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
