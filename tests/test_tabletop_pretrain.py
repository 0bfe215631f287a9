"""Grounding pretraining of the demo's tiny SmolVLM, and the pretrained checkpoint the demo starts from."""

import json

import numpy as np
import pytest
import torch
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from safetensors.torch import load_file

from lerobot_grids.backbones import TINY_SMOLVLM
from lerobot_grids.envs.tabletop import COLOURS, GridSTabletop
from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy
from lerobot_grids.tabletop_pretrain import (
    HEADS_FILE,
    METRICS_FILE,
    PRETRAIN_SEED,
    PRETRAINED_TABLETOP_SMOLVLA,
    colour_cover,
    load_grounding,
    mean_guess_error,
    pretrain,
    record_scenes,
    tabletop_smolvla_config,
)


def test_colour_cover_is_the_fraction_of_each_token_in_each_block_colour():
    images = np.full((1, 32, 32, 3), 128, np.uint8)
    images[0, :8, :8] = COLOURS["red"]  # a quarter of the top-left 16x16 token
    images[0, 16:, 16:] = COLOURS["blue"]  # all of the bottom-right token
    cover = colour_cover(images, (2, 2))
    expected = torch.zeros(1, 4, len(COLOURS))
    expected[0, 0, list(COLOURS).index("red")] = 0.25
    expected[0, 3, list(COLOURS).index("blue")] = 1.0
    torch.testing.assert_close(cover, expected)


def test_scenes_are_fresh_default_scenes_with_the_named_block():
    scenes = record_scenes(PRETRAIN_SEED, 3, 2, np.random.default_rng(0))
    assert scenes["images"]["front"].shape == (6, 128, 128, 3) and len(scenes["instruction"]) == 6
    env = GridSTabletop()
    env.reset(seed=PRETRAIN_SEED + 1)
    assert scenes["instruction"][2] == env.task_description
    np.testing.assert_array_equal(scenes["target_xy"][2], env.blocks[env.target].xy)
    assert list(COLOURS)[scenes["named_colour"][2]] in env.task_description


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("pretrain") / "checkpoint"
    return output_dir, pretrain(output_dir, steps=40, batch_size=8, scenes_per_refresh=8, refresh_every=10,
                                validation_scenes=16, progress=False)


def test_pretraining_writes_a_dense_smolvla_checkpoint_that_smolvla_grids_starts_from(pretrained):
    output_dir, results = pretrained
    assert json.loads((output_dir / "config.json").read_text())["type"] == "smolvla"
    assert set(load_file(output_dir / HEADS_FILE)) == {"colour.weight", "colour.bias", "referring.weight",
                                                        "referring.bias", "position.weight", "position.bias"}
    assert json.loads((output_dir / METRICS_FILE).read_text())["steps"] == 40 == results["steps"]
    weights = load_file(output_dir / "model.safetensors")
    assert all(tensor.dtype == torch.float32 for tensor in weights.values())
    config = tabletop_smolvla_config()
    grids = SmolVLAGridsPolicy(SmolVLAGridsConfig(**{field: getattr(config, field) for field in (
        "input_features", "output_features", "vlm_model_name", "load_vlm_weights", "resize_imgs_with_padding",
        "tokenizer_max_length", "chunk_size", "n_action_steps", "device")}, init_from=str(output_dir)))
    own = grids.state_dict()
    for key, tensor in weights.items():
        torch.testing.assert_close(own[key], tensor)


def test_pretraining_learns_the_colours_and_trains_the_vlm_only(pretrained):
    output_dir, results = pretrained
    first, last = results["history"][0]["validation"], results["history"][-1]["validation"]
    assert last["colour"] < 0.5 * first["colour"], (first, last)
    torch.manual_seed(0)  # pretrain's seed: the same untrained weights
    fresh = SmolVLAPolicy(tabletop_smolvla_config()).state_dict()
    trained = load_file(output_dir / "model.safetensors")
    changed = {key for key, tensor in trained.items() if not torch.equal(tensor, fresh[key])}
    assert any(key.startswith("model.vlm_with_expert.vlm.model.vision_model.") for key in changed)
    assert not any("lm_expert" in key or "action_" in key or "layers.3." in key for key in changed), sorted(changed)


def test_pretraining_refuses_an_existing_folder(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        pretrain(tmp_path / "taken", steps=1)


def test_the_shipped_checkpoint_finds_the_named_block_in_unseen_scenes():
    """The demo's starting point grounds: on evaluation scenes (never pretrained on), the VLM's token most
    likely to be the named block lies on it, and the position read-out beats the mean guess by far."""
    grounding = load_grounding(PRETRAINED_TABLETOP_SMOLVLA)
    assert grounding.policy.config.vlm_model_name == str(TINY_SMOLVLM)
    scenes = record_scenes(1000, 40, 1, np.random.default_rng(0))
    with torch.no_grad():
        _, metrics = grounding(scenes, np.arange(40))
    mean_guess = mean_guess_error(scenes)
    assert metrics["position_error"] < 0.4 * mean_guess, (metrics, mean_guess)
    assert metrics["referring_hits"] >= 0.9, metrics
    pretraining = json.loads((PRETRAINED_TABLETOP_SMOLVLA / METRICS_FILE).read_text())
    assert pretraining["first_scene_seed"] == PRETRAIN_SEED > 1000 + 40
