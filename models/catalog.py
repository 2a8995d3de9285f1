"""Variant names and downsampling factors, readable without importing torch.

Validating a config needs only these two facts, and every command that loads a campaign
(`sarsweep status`, `init`, `promote`, `export`, `reaper`) validates one: building a width-1
model to learn them imported torch, ~2 s of each such command. The registry stays the authority:
tests/test_models.py holds this table to it, and a variant registered at run time (which has
imported torch already) is looked up there.
"""

from __future__ import annotations

import sys

# name -> input downsampling factor (three stride-2 levels each).
BUILTIN: dict[str, int] = {"attention": 8, "baseline": 8, "residual": 8, "resnet_lite": 8}


def known_variants() -> list[str]:
    """The built-in variants and any registered in this process, sorted."""
    registry = sys.modules.get("models.registry")
    registered = registry.list_models() if registry is not None else []
    return sorted(set(BUILTIN) | set(registered))


def downsample_factor(variant: str) -> int:
    """By how much `variant` shrinks each side of its input (an input side must be a multiple)."""
    if variant in BUILTIN:
        return BUILTIN[variant]
    from models import create_model

    # A width-1 instance is tiny and always agrees with the real architecture.
    return int(create_model(variant, base_channels=1).downsample_factor)
