from __future__ import annotations

import pytest
import torch

from models import ModelError, count_parameters, create_model, list_models

SEED_COUNTS = {"baseline": 2.3e6, "resnet_lite": 5.6e6, "residual": 23.8e6, "attention": 24.0e6}


def test_registry_lists_the_four_variants() -> None:
    assert list_models() == ["attention", "baseline", "residual", "resnet_lite"]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels", [1, 2])
def test_forward_backward_shapes_and_every_parameter_learns(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, base_channels=4, in_channels=in_channels)
    x = torch.rand(3, in_channels, 16, 24)
    z = model.encode(x)
    assert z.shape == (3, 16, 2, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # Two steps: gates that start at zero (self-attention) only pass gradient once opened.
    for _ in range(2):
        opt.zero_grad()
        y = model(x)
        assert y.shape == x.shape and float(y.detach().min()) >= 0.0 and float(y.detach().max()) <= 1.0
        torch.nn.functional.mse_loss(y, x).backward()
        opt.step()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert dead == []


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_matches_seed_within_10_percent(name: str) -> None:
    n = count_parameters(create_model(name))
    assert abs(n - SEED_COUNTS[name]) / SEED_COUNTS[name] <= 0.10, n


def test_attention_at_48_base_channels_is_about_13m() -> None:
    n = count_parameters(create_model("attention", base_channels=48))
    assert 11.7e6 <= n <= 14.3e6, n


@pytest.mark.parametrize("name", list_models())
def test_latent_channels_argument_sets_the_code_width(name: str) -> None:
    model = create_model(name, base_channels=4, latent_channels=7).eval()
    assert model.encode(torch.rand(1, 1, 8, 8)).shape == (1, 7, 1, 1)


@pytest.mark.parametrize("name", list_models())
def test_indivisible_input_is_a_clear_error(name: str) -> None:
    model = create_model(name, base_channels=4)
    with pytest.raises(ModelError, match="20x32 is not divisible by the downsampling factor 8"):
        model(torch.rand(1, 1, 20, 32))


def test_wrong_channel_count_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match=r"expected input of shape \(batch, 2, H, W\)"):
        create_model("baseline", base_channels=4, in_channels=2)(torch.rand(1, 1, 16, 16))


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(ModelError, match="unknown model 'unet'; known models: attention, baseline, residual, resnet_lite"):
        create_model("unet")


def test_unknown_argument_is_named() -> None:
    with pytest.raises(ModelError, match="takes no argument 'width'"):
        create_model("baseline", width=3)


@pytest.mark.parametrize("bad", [0, -1])
def test_non_positive_sizes_are_rejected(bad: int) -> None:
    with pytest.raises(ModelError):
        create_model("baseline", base_channels=4, latent_channels=bad)


def test_the_torch_free_catalog_agrees_with_the_registry() -> None:
    """Configs are validated against models/catalog.py so that `sarsweep status` and friends
    need not import torch; a variant added to the registry must be added there too."""
    from models.catalog import BUILTIN, downsample_factor, known_variants

    assert sorted(BUILTIN) == list_models() == known_variants()
    for name in list_models():
        assert downsample_factor(name) == create_model(name, base_channels=1).downsample_factor


def test_loading_a_campaign_does_not_import_torch() -> None:
    """A campaign (with its train config) is validated in every CLI command but train and worker;
    importing torch for it cost each ~2 s (3.65 s -> 0.96 s for a failing `sarsweep status`)."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys; from search.campaign.config import load_campaign; "
            "c = load_campaign('configs/campaign.yaml'); c.train.replace(variant='attention'); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_variant_registered_at_run_time_is_validated_by_the_registry() -> None:
    """The catalog is a fast path, not a closed list: a model a user registers (timm-style)
    trains through the same config, its own downsampling factor checked. In a subprocess, so
    this test's registration does not leak into the parametrized tests."""
    import subprocess
    import sys

    code = """
from torch import nn
from models import register_model
from training.config import TrainConfig
from errors import ConfigError

@register_model
def custom_ds4(base_channels: int = 4, latent_channels: int = 16, in_channels: int = 1) -> nn.Module:
    model = nn.Identity()
    model.downsample_factor = 4
    return model

print(TrainConfig.from_dict({"variant": "custom_ds4", "data": {"patch_size": 12}}).variant)
try:
    TrainConfig.from_dict({"variant": "custom_ds4", "data": {"patch_size": 10}})
except ConfigError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "custom_ds4", "data.patch_size: 10 is not a multiple of custom_ds4's downsampling factor 4"]
