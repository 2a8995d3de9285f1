from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_campaign_dict

from errors import ConfigError
from search.campaign.config import CampaignConfig, load_campaign
from training.config import TrainConfig
from training.schema import build


@pytest.mark.parametrize("name", ["campaign.yaml", "campaign_sentinel1.yaml"])
def test_example_campaigns_load(name: str) -> None:
    campaign = load_campaign(REPO / "configs" / name)
    assert campaign.study_name(campaign.variants[0], "quick") == f"{campaign.name}.{campaign.variants[0]}.quick"


def test_defaults_are_the_research_groups_numbers() -> None:
    c = CampaignConfig(name="x")
    assert (c.quick.fraction, c.quick.epochs, c.full.fraction, c.full.epochs) == (0.05, 20, 0.2, 30)
    assert c.objective == "psnr" and c.variants == ["baseline", "resnet_lite", "residual", "attention"]
    assert set(c.search) == {"lr", "warmup_epochs", "grad_clip", "base_channels", "optimizer", "weight_decay"}
    assert c.search["lr"].log


def test_overrides_replace_keys_for_one_variant(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_campaign_dict(
        variants=["baseline", "attention"], overrides={"attention": {"base_channels": {"choices": [8]}}})))
    c = load_campaign(path)
    assert c.space("attention")["base_channels"].choices == [8]
    assert c.space("baseline")["base_channels"].choices == [4, 8]


def test_largest_model_takes_each_searched_size_at_its_top() -> None:
    """What a worker sizes its disk check by: the variant's override of base_channels, a range's
    high, the train config's value for a size not searched, and the data's channels."""
    d = tiny_campaign_dict(variants=["baseline", "attention"],
                           overrides={"attention": {"base_channels": {"choices": [32, 48]}}})
    d["train"]["latent_channels"] = 4
    c = build(CampaignConfig, d)
    assert c.largest_model("attention") == {"base_channels": 48, "latent_channels": 4, "in_channels": 1}
    assert c.largest_model("baseline") == {"base_channels": 8, "latent_channels": 4, "in_channels": 1}
    d["search"]["latent_channels"] = {"low": 8, "high": 24, "step": 8}
    assert build(CampaignConfig, d).largest_model("baseline")["latent_channels"] == 24


def test_budget_changes_keep_the_fingerprint_but_the_space_does_not() -> None:
    base = CampaignConfig(name="x")
    assert CampaignConfig(name="x", quick=type(base.quick)(trials=99)).fingerprint() == base.fingerprint()
    changed = CampaignConfig(name="x", objective="ssim")
    assert changed.fingerprint() != base.fingerprint()
    assert CampaignConfig(name="x", train=TrainConfig(lr=0.5)).fingerprint() != base.fingerprint()


def test_fingerprint_ignores_defaults_so_new_schema_fields_do_not_orphan_studies() -> None:
    base = CampaignConfig(name="x")
    explicit = CampaignConfig(name="x", objective="psnr", train=TrainConfig(preview_patches=4))
    assert explicit.fingerprint() == base.fingerprint()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"search": {"lr": {"low": 0.1, "high": 0.001}}}, "search.lr.low: low (0.1) must be below high (0.001)"),
        ({"search": {"lr": {"low": 0.1, "high": 0.1}}}, "search.lr.low: low (0.1) must be below high (0.1)"),
        ({"search": {"lr": {"choices": []}}}, "search.lr.choices: is empty"),
        ({"search": {"lr": {"low": 0.0, "high": 1.0, "log": True}}}, "search.lr.low: a log range needs low > 0"),
        ({"search": {"epochs": {"low": 1, "high": 3}}}, "search.epochs: is not a searchable train config field"),
        ({"variants": ["unet"]}, "variants: unknown variant 'unet'"),
        ({"overrides": {"attention": {}}}, "overrides.attention: is not one of this campaign's variants"),
        ({"quick": {"epochs": 1}, "search": {"warmup_epochs": {"low": 0, "high": 3}}},
         "search.warmup_epochs: reaches 3 but the quick stage has only 1 epochs"),
        ({"quick": {"pruner": "asha"}}, "quick.pruner: must be one of 'none', 'median', 'hyperband'"),
        ({"name": "my campaign"}, "name: must be letters, digits"),
        ({"objectve": "psnr"}, "objectve: unknown key"),
        ({"train": {"lr_max": 1}}, "train.lr_max: unknown key"),
        # Values the train config refuses: once a failed trial each at run time, now one line at init.
        ({"search": {"batch_size": {"choices": [8, 0]}}}, "search.batch_size: 0 is refused for baseline: "
                                                          "must be at least 1, got 0"),
        ({"search": {"optimizer": {"choices": ["adam", "sgd"]}}},
         "search.optimizer: 'sgd' is refused for baseline: must be one of 'adam', 'adamw'; got 'sgd'"),
        ({"search": {"base_channels": {"choices": [4, 4.5]}}},
         "search.base_channels: 4.5 is refused for baseline: expected int, got 4.5"),
        ({"variants": ["baseline", "residual"], "overrides": {"residual": {"grad_clip": {"low": -1.0, "high": 2.0}}}},
         "overrides.residual.grad_clip: -1.0 is refused for residual: must be >= 0 or null, got -1.0"),
        ({"search": {"latent_channels": {"low": 0, "high": 16}}},
         "search.latent_channels: 0 is refused for baseline: must be at least 1, got 0"),
        ({"quick": {"fraction": 0.5}, "full": {"fraction": 0.2}},
         "quick.fraction: 0.5 is more than full.fraction 0.2: promoted configs would retrain on less data"),
    ],
)
def test_bad_campaigns_name_the_field(tmp_path: Path, overrides: dict, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_campaign_dict(**overrides)))
    with pytest.raises(ConfigError) as err:
        load_campaign(path)
    assert str(err.value).startswith(f"{path}: {expected}")
