"""`sarsweep report`: the table equals what the studies hold; the correlation equals scipy's."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import run_cli, temp_database, tiny_campaign_dict
from optuna.trial import TrialState
from scipy.stats import spearmanr

from search.campaign.config import load_campaign
from search.campaign.studies import ensure_study
from search.report.collect import collect, fidelity_of, summary_line, trial_seconds
from search.report.render import comparison_rows, write_report
from search.running.promote import promote
from search.running.worker import run_worker
from storage import open_storage


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def finished_campaign(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A quick stage of 5 trials, 3 promoted configs run in full: built once per backend."""
    tmp = tmp_path_factory.mktemp("report")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(temp_database()) if request.param == "postgresql" else f"sqlite:///{tmp / 'r.db'}"
        path = tmp / "campaign.yaml"
        path.write_text(yaml.safe_dump(tiny_campaign_dict(
            quick={"trials": 5, "epochs": 2, "pruner": "none"}, full={"epochs": 2, "top_k": 3})))
        campaign = load_campaign(path)
        storage = open_storage(url, create_schema=True)
        for stage in ("quick", "full"):
            ensure_study(storage, campaign, "baseline", stage)
        run_worker(storage, campaign, "baseline", "quick", tmp / "art", progress=False)
        promote(storage, campaign, "baseline")
        run_worker(storage, campaign, "baseline", "full", tmp / "art", progress=False)
        yield url, path, campaign, storage
        storage.engine.dispose()


