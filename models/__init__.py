"""SAR autoencoder variants and their registry: `create_model(name, **kw)`, `list_models()`.

The torch-backed names load on first use (PEP 562), so the catalog (models/catalog.py) is
read by torch-free commands without paying torch's import.
"""

from __future__ import annotations

import importlib
from typing import Any

from errors import ModelError, SarsweepError  # re-exported: models' own errors live in the errors room

_LAZY = {
    "ConvAutoencoder": "models.autoencoder", "count_parameters": "models.autoencoder",
    "create_model": "models.registry", "list_models": "models.registry", "register_model": "models.registry",
}

__all__ = [
    "ConvAutoencoder", "ModelError", "SarsweepError",
    "count_parameters", "create_model", "list_models", "register_model",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    importlib.import_module("models.variants")  # registers the variants
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
