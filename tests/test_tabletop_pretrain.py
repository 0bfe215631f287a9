"""Pretraining of the demo's base policy (grounding, then reach), and the pretrained checkpoint the demo
starts from."""

import json

import numpy as np
import pytest
import torch
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from safetensors.torch import load_file

from lerobot_grids import compat
from lerobot_grids.backbones import TINY_SMOLVLM
from lerobot_grids.envs.tabletop import COLOURS, INSTRUCTION, GridSTabletop
from lerobot_grids.evidence import tabletop_pretrain
from lerobot_grids.evidence.tabletop_pretrain import (
    HEADS_FILE,
    METRICS_FILE,
    PRETRAIN_SEED,
    PRETRAINED_TABLETOP_SMOLVLA,
    TOUCH_INSTRUCTION,
    TRANSFORMERS4_TABLETOP_SMOLVLA,
    TRANSFORMERS5_TABLETOP_SMOLVLA,
    VLM_PREFIX,
    colour_cover,
    goal_error,
    load_pretrained,
    mean_guess_error,
    policy_batch,
    pretrain,
    record_scenes,
    tabletop_smolvla_config,
    write_transformers5_checkpoint,
)
from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy
from lerobot_grids.scripts import lerobot_grids_tabletop_pretrain

# Grounding steps of the small runs: the colour loss halves on transformers 4 and 5 alike (40 sufficed on 4
# only).
GROUNDING_STEPS = 60
SMALL = {
    "batch_size": 8,
    "scenes_per_refresh": 8,
    "refresh_every": 10,
    "validation_scenes": 16,
    "stats_scenes": 8,
    "progress": False,
}


def test_colour_cover_is_the_fraction_of_each_token_in_each_block_colour():
    images = np.full((1, 32, 32, 3), 128, np.uint8)
    images[0, :8, :8] = COLOURS["red"]  # a quarter of the top-left 16x16 token
    images[0, 16:, 16:] = COLOURS["blue"]  # all of the bottom-right token
    cover = colour_cover(images, (2, 2))
    expected = torch.zeros(1, 4, len(COLOURS))
    expected[0, 0, list(COLOURS).index("red")] = 0.25
    expected[0, 3, list(COLOURS).index("blue")] = 1.0
    torch.testing.assert_close(cover, expected)


def test_scenes_are_fresh_default_scenes_with_the_named_block_and_the_experts_action_chunks():
    scenes = record_scenes(PRETRAIN_SEED, 3, None, np.random.default_rng(0), instructions=(INSTRUCTION,))
    assert scenes["images"]["front"].shape == (60, 128, 128, 3) and len(scenes["instruction"]) == 60
    assert scenes["action"].shape == (60, 10, 3) and scenes["state"].shape == (60, 3)
    env = GridSTabletop()
    observation, _ = env.reset(seed=PRETRAIN_SEED + 1)
    assert scenes["instruction"][20] == env.task_description
    np.testing.assert_array_equal(scenes["target_xy"][20], env.blocks[env.target].xy)
    assert list(COLOURS)[scenes["named_colour"][20]] in env.task_description
    actions = []
    for _ in range(env.episode_length):
        actions.append(env.expert_action())
        env.step(actions[-1])
    np.testing.assert_array_equal(scenes["state"][20], observation["agent_pos"])
    np.testing.assert_array_equal(scenes["action"][20], np.stack(actions[:10]))
    np.testing.assert_array_equal(scenes["action"][39, -1], actions[-1])  # past the end: the last action
    assert actions[-1][2] == 0  # the pick expert closes the gripper...

    touch = record_scenes(
        PRETRAIN_SEED, 3, 2, np.random.default_rng(0), instructions=(TOUCH_INSTRUCTION,), touch=True
    )
    assert len(touch["instruction"]) == 6 and touch["instruction"][0].startswith("Touch the ")
    assert (touch["action"][..., 2] == 1).all()  # ...the reach expert never does
    mixed = record_scenes(PRETRAIN_SEED, 40, 1, np.random.default_rng(0))
    assert {instruction.split()[0] for instruction in mixed["instruction"]} == {"Pick", "Touch"}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("pretrain") / "checkpoint"
    return output_dir, pretrain(output_dir, steps=GROUNDING_STEPS, reach_steps=20, **SMALL)


