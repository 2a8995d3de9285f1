"""Storage URLs -> Optuna storages, the per-study lock, and where checkpoints and artifacts live."""

from __future__ import annotations

from errors import StorageError
from storage.artifacts import artifact_store, artifacts_root, trial_dir
from storage.locks import study_lock
from storage.rdb import StorageSettings, has_schema, open_storage
from storage.urls import DEFAULT_URL, redact, resolve_url

__all__ = [
    "DEFAULT_URL", "StorageError", "StorageSettings", "artifact_store", "artifacts_root", "has_schema", "open_storage",
    "redact", "resolve_url", "study_lock", "trial_dir",
]
