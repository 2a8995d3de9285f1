"""docker-compose.yml, the Dockerfile and the Slurm/Kubernetes examples, proven without a Docker engine.

The compose file is validated against the Compose Specification's JSON Schema, and its service
commands and environments are run as local processes against a local PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import REPO, tiny_campaign_dict
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from support.cluster import free_port

from storage import open_storage

COMPOSE = REPO / "docker-compose.yml"
SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.json"
TEST_ENV = {"POSTGRES_PASSWORD": "pw-for-test", "SARSWEEP_RO_PASSWORD": "ro-pw-for-test", "SARSWEEP_CAMPAIGN": "campaign.yaml"}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error} and $$, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        present = env.get(name)
        if op in (":-", "-"):
            return present if present or (op == "-" and name in env) else arg
        if op == ":?" and not present:
            raise KeyError(f"{name}: {arg}")
        return present or ""

    return re.sub(r"\$\{(\w+)(:-|-|:\?)?([^}]*)\}", one, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_schema(compose: dict[str, Any]) -> None:
    import jsonschema

    assert SCHEMA.is_file(), f"compose schema missing at {SCHEMA}"
    errors = list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(compose))
    assert errors == [], [e.message for e in errors]


def test_compose_services_are_wired_as_documented(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "init", "dashboard", "worker", "reaper", "promote", "report"}
    pg = services["postgres"]
    assert re.fullmatch(r"postgres:\d+", pg["image"])  # pinned major version
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"]) and "pgdata" in compose["volumes"]
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
        text = json.dumps(service.get("command", []))
        assert "postgresql://" not in text and "PASSWORD" not in text, name  # no URL on a command line
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("dashboard", "worker", "reaper", "promote", "report"):
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert "gpu" in gpu["capabilities"] and "container_name" not in services["worker"]  # scalable
    assert any(v.endswith(":/artifacts") for v in services["worker"]["volumes"])
    assert any(v.endswith(":/data:ro") for v in services["worker"]["volumes"])
    assert services["promote"]["profiles"] == services["report"]["profiles"] == ["tools"]
    assert "artifacts:/artifacts:ro" in services["report"]["volumes"]  # it reads checkpoints, writes /reports
    # The dashboard browses as the SELECT-only role that init creates.
    assert make_url(services["dashboard"]["environment"]["SARSWEEP_STORAGE"]).username == "sarsweep_ro"
    assert services["dashboard"]["volumes"] == ["artifacts:/artifacts:ro"]  # and reads previews read-only
    assert services["init"]["environment"]["SARSWEEP_READONLY_ROLE"] == "sarsweep_ro"
    assert services["init"]["environment"]["SARSWEEP_READONLY_PASSWORD"].startswith("${SARSWEEP_RO_PASSWORD:?")


def test_env_example_ships_no_real_password() -> None:
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["POSTGRES_PASSWORD"] == "change-me"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO).returncode
    assert ignored == 0, ".env must be git-ignored"


def test_dockerfile_builds_on_cuda_pytorch_and_installs_the_repo() -> None:
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base and base.group(1).startswith("pytorch/pytorch:") and "cuda" in base.group(1)
    assert "RUN pip install ." in text
    for room in ("errors", "models", "training", "storage", "search"):
        assert f"COPY {room} ./{room}" in text


def _local(service: dict[str, Any], pg_url: str, tmp: Path, port: int, ro_role: str) -> tuple[list[str], dict[str, str]]:
    """A compose service's command and environment, pointed at this machine instead of containers.

    The read-only role gets a name of this test's own (roles are server-wide on the shared server)."""
    env = dict(service.get("environment", {}))
    url = make_url(env.pop("SARSWEEP_STORAGE"))
    assert (url.password, url.host, url.database) in (("pw-for-test", "postgres", "sarsweep"),
                                                      ("ro-pw-for-test", "postgres", "sarsweep"))
    assert url.username in ("sarsweep", "sarsweep_ro")
    local = make_url(pg_url)
    if url.username == "sarsweep_ro":
        local = local.set(username=ro_role)
    env["SARSWEEP_STORAGE"] = local.render_as_string(hide_password=False)
    if "SARSWEEP_READONLY_ROLE" in env:
        env["SARSWEEP_READONLY_ROLE"] = ro_role
    env["SARSWEEP_ARTIFACTS"] = str(tmp / "artifacts")
    env["SARSWEEP_CACHE"] = os.environ["SARSWEEP_CACHE"]
    mounts = {v.split(":")[1]: v for v in service["volumes"]}
    assert "/artifacts" in mounts and ("/config" in mounts or not any("/config/" in a for a in service["command"]))
    command = [str(Path(sys.executable).parent / "sarsweep") if a == "sarsweep" else a for a in service["command"]]
    command = [a.replace("/config/", f"{tmp / 'config'}/").replace("/reports/", f"{tmp / 'reports'}/")
               for a in command]
    command = [str(port) if a == "8080" else a for a in command]
    return command, {**os.environ, **env}


def test_compose_smoke_runs_every_service_command_locally(pg_url: str, tmp_path: Path) -> None:
    compose = interpolate(yaml.safe_load(COMPOSE.read_text()), TEST_ENV)
    (tmp_path / "config").mkdir()
    campaign = tiny_campaign_dict(quick={"trials": 4}, full={"top_k": 2})
    (tmp_path / "config" / "campaign.yaml").write_text(yaml.safe_dump(campaign))
    port = free_port()
    ro_role = f"ro_{uuid.uuid4().hex[:10]}"
    run = {name: _local(service, pg_url, tmp_path, port, ro_role) for name, service in compose["services"].items()
           if name != "postgres"}
    try:
        _smoke(run, port, pg_url)
    finally:
        _drop_role(pg_url, ro_role)


