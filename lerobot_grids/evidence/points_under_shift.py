"""Where a GridS policy's points go on Meta-World: from scene to scene, and when the camera moves.

For each scene (a task and a reset seed) the points the policy samples on the scene's first frame, in
distribution (``default``) and under each shifted variant (the same scene, the camera moved):

- how much the layout changes between scenes (:func:`~lerobot_grids.evidence.pointing.layout_change`, in
  token pitches: 0 for one fixed layout whatever the image), within each task (mean over the tasks) and over
  every scene of every task;
- how far each point moves when the camera does (token pitches, the same scene under both variants); the
  points of a fixed layout stay where they were in the image while the scene moves under them;
- how far training moved the predictor's layout parameters from the layout it starts from
  (:func:`~lerobot_grids.grids.spread_points`): the paper's predictor's output bias (through its sigmoid), the
  attention predictor's anchors; token pitches, each point's distance averaged.

A picture per policy: the first scene of each task (columns), one row per variant, the points drawn on the
image as the policy sees it.

The command: ``lerobot-grids-metaworld-points --checkpoints <policy> [...] --output-dir <new folder>``.
"""

import numpy as np
import torch
from lerobot.configs.types import NormalizationMode
from lerobot.envs.utils import preprocess_observation

from lerobot_grids.envs import MetaWorldCPUEnv
from lerobot_grids.envs.metaworld import MetaWorldCPU
from lerobot_grids.evidence.pointing import layout_change
from lerobot_grids.evidence.viz import draw_points, to_rgb
from lerobot_grids.grids import GridSampler, spread_points

DEFAULT = "default"


@torch.no_grad()
def first_frame_points(
    policy, preprocessor, env: MetaWorldCPU, seed: int
) -> tuple[torch.Tensor, tuple[int, int], np.ndarray]:
    """The ``[K, 2]`` points (``(0, 0)`` the top-left token centre, ``(1, 1)`` the bottom-right one) the
    policy samples on the first frame of the scene of ``seed``, the token grid they are read from, and that
    frame with them drawn."""
    observation, _ = env.reset(seed=seed)
    batch = preprocessor({**preprocess_observation(observation), "task": [env.task_description]})
    (image,) = policy.model_images(batch)  # one camera; also sets the instruction context of the sampler
    points = policy.sample_image(image, policy.grids_backbone.image_regions[0])[1][0].float()
    grid_hw = policy.dense_image_tokens(image)[1]
    normalised = policy.config.normalization_mapping.get("VISUAL") != NormalizationMode.IDENTITY
    return points, grid_hw, draw_points(to_rgb(image[0], normalised), points, grid_hw)


def layout_moved_in_training(sampler: GridSampler, grid_hw: tuple[int, int]) -> float | None:
    """Mean distance (token pitches) of the predictor's layout parameters from their starting layout; ``None``
    for a sampler without a predictor (top-k, random)."""
    config = sampler.config
    if config.sampler != "grids":
        return None
    if config.predictor == "attention":
        layout = sampler.attention_predictor.anchors
    else:
        layout = torch.sigmoid(sampler.point_predictor[-1].bias).view(config.num_tokens, 2)
    pitch = torch.tensor([grid_hw[1] - 1, grid_hw[0] - 1], dtype=torch.float64)
    moved = (layout.detach().double() - spread_points(config.num_tokens)) * pitch
    return moved.norm(dim=-1).mean().item()


def points_under_shift(
    policy, preprocessor, tasks: list[str], variants: list[str], scenes: int, first_seed: int, image_size: int
) -> tuple[dict, np.ndarray]:
    """The measures above on ``scenes`` scenes per task (seeds ``first_seed ..``), and the picture."""
    if policy.config.grids.sampler == "dense":
        raise ValueError("A dense policy samples no points: give GridS checkpoints (any sampler but dense).")
    seeds = range(first_seed, first_seed + scenes)
    points, rows = {}, []
    for variant in [DEFAULT, *variants]:
        row = []
        for task in tasks:
            env = MetaWorldCPU(
                **MetaWorldCPUEnv(task=task, variant=variant, image_size=image_size).gym_kwargs
            )
            for seed in seeds:
                points[variant, task, seed], grid_hw, picture = first_frame_points(
                    policy, preprocessor, env, seed
                )
                if seed == first_seed:
                    row.append(picture)
            env.close()
        rows.append(np.concatenate(row, axis=1))
    pitch = torch.tensor([grid_hw[1] - 1, grid_hw[0] - 1], dtype=torch.float32)

    def layout(task_list: list[str]) -> float:
        return layout_change(
            torch.stack([points[DEFAULT, task, seed] for task in task_list for seed in seeds]), grid_hw
        )

    def move(variant: str) -> float:
        return float(
            np.mean(
                [
                    ((points[variant, task, seed] - points[DEFAULT, task, seed]) * pitch).norm(dim=-1).mean()
                    for task in tasks
                    for seed in seeds
                ]
            )
        )

    summary = {
        "tokens_per_camera": int(points[DEFAULT, tasks[0], first_seed].shape[0]),
        "token_grid": list(grid_hw),
        "layout_change_within_task": float(np.mean([layout([task]) for task in tasks])),
        "layout_change_over_tasks": layout(tasks),
        "move": {variant: move(variant) for variant in variants},
        "layout_moved_in_training": layout_moved_in_training(policy.grids, grid_hw),
    }
    return summary, np.concatenate(rows, axis=0)
