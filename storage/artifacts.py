"""Where checkpoints and artifacts live: one root, laid out by campaign, variant, stage, trial.

    <root>/<campaign>/<variant>/<stage>/trial_<NNNN>/{best.pt,last.pt,preview.png}
    <root>/optuna-artifacts/          Optuna's artifact store (previews), served by the dashboard

Root: `--artifacts DIR`, else $SARSWEEP_ARTIFACTS, else ./sarsweep-artifacts. A retried trial
uses the directory of the trial it retries, so it finds that trial's last.pt and resumes. A
trial that ends COMPLETE or PRUNED is never retried: the worker deletes its last.pt then
(unless the campaign says keep_last_checkpoint).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from optuna.artifacts import FileSystemArtifactStore

log = logging.getLogger("sarsweep.artifacts")

ENV_VAR = "SARSWEEP_ARTIFACTS"
DEFAULT_ROOT = "sarsweep-artifacts"


def artifacts_root(cli_value: str | None = None) -> Path:
    return Path(cli_value or os.environ.get(ENV_VAR) or DEFAULT_ROOT)


def artifact_dir(root: Path) -> Path:
    """The folder of the Optuna artifact store under `root`."""
    return root / "optuna-artifacts"


def artifact_store(root: Path, create: bool = True) -> FileSystemArtifactStore:
    """The Optuna artifact store workers upload previews to and the dashboard serves from.

    create=False for a reader (the dashboard), whose mount may be read-only: a store no worker
    has made yet is simply one without previews."""
    path = artifact_dir(root)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(path)


def trial_dir(root: Path, campaign: str, variant: str, stage: str, trial_number: int) -> Path:
    return root / campaign / variant / stage / f"trial_{trial_number:04d}"


def drop_resume_state(best: str | Path | None) -> None:
    """Delete the last.pt beside a finished trial's best.pt: weights plus optimizer state, there
    for a retry to resume from, which a COMPLETE or PRUNED trial never gets. best.pt stays."""
    if best is None:  # the trial failed before recording its checkpoint
        return
    last = Path(best).with_name("last.pt")
    try:
        last.unlink(missing_ok=True)
    except OSError as exc:  # clean-up only: the trial's result is told already
        log.warning("could not delete %s (%s)", last, exc.strerror or exc)