def _drop_role(pg_url: str, role: str) -> None:
    import psycopg2

    conn = psycopg2.connect(make_url(pg_url).render_as_string(hide_password=False).replace("+psycopg2", ""))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone():
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')
    conn.close()


def _smoke(run: dict[str, tuple[list[str], dict[str, str]]], port: int, pg_url: str) -> None:
    from support.web import get as _get

    init = subprocess.run(run["init"][0], env=run["init"][1], capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    assert "read-only role ro_" in init.stdout
    dashboard = subprocess.Popen(run["dashboard"][0], env=run["dashboard"][1], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    try:
        workers = [subprocess.Popen(run["worker"][0], env=run["worker"][1], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [w.communicate(timeout=300) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], [o[1] for o in outs]
        promote = subprocess.run(run["promote"][0], env=run["promote"][1], capture_output=True, text=True, timeout=120)
        assert promote.returncode == 0, promote.stderr
        assert promote.stdout.count("already promoted in t.baseline.full") == 2, promote.stdout
        report = subprocess.run(run["report"][0], env=run["report"][1], capture_output=True, text=True, timeout=120)
        assert report.returncode == 0, report.stderr
        reports = Path(run["report"][0][run["report"][0].index("-o") + 1]).parent
        assert "| baseline |" in (reports / "report.md").read_text() and (reports / "report.html").is_file()
        studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies"))["study_summaries"]
        assert {"t.baseline.quick", "t.baseline.full"} <= {s["study_name"] for s in studies}
    finally:
        dashboard.terminate()
        dashboard.communicate(timeout=30)
    storage = open_storage(pg_url)
    quick = optuna.load_study(study_name="t.baseline.quick", storage=storage).trials
    assert sorted(t.number for t in quick) == [0, 1, 2, 3] and all(t.state == TrialState.COMPLETE for t in quick)
    # The campaign workers promoted the quick stage themselves and ran its full stage; the promote
    # service found the configs promoted already.
    full = optuna.load_study(study_name="t.baseline.full", storage=storage).trials
    assert [t.state for t in full] == [TrialState.COMPLETE] * 2
    assert len({t.user_attrs["promoted_from_trial"] for t in full}) == 2


def test_kubernetes_examples_name_the_image_and_commands() -> None:
    docs = {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted((REPO / "deploy" / "k8s").glob("*.yaml"))}
    assert set(docs) == {"init-job.yaml", "secret.example.yaml", "worker-job.yaml"}
    for name in ("init-job.yaml", "worker-job.yaml"):
        (job,) = docs[name]
        assert job["kind"] == "Job"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith("sarsweep:")
        assert container["command"][:2] == ["sarsweep", name.split("-")[0]]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["SARSWEEP_STORAGE_FILE"].startswith("/secrets/")  # the URL comes from a Secret file
        assert "postgresql://" not in json.dumps(container)
    worker = docs["worker-job.yaml"][0]["spec"]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["command"] == ["sarsweep", "worker", "--campaign", "/config/campaign.yaml"]  # the campaign worker


K8S_VERSION = "1.31.0"  # a release current on clusters in 2026; kubernetes-validate ships its schemas offline


@pytest.mark.parametrize("path", sorted((REPO / "deploy" / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_kubernetes_schema(path: Path) -> None:
    from kubernetes_validate import utils

    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        assert utils.validate(doc, K8S_VERSION, strict=True) == "1.31"  # strict: an unknown field fails too
    broken = dict(docs[0], metadata={**docs[0]["metadata"], "nmae": "typo"})
    with pytest.raises(utils.ValidationError):  # the check can fail: a misspelt field is caught
        utils.validate(broken, K8S_VERSION, strict=True)


def test_slurm_scripts_are_valid_bash_and_run_the_worker_and_the_server() -> None:
    """tests/deploy/test_slurm.py submits them to a real (throwaway) Slurm; this checks their text."""
    script = REPO / "deploy" / "slurm" / "worker.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "#SBATCH --array=" in text and "#SBATCH --gres=gpu:1" in text and "#SBATCH --signal=B:TERM@" in text
    assert "#SBATCH --requeue" in text and 'scontrol requeue "$SLURM_JOB_ID"' in text  # a time-limit TERM requeues
    assert re.search(r"^sarsweep worker --campaign .*--worker-index", text, re.M | re.S)
    db = REPO / "deploy" / "slurm" / "db.sbatch"
    assert subprocess.run(["bash", "-n", str(db)]).returncode == 0
    assert "sarsweep db start" in db.read_text() and "sarsweep db stop" in db.read_text()
    for path in (script, db):
        assert "postgresql://" not in "\n".join(line for line in path.read_text().splitlines()
                                               if not line.startswith("#"))  # no URL outside comments
        if shutil.which("shellcheck"):
            assert subprocess.run(["shellcheck", str(path)]).returncode == 0


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    """pyproject lists its packages explicitly: a new sub-package left out is missing from `pip install .`
    (the Docker image) though an editable install finds it."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {p.parent.relative_to(REPO).as_posix().replace("/", ".")
             for room in ("errors", "models", "training", "storage", "search")
             for p in (REPO / room).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found == listed
