"""A small SO-100-shaped LeRobotDataset for tests and the demo, written with LeRobot's own API.

Same features as an SO-100 recording with the paper's rig (``lerobot-record`` with an ``so100_follower``
and cameras ``front`` and ``wrist``): 6 joint positions as ``observation.state`` and ``action``, two RGB
cameras and a task string. The content is procedural and learnable: a green cube lies at a random
spot of the table, seen in the front view beside a red distractor; the arm moves towards a joint
configuration that depends on where the cube is, so actions can only be predicted by looking at it.
Images are stored as PNG frames (no video encoding, so no ffmpeg is needed).
"""

from pathlib import Path

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_grids.output_folder import new_dataset_root

SO100_JOINTS = [
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
]
DEMO_TASK = "Pick up the green cube and place it into the green bowl."
TABLE_RGB = (150, 130, 110)
CUBE_RGB = (40, 200, 60)
DISTRACTOR_RGB = (210, 50, 40)
GRIPPER_RGB = (30, 30, 30)


def so100_features(image_hw: tuple[int, int]) -> dict:
    """LeRobot dataset features of an SO-100 follower with ``front`` and ``wrist`` cameras."""
    joints = {"dtype": "float32", "shape": (len(SO100_JOINTS),), "names": SO100_JOINTS}
    camera = {"dtype": "image", "shape": (*image_hw, 3), "names": ["height", "width", "channels"]}
    return {
        "observation.state": joints,
        "action": joints,
        "observation.images.front": camera,
        "observation.images.wrist": camera,
    }


def _draw_square(image: np.ndarray, centre_xy: np.ndarray, half_size: int, rgb: tuple[int, int, int]) -> None:
    height, width = image.shape[:2]
    x, y = int(centre_xy[0] * (width - 1)), int(centre_xy[1] * (height - 1))
    image[max(y - half_size, 0) : y + half_size + 1, max(x - half_size, 0) : x + half_size + 1] = rgb


def joint_goal(cube_xy: np.ndarray) -> np.ndarray:
    """Joint positions (degrees, gripper in percent) that reach the cube at ``cube_xy`` in the front view."""
    u, v = cube_xy
    return np.array(
        [(u - 0.5) * 80, 20 + (v - 0.5) * 50, 60 - (v - 0.5) * 50, 30.0, 0.0, 10.0], dtype=np.float32
    )


def gripper_xy(state: np.ndarray) -> np.ndarray:
    """Where the gripper appears in the front view (inverse of :func:`joint_goal` on the first two joints)."""
    return np.clip([state[0] / 80 + 0.5, (state[1] - 20) / 50 + 0.5], 0.0, 1.0)


def render_episode_frame(
    state: np.ndarray, cube_xy: np.ndarray, distractor_xy: np.ndarray, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The ``front`` and ``wrist`` RGB frames (uint8, HxWx3) of one time step."""
    height, width = image_hw
    half = max(min(height, width) // 16, 1)
    front = np.empty((height, width, 3), dtype=np.uint8)
    front[:] = TABLE_RGB
    _draw_square(front, cube_xy, half, CUBE_RGB)
    _draw_square(front, distractor_xy, half, DISTRACTOR_RGB)
    _draw_square(front, gripper_xy(state), max(half // 2, 1), GRIPPER_RGB)
    # The wrist camera looks down from the gripper: the cube appears offset by where it lies relative to it.
    wrist = np.empty_like(front)
    wrist[:] = TABLE_RGB
    _draw_square(wrist, np.clip(0.5 + (cube_xy - gripper_xy(state)) * 1.5, 0, 1), 3 * half, CUBE_RGB)
    return front, wrist


def make_so100_demo_dataset(
    root: str | Path,
    repo_id: str = "local/so100_grids_demo",
    num_episodes: int = 4,
    episode_length: int = 30,
    fps: int = 30,
    image_hw: tuple[int, int] = (96, 128),
    seed: int = 0,
) -> LeRobotDataset:
    """Write a new dataset at ``root`` (a new or empty folder: nothing is ever overwritten)."""
    root = new_dataset_root(root)
    if num_episodes < 1 or episode_length < 2:
        raise ValueError(
            f"Need at least 1 episode of 2 frames, got {num_episodes} episodes of {episode_length}."
        )
    dataset = LeRobotDataset.create(
        repo_id=repo_id,
        fps=fps,
        features=so100_features(image_hw),
        robot_type="so100_follower",
        root=root,
        use_videos=False,
    )
    rng = np.random.default_rng(seed)
    for _ in range(num_episodes):
        cube_xy, distractor_xy = rng.uniform(0.15, 0.85, size=(2, 2))
        goal = joint_goal(cube_xy)
        state = rng.normal(0.0, 2.0, size=len(SO100_JOINTS)).astype(np.float32)
        state[5] = 40.0  # gripper open
        for _ in range(episode_length):
            action = (state + 0.15 * (goal - state)).astype(np.float32)
            front, wrist = render_episode_frame(state, cube_xy, distractor_xy, image_hw)
            dataset.add_frame(
                {
                    "observation.state": state,
                    "action": action,
                    "observation.images.front": front,
                    "observation.images.wrist": wrist,
                    "task": DEMO_TASK,
                }
            )
            state = action
        dataset.save_episode()
    dataset.finalize()
    return dataset
