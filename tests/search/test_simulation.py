"""The campaign simulator (search/simulation/) replays the real campaign worker's decisions."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from conftest import REPO
from optuna.trial import FrozenTrial, TrialState
from support.campaigns import init

from search.campaign.config import load_campaign
from search.campaign.roles import PROMOTED_FROM_TRIAL
from search.running.worker import run_campaign_worker
from search.simulation.replay import CONFIG_ATTR, replay_campaign
from search.simulation.table import CurveTable
from storage import open_storage


def _curve(values: list[float], seconds: list[float], epochs: int) -> list[dict[str, float]]:
    """A run's curve, padded to `epochs` with its last epoch: a pruned trial's epochs after it was
    pruned are never read by a replay that prunes it too."""
    values = values + [values[-1]] * (epochs - len(values))
    seconds = seconds + [seconds[-1]] * (epochs - len(seconds))
    return [{"epoch": i + 1, "psnr": v, "ssim": 0.5, "loss": 0.0, "seconds": s}
            for i, (v, s) in enumerate(zip(values, seconds, strict=True))]


def _run(trial: FrozenTrial) -> tuple[list[float], list[float]]:
    values = [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
    return values, [e["seconds"] for e in trial.user_attrs["epochs"]]


def table_of(campaign_path: Path, quick: list[FrozenTrial], full: list[FrozenTrial], out: Path) -> Path:
    """The real campaign's runs as a curve table: quick trial i is config i, with one seed; its
    full-fidelity curve is the full trial promoted from it (others get their quick curve, unread)."""
    campaign = load_campaign(campaign_path)
    q, f = campaign.quick, campaign.full
    out.mkdir()
    meta = {"campaign": campaign.to_dict(), "configs": len(quick), "seeds": 1, "variants": ["baseline"],
            "fidelities": [{"fraction": q.fraction, "epochs": q.epochs}, {"fraction": f.fraction, "epochs": f.epochs}]}
    assert q.fraction != f.fraction, "a table holds one curve per fraction"
    by_origin = {int(t.user_attrs[PROMOTED_FROM_TRIAL]): t for t in full}
    lines = []
    for i, t in enumerate(quick):
        values, seconds = _run(t)
        lines.append({"variant": "baseline", "config": i, "seed_index": 0, "seed": 0, "fraction": q.fraction,
                      "epochs": q.epochs, "params": t.params, "curve": _curve(values, seconds, q.epochs),
                      "trivial_psnr": 10.0, "trivial_ssim": 0.1})
        fv, fs = _run(by_origin[i]) if i in by_origin else (values, seconds)
        lines.append({**lines[-1], "fraction": f.fraction, "epochs": f.epochs,
                      "curve": _curve(fv, fs, f.epochs)})
    (out / "table.json").write_text(json.dumps(meta))
    (out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out


@pytest.mark.slow
def test_a_replay_on_the_campaign_s_own_curves_takes_its_decisions(pg_url: str, write_campaign,
                                                                     tmp_path: Path) -> None:
    """Same points proposed in the same order, the same trials pruned, the same configs promoted and
    the same winner, when the table holds what the real campaign worker trained."""
    path = write_campaign(quick={"trials": 10, "epochs": 3, "pruner": "median", "fraction": 0.5},
                          full={"epochs": 2, "top_k": 2, "fraction": 1.0})
    init(path, pg_url, tmp_path)
    campaign = load_campaign(path)
    storage = open_storage(pg_url)
    run_campaign_worker(storage, campaign, tmp_path / "art", worker_index=0, progress=False, threads=1)
    real_quick = optuna.load_study(study_name="t.baseline.quick", storage=storage).get_trials()
    real_full = optuna.load_study(study_name="t.baseline.full", storage=storage).get_trials()
    assert len(real_quick) == 10 and {t.state for t in real_quick} == {TrialState.COMPLETE, TrialState.PRUNED}

    table = CurveTable.load(table_of(path, real_quick, real_full, tmp_path / "table"))
    result = replay_campaign(table, campaign, workers=1, seed=campaign.quick.sampler_seed)
    sim_quick = result.studies["baseline", "quick"].get_trials()
    sim_full = result.studies["baseline", "full"].get_trials()
    assert [t.user_attrs[CONFIG_ATTR] for t in sim_quick] == list(range(10))  # TPE proposed the same points
    assert [t.state for t in sim_quick] == [t.state for t in real_quick]  # the median pruner judged alike
    assert [t.value for t in sim_quick] == pytest.approx([t.value for t in real_quick])
    promoted = [int(t.user_attrs[PROMOTED_FROM_TRIAL]) for t in real_full]
    assert [t.user_attrs[CONFIG_ATTR] for t in sim_full] == promoted
    best = max(real_full, key=lambda t: (t.value, -t.number))
    assert result.variants["baseline"].chosen == int(best.user_attrs[PROMOTED_FROM_TRIAL])


def test_the_committed_table_loads_with_every_config_at_every_seed() -> None:
    table = CurveTable.load(REPO / "bench" / "curves" / "s1-cpu")
    assert {"baseline", "resnet_lite"} <= set(table.variants)
    for variant in ("baseline", "resnet_lite"):
        assert len(table.configs[variant]) >= 64 and table.seeds[variant] >= 3
        hand = table.configs[variant][0]  # the seed's hand pick leads the design
        assert hand["lr"] == 5e-5 and hand["optimizer"] == "adamw" and hand["warmup_epochs"] == 3
        assert table.nearest(variant, hand) == 0


def test_a_replay_of_the_committed_table_spends_what_its_trials_ran(tmp_path: Path) -> None:
    table = CurveTable.load(REPO / "bench" / "curves" / "s1-cpu")
    result = replay_campaign(table, table.campaign, workers=4, seed=1)
    for variant, o in result.variants.items():
        quick = result.studies[variant, "quick"].get_trials()
        assert len([t for t in quick if "noise_of" not in t.user_attrs]) == table.campaign.quick_budget()
        assert o.chosen is not None and o.regret >= 0 and o.promoted
        assert o.seconds["quick"] > 0 and o.seconds["full"] > 0
    assert result.busy == pytest.approx(sum(sum(o.seconds.values()) for o in result.variants.values()))
    assert 0 <= result.idle_share < 1 and result.wall * 4 >= result.busy
