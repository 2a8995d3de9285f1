"""Shared fixtures: the real SAR samples (a hard failure when missing), tiny configs, a patch cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def sar_data_dir() -> Path:
    """../shared/data/sar beside the repo, or $SARSWEEP_SAR_DATA."""
    return Path(os.environ.get("SARSWEEP_SAR_DATA") or REPO.parent / "shared" / "data" / "sar")


@pytest.fixture(scope="session")
def sar_data() -> Path:
    path = sar_data_dir()
    if not (path / "sentinel1_opensarship").is_dir() or not (path / "terrasarx_deepdespeckling").is_dir():
        # Fail, never skip: a suite that silently stops reading real SAR data proves nothing.
        pytest.fail(f"real SAR samples not found at {path} (set SARSWEEP_SAR_DATA)")
    return path


@pytest.fixture(scope="session")
def s1(sar_data: Path) -> Path:
    return sar_data / "sentinel1_opensarship"


@pytest.fixture(scope="session")
def tsx(sar_data: Path) -> Path:
    return sar_data / "terrasarx_deepdespeckling"


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One patch cache for the session, never the user's ~/.cache."""
    os.environ["SARSWEEP_CACHE"] = str(tmp_path_factory.mktemp("sarsweep-cache"))


def tiny_config_dict(out_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A run that takes well under a second per epoch on 2 CPU cores."""
    data = {"patch_size": 16, "synthetic": {"scenes": 6, "size": 32, "seed": 3}}
    data.update(overrides.pop("data", {}))
    cfg = {
        "variant": "baseline", "base_channels": 4, "epochs": 1, "batch_size": 8, "lr": 2e-3,
        "warmup_epochs": 0, "device": "cpu", "out_dir": str(out_dir), "data": data,
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def tiny_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    from training.config import TrainConfig

    def make(**overrides: Any) -> TrainConfig:
        out_dir = overrides.pop("out_dir", tmp_path / "run")
        return TrainConfig.from_dict(tiny_config_dict(out_dir, **overrides))

    return make
