"""Name -> constructor registry for the autoencoder variants (timm's pattern, in miniature)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from errors import ModelError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(fn: ModelFactory) -> ModelFactory:
    """Decorator: make `fn` constructible as `create_model(fn.__name__, ...)`."""
    if fn.__name__ in _REGISTRY:
        raise ModelError(f"model {fn.__name__!r} is registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of every registered variant, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build variant `name`; unknown names and unknown keyword arguments are a `ModelError`."""
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    factory = _REGISTRY[name]
    accepted = set(inspect.signature(factory).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ModelError(
            f"model {name!r} takes no argument {unknown[0]!r}; it takes: {', '.join(sorted(accepted))}"
        )
    return factory(**kwargs)
