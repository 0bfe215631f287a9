"""The offline tabletop task: the env, its LeRobot env config, and the expert dataset generator."""

import numpy as np
import pytest
import torch

from lerobot_grids.envs.tabletop import COLOURS, VARIANTS, GridSTabletop


def run_expert(env: GridSTabletop, seed: int) -> dict:
    env.reset(seed=seed)
    for _ in range(env.episode_length):
        _, reward, terminated, truncated, info = env.step(env.expert_action())
    assert truncated and not terminated
    return {**info, "reward": reward}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_scripted_expert_solves_every_scene_of_every_variant(variant):
    env = GridSTabletop(variant=variant)
    assert all(run_expert(env, seed)["is_success"] for seed in range(30))


def test_variants_change_what_the_cameras_see_and_nothing_else():
    default = GridSTabletop()
    observation, _ = default.reset(seed=5)
    for variant in VARIANTS[1:]:
        env = GridSTabletop(variant=variant)
        other, _ = env.reset(seed=5)
        assert env.task_description == default.task_description
        np.testing.assert_array_equal(other["agent_pos"], observation["agent_pos"])
        for ours, theirs in zip(
            env.blocks, default.blocks, strict=False
        ):  # distractors come after the blocks
            np.testing.assert_array_equal(ours.xy, theirs.xy)
        assert not np.array_equal(other["pixels"]["front"], observation["pixels"]["front"]), variant
    distractors = GridSTabletop(variant="distractors")
    distractors.reset(seed=5)
    unseen = {block.rgb for block in distractors.blocks[distractors.num_blocks :]}
    assert len(unseen) == 2 and not unseen & set(COLOURS.values())
    blank, _ = GridSTabletop(variant="blank").reset(seed=5)
    assert all(np.unique(image).tolist() == [128] for image in blank["pixels"].values())


def test_success_needs_the_named_block_in_the_closed_gripper():
    env = GridSTabletop()
    env.reset(seed=1)
    wrong = next(i for i in range(env.num_blocks) if i != env.target)
    for xy, expected in (
        (env.blocks[wrong].xy, False),
        (np.float32([0.0, -0.2]), False),
        (env.blocks[env.target].xy, True),
    ):
        env.reset(seed=1)
        for step in range(env.episode_length):
            *_, info = env.step(np.float32([*xy, 0.0 if step >= env.episode_length - 3 else 1.0]))
        assert info["is_success"] is expected
    env.reset(seed=1)
    for _ in range(env.episode_length):  # the right place with the gripper open is no grasp
        *_, info = env.step(np.float32([*env.blocks[env.target].xy, 1.0]))
    assert not info["is_success"]


def test_the_instruction_names_a_block_that_is_on_the_table():
    env = GridSTabletop()
    named = set()
    for seed in range(40):
        env.reset(seed=seed)
        colour = env.task_description.split()[-2]
        assert env.blocks[env.target].rgb == COLOURS[colour]
        named.add(colour)
    assert named == set(COLOURS)


def test_the_target_mask_covers_the_named_block_in_the_front_view():
    env = GridSTabletop()
    observation, _ = env.reset(seed=2)
    mask = env.target_mask_front()
    assert 0 < mask.mean() < 0.01  # small relative to the image, as the task is meant to be
    pixels = observation["pixels"]["front"][mask].astype(int)
    assert np.abs(pixels - np.array(env.blocks[env.target].rgb)).sum(-1).mean() < 60


def test_bad_input_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="Unknown variant 'fog'.*default, distractors"):
        GridSTabletop(variant="fog")
    env = GridSTabletop()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"finite \[x, y, gripper\]"):
        env.step(np.float32([np.nan, 0, 1]))


def test_lerobot_builds_the_env_from_its_config_and_reads_the_instruction():
    from lerobot.envs import utils as env_utils
    from lerobot.envs.factory import make_env

    from lerobot_grids.envs import GridSTabletopEnv

    config = GridSTabletopEnv(variant="lighting")
    vector_env = make_env(config, n_envs=2)["grids_tabletop"][0]
    observation, _ = vector_env.reset(seed=[0, 1])
    batch = env_utils.preprocess_observation(observation)
    if hasattr(
        env_utils, "add_envs_task"
    ):  # LeRobot 0.4.4-0.5; 0.6's lerobot-eval reads the attribute itself
        batch = env_utils.add_envs_task(vector_env, batch)
    else:
        batch["task"] = list(vector_env.call("task_description"))
    assert batch["task"] == [env.task_description for env in vector_env.envs] and all(batch["task"])
    assert batch["observation.images.front"].shape == (2, 3, 128, 128)
    assert batch["observation.state"].shape == (2, 3)
    assert vector_env.call("_max_episode_steps") == (20, 20)
    vector_env.close()
    with pytest.raises(ValueError, match="--env.variant='fog'"):
        GridSTabletopEnv(variant="fog")


def test_expert_dataset_is_a_lerobot_dataset_with_videos(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_grids.envs.tabletop_dataset import record_expert_episodes

    record_expert_episodes(tmp_path / "data", num_episodes=3, progress=False)
    dataset = LeRobotDataset("local/grids_tabletop", root=tmp_path / "data", video_backend="pyav")
    assert dataset.meta.total_episodes == 3 and dataset.num_frames == 60
    assert set(dataset.meta.video_keys) == {"observation.images.front", "observation.images.wrist"}
    env = GridSTabletop()
    observation, _ = env.reset(seed=1)  # episode 1 is the scene of seed 1
    item = dataset[20]
    assert item["task"] == env.task_description
    torch.testing.assert_close(item["observation.state"], torch.from_numpy(observation["agent_pos"]))
    torch.testing.assert_close(item["action"], torch.from_numpy(env.expert_action()))
    decoded = (item["observation.images.front"].permute(1, 2, 0).numpy() * 255).astype(int)
    assert (
        np.abs(decoded - observation["pixels"]["front"].astype(int)).mean() < 8
    )  # lossy video, same picture
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        record_expert_episodes(tmp_path / "data", num_episodes=1, progress=False)
