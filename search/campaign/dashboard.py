"""`sarsweep dashboard`: optuna-dashboard on our storage, with our artifact store (previews).

Listens on 127.0.0.1 unless told otherwise: reach it from your laptop through an SSH tunnel
(`ssh -L 8080:127.0.0.1:8080 head-node`), or publish it deliberately with --host 0.0.0.0.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage

from errors import SarsweepError
from search.campaign.config import CampaignConfig
from storage import artifact_store, redact

log = logging.getLogger("sarsweep.dashboard")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def serve(storage: RDBStorage, artifacts: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    import optuna_dashboard

    check_listen(host, port)
    store = artifact_store(artifacts, create=False)  # it only reads; compose mounts the artifacts read-only
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"optuna-dashboard on {redact(storage.url)}, previews from {artifacts}", flush=True)
    print(f"open http://{shown}:{port}/dashboard in a browser (Ctrl-C stops it)", flush=True)
    if host not in LOCAL_HOSTS:
        log.warning("listening on %s: anyone who can reach this port can rename or delete studies; "
                    "give the dashboard a read-only database role", host)
    optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)


def check_listen(host: str, port: int) -> None:
    """Bind and release host:port, or one line saying why not: a port in use (a second
    dashboard), a privileged port, a host name that does not resolve here. Checked before the
    server starts, whose banner would say "Listening on" first."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        # create_server appends "(while attempting to bind on address ...)" to the reason; the option says that
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or str(exc))
        raise SarsweepError(f"--host {host} --port {port}: cannot listen there: {reason}") from None


def metric_name(campaign: CampaignConfig) -> str:
    """What the dashboard calls the objective (it said "Objective 0")."""
    return "val_psnr_db" if campaign.objective == "psnr" else "val_ssim"


def study_note(campaign: CampaignConfig, variant: str, stage: str) -> str:
    """The study's note on its dashboard page: which campaign, stage and budget it is."""
    s = campaign.stage(stage)
    budget = (f"{campaign.quick_budget()} trials ({campaign.quick.trials} searched"
              + (f", {len(campaign.reference)} reference config(s)" if campaign.reference else "") + ")"
              if stage == "quick" else f"the top {campaign.full.top_k} quick configs (up to {campaign.full.most} "
                                       "within the quick noise band)")
    return "\n".join([
        f"## {campaign.study_name(variant, stage)}",
        "",
        f"Campaign **{campaign.name}**, variant **{variant}**, **{stage}** stage: {s.fraction:g} of the training "
        f"split, {s.epochs} epochs per trial, {budget}.",
        f"Objective: validation {campaign.objective.upper()} of each trial's best epoch ({metric_name(campaign)}).",
        (f"Seed noise: the best config re-run with up to {campaign.noise_seeds} other seed(s) "
         f"({campaign.noise_rule} rule). A re-run is a noise measurement: its note says so, and it is never "
         "the Best Trial shown here (`sarsweep dashboard` serves the storage so; a bare optuna-dashboard "
         "would count re-runs as trials of the search).")
        if campaign.noise_seeds else "Seed noise: not measured.",
        "",
        "Each trial's config is in its note; its previews are its artifacts (preview-epochNNN.png: input, "
        "reconstruction, |error| of fixed validation patches).",
    ])


def describe_study(study: optuna.Study, campaign: CampaignConfig, variant: str, stage: str) -> None:
    """Metric name and note on the study (for optuna-dashboard), where they differ from what it has."""
    import warnings

    from optuna_dashboard import get_note, save_note

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names != [metric_name(campaign)]:
            study.set_metric_names([metric_name(campaign)])
    note = study_note(campaign, variant, stage)
    if get_note(study) != note:
        save_note(study, note)


def note_config(trial: optuna.Trial, config: dict[str, Any]) -> None:
    """The trial's config as a YAML block in its dashboard note: the `config` user attr is one JSON
    line that runs off the trial page."""
    from optuna_dashboard import save_note

    from search.campaign.roles import role_of
    from training.config import dump_yaml

    role = role_of(trial)
    title = f"trial {trial.number}: " + (f"{role}; config" if role else "config")
    save_note(trial, f"### {title}\n\n```yaml\n{dump_yaml(config).rstrip()}\n```\n")
