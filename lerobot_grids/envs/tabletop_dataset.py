"""The scripted expert of the tabletop task recorded into a LeRobotDataset (behind
``lerobot-grids-tabletop-dataset``).

:func:`record_expert_episodes` writes it with LeRobot's own ``LeRobotDataset.create`` / ``add_frame`` /
``save_episode`` / ``finalize``, cameras as videos the way ``lerobot-record`` stores them, from the
``default`` variant only (the others are for out-of-distribution evaluation). Episode ``i`` is the scene
of ``env.reset(seed=seed + i)``; ``lerobot-eval`` starts at seed 1000 by default, so evaluation scenes
are not training scenes.
"""

from pathlib import Path

from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE
from tqdm import tqdm

from lerobot_grids.envs.tabletop import GridSTabletop
from lerobot_grids.output_folder import new_dataset_root

STATE_NAMES = ["x", "y", "gripper"]
REPO_ID = "local/grids_tabletop"


def tabletop_features(image_size: int) -> dict:
    vector = {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": STATE_NAMES}
    camera = {
        "dtype": "video",
        "shape": (image_size, image_size, 3),
        "names": ["height", "width", "channels"],
    }
    return {OBS_STATE: vector, ACTION: vector, f"{OBS_IMAGES}.front": camera, f"{OBS_IMAGES}.wrist": camera}


def record_expert_episodes(
    root: str | Path,
    num_episodes: int,
    repo_id: str = REPO_ID,
    seed: int = 0,
    image_size: int = 128,
    episode_length: int = 20,
    progress: bool = True,
) -> LeRobotDataset:
    """Write a new dataset at ``root`` (a new or empty folder: nothing is ever overwritten)."""
    root = new_dataset_root(root)
    if num_episodes < 1:
        raise ValueError(f"Need at least one episode, got {num_episodes}.")
    env = GridSTabletop(image_size=image_size, episode_length=episode_length)
    dataset = LeRobotDataset.create(
        repo_id=repo_id,
        fps=env.metadata["render_fps"],
        root=root,
        features=tabletop_features(image_size),
        robot_type="grids_tabletop",
        use_videos=True,
    )
    for episode in tqdm(range(num_episodes), desc="Recording expert episodes", disable=not progress):
        observation, _ = env.reset(seed=seed + episode)
        for _ in range(episode_length):
            action = env.expert_action()
            dataset.add_frame(
                {
                    OBS_STATE: observation["agent_pos"],
                    ACTION: action,
                    f"{OBS_IMAGES}.front": observation["pixels"]["front"],
                    f"{OBS_IMAGES}.wrist": observation["pixels"]["wrist"],
                    "task": env.task_description,
                }
            )
            observation, *_ = env.step(action)
        dataset.save_episode()
    dataset.finalize()
    return dataset