def test_pretraining_writes_a_dense_smolvla_checkpoint_that_smolvla_grids_starts_from(pretrained):
    output_dir, results = pretrained
    assert json.loads((output_dir / "config.json").read_text())["type"] == "smolvla"
    assert set(load_file(output_dir / HEADS_FILE)) == {
        "colour.weight",
        "colour.bias",
        "referring.weight",
        "referring.bias",
        "position.weight",
        "position.bias",
    }
    metrics = json.loads((output_dir / METRICS_FILE).read_text())
    assert metrics["steps"] == GROUNDING_STEPS == results["steps"] and len(metrics["reach_history"]) == 20
    weights = load_file(output_dir / "model.safetensors")
    assert all(tensor.dtype == torch.float32 for tensor in weights.values())
    config = tabletop_smolvla_config()
    grids = SmolVLAGridsPolicy(
        SmolVLAGridsConfig(
            **{
                field: getattr(config, field)
                for field in (
                    "input_features",
                    "output_features",
                    "vlm_model_name",
                    "load_vlm_weights",
                    "resize_imgs_with_padding",
                    "tokenizer_max_length",
                    "chunk_size",
                    "n_action_steps",
                    "device",
                )
            },
            init_from=str(output_dir),
        )
    )
    own = grids.state_dict()
    for key, tensor in weights.items():
        torch.testing.assert_close(own[key], tensor)


def test_the_checkpoint_carries_the_pick_tasks_normalisation(pretrained):
    """The processors saved beside the weights normalise with the statistics of the demo's task (the pick
    expert: the gripper closes about half the time), not the reach task's (gripper always open)."""
    output_dir, _ = pretrained
    grounding, postprocessor = load_pretrained(output_dir)
    stats = grounding.preprocessor.steps[-1].stats["action"]
    assert 0.2 < float(stats["mean"][2]) < 0.8 and float(stats["std"][2]) > 0.3, stats
    scenes = record_scenes(1000, 1, 1, np.random.default_rng(0), instructions=(INSTRUCTION,))
    normalised = policy_batch(scenes, np.arange(1), grounding.preprocessor)["action"]
    assert not torch.allclose(normalised, torch.from_numpy(scenes["action"]))
    torch.testing.assert_close(postprocessor(normalised), torch.from_numpy(scenes["action"]))


def test_grounding_trains_the_vlm_below_its_last_layer_and_reach_only_the_expert(pretrained, tmp_path):
    output_dir, results = pretrained
    first, last = results["history"][0]["validation"], results["history"][-1]["validation"]
    assert last["colour"] < 0.5 * first["colour"], (first, last)
    torch.manual_seed(0)  # pretrain's seed: the same untrained weights
    untrained = SmolVLAPolicy(tabletop_smolvla_config())
    fresh = untrained.state_dict()
    trained = load_file(output_dir / "model.safetensors")
    changed = {key for key, tensor in trained.items() if not torch.equal(tensor, fresh[key])}
    assert any(key.startswith(f"{VLM_PREFIX}model.vision_model.") for key in changed)
    assert any("lm_expert" in key for key in changed) and any(
        key.startswith("model.action_") for key in changed
    )
    last_layer = (
        f"text_model.layers.{len(untrained.model.vlm_with_expert.get_vlm_model().text_model.layers) - 1}."
    )
    assert not any(key.startswith(VLM_PREFIX) and last_layer in key for key in changed), sorted(changed)
    # The reach stage leaves the VLM as grounding left it: the same run without reach has the same VLM.
    pretrain(tmp_path / "grounding_only", steps=GROUNDING_STEPS, reach_steps=0, **SMALL)
    grounded = load_file(tmp_path / "grounding_only" / "model.safetensors")
    for key, tensor in grounded.items():
        if key.startswith(VLM_PREFIX):
            torch.testing.assert_close(trained[key], tensor, rtol=0, atol=0, msg=key)
    assert any(not torch.equal(trained[key], grounded[key]) for key in grounded if "lm_expert" in key)


