"""SAR autoencoder variants and their registry: `create_model(name, **kw)`, `list_models()`."""

from __future__ import annotations

from models import variants as _variants  # noqa: F401  (registers the variants)
from models.autoencoder import ConvAutoencoder, count_parameters
from models.errors import ModelError, SarsweepError
from models.registry import create_model, list_models, register_model

__all__ = [
    "ConvAutoencoder", "ModelError", "SarsweepError",
    "count_parameters", "create_model", "list_models", "register_model",
]
