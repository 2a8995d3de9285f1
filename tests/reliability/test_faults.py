"""Fault injection on a throwaway PostgreSQL cluster (tests/support/cluster.py), never the shared server.

Each test prints one JSON line of figures (run pytest with -s to see them; docs/reliability.md
holds the measured table). Workers are real processes through the real worker loop: trivial
objectives via tests/support/loadtest.py, training via `sarsweep worker`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import psycopg2
import pytest
import yaml
from conftest import REPO, run_cli, start_cli
from optuna.trial import TrialState
from support import LOADTEST
from support.cluster import Cluster, PeakConnections, free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg():  # type: ignore[no-untyped-def]
    with Cluster(max_connections=100) as cluster:
        yield cluster


@pytest.fixture
def db(pg: Cluster, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    url = pg.create_database(name)
    yield name, url
    pg.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def init(campaign: Path, url: str, tmp_path: Path) -> None:
    done = run_cli("init", "--campaign", str(campaign), "--storage", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def figures(**values: object) -> None:
    print(json.dumps(values), flush=True)


def loadtest(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(LOADTEST), "--storage", url, "--study", "s", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def create_study(url: str) -> None:
    done = subprocess.run([sys.executable, str(LOADTEST), "--storage", url, "--study", "s", "--create"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def trials(url: str, study: str = "s") -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()


def finish(procs: list[subprocess.Popen[str]], timeout: float = 300) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def show_stderr(i: int, code: int | None, stderr: str) -> None:
    print(f"--- process {i} exited {code}; stderr:\n{stderr}")


def assert_all_exit_zero(results: list[tuple[int, str, str]]) -> None:
    """Every process exited 0; a failing one's whole stderr goes to the captured output (an
    assertion message is cut short, and the first lines of a traceback are the ones that tell)."""
    for i, (code, _, stderr) in enumerate(results):
        if code:
            show_stderr(i, code, stderr)
    assert [r[0] for r in results] == [0] * len(results)


@contextmanager
def dumped_on_failure(procs: list[subprocess.Popen[str]]) -> Iterator[None]:
    """If the block fails, stop the processes and print their stderr (why a worker hung or died)."""
    try:
        yield
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGUSR1)  # the worker prints every thread's stack
        time.sleep(1)
        for p in procs:
            p.kill()
        for i, p in enumerate(procs):
            _, stderr = p.communicate()
            show_stderr(i, p.returncode, stderr)
        raise


def throughput(ts: list[optuna.trial.FrozenTrial]) -> float:
    done = [t for t in ts if t.state == TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return len(done) / max(span, 1e-6)


def assert_exact(ts: list[optuna.trial.FrozenTrial], budget: int) -> None:
    assert sorted(t.number for t in ts) == list(range(budget))  # unique and dense
    assert [t for t in ts if t.state != TrialState.COMPLETE] == []  # none RUNNING, WAITING or FAIL


@pytest.mark.parametrize("workers", [2, 8, 16])
def test_n_workers_spend_the_budget_exactly(pg: Cluster, db, workers: int) -> None:  # type: ignore[no-untyped-def]
    name, url = db
    create_study(url)
    budget = 4 * workers
    with PeakConnections(pg, name) as peak:
        results = finish([loadtest(url, "--trials", str(budget)) for _ in range(workers)])
    assert_all_exit_zero(results)
    ts = trials(url)
    assert_exact(ts, budget)
    figures(test="n_workers", workers=workers, trials=budget, trials_per_s=round(throughput(ts), 1),
            peak_connections=peak.peak)


def test_64_workers_fit_in_max_connections_100(pg: Cluster, db) -> None:  # type: ignore[no-untyped-def]
    name = db[0] + "_w"
    # A non-superuser role, as in production: the 3 superuser-reserved slots are not for it.
    url = pg.create_database(name, owner="worker")
    create_study(url)
    budget = 128
    with PeakConnections(pg, name) as peak:
        results = finish([loadtest(url, "--trials", str(budget)) for _ in range(64)], timeout=600)
    errors = "".join(r[2] for r in results)
    assert "too many clients" not in errors
    assert_all_exit_zero(results)
    ts = trials(url)
    assert_exact(ts, budget)
    assert peak.peak <= 97  # max_connections - superuser_reserved_connections
    pg.sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    figures(test="64_workers", max_connections=100, role="non-superuser", trials=budget,
            trials_per_s=round(throughput(ts), 1), peak_connections=peak.peak)


def test_a_worker_the_server_cannot_hold_is_refused_at_start(tmp_path: Path) -> None:
    with Cluster(max_connections=8) as small:  # 3 reserved for superusers: 5 for everyone else
        url = small.create_database("t")
        create_study(url)
        holders = [psycopg2.connect(small.url("t")) for _ in range(4)]
        try:
            done = subprocess.run([sys.executable, str(LOADTEST), "--storage", url, "--study", "s",
                                   "--trials", "1"], cwd=REPO, capture_output=True, text=True, timeout=60)
        finally:
            for c in holders:
                c.close()
    assert done.returncode == 2
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "not enough free connections" in line and "max_connections" in line
    assert small.password not in line
    figures(test="connection_budget_refusal", max_connections=8, open_before=4, message=line)


def test_restart_and_outage_pause_workers_and_fail_nothing(pg: Cluster, db) -> None:  # type: ignore[no-untyped-def]
    _, url = db
    create_study(url)
    budget, workers = 48, 4
    procs = [loadtest(url, "--trials", str(budget), "--sleep", "0.5", "--heartbeat", "1", "--grace", "3")
             for _ in range(workers)]
    with dumped_on_failure(procs):
        assert wait_until(lambda: len(trials(url)) >= 8, 60)
        t0 = time.monotonic()
        pg.restart("fast")
        restart_s = time.monotonic() - t0
        done_before = sum(t.state == TrialState.COMPLETE for t in trials(url))
        assert wait_until(lambda: sum(t.state == TrialState.COMPLETE for t in trials(url)) > done_before, 60)
        restart_recovery = time.monotonic() - t0
        pg.stop("fast")
        time.sleep(5)
        t1 = time.monotonic()
        pg.start()
        done_before = sum(t.state == TrialState.COMPLETE for t in trials(url))
        assert wait_until(lambda: sum(t.state == TrialState.COMPLETE for t in trials(url)) > done_before, 60)
        outage_recovery = time.monotonic() - t1
    results = finish(procs)
    assert_all_exit_zero(results)
    ts = trials(url)
    assert [t.number for t in ts if t.state == TrialState.FAIL] == []  # zero falsely failed
    assert_exact(ts, budget)
    figures(test="restart_and_outage", workers=workers, restart_s=round(restart_s, 2),
            recovery_after_restart_s=round(restart_recovery, 2), outage_s=5,
            recovery_after_outage_s=round(outage_recovery, 2), failed=0, trials=budget)


def test_a_training_worker_trains_through_a_restart_and_an_outage(pg: Cluster, db, write_campaign,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    """The real trainer, not the trivial objective: per-epoch reports from the training thread,
    preview uploads and checkpoints from the background writer, heartbeat and reaper threads,
    all on a pool of two connections, through a restart and then a 4 s outage."""
    _, url = db
    epochs, budget = 50, 2
    path = write_campaign(quick={"trials": budget, "epochs": epochs})
    init(path, url, tmp_path)
    worker = start_cli("worker", "--campaign", str(path), "--storage", url, "--variant", "baseline", "--stage",
                       "quick", "--artifacts", str(tmp_path / "art"), "--heartbeat-interval", "1", "--grace-period",
                       "3", cwd=tmp_path)

    def epochs_done() -> int:
        return sum(len(t.intermediate_values) for t in trials(url, "t.baseline.quick"))

    with dumped_on_failure([worker]):
        assert wait_until(lambda: epochs_done() >= 3, 120, 0.1)  # training, not starting up
        t0 = time.monotonic()
        pg.restart("fast")
        before = epochs_done()
        assert wait_until(lambda: epochs_done() > before, 60, 0.1)
        restart_recovery = time.monotonic() - t0
        mid_trial = any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials(url, "t.baseline.quick"))
        pg.stop("fast")
        time.sleep(4)
        t1 = time.monotonic()
        pg.start()
        before = epochs_done()
        assert wait_until(lambda: epochs_done() > before, 60, 0.1)
        outage_recovery = time.monotonic() - t1
        stdout, stderr = worker.communicate(timeout=300)
    assert mid_trial, "the outage began between trials: it tested the claim, not training"
    assert worker.returncode == 0, stderr
    ts = trials(url, "t.baseline.quick")
    assert_exact(ts, budget)  # nothing failed, nothing retried
    assert all(sorted(t.intermediate_values) == list(range(1, epochs + 1)) for t in ts)  # no epoch lost
    assert all("preview_artifact" in t.user_attrs for t in ts)  # the background writer's uploads went through
    assert stdout.count(" complete:") == budget, stdout
    figures(test="training_worker_restart_and_outage", recovery_after_restart_s=round(restart_recovery, 2),
            outage_s=4, recovery_after_outage_s=round(outage_recovery, 2), trials=budget, epochs=epochs)


def test_kill_9_with_no_other_worker_is_reaped_retried_and_resumed(pg: Cluster, db, write_campaign,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path) -> None:
    _, url = db
    path = write_campaign(quick={"trials": 1, "epochs": 12})
    init(path, url, tmp_path)
    art = tmp_path / "art"
    common = ("--campaign", str(path), "--storage", url, "--heartbeat-interval", "1", "--grace-period", "2")
    # Reaping pauses for grace + interval + 5 s after a server start (an earlier test restarts it);
    # waited out before the worker starts, whose trial could finish in the meantime.
    assert wait_until(lambda: float(pg.sql("SELECT extract(epoch FROM now() - pg_postmaster_start_time())")) > 9,
                      30, 0.5)
    # The reaper runs before the worker dies, as in docker-compose: the figure is kill -> FAIL, not
    # a reaper's process start-up (CI measured 5.6 s when the reaper was started after the kill).
    reaper = start_cli("reaper", *common, "--period", "1", cwd=tmp_path)
    worker = start_cli("worker", *common, "--variant", "baseline", "--stage", "quick", "--artifacts", str(art),
                       cwd=tmp_path)
    with dumped_on_failure([reaper, worker]):
        assert reaper.stdout.readline().startswith("reaper on campaign")  # its passes have begun
        last = art / "t" / "baseline" / "quick" / "trial_0000" / "last.pt"
        assert wait_until(last.is_file, 120)
        killed = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=30)
        assert wait_until(lambda: trials(url, "t.baseline.quick")[0].state == TrialState.FAIL, 30, 0.1)
        to_fail = time.monotonic() - killed
        assert wait_until(lambda: len(trials(url, "t.baseline.quick")) == 2, 30, 0.1)
        to_retry = time.monotonic() - killed
    reaper.send_signal(signal.SIGTERM)
    reaper.communicate(timeout=30)
    retry = run_cli("worker", *common, "--variant", "baseline", "--stage", "quick", "--artifacts", str(art),
                    cwd=tmp_path)
    assert retry.returncode == 0, retry.stderr
    t0, t1 = trials(url, "t.baseline.quick")
    assert (t0.state, t1.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert t1.params == t0.params and t1.system_attrs["failed_trial"] == 0
    assert t1.user_attrs["start_epoch"] > 0  # resumed from last.pt
    assert to_fail <= 2 + 1 + 2  # grace + reaper period + slack
    figures(test="kill9_reaper", grace_s=2, reaper_period_s=1, seconds_to_fail=round(to_fail, 2),
            seconds_to_retry_queued=round(to_retry, 2), resumed_from_epoch=t1.user_attrs["start_epoch"])


def test_a_lost_retry_is_requeued_once(pg: Cluster, db) -> None:  # type: ignore[no-untyped-def]
    """A process killed between Optuna's FAIL and its retry enqueue leaves a FAIL with no retry."""
    from storage import StorageSettings, open_storage
    from storage.locks import locked_transaction
    from storage.trials import reap_study, requeue_lost

    _, url = db
    create_study(url)
    storage = open_storage(url, StorageSettings(role="test", heartbeat_interval=1, grace_period=2))
    study = optuna.load_study(study_name="s", storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat of storage"):  # ask() outside optimize(), as workers do
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # stale-failed, retry never queued
    storage.recovered_at = None
    pg_uptime_ok = wait_until(storage.reap_allowed, 60, 0.5)  # the module's cluster may have just restarted
    assert pg_uptime_ok
    procs = [subprocess.Popen([sys.executable, "-c", (
        "import optuna;from storage import StorageSettings, open_storage;from storage.trials import reap_study;"
        f"s=open_storage({url!r}, StorageSettings(role='test', heartbeat_interval=1, grace_period=2));"
        "reap_study(optuna.load_study(study_name='s', storage=s))")], cwd=REPO) for _ in range(4)]
    assert [p.wait(60) for p in procs] == [0] * 4
    reap_study(study)
    ts = trials(url)
    assert [(t.number, t.state) for t in ts] == [(0, TrialState.FAIL), (1, TrialState.WAITING)]
    assert ts[1].params == ts[0].params and ts[1].system_attrs["failed_trial"] == 0
    # The retry's own retry lost too: requeue_lost reports the chain's original, and only once.
    storage.set_trial_state_values(ts[1]._trial_id, TrialState.FAIL)
    for expected in ([0], []):
        with locked_transaction(storage, "s") as conn:
            assert requeue_lost(study, conn) == expected
    assert [(t.number, t.state) for t in trials(url)][1:] == [(1, TrialState.FAIL), (2, TrialState.WAITING)]
    figures(test="lost_retry_requeued", reapers=5, retries_queued=1)


def test_eight_promoters_enqueue_each_config_once(pg: Cluster, db, write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, url = db
    path = write_campaign(quick={"trials": 4}, full={"top_k": 3})
    init(path, url, tmp_path)
    ran = run_cli("worker", "--campaign", str(path), "--storage", url, "--variant", "baseline", "--stage", "quick",
                  "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    procs = [start_cli("promote", "--campaign", str(path), "--storage", url, cwd=tmp_path) for _ in range(8)]
    codes = [p.wait(120) for p in procs]
    assert codes == [0] * 8, [p.communicate()[1] for p in procs]
    full = trials(url, "t.baseline.full")
    sources = [t.user_attrs["promoted_from_trial"] for t in full]
    assert len(full) == 3 and len(set(map(str, sources))) == 3
    figures(test="eight_promoters", promoters=8, top_k=3, enqueued=len(full))


def test_eight_inits_on_an_empty_database_race_free(pg: Cluster, db, write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, url = db
    path = write_campaign(variants=["baseline", "resnet_lite"])
    procs = [start_cli("init", "--campaign", str(path), "--storage", url, cwd=tmp_path) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1][-400:] for o in outs]
    created = sum(o[0].count("created ") for o in outs)
    assert created == 4  # 2 variants x 2 stages, each created by exactly one process
    assert pg.sql("SELECT count(*) FROM studies", name) == "4"
    figures(test="eight_inits", processes=8, schema_errors=0, studies_created=created)


def _rows(pg: Cluster, name: str) -> str:
    return pg.sql("SELECT (SELECT count(*) FROM studies) || '/' || (SELECT count(*) FROM trials)", name)


def test_bad_inputs_are_one_line_exit_2_and_change_no_row(pg: Cluster, db, write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name, url = db
    good = write_campaign()
    init(good, url, tmp_path)
    before = _rows(pg, name)
    sentinel = tmp_path / "pwned"
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text(good.read_text() + f"\nx: !!python/object/apply:os.system ['touch {sentinel}']\n")
    inverted = write_campaign(filename="inv.yaml", search={"lr": {"low": 0.01, "high": 0.001}})
    wrong_pw = pg.url(name, password="not-the-password")
    unreachable = f"postgresql://postgres:{pg.password}@127.0.0.1:1/{name}"
    malformed_url = f"postgresql://postgres:{pg.password}@127.0.0.1:notaport/{name}"
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: t\nvariants: [baseline\n")
    unknown_key = write_campaign(filename="unknown.yaml", bogus=1)
    empty = write_campaign(filename="empty.yaml", search={"grad_clip": {"choices": []}})
    cases = {
        "malformed yaml": (("init", "--campaign", str(broken), "--storage", url), str(broken)),
        "unknown key": (("init", "--campaign", str(unknown_key), "--storage", url), "bogus"),
        "empty range": (("init", "--campaign", str(empty), "--storage", url), "search.grad_clip"),
        "malformed url": (("status", "--campaign", str(good), "--storage", malformed_url), "storage"),
        "python tag": (("init", "--campaign", str(tagged), "--storage", url), str(tagged)),
        "inverted range": (("init", "--campaign", str(inverted), "--storage", url), "search.lr"),
        "unknown variant": (("worker", "--campaign", str(good), "--storage", url, "--variant", "vgg",
                             "--stage", "quick"), "vgg"),
        "wrong password": (("status", "--campaign", str(good), "--storage", wrong_pw), "password authentication failed"),
        "unreachable": (("status", "--campaign", str(good), "--storage", unreachable), "127.0.0.1:1"),
    }
    seen = {}
    for case, (args, expected) in cases.items():
        done = run_cli(*args, cwd=tmp_path)
        output = done.stdout + done.stderr
        assert done.returncode == 2, (case, output)
        assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, (case, done.stderr)
        assert "Traceback" not in output and pg.password not in output and "not-the-password" not in output, case
        seen[case] = done.stderr.strip()
    assert not sentinel.exists()  # the tag was never constructed
    assert _rows(pg, name) == before
    figures(test="bad_inputs", cases=len(cases), rows_unchanged=True, messages=seen)


def _http(method: str, url: str, body: dict | None = None) -> int:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_dashboard_on_the_readonly_role_changes_nothing(pg: Cluster, db, write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from support.web import get as _get

    name, url = db
    path = write_campaign()
    secret = tmp_path / "ro-password"
    secret.write_text("ro-secret-1\n")
    done = run_cli("init", "--campaign", str(path), "--storage", url, "--readonly-role", "dash_ro",
                   "--readonly-password-file", str(secret), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "read-only role dash_ro" in done.stdout
    owner = optuna.load_study(study_name="t.baseline.quick", storage=url.replace("postgresql://", "postgresql+psycopg2://"))
    running = owner.ask()  # a RUNNING trial a browser might try to tell
    before = _rows(pg, name) + pg.sql("SELECT string_agg(study_name, ',' ORDER BY study_id) FROM studies", name)
    port = free_port()
    dash = start_cli("dashboard", "--storage", pg.url(name, user="dash_ro", password="ro-secret-1"),
                     "--port", str(port), "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
    try:
        studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))["study_summaries"]
        assert {s["study_name"] for s in studies} == {"t.baseline.quick", "t.baseline.full"}  # it can read
        sid = next(s["study_id"] for s in studies if s["study_name"] == "t.baseline.quick")
        base = f"http://127.0.0.1:{port}/api"
        codes = {
            "rename": _http("POST", f"{base}/studies/{sid}/rename", {"study_name": "renamed"}),
            "delete": _http("DELETE", f"{base}/studies/{sid}"),
            "tell": _http("POST", f"{base}/trials/{running._trial_id}/tell", {"state": "Fail"}),
            "user_attrs": _http("POST", f"{base}/trials/{running._trial_id}/user-attrs", {"user_attrs": {"a": 1}}),
        }
    finally:
        dash.terminate()
        out, err = dash.communicate(timeout=30)
    assert all(code >= 400 for code in codes.values()), codes
    after = _rows(pg, name) + pg.sql("SELECT string_agg(study_name, ',' ORDER BY study_id) FROM studies", name)
    assert after == before
    assert owner.trials[0].state == TrialState.RUNNING and owner.trials[0].user_attrs == {}
    assert "ro-secret-1" not in out + err
    # And the role itself cannot write, whatever the client.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        conn = psycopg2.connect(pg.url(name, user="dash_ro", password="ro-secret-1"))
        try:
            conn.cursor().execute("DELETE FROM trials")
        finally:
            conn.close()
    figures(test="dashboard_readonly", http_status=codes, rows_unchanged=True)


def test_bad_data_checkpoints_and_losses_are_contained(pg: Cluster, db, write_campaign, s1: Path,  # type: ignore[no-untyped-def]
                                                       tmp_path: Path) -> None:
    """Data and checkpoint problems: one line, exit 2, before any trial is claimed; a config whose
    loss goes non-finite FAILs its own trial with the reason, and is not retried."""
    name, url = db
    good_chips = sorted(s1.glob("*/Patch/*.tif"))[:12]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for chip in good_chips:  # links, not copies: the samples stay in ../shared
        (mixed / f"{chip.parent.parent.name[-4:]}_{chip.name}").symlink_to(chip)
    (mixed / "zz_corrupt.tif").write_bytes(b"II*\x00 this is not a GeoTIFF")
    real = {"root": str(s1), "include": ["*/Patch/*.tif"], "patch_size": 16, "small_chips": "pad"}
    campaigns = {
        "missing": write_campaign("missing", filename="missing.yaml", train={
            "batch_size": 8, "device": "cpu", "data": {"root": str(tmp_path / "no-such-dir")}}),
        "corrupt": write_campaign("corrupt", filename="corrupt.yaml", train={
            "batch_size": 8, "device": "cpu", "data": {**real, "root": str(mixed), "include": ["*.tif"]}}),
        "zero": write_campaign("zero", filename="zero.yaml", quick={"fraction": 0.0001},
                               train={"batch_size": 8, "device": "cpu", "data": real}),
    }
    # init refuses a data.root that is not there (one line, nothing created) ...
    refused = run_cli("init", "--campaign", str(campaigns["missing"]), "--storage", url, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"sarsweep: error: {campaigns['missing']}: train.data.root: directory not found: {tmp_path / 'no-such-dir'}")
    (tmp_path / "no-such-dir").mkdir()  # ... so it is there at init (init reads a file of it), and gone by the
    (tmp_path / "no-such-dir" / "a.tif").symlink_to(next(s1.glob("*/Patch/*.tif")))  # time a worker starts
    for path in campaigns.values():
        init(path, url, tmp_path)
    (tmp_path / "no-such-dir" / "a.tif").unlink()
    (tmp_path / "no-such-dir").rmdir()
    before = _rows(pg, name)
    expected = {"missing": "data.root: directory not found", "corrupt": "zz_corrupt.tif", "zero": "selects no patch"}
    seen = {}
    for key, path in campaigns.items():
        done = run_cli("worker", "--campaign", str(path), "--storage", url, "--variant", "baseline", "--stage", "quick",
                       "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
        assert done.returncode == 2, (key, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and expected[key] in done.stderr, (key, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        seen[key] = done.stderr.strip()
    assert _rows(pg, name) == before  # nothing was claimed

    # A truncated checkpoint: one line naming it, and the file is left as it was.
    run_dir = tmp_path / "run"
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"variant": "baseline", "base_channels": 4, "epochs": 2, "batch_size": 8,
                                   "device": "cpu", "out_dir": str(run_dir), "preview_patches": 0,
                                   "data": {"patch_size": 16, "synthetic": {"scenes": 6, "size": 32}}}))
    assert run_cli("train", "--config", str(cfg), "--epochs", "1", cwd=tmp_path).returncode == 0
    last = run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    truncated = last.read_bytes()
    done = run_cli("train", "--config", str(cfg), "--resume", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot load checkpoint" in done.stderr and str(last) in done.stderr
    assert last.read_bytes() == truncated
    seen["truncated checkpoint"] = done.stderr.strip()

    # A learning rate that blows the loss up: that trial FAILs with its reason; no retry storm.
    hot = write_campaign("hot", filename="hot.yaml", quick={"trials": 2, "epochs": 3},
                         search={"lr": {"choices": [1.0e12]}, "grad_clip": {"choices": [0.0]},
                                 "warmup_epochs": {"choices": [0]}, "optimizer": {"choices": ["adam"]},
                                 "weight_decay": {"choices": [0.0]}})
    init(hot, url, tmp_path)
    done = run_cli("worker", "--campaign", str(hot), "--storage", url, "--variant", "baseline", "--stage", "quick",
                   "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ts = trials(url, "hot.baseline.quick")
    assert [t.state for t in ts] == [TrialState.FAIL, TrialState.FAIL]  # the budget, and not one retry
    assert all(t.user_attrs["fail_reason"].startswith("NonFiniteLossError") for t in ts)
    figures(test="bad_data_and_checkpoints", messages=seen, non_finite_trials_failed=len(ts), retries=0)


def test_a_claim_through_an_outage_holds_back_reaping(pg: Cluster, db) -> None:  # type: ignore[no-untyped-def]
    """A claim that waited out an outage marks the recovery, like the storage's own calls."""
    from storage import StorageSettings, open_storage
    from storage.trials import claim_through_outage

    _, url = db
    create_study(url)
    storage = open_storage(url, StorageSettings(role="test", heartbeat_interval=1, grace_period=2))
    study = optuna.load_study(study_name="s", storage=storage)
    assert storage.recovered_at is None
    pg.stop("fast")
    threading.Timer(1.5, pg.start).start()
    started = time.monotonic()
    trial = claim_through_outage(study, storage, 5)
    assert trial is not None and trial.number == 0
    assert storage.recovered_at is not None and storage.recovered_at > started
    assert not storage.reap_allowed()  # within grace + heartbeat + MAX_PAUSE of the recovery
    figures(test="claim_through_outage", waited_s=round(time.monotonic() - started, 2))


def test_a_claim_whose_connection_drops_is_retried(pg: Cluster, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The lock's connection dies inside the claim, just before the trial is created.

    Optuna's own retry of the insert used to hide the disconnect behind "Can't operate on closed
    transaction" (a worker died of that in CI), after sleeping through its five tries. The claim
    must come back as a clean retry at once: one trial, number 0, RUNNING, the recovery marked.
    """
    import optuna.storages._rdb.storage as optuna_rdb

    from storage import StorageSettings, open_storage
    from storage.rdb import ResilientRDBStorage
    from storage.trials import claim_through_outage

    name, url = db
    create_study(url)
    storage = open_storage(url, StorageSettings(role="test", heartbeat_interval=1, grace_period=2))
    study = optuna.load_study(study_name="s", storage=storage)
    real_create, killed = ResilientRDBStorage._create_new_trial, []
    real_session, attempts, creating = optuna_rdb._create_scoped_session, [], threading.local()

    def create_after_kill(self: ResilientRDBStorage, *args: object, **kwargs: object) -> object:
        if not killed:  # first claim: terminate the backend holding the study lock
            killed.append(pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 f"WHERE datname = '{name}' AND state = 'idle in transaction'"))
        creating.on = True
        try:
            return real_create(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            creating.on = False

    def counted_session(*args: object, **kwargs: object) -> object:
        if getattr(creating, "on", False):
            attempts.append(1)  # one pass of Optuna's insert loop
        return real_session(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ResilientRDBStorage, "_create_new_trial", create_after_kill)
    monkeypatch.setattr(optuna_rdb, "_create_scoped_session", counted_session)
    started = time.monotonic()
    trial = claim_through_outage(study, storage, 5)
    assert killed == ["1"]
    # Optuna's insert loop gave up on the dead transaction at once (before, it went on for all
    # five tries with sleeps in between, 4-5 s), and the claim's own retry inserted once.
    assert len(attempts) == 2
    assert trial is not None and trial.number == 0
    assert [(t.number, t.state) for t in trials(url)] == [(0, TrialState.RUNNING)]
    assert storage.recovered_at is not None and storage.recovered_at > started
    figures(test="claim_connection_dropped", retried_in_s=round(time.monotonic() - started, 2))


def test_a_trials_own_calls_wait_out_an_outage(pg: Cluster, db) -> None:  # type: ignore[no-untyped-def]
    """suggest, report, user attrs and tell of a running trial, each during its own outage.

    Optuna's study wrapper (_CachedStorage) calls some private storage methods directly
    (`_set_trial_param` for suggest_*); a worker died in CI on a suggest during a restart.
    """
    from storage import StorageSettings, open_storage
    from storage.trials import claim_through_outage, tell

    _, url = db
    create_study(url)
    storage = open_storage(url, StorageSettings(role="test", heartbeat_interval=1, grace_period=2))
    study = optuna.load_study(study_name="s", storage=storage)
    trial = claim_through_outage(study, storage, 5)
    assert trial is not None
    waits = {}
    calls = {
        "suggest_float": lambda: trial.suggest_float("x", 0.0, 1.0),
        "report": lambda: trial.report(0.5, step=1),
        "set_user_attr": lambda: trial.set_user_attr("note", "through"),
        "tell": lambda: tell(study, trial, values=0.5),
    }
    for name, call in calls.items():
        pg.stop("fast")
        threading.Timer(1.0, pg.start).start()
        started = time.monotonic()
        call()
        waits[name] = round(time.monotonic() - started, 2)
    (t,) = trials(url)
    assert t.state == TrialState.COMPLETE and t.value == 0.5
    assert "x" in t.params and t.intermediate_values == {1: 0.5} and t.user_attrs["note"] == "through"
    assert all(w >= 0.9 for w in waits.values()), waits  # each call really met the outage
    figures(test="trial_calls_through_outage", waited_s=waits)