def test_pretraining_refuses_a_non_empty_folder_and_creates_its_own_before_building_the_model(
    tmp_path, monkeypatch
):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        lerobot_grids_tabletop_pretrain.main(["--output-dir", str(tmp_path / "taken")])

    def no_model(*args, **kwargs):
        raise RuntimeError("the model is built here")

    monkeypatch.setattr(tabletop_pretrain, "tabletop_smolvla_config", no_model)
    with pytest.raises(RuntimeError, match="the model is built here"):
        lerobot_grids_tabletop_pretrain.main(["--output-dir", str(tmp_path / "new" / "checkpoint")])
    assert (tmp_path / "new" / "checkpoint").is_dir()


def test_the_shipped_checkpoint_finds_and_reaches_the_named_block_in_unseen_scenes():
    """The demo's starting point grounds and reaches: on evaluation scenes (never pretrained on), the VLM's
    token most likely to be the named block lies on it, the position read-out beats the mean guess by far,
    and so does the policy's first goal when asked to touch the named block."""
    grounding, postprocessor = load_pretrained(PRETRAINED_TABLETOP_SMOLVLA)
    assert grounding.policy.config.vlm_model_name == str(TINY_SMOLVLM)
    scenes = record_scenes(1000, 40, 1, np.random.default_rng(0), instructions=(INSTRUCTION,))
    with torch.no_grad():
        _, metrics = grounding(scenes, np.arange(40))
    mean_guess = mean_guess_error(scenes)
    assert metrics["position_error"] < 0.4 * mean_guess, (metrics, mean_guess)
    assert metrics["referring_hits"] >= 0.9, metrics
    touch = record_scenes(
        1000, 40, 1, np.random.default_rng(0), instructions=(TOUCH_INSTRUCTION,), touch=True
    )
    error = goal_error(grounding.policy, grounding.preprocessor, postprocessor, touch)
    assert error < 0.4 * mean_guess_error(touch), (error, mean_guess_error(touch))
    pretraining = json.loads((PRETRAINED_TABLETOP_SMOLVLA / METRICS_FILE).read_text())
    assert pretraining["first_scene_seed"] == PRETRAIN_SEED > 1000 + 40


def test_the_shipped_transformers5_checkpoint_is_the_converted_transformers4_one(tmp_path):
    copy = write_transformers5_checkpoint(TRANSFORMERS4_TABLETOP_SMOLVLA, tmp_path / "copy")
    files = sorted(path.name for path in TRANSFORMERS5_TABLETOP_SMOLVLA.iterdir())
    assert files == sorted(path.name for path in copy.iterdir())
    for name in files:
        assert (copy / name).read_bytes() == (TRANSFORMERS5_TABLETOP_SMOLVLA / name).read_bytes(), name
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        write_transformers5_checkpoint(TRANSFORMERS4_TABLETOP_SMOLVLA, copy)


def test_patch_position_rows_are_the_installed_transformers():
    """The position rows the compat conversion assumes are those the installed SmolVLM vision embeddings read:
    transformers 4 shifts them by one patch, transformers 5 does not (checked against the real module)."""
    from transformers import AutoConfig
    from transformers.models.smolvlm.modeling_smolvlm import SmolVLMVisionEmbeddings

    embeddings = SmolVLMVisionEmbeddings(AutoConfig.from_pretrained(TINY_SMOLVLM).vision_config)
    side = embeddings.num_patches_per_side
    read = []
    embeddings.position_embedding.register_forward_hook(lambda module, args, output: read.append(args[0]))
    embeddings(torch.zeros(1, 3, side * 16, side * 16), torch.ones(1, side, side, dtype=torch.bool))
    rows = compat.patch_position_rows(side, exact=compat.SMOLVLM_EXACT_PATCH_POSITIONS)
    assert torch.equal(read[0][0], (rows[:, None] * side + rows[None, :]).flatten())
    assert torch.equal(compat.patch_position_rows(side, exact=False)[:3], torch.tensor([0, 0, 1]))
