"""`sarsweep plan`: a campaign's bill before it runs, from a calibration on this machine."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli


def test_plan_forecasts_every_variant_and_stage_and_touches_no_storage(write_campaign, tmp_path: Path) -> None:
    path = write_campaign(variants=["baseline", "resnet_lite"], noise_seeds=1,
                          quick={"trials": 4, "epochs": 2}, full={"epochs": 3, "top_k": 2, "max_k": 3})
    done = run_cli("plan", "--campaign", str(path), "--workers", "2", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["workers"] == 2 and plan["pruning_assumed"] is False and plan["device"].startswith("cpu")
    stages = {(s["variant"], s["stage"]): s for s in plan["stages"]}
    assert set(stages) == {(v, s) for v in ("baseline", "resnet_lite") for s in ("quick", "full")}
    for (_, stage), s in stages.items():
        assert s["trials"] == ([5, 5] if stage == "quick" else [3, 4])  # budget + 1 seed re-run; top_k..max_k + 1
        narrow, wide = s["epoch_seconds"]
        assert narrow > 0 and wide > 0  # base_channels 4 and 8: both timed
        lo, hi = s["worker_hours"]
        assert 0 < lo <= hi
    lo, hi = plan["worker_hours"]
    assert lo <= plan["simulated_worker_hours"] <= hi * 1.001
    assert 0 < plan["critical_path_hours"] <= plan["wall_hours"] and 0 <= plan["idle_share"] < 1
    assert plan["data"]["quick"]["train_patches"] == plan["data"]["full"]["train_patches"]  # both on all of it
    assert not (tmp_path / "sarsweep.db").exists()  # no storage opened, nothing made

    table = run_cli("plan", "--campaign", str(path), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "pruning not assumed" in table.stdout and "with 1 worker(s)" in table.stdout
    assert any(line.split()[:2] == ["resnet_lite", "full"] for line in table.stdout.splitlines())


def test_plan_refuses_bad_input_in_one_line(write_campaign, tmp_path: Path) -> None:
    path = write_campaign()
    zero = run_cli("plan", "--campaign", str(path), "--workers", "0", cwd=tmp_path)
    assert zero.returncode == 2 and len(zero.stderr.strip().splitlines()) == 1 and "--workers" in zero.stderr
    missing = run_cli("plan", "--campaign", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_plan_forecasts_where_the_data_is_not_from_a_patch_count(write_campaign, tmp_path: Path) -> None:
    """A campaign whose data.root is not on this machine (the group's configs/campaign.yaml on a
    login node): refused in one line, or forecast from --patches, split as training splits them."""
    data = {"root": str(tmp_path / "not-here"), "patch_size": 16, "val_fraction": 0.2, "val_max_patches": 64}
    path = write_campaign(train={"batch_size": 8, "device": "cpu", "data": data}, quick={"fraction": 0.5})
    refused = run_cli("plan", "--campaign", str(path), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.startswith("sarsweep: error: data.root") and \
        "Traceback" not in refused.stderr
    done = run_cli("plan", "--campaign", str(path), "--patches", "1000", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    # 1000 patches: 200 validation (capped at 64), 800 training; the quick stage takes half of those.
    assert plan["data"]["quick"] == {"train_patches": 400, "val_patches": 64}
    assert plan["data"]["full"] == {"train_patches": 800, "val_patches": 64}
    assert plan["data_source"].startswith("1,000 patches as --patches says")
    assert all(s["epoch_seconds"][0] > 0 for s in plan["stages"]) and plan["wall_hours"] > 0
    table = run_cli("plan", "--campaign", str(path), "--patches", "1000", cwd=tmp_path)
    assert "(counted from 1,000 patches as --patches says" in table.stdout
