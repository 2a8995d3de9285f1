"""A search you can trust: pruning after warmup, reference configs, seed noise, honest verdicts."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import optuna
import pytest
from conftest import run_cli, tiny_campaign_dict
from optuna.trial import TrialState
from scipy.stats import spearmanr
from support.campaigns import init, trials_of

from search.campaign.config import load_campaign
from search.campaign.studies import AfterWarmupPruner
from search.policy.verdicts import agreement, beside_noise, exact_p
from storage import open_storage


def test_a_warmup_3_trial_survives_to_epoch_4() -> None:
    """The median pruner judged every trial from the stage's epoch max(1, epochs // 4): the seed's
    hand-picked config (warmup 3) was pruned at epoch 2, while its LR was still a fraction of its
    value. Judged from its own warmup + 1, it reaches epoch 4 before the same pruner may stop it."""
    inner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    study = optuna.create_study(direction="maximize", pruner=AfterWarmupPruner(inner, warmup=0))
    for _ in range(5):  # finished peers, far better at every epoch
        t = study.ask({"warmup_epochs": optuna.distributions.IntDistribution(0, 5)})
        for epoch in range(1, 7):
            t.report(30.0 + epoch, epoch)
        study.tell(t, 36.0)
    study.enqueue_trial({"warmup_epochs": 3})
    slow = study.ask({"warmup_epochs": optuna.distributions.IntDistribution(0, 5)})
    assert slow.params["warmup_epochs"] == 3
    judged = []
    for epoch in range(1, 7):
        slow.report(10.0 + epoch, epoch)
        judged.append(slow.should_prune())
        if judged[-1]:
            break
    assert judged == [False, False, False, True]  # epochs 1-3 are its warmup; epoch 4 is the first judged
    plain = optuna.create_study(direction="maximize", pruner=inner)
    for t in study.trials[:5]:
        plain.add_trial(t)
    early = plain.ask({"warmup_epochs": optuna.distributions.IntDistribution(0, 5)})
    early.report(11.0, 1)
    early.report(12.0, 2)
    assert early.should_prune()  # the pruner alone stops it at epoch 2


def test_references_and_seed_noise_runs_are_never_pruned() -> None:
    always = AfterWarmupPruner(optuna.pruners.ThresholdPruner(lower=100.0), warmup=0)
    study = optuna.create_study(direction="maximize", pruner=always)
    for attrs in ({"reference": "seed"}, {"noise_of": 0, "noise_seed": 1}, {}):
        study.enqueue_trial({}, user_attrs=attrs)
        t = study.ask()
        t.report(1.0, 5)
        assert t.should_prune() == (attrs == {}), attrs
        study.tell(t, 1.0)


def test_init_refuses_a_warmup_range_that_makes_pruning_impossible(write_campaign, tmp_path: Path) -> None:
    path = write_campaign(quick={"epochs": 4, "pruner": "median"}, full={"epochs": 4},
                          search={"warmup_epochs": {"low": 0, "high": 3}})
    done = run_cli("init", "--campaign", str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"sarsweep: error: {path}: search.warmup_epochs: reaches 3, so a trial warmed up that long could never be "
        "pruned (pruning starts one epoch after a trial's warmup, epoch 4 of the quick stage's 4); lower it, raise "
        "quick.epochs or set quick.pruner: none\n")
    assert not (tmp_path / "x.db").exists()


def test_the_default_lr_range_holds_the_research_groups_own_choice() -> None:
    from search.campaign.config import default_space

    lr = default_space()["lr"]
    assert lr.log and lr.low <= 5e-5 <= lr.high


SEED = {"optimizer": "adamw", "lr": 5e-5, "warmup_epochs": 1, "grad_clip": 0.0}


def test_a_reference_config_runs_in_the_quick_stage_and_reaches_the_report(pg_url: str, write_campaign,
                                                                           tmp_path: Path) -> None:
    space = {**tiny_campaign_dict()["search"], "lr": {"low": 5e-5, "high": 5e-3, "log": True}}
    path = write_campaign(reference={"seed": SEED}, search=space, quick={"trials": 3, "pruner": "median",
                                                                          "epochs": 3})
    init(path, pg_url, tmp_path)
    init(path, pg_url, tmp_path)  # again: still one
    (queued,) = trials_of(pg_url, "t.baseline.quick")
    assert queued.state == TrialState.WAITING and queued.user_attrs == {"reference": "seed"}
    storage = open_storage(pg_url)
    attrs = optuna.load_study(study_name="t.baseline.quick", storage=storage).user_attrs
    assert attrs["budget"] == 4  # 3 searched + 1 reference
    done = run_cli("worker", "--campaign", str(path), "--storage", pg_url, "--variant", "baseline", "--stage",
                   "quick", "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    trials = trials_of(pg_url, "t.baseline.quick")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    ref = trials[0]
    assert {k: ref.params[k] for k in SEED} == SEED and ref.user_attrs["config"]["optimizer"] == "adamw"
    report = run_cli("report", "--campaign", str(path), "--storage", pg_url, "-o", "r.md", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    row = next(line for line in (tmp_path / "r.md").read_text().splitlines() if line.startswith("| baseline |"))
    best = max(trials, key=lambda t: (t.value, -t.number))
    if best.number == ref.number:
        assert "seed: is the quick winner" in row
    else:
        assert f"seed: quick {best.value - ref.value:+.2f} (noise not measured)" in row
    assert "plus 1 reference config(s) (seed)" in (tmp_path / "r.md").read_text()


def test_a_reference_outside_the_search_space_is_one_line_at_init(write_campaign, tmp_path: Path) -> None:
    path = write_campaign(reference={"seed": SEED})  # the tiny space's lr starts at 1e-3
    done = run_cli("init", "--campaign", str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == (
        f"sarsweep: error: {path}: reference.seed.lr: 5e-05 lies outside baseline's search space (0.001 to 0.005, "
        "log)\n")
    unknown = write_campaign(filename="u.yaml", reference={"seed": {"momentum": 0.9}})
    done = run_cli("init", "--campaign", str(unknown), "--storage", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert done.returncode == 2 and "reference.seed.momentum: is not a key of baseline's search space" in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_seed_noise_is_measured_per_stage_and_widens_promotion(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """After the quick stage's budget, its best config runs with 2 more seeds; its spread is the
    quick noise band, and promotion takes the top 1 and every config within that band of it (up
    to max_k). The full stage's winner is re-run the same way."""
    from search.policy.promotion import ranked_distinct
    from search.policy.seeds import band

    common = {"quick": {"trials": 5, "epochs": 2}, "full": {"top_k": 1, "max_k": 3, "epochs": 2}}
    off = write_campaign(filename="off.yaml", **common)
    path = write_campaign(noise_seeds=2, **common)
    assert load_campaign(off).fingerprint() == load_campaign(path).fingerprint()  # more trials, not other ones
    init(path, pg_url, tmp_path)
    args = ("--storage", pg_url, "--variant", "baseline", "--artifacts", str(tmp_path / "art"))
    assert run_cli("worker", "--campaign", str(off), *args, "--stage", "quick", cwd=tmp_path).returncode == 0
    early = run_cli("promote", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    assert early.returncode == 1 and early.stdout.strip() == (
        "baseline: quick stage not finished (2 seed-noise re-run(s) to come; 5 finished); not promoted")
    done = run_cli("worker", "--campaign", str(path), *args, "--stage", "quick", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    quick = trials_of(pg_url, "t.baseline.quick")
    searched, reruns = quick[:5], quick[5:]
    best = max(searched, key=lambda t: (t.value, -t.number))
    assert [t.user_attrs["noise_of"] for t in reruns] == [best.number] * 2
    assert all(t.params == best.params and t.state == TrialState.COMPLETE for t in reruns)
    # The worker's line names each re-run for what it is, its value in PSNR dB.
    for k, t in enumerate(reruns, 1):
        assert (f"trial {t.number} complete (seed re-run {k} of trial {best.number}: a noise measurement, never "
                f"the best): val PSNR {t.value:.2f} dB in ") in done.stdout, done.stdout
    seeds = {t.user_attrs["seed"] for t in (best, *reruns)}
    assert len(seeds) == 3  # three seeds of one config
    noise = band(quick)
    assert noise is not None and noise.values == [best.value, *(t.value for t in reruns)]
    promoted = run_cli("promote", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    ranked = ranked_distinct(quick)
    expected = [ranked[0]] + [t for t in ranked[1:3] if t.value >= ranked[0].value - noise.spread]
    full = trials_of(pg_url, "t.baseline.full")
    assert [t.user_attrs["promoted_from_trial"] for t in full] == [t.number for t in expected]
    for t in full[1:]:
        assert t.user_attrs["promoted_within_noise"] == pytest.approx(noise.spread)
        assert f"quick trial {t.user_attrs['promoted_from_trial']} " in promoted.stdout
    assert promoted.stdout.count("within the quick stage's noise band") == len(expected) - 1
    done = run_cli("worker", "--campaign", str(path), *args, "--stage", "full", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    full = trials_of(pg_url, "t.baseline.full")
    winner = max(full[:len(expected)], key=lambda t: (t.value, -t.number))
    assert [t.user_attrs.get("noise_of") for t in full[len(expected):]] == [winner.number] * 2
    report = run_cli("report", "--campaign", str(path), "--storage", pg_url, "-o", "r.md", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "r.md").read_text()
    assert f"| baseline | quick | #{best.number} |" in md and f"| baseline | full | #{winner.number} |" in md
    status = run_cli("status", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    row = next(line.split() for line in status.stdout.splitlines() if line.startswith("baseline     quick"))
    assert row[9] == f"#{best.number}"  # the stage's best is no re-run, however lucky its seed


def test_an_exact_permutation_p_for_few_configs() -> None:
    """scipy's asymptotic p said 0 for rho = 1 over 3 configs; by chance that happens 1 time in 6."""
    perfect = agreement([(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)])
    assert perfect.rho == 1.0 and perfect.p == pytest.approx(1 / 6) and perfect.exact
    assert "too few to judge (5 needed)" in perfect.sentence() and "one-sided p = 0.167" in perfect.sentence()
    assert agreement([(1.0, 4.0), (2.0, 3.0), (3.0, 2.0), (4.0, 1.0)]).p == 1.0  # reversed: no agreement at all
    assert agreement([(float(i), float(i)) for i in range(5)]).p == pytest.approx(1 / 120)
    assert "too few" not in agreement([(float(i), float(i)) for i in range(5)]).sentence()
    assert agreement([(1.0, 2.0), (2.0, 1.0)]).rho is None  # two configs: nothing to rank
    rng = random.Random(3)
    x, y = [rng.random() for _ in range(6)], [rng.random() for _ in range(6)]
    observed = spearmanr(x, y).statistic
    count = sum(spearmanr(x, list(p)).statistic >= observed - 1e-12 for p in itertools.permutations(y))
    assert exact_p(x, y) == pytest.approx(count / math.factorial(6))  # scipy on every one of the 720 orderings


def test_a_difference_is_judged_against_its_noise_band() -> None:
    assert beside_noise(0.12, 0.3) == "+0.12 (noise band 0.30): within noise"
    assert beside_noise(-0.5, 0.3) == "-0.50 (noise band 0.30): beyond noise"
    assert beside_noise(0.5, None) == "+0.50 (noise not measured)"


def test_racing_buys_full_stage_seeds_only_while_a_comparison_is_undecided(pg_url: str, write_campaign,
                                                                         tmp_path: Path) -> None:
    """noise_rule: race in a real campaign worker: the full stage's re-runs go to its leader and to
    configs not beaten beyond the pooled noise, at most noise_seeds each, and the stage ends."""
    from search.policy.seeds import beaten, pooled_sd, seed_values

    path = write_campaign(noise_seeds=2, noise_rule="race", quick={"trials": 5, "epochs": 2},
                          full={"top_k": 3, "max_k": 3, "epochs": 2})
    init(path, pg_url, tmp_path)
    done = run_cli("worker", "--campaign", str(path), "--storage", pg_url, "--artifacts", str(tmp_path / "art"),
                   cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    full = trials_of(pg_url, "t.baseline.full")
    assert all(t.state == TrialState.COMPLETE for t in full)
    promoted = [t for t in full if "promoted_from_trial" in t.user_attrs]
    reruns = [t for t in full if "noise_of" in t.user_attrs]
    assert len(promoted) == 3 and reruns  # no dof before the first re-run: every comparison starts undecided
    per_config = {p.number: [r for r in reruns if r.user_attrs["noise_of"] == p.number] for p in promoted}
    assert all(len(r) <= 2 for r in per_config.values())
    for p, rs in per_config.items():
        assert [r.user_attrs["noise_seed"] for r in rs] == list(range(1, len(rs) + 1))
        assert all(r.params == next(t for t in promoted if t.number == p).params for r in rs)
    # When the stage ended, every config short of seeds was beaten beyond noise by the leader.
    values = seed_values(full)
    sd, dof = pooled_sd(list(values.values()))
    lead = max(values, key=lambda n: sum(values[n]) / len(values[n]))
    for n, v in values.items():
        if n != lead and len(per_config[n]) < 2:
            assert beaten(values[lead], v, sd, dof), (n, values)
