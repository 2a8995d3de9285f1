"""`sarsweep demo`, and bad options refused before any work."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import run_cli


def test_demo_runs_end_to_end_on_sqlite(tmp_path: Path) -> None:
    # One quick trial a variant and no seed-noise re-runs (promotion, pruning and noise have tests of
    # their own): ~40 s of CI less.
    done = run_cli("demo", "--trials", "1", "--epochs", "1", "--noise-seeds", "0", "-o", "best.yaml", cwd=tmp_path,
                   env={"SARSWEEP_STORAGE": "", "SARSWEEP_ARTIFACTS": ""}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sarsweep.db").is_file() and (tmp_path / "best.yaml").is_file()
    for variant in ("baseline", "resnet_lite", "residual", "attention"):
        assert f"quick search: demo.{variant}.quick" in done.stdout
    assert "best config written to best.yaml" in done.stdout
    # Progress while it runs: each trial with the demo's trials done of about how many, and time left.
    counts = [int(n) for n in re.findall(r"\[(\d+) of about 12 trials, about \d+ min left\]$", done.stdout, re.M)]
    assert counts == list(range(1, 9)), done.stdout  # 1 quick, 1 promoted (of up to 2) per variant: 8 of about 12
    # Each variant's chosen config scored on generated scenes of another seed, in the report too.
    assert re.search(r"^Held out: .*synthetic.*, \d[\d,]* patches of 32x32 from 12 file\(s\)", done.stdout, re.M)
    assert len(re.findall(r"^  \w+: held-out PSNR \d+\.\d\d dB", done.stdout, re.M)) == 4
    report = (tmp_path / "report.md").read_text()
    assert "| held-out PSNR / SSIM |" in report
    assert "Seed noise: not measured (noise_seeds: 0)." in report
    assert "Not measured: the campaign sets noise_seeds: 0" in report  # not "yet": none will come
    retrain = run_cli("train", "--config", "best.yaml", "--epochs", "1", cwd=tmp_path)
    assert retrain.returncode == 0, retrain.stderr
    # The campaign it ran is written beside its outputs, so status (and report, export) read the same
    # studies; status names the trial best.yaml was exported from as its stage's best.
    assert "look again: sarsweep status --campaign demo-campaign.yaml" in done.stdout
    status = run_cli("status", "--campaign", "demo-campaign.yaml", cwd=tmp_path, env={"SARSWEEP_STORAGE": ""})
    assert status.returncode == 0, status.stderr
    exported = re.search(r"study demo\.(\w+)\.(\w+), trial (\d+)", (tmp_path / "best.yaml").read_text())
    assert exported is not None
    row = next(line.split() for line in status.stdout.splitlines() if line.split()[:2] == list(exported.groups()[:2]))
    assert row[9] == f"#{exported.group(3)}", status.stdout


def test_demo_and_launch_refuse_bad_options_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "best.yaml").write_text("a file where the output folder should be")
    demo = run_cli("demo", "--storage", f"sqlite:///{tmp_path / 'd.db'}", "--artifacts", str(tmp_path / "art"),
                   "-o", str(tmp_path / "best.yaml" / "best.yaml"), cwd=tmp_path)
    assert demo.returncode == 2 and demo.stderr == (
        f"sarsweep: error: cannot write {tmp_path / 'best.yaml'}: {tmp_path / 'best.yaml'} is a file, not a folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml"]  # no database, no trial, no checkpoint
    for option, value, *args in (["--per-gpu", "0", "launch", "--", "--campaign", "c.yaml"],
                                 ["--top-k", "0", "promote", "--campaign", "c.yaml"], ["--epochs", "0", "demo"],
                                 ["--period", "-1", "reaper", "--campaign", "c.yaml"],
                                 ["--worker-index", "-3", "worker", "--campaign", "c.yaml", "--variant", "baseline",
                                  "--stage", "quick"],
                                 ["--heartbeat-interval", "-5", "status", "--campaign", "c.yaml"],  # a traceback
                                 ["--grace-period", "0", "reaper", "--campaign", "c.yaml"],  # the default, unsaid
                                 ["--port", "70000", "dashboard"]):  # past 65535 was a traceback from bind()
        done = run_cli(args[0], option, value, *args[1:], cwd=tmp_path)  # one line, without argparse's usage block
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and done.stderr.startswith(
            f"sarsweep {args[0]}: error: argument {option}: must be "), done.stderr
        assert done.stderr.rstrip().endswith(f", got {value}")
    # A command line of the wrong shape says where the options are listed.
    done = run_cli("export", "--campaign", "c.yaml", "--variant", "baseline", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == ("sarsweep export: error: the following arguments are required: "
                                                    "-o/--output (see sarsweep export --help)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml"]


def test_the_demos_best_variant_is_never_picked_by_a_seed_rerun(tmp_path: Path) -> None:
    """attention's full re-run scored 18.0, above baseline's 17.0, but its own config scored 16.0:
    the demo exports baseline, as status, report and export pick."""
    import optuna

    from search.demo import best_overall, demo_campaign
    from storage import open_storage

    campaign = demo_campaign(trials=1, epochs=1, noise_seeds=1)
    storage = open_storage(f"sqlite:///{tmp_path / 'd.db'}", create_schema=True)
    values = {"baseline": [(17.0, {})], "attention": [(16.0, {}), (18.0, {"noise_of": 0, "noise_seed": 1})]}
    for variant in campaign.variants:
        for stage in ("quick", "full"):
            study = optuna.create_study(study_name=campaign.study_name(variant, stage), storage=storage,
                                        direction="maximize")
            for value, attrs in values.get(variant, []) if stage == "full" else []:
                study.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}, user_attrs=attrs))
    assert best_overall(storage, campaign) == ("baseline", "full")