def test_tables_hold_what_the_studies_hold(finished_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, path, campaign, storage = finished_campaign
    report = collect(storage, campaign)
    quick = optuna.load_study(study_name="t.baseline.quick", storage=storage).trials
    full = optuna.load_study(study_name="t.baseline.full", storage=storage).trials
    best_quick = max(quick, key=lambda t: t.value)
    best_full = max(full, key=lambda t: t.value)
    (row,) = comparison_rows(report)
    assert row[0] == "baseline" and row[1] == f"{best_full.user_attrs['param_count']:,}"
    assert row[2] == f"{best_quick.user_attrs['val_psnr']:.2f} / {best_quick.user_attrs['val_ssim']:.4f}"
    assert row[3] == f"{best_full.user_attrs['val_psnr']:.2f} / {best_full.user_attrs['val_ssim']:.4f}"
    assert f"lr={best_full.params['lr']:.3g}" in row[4] and row[5] == f"t.baseline.full #{best_full.number}"
    (result,) = report.results
    assert sorted(p.quick_trial for p in result.promoted) == sorted(t.user_attrs["promoted_from_trial"] for t in full)
    for p in result.promoted:
        assert p.full_value == full[p.full_trial].value and p.quick_value == quick[p.quick_trial].value
    quick_cost = next(c for c in report.costs if c.stage == "quick")
    assert quick_cost.counts["COMPLETE"] == 5 and quick_cost.devices == ["cpu"]
    assert quick_cost.seconds == pytest.approx(sum(trial_seconds(t) for t in quick))


def test_fidelity_is_scipys_spearman_on_the_same_pairs(finished_campaign) -> None:  # type: ignore[no-untyped-def]
    _, _, campaign, storage = finished_campaign
    (fid,) = collect(storage, campaign).fidelity
    full = optuna.load_study(study_name="t.baseline.full", storage=storage).trials
    pairs = [(t.user_attrs["quick_value"], t.value) for t in full if t.state == TrialState.COMPLETE]
    assert len(fid.pairs) == len(pairs) == 3 and sorted(fid.pairs) == sorted(pairs)
    expected = spearmanr([p[0] for p in pairs], [p[1] for p in pairs])
    # rho is scipy's; p is one-sided and exact: the share of the 3! orderings of the full values
    # that agree at least as well (scipy's asymptotic two-sided p said 0 for rho = 1 over 3)
    orderings = list(itertools.permutations([p[1] for p in pairs]))
    as_good = sum(spearmanr([p[0] for p in pairs], list(o)).statistic >= expected.statistic - 1e-12 for o in orderings)
    assert fid.rho == pytest.approx(expected.statistic) and fid.p_value == pytest.approx(as_good / len(orderings))
    quick_winner = max(pairs, key=lambda p: p[0])
    assert fid.same_winner == (quick_winner == max(pairs, key=lambda p: p[1]))
    assert "Spearman rho" in fid.sentence() and "Kendall tau" in fid.sentence() and "too few to judge" in fid.sentence()


def test_too_little_data_is_said_plainly(finished_campaign) -> None:  # type: ignore[no-untyped-def]
    _, _, campaign, storage = finished_campaign
    result = collect(storage, campaign).results[0]
    result.promoted = result.promoted[:2]
    fid = fidelity_of(result)
    assert fid.rho is None and "too few to judge (2 finished promoted config(s); 5 needed)" in fid.sentence()


def test_cli_writes_markdown_html_and_plots(finished_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, path, campaign, storage = finished_campaign
    done = run_cli("report", "--campaign", str(path), "--storage", url, "-o", "r.md", "--html", "r.html", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    md = (tmp_path / "r.md").read_text()
    assert "| baseline |" in md and "Spearman rho" in md and "## Cost per stage" in md
    html = (tmp_path / "r.html").read_text()
    assert html.count("<table>") == 3 and html.count('src="data:image/png;base64,') == 3
    assert len(list(tmp_path.glob("r-*.png"))) == 3
    status = run_cli("status", "--campaign", str(path), "--storage", url, cwd=tmp_path)
    assert status.returncode == 0 and summary_line(collect(storage, campaign)) in status.stdout


def test_an_output_that_cannot_be_written_is_one_line_exit_2_before_any_work(  # type: ignore[no-untyped-def]
        finished_campaign, tmp_path: Path) -> None:
    url, path, campaign, storage = finished_campaign
    (tmp_path / "r.md").write_text("a file where the report's folder should be")
    for args in (["-o", "r.md/report.md"], ["-o", "ok.md", "--html", "r.md/report.html"]):
        done = run_cli("report", "--campaign", str(path), "--storage", url, *args, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr == (
            "sarsweep: error: cannot write r.md: r.md is a file, not a folder\n"), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md"]  # no plot, no markdown, no temp file


def test_report_on_a_campaign_without_results(pg_url: str, write_campaign, tmp_path: Path) -> None:
    campaign = load_campaign(write_campaign())
    storage = open_storage(pg_url, create_schema=True)
    for stage in ("quick", "full"):
        ensure_study(storage, campaign, "baseline", stage)
    report = write_report(storage, campaign, tmp_path / "empty.md", tmp_path / "empty.html")
    assert "too few to judge" in report.fidelity[0].sentence()
    empty = (tmp_path / "empty.md").read_text()
    assert "| baseline | no trial finished |" in empty
    assert " - |" not in empty and "| - " not in empty  # every cell says why it is empty


def test_held_out_scores_are_each_chosen_configs_checkpoint_on_the_same_rasters(  # type: ignore[no-untyped-def]
        finished_campaign, s1: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from search.cli import main
    from training.evaluate import evaluate

    url, path, campaign, storage = finished_campaign
    scene = s1 / "S1A_IW_GRDH_1SDV_20150902T102505_20150902T102534_007535_00A699_2D00"
    best_full = max(optuna.load_study(study_name="t.baseline.full", storage=storage).trials, key=lambda t: t.value)
    checkpoint = Path(best_full.user_attrs["checkpoint"])
    artifacts = checkpoint.parents[4]  # <root>/t/baseline/full/trial_NNNN/best.pt
    expected = evaluate(checkpoint, data=str(scene), include=["Patch/*.tif"])
    said: list[str] = []
    report = write_report(storage, campaign, tmp_path / "r.md", tmp_path / "r.html",
                          held_out=(artifacts, str(scene), ["Patch/*.tif"]), say=said.append)
    assert report.held_out is not None and report.held_out["baseline"].psnr == expected.psnr
    # It says what it does while it does it (the held-out scoring of four variants took 83-99 s, silent).
    assert said[:2] == ["reading baseline's studies (1/1)",
                        f"held-out: scoring baseline (1/1), full trial #{best_full.number}'s best.pt on {scene}"]
    assert said[2].startswith(f"held-out: baseline scored: PSNR {expected.psnr:.2f} dB on {expected.patches:,} patches (")
    assert len(said) == 3
    md = (tmp_path / "r.md").read_text()
    assert "| held-out PSNR / SSIM |" in md and f"| {expected.psnr:.2f} / {expected.ssim:.4f} |" in md
    assert f"Held out: {scene}, {expected.patches:,} patches of 16x16 from 13 file(s)" in md
    assert "held-out PSNR / SSIM" in (tmp_path / "r.html").read_text()

    capfd.readouterr()
    code = main(["report", "--campaign", str(path), "--storage", url, "-o", str(tmp_path / "x.md"),
                 "--held-out", str(tmp_path / "nowhere")])
    assert code == 2 and capfd.readouterr().err == f"sarsweep: error: --held-out: directory not found: {tmp_path / 'nowhere'}\n"
    assert not (tmp_path / "x.md").exists()


def test_a_lost_checkpoint_leaves_its_held_out_cell_saying_why(  # type: ignore[no-untyped-def]
        finished_campaign, s1: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from search.cli import main

    url, path, campaign, storage = finished_campaign
    scene = s1 / "S1A_IW_GRDH_1SDV_20150902T102505_20150902T102534_007535_00A699_2D00"
    best_full = max(optuna.load_study(study_name="t.baseline.full", storage=storage).trials, key=lambda t: t.value)
    checkpoint = Path(best_full.user_attrs["checkpoint"])
    aside = checkpoint.with_name("best.pt.aside")
    checkpoint.rename(aside)  # a node's disk lost, a cleanup gone too far
    try:
        capfd.readouterr()
        code = main(["report", "--campaign", str(path), "--storage", url, "-o", str(tmp_path / "r.md"),
                     "--artifacts", str(tmp_path / "elsewhere"), "--held-out", str(scene),
                     "--held-out-include", "Patch/*.tif"])
    finally:
        aside.rename(checkpoint)
    out, err = capfd.readouterr()
    assert err.splitlines() == ["report: reading baseline's studies (1/1)"]  # progress on stderr, results on stdout
    md = (tmp_path / "r.md").read_text()
    why = (f"Not scored: baseline, trial {best_full.number} of t.baseline.full: its checkpoint is neither at "
           f"{checkpoint} nor at {tmp_path / 'elsewhere' / 't' / 'baseline' / 'full'}")
    assert code == 0 and why in out and why in md
    assert "| held-out PSNR / SSIM |" in md and "| not scored |" in md


def test_the_report_opens_with_the_answer_and_whether_the_lead_is_beyond_noise(finished_campaign) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from optuna.trial import create_trial

    from search.policy.seeds import Band
    from search.report.collect import VariantResult
    from search.report.render import answer_lines, to_markdown

    url, path, campaign, storage = finished_campaign
    report = collect(storage, campaign)
    text = to_markdown(report)
    assert text.split("\n")[2] == "## The answer"
    (line,) = answer_lines(report)  # one variant: its config, no verdict between variants
    best = report.results[0].chosen
    assert line.startswith(f"- **baseline**: full run #{best.number}, ") and f"lr {best.params['lr']:.3g}" in line
    assert "Full stage: all of the training split" in text  # not "1 of the training split"

    def trial(value: float, trivial: float = 16.0) -> optuna.trial.FrozenTrial:
        return create_trial(value=value, params={"lr": 0.001}, distributions={
            "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
            user_attrs={"trivial_psnr": trivial})

    def result(variant: str, value: float, spread: float | None, trivial: float = 16.0) -> VariantResult:
        band = None if spread is None else Band(0, [value, value - spread])
        return VariantResult(variant, None, trial(value, trivial), full_band=band)

    close = dataclasses.replace(report, results=[result("attention", 18.75, 0.4), result("resnet_lite", 18.47, 0.2)])
    assert answer_lines(close)[-1] == ("- **Use attention**: it leads resnet_lite by 0.28, within the seed noise band "
                                       "(0.40): the two cannot be told apart on this data; take either (the smaller one "
                                       "costs less).")
    clear = dataclasses.replace(report, results=[result("attention", 19.5, 0.4), result("baseline", 18.0, 0.3, 18.5)])
    lines = answer_lines(clear)
    assert lines[-1] == "- **Use attention**: it leads baseline by 1.50, beyond the seed noise band (0.40): use attention."
    assert "BELOW the trivial reference" in lines[1] and "BELOW" not in lines[0]
    unknown = dataclasses.replace(report, results=[result("a", 18.0, None), result("b", 17.0, None)])
    assert "seed noise is not measured" in answer_lines(unknown)[-1]


def test_the_best_value_plot_never_climbs_on_a_seed_rerun() -> None:
    """The demo's plot climbed to 17.17 from a re-run while its table said 16.60: re-runs are
    measurements of noise, and the best-so-far line passes over them (and over unfinished trials)."""
    from search.report.plots import best_so_far

    def trial(number: int, value: float | None, **attrs: object) -> optuna.trial.FrozenTrial:
        state = TrialState.COMPLETE if value is not None else TrialState.PRUNED
        made = optuna.trial.create_trial(state=state, value=value, params={}, distributions={}, user_attrs=attrs)
        made.number = number
        return made

    trials = [trial(2, 15.0), trial(0, 16.6), trial(1, None), trial(3, 17.2, noise_of=0, noise_seed=1), trial(4, 16.0)]
    assert best_so_far(trials) == [(0, 16.6), (2, 16.6), (4, 16.6)]


def test_a_config_below_the_trivial_reference_is_marked_in_every_view(write_campaign, tmp_path: Path) -> None:
    """A config that scored under each patch's mean as its reconstruction (13.56 dB against 16.02:
    a reference config promoted because its stage had five) is marked in status, the report's
    answer, comparison and promoted tables, and export's header and warning."""
    from conftest import tiny_config_dict

    from search.policy.verdicts import below_trivial

    assert below_trivial({"val_psnr": 13.56, "trivial_psnr": 16.02}) == \
        "BELOW the trivial reference: 13.56 dB against 16.02 dB"
    assert below_trivial({"val_psnr": 16.03, "trivial_psnr": 16.02}) is None and below_trivial({}) is None
    url = f"sqlite:///{tmp_path / 'b.db'}"
    path = write_campaign()
    assert run_cli("init", "--campaign", str(path), "--storage", url, cwd=tmp_path).returncode == 0
    study = optuna.load_study(study_name="t.baseline.quick", storage=url)
    config = tiny_config_dict(tmp_path / "run")
    study.add_trial(optuna.trial.create_trial(
        value=13.56, params={}, distributions={},
        user_attrs={"config": config, "val_psnr": 13.56, "val_ssim": 0.41, "trivial_psnr": 16.02,
                    "trivial_ssim": 0.5, "param_count": 1000, "epochs": [{"epoch": 1, "seconds": 1.0}]}))
    mark = "BELOW the trivial reference: 13.56 dB against 16.02 dB"
    status = run_cli("status", "--campaign", str(path), "--storage", url, cwd=tmp_path)
    assert mark in next(line for line in status.stdout.splitlines() if line.startswith("baseline") and "quick" in line)
    report = run_cli("report", "--campaign", str(path), "--storage", url, "-o", "r.md", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "r.md").read_text()
    answer = md.split("## The answer")[1].split("##")[0]
    assert mark in answer and "-2.46 dB BELOW (trivial 16.02)" in md
    exported = run_cli("export", "--campaign", str(path), "--storage", url, "--variant", "baseline",
                       "--stage", "quick", "-o", "best.yaml", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert f"# WARNING: {mark}" in (tmp_path / "best.yaml").read_text()
    assert mark in exported.stderr
