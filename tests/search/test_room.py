"""Disk room: a worker claims only what the artifacts disk can hold (search/running/disk.py)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import on_a_small_disk, start_cli, tiny_campaign_dict
from optuna.trial import TrialState
from support.campaigns import init, trials_of

from search.campaign.config import load_campaign
from storage import open_storage


def test_a_worker_on_a_disk_too_small_claims_nothing_however_often_it_restarts(pg_url: str, write_campaign,
                                                                                 tmp_path: Path) -> None:
    """compose restarts a worker that exits 2 (`restart: on-failure`). On a disk too small for a
    trial's checkpoints (a zero-byte probe passes there), each start used to claim a trial, fail it
    at its first checkpoint and queue a retry: two more trials per restart, without end. Now it
    refuses before claiming, with the sizes, and the study is untouched."""
    path = write_campaign(quick={"trials": 1})
    init(path, pg_url, tmp_path)
    disk = tmp_path / "disk"
    script = Path(sys.executable).parent / "sarsweep"
    worker = (f'"{script}" worker --campaign "{path}" --variant baseline --stage quick --storage "{pg_url}" '
              f'--artifacts "{disk}"')
    done = on_a_small_disk(disk, "64k", f'{worker}; echo "rc=$?"; {worker}; echo "rc=$?"', tmp_path)
    assert [line for line in done.stdout.splitlines() if line.startswith("rc=")] == ["rc=2", "rc=2"], done.stderr
    refusal = (rf"sarsweep: error: cannot write {re.escape(str(disk))}: \d+\.\d KiB free, "
               r"baseline trials' checkpoints need up to \d+\.\d (KiB|MiB)")
    assert re.fullmatch(rf"({refusal}\n){{2}}", done.stderr), done.stderr
    assert trials_of(pg_url, "t.baseline.quick") == []  # no trial claimed, none failed, no retry queued


@pytest.mark.parametrize(("peer", "size"), [("baseline", "2m"), ("resnet_lite", "4m")])
def test_the_disk_check_counts_what_running_trials_have_still_to_write(peer: str, size: str, pg_url: str,
                                                                      write_campaign, tmp_path: Path) -> None:
    """Workers started together (launch --per-gpu N, compose --scale) each saw the empty disk and
    claimed. Under the claim lock a worker now also counts the campaign's running trials, its own
    study's and the other variants' (whose workers write to the same artifacts root). One tiny
    baseline trial's checkpoints take up to 1.5 MiB: a 2 MiB disk does not hold those and a
    baseline peer's, a 4 MiB disk not those and a resnet_lite peer's (3.0 MiB; largest sizes, as
    neither trial has its config yet)."""
    from storage.trials import claim

    path = write_campaign(variants=["baseline", "resnet_lite"], quick={"trials": 2})
    init(path, pg_url, tmp_path)
    storage = open_storage(pg_url)
    study = optuna.load_study(study_name=f"t.{peer}.quick", storage=storage)
    held = claim(study, storage, 2)  # a peer's trial, claimed, not yet writing
    assert held is not None
    disk = tmp_path / "disk"
    script = Path(sys.executable).parent / "sarsweep"
    worker = (f'"{script}" worker --campaign "{path}" --variant baseline --stage quick --storage "{pg_url}" '
              f'--artifacts "{disk}"')
    done = on_a_small_disk(disk, size, worker, tmp_path)
    assert done.returncode == 2 and re.fullmatch(
        rf"sarsweep: error: cannot write {re.escape(str(disk))}: \d+\.\d MiB free, checkpoints of this baseline "
        r"trial and of 1 running trial of campaign t need up to (3|4)\.\d MiB\n", done.stderr), done.stderr
    nothing_claimed = [TrialState.RUNNING] if peer == "baseline" else []  # the peer's trial, or none
    assert [t.state for t in trials_of(pg_url, "t.baseline.quick")] == nothing_claimed

    study.tell(held, 0.0)  # the peer finished (without writing here): the same disk takes the next trial
    again = on_a_small_disk(tmp_path / "disk2", size, worker.replace(str(disk), str(tmp_path / "disk2")), tmp_path)
    assert again.returncode == 0, again.stderr
    assert [t.state for t in trials_of(pg_url, "t.baseline.quick")] == [TrialState.COMPLETE] * 2


def test_claims_of_different_variants_take_turns_at_the_disk_check(pg_url: str, write_campaign,
                                                                   tmp_path: Path) -> None:
    """Each study has its own claim lock, so a baseline and a resnet_lite worker could both pass the
    disk check on the same free bytes at the same instant. The check now takes the campaign's disk
    lock in the claim's transaction: while someone holds it, no worker of the campaign claims."""
    import psycopg2

    from storage.locks import lock_key

    path = write_campaign(variants=["baseline", "resnet_lite"], quick={"trials": 1})
    init(path, pg_url, tmp_path)
    holder = psycopg2.connect(pg_url)
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (lock_key("disk:t"),))  # as another variant's claim would
    worker = start_cli("worker", "--campaign", str(path), "--variant", "resnet_lite", "--stage", "quick",
                       "--storage", pg_url, "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
    try:
        time.sleep(4)  # start-up (~2 s here) and then waiting at the lock
        assert worker.poll() is None and trials_of(pg_url, "t.resnet_lite.quick") == []
    finally:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (lock_key("disk:t"),))
        holder.close()
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    assert [t.state for t in trials_of(pg_url, "t.resnet_lite.quick")] == [TrialState.COMPLETE]


def test_a_running_trial_reserves_only_what_its_folder_does_not_hold_yet(write_campaign, tmp_path: Path) -> None:
    from search.running.disk import still_to_write
    from training.checkpoint import checkpoint_bytes
    from training.config import TrainConfig

    campaign = load_campaign(write_campaign())
    study = optuna.create_study()
    fresh, retry = study.ask(), study.ask()
    config = {**tiny_campaign_dict()["train"], "variant": "baseline", "base_channels": 4}
    retry.set_user_attr("config", config)
    study._storage.set_trial_system_attr(retry._trial_id, "failed_trial", 0)  # writes to trial_0000's folder
    folder = tmp_path / "art" / "t" / "baseline" / "quick" / "trial_0000"
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"x" * 1000)
    (folder / "last.pt").write_bytes(b"x" * 3000)
    largest = 10**9
    frozen = {t.number: study._storage.get_trial(t._trial_id) for t in (fresh, retry)}
    assert still_to_write(frozen[0], tmp_path / "art", campaign, "baseline", "quick", largest) == largest - 4000
    own = checkpoint_bytes("baseline", TrainConfig.from_dict(config).model_kwargs)
    assert still_to_write(frozen[1], tmp_path / "art", campaign, "baseline", "quick", largest) == own - 4000
