"""Meta-World's scripted experts recorded into a LeRobotDataset (behind ``lerobot-grids-metaworld-dataset``).

:func:`record_metaworld_experts` runs each task's expert (Meta-World's, as LeRobot's env maps it) through
:class:`~lerobot_grids.envs.metaworld.MetaWorldCPU` and writes what LeRobot's env gives a policy, in the
schema of the Hub's ``lerobot/metaworld_mt50``: ``observation.image`` (a video), the 4-d ``observation.state``
(hand position and gripper), the 4-d ``action`` and the task's description as ``task``, at the env's fps. With
the Hub, train on ``lerobot/metaworld_mt50`` instead. Episode ``i`` of a task is the scene of
``reset(seed=seed + i)``, recorded up to the step it succeeds (an expert that has not succeeded within the
episode length is skipped and counted); ``lerobot-eval`` starts at seed 1000, so evaluation scenes are not
training scenes.
"""

from pathlib import Path

from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_STATE
from tqdm import tqdm

from lerobot_grids.envs.metaworld import MetaWorldCPU
from lerobot_grids.output_folder import new_dataset_root

REPO_ID = "local/grids_metaworld"
STATE_NAMES = ["x", "y", "z", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "grip"]
FPS = 80  # LeRobot's metaworld env config


def metaworld_features(image_size: int) -> dict:
    return {
        OBS_IMAGE: {
            "dtype": "video",
            "shape": (image_size, image_size, 3),
            "names": ["height", "width", "channels"],
        },
        OBS_STATE: {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": STATE_NAMES},
        ACTION: {"dtype": "float32", "shape": (len(ACTION_NAMES),), "names": ACTION_NAMES},
    }


def record_metaworld_experts(
    root: str | Path,
    tasks: list[str],
    episodes_per_task: int,
    repo_id: str = REPO_ID,
    seed: int = 0,
    image_size: int = 224,
    episode_length: int = 200,
    progress: bool = True,
) -> tuple[LeRobotDataset, dict[str, int]]:
    """Write a new dataset at ``root`` (a new or empty folder: nothing is ever overwritten); returns it and
    the number of expert episodes skipped per task (those that did not succeed)."""
    root = new_dataset_root(root)
    if episodes_per_task < 1 or not tasks:
        raise ValueError(
            f"Need at least one task and one episode per task, got {tasks} and {episodes_per_task}."
        )
    environments = [
        MetaWorldCPU(task, image_size=image_size, episode_length=episode_length) for task in tasks
    ]
    dataset = LeRobotDataset.create(
        repo_id=repo_id,
        fps=FPS,
        root=root,
        features=metaworld_features(image_size),
        robot_type="sawyer",
        use_videos=True,
    )
    skipped = dict.fromkeys(tasks, 0)
    for env in environments:
        for episode in tqdm(range(episodes_per_task), desc=f"Recording {env.task}", disable=not progress):
            observation, _ = env.reset(seed=seed + episode)
            for _ in range(episode_length):
                action = env.expert_action()
                dataset.add_frame(
                    {
                        OBS_IMAGE: observation["pixels"],
                        OBS_STATE: observation["agent_pos"].astype("float32"),
                        ACTION: action,
                        "task": env.task_description,
                    }
                )
                observation, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
            if info["is_success"]:
                dataset.save_episode()
            else:
                dataset.clear_episode_buffer()
                skipped[env.task] += 1
        env.close()
        if skipped[env.task] == episodes_per_task:
            raise RuntimeError(
                f"Meta-World's expert did not succeed on {env.task} in any of {episodes_per_task} "
                f"scenes within {episode_length} steps: give it a longer --episode-length."
            )
    dataset.finalize()
    return dataset, skipped
