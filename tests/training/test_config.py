from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_config_dict

from errors import ConfigError
from training.config import TrainConfig, config_hash, dump_yaml, load_train_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["train_synthetic.yaml", "train_sentinel1.yaml"])
def test_example_configs_load_and_set_every_top_level_key(name: str) -> None:
    path = REPO / "configs" / name
    cfg = load_train_config(path)
    raw = yaml.safe_load(path.read_text())
    assert cfg.to_dict()["variant"] == raw["variant"]
    if name == "train_synthetic.yaml":  # the fully commented one names every key of the schema
        assert set(raw) == set(cfg.to_dict())
        assert set(raw["data"]) == set(cfg.to_dict()["data"])


def test_yaml_round_trip_is_lossless(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict(tiny_config_dict(tmp_path, schedule="cosine", grad_clip=None))
    again = load_train_config(write(tmp_path, dump_yaml(cfg.to_dict(), header="exported\nby a test")))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("variant: baseline\nlearning_rate: 0.1\n", "run.yaml: learning_rate: unknown key"),
        ("data:\n  patchsize: 16\n", "run.yaml: data.patchsize: unknown key"),
        ("data:\n  synthetic: {looks: 0}\n", "run.yaml: data.synthetic.looks: must be at least 1, got 0"),
        ("variant: unet\n", "run.yaml: variant: unknown variant 'unet'; known: attention, baseline"),
        ("lr: -0.1\n", "run.yaml: lr: must be a positive number"),
        ("lr: .nan\n", "run.yaml: lr: must be a positive number"),
        ("epochs: '3'\n", "run.yaml: epochs: expected int, got '3'"),
        ("epochs: 2\nwarmup_epochs: 3\n", "run.yaml: warmup_epochs: must be between 0 and epochs (2)"),
        ("grad_clip: yes\n", "run.yaml: grad_clip: expected float, got a boolean True"),
        ("optimizer: sgd\n", "run.yaml: optimizer: must be one of 'adam', 'adamw'; got 'sgd'"),
        ("data: {patch_size: 36}\n", "run.yaml: data.patch_size: 36 is not a multiple of baseline's downsampling factor 8"),
        ("data: {clip_percentiles: [99, 1]}\n", "run.yaml: data.clip_percentiles: must be [low, high]"),
        ("fraction: 0\n", "run.yaml: fraction: must be in (0, 1]"),
        ("device: tpu\n", "run.yaml: device: must be auto, cpu, cuda or cuda:N"),
        ("- just\n- a list\n", "run.yaml: expected a mapping of TrainConfig fields"),
        ("", "run.yaml: expected a mapping of TrainConfig fields, got None"),
        ("variant: [baseline\n", "run.yaml: invalid YAML at line 2"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_train_config(write(tmp_path, text))
    assert str(err.value).replace(str(tmp_path) + "/", "").startswith(expected)
    assert "\n" not in str(err.value)


def test_numbers_in_exponent_notation_are_numbers(tmp_path: Path) -> None:
    """`lr: 1e-3` was refused ("expected float, got '1e-3'"): PyYAML reads YAML 1.1, where a float
    needs a dot. Train and campaign files now read it as YAML 1.2 and JSON do; a quoted '1e-3'
    is still a string, and a word that only looks like one (e5, 1e) too."""
    from search.campaign.config import load_campaign

    cfg = load_train_config(write(tmp_path, "lr: 1e-3\nweight_decay: 5E-5\ngrad_clip: 1e0\nepochs: 3\n"))
    assert (cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.epochs) == (0.001, 5e-05, 1.0, 3)
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text("name: c\nsearch:\n  lr: {low: 1e-5, high: 2.5e-2, log: true}\n"
                        "  weight_decay: {choices: [0, 1e-6, 1e-4]}\n")
    space = load_campaign(campaign).search
    assert (space["lr"].low, space["lr"].high) == (1e-5, 0.025)
    assert space["weight_decay"].choices == [0, 1e-6, 1e-4]
    for text in ("lr: '1e-3'\n", "lr: e5\n", "lr: 1e\n"):
        with pytest.raises(ConfigError, match="lr: expected float, got '"):
            load_train_config(write(tmp_path, text))


def test_python_object_tag_is_refused_and_never_runs(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    path = write(tmp_path, f"variant: !!python/object/apply:os.system ['touch {sentinel}']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_train_config(path)
    assert not sentinel.exists()


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path}/nope.yaml: config file not found"):
        load_train_config(tmp_path / "nope.yaml")


def test_replace_validates_like_a_fresh_config(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict(tiny_config_dict(tmp_path))
    assert cfg.replace(lr=0.5).lr == 0.5
    with pytest.raises(ConfigError, match="epochs: must be at least 1"):
        cfg.replace(epochs=0)


def test_model_kwargs_take_in_channels_from_the_data(tmp_path: Path) -> None:
    cfg = TrainConfig.from_dict(tiny_config_dict(tmp_path, data={"channels": 2}))
    assert cfg.model_kwargs == {"base_channels": 4, "latent_channels": 16, "in_channels": 2}
