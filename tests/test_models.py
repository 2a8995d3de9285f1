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
