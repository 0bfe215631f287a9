"""Where a trained sampler looks on the tabletop task: its front-camera points against the scene's blocks.

Along the scripted expert's path in unseen ``default`` scenes, for the sampler's points and for as many
uniformly random points (the chance level):

- how often a point lies on the named block, and within one token pitch of it, per scene (so a paired
  test over scenes can say whether the sampler beats chance);
- how far the nearest point lies from the named block and from the nearest other block (a sampler that
  follows the instruction is closer to the named one; random points are not);
- how much the point layout changes between scenes (each point's distance from its mean position over
  the scenes' first frames): zero for a fixed layout, whatever the scene.

Distances are in token pitches (the spacing of the dense token grid the points are sampled from).
"""

from pathlib import Path

import cv2
import numpy as np
import torch
from lerobot.envs.utils import preprocess_observation
from lerobot.utils.constants import OBS_IMAGES

from lerobot_grids.envs.tabletop import GridSTabletop
from lerobot_grids.evidence.viz import draw_points, load_policy, to_rgb

FRONT = f"{OBS_IMAGES}.front"


def distances_to_mask(points: torch.Tensor, masks: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """``[B, K]`` distance, in token pitches, from each point (``[B, K, 2]``, ``(0, 0)`` the top-left token
    centre, ``(1, 1)`` the bottom-right one) to the nearest pixel of its frame's mask (``[B, H, W]`` bool, the
    camera frame); 0 on the mask."""
    rows, cols = grid_hw
    height, width = masks.shape[1:]
    u = ((points[..., 0] * (cols - 1) + 0.5) * width / cols).long().clamp(0, width - 1).numpy()
    v = ((points[..., 1] * (rows - 1) + 0.5) * height / rows).long().clamp(0, height - 1).numpy()
    distances = np.empty(u.shape)
    for frame, mask in enumerate(masks):
        to_mask = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
        distances[frame] = to_mask[v[frame], u[frame]] / (width / cols)
    return distances


def layout_change(first_frame_points: torch.Tensor, grid_hw: tuple[int, int]) -> float:
    """Mean distance (token pitches) of each point from its mean position over scenes (``[S, K, 2]``)."""
    rows, cols = grid_hw
    pitches = first_frame_points.double() * torch.tensor([cols - 1, rows - 1], dtype=torch.float64)
    return (pitches - pitches.mean(dim=0)).norm(dim=-1).mean().item()


@torch.no_grad()
def pointing(
    checkpoint: Path, scenes: int, first_seed: int, pictures: int = 4
) -> tuple[dict, list[np.ndarray]]:
    """The measures above for a ``smolvla_grids`` checkpoint on scenes ``first_seed ..``; and the first frames
    of ``pictures`` scenes with the points drawn."""
    policy, preprocessor = load_policy(str(checkpoint), "cpu")
    camera = list(policy.config.image_features).index(FRONT)
    backbone = policy.grids_backbone
    env, generator = GridSTabletop(), torch.Generator().manual_seed(0)
    measured = {
        f"{source}{measure}": []
        for source in ("", "random_")
        for measure in ("scene_on_target", "scene_near_target", "nearest_named", "nearest_other")
    }
    first_frames, drawn = [], []
    for scene in range(scenes):
        observation, _ = env.reset(seed=first_seed + scene)
        frames, named, others = [], [], []
        for _ in range(env.episode_length):
            frames.append(observation)
            named.append(env.block_mask_front(env.target))
            others.append(
                np.any([env.block_mask_front(i) for i in range(env.num_blocks) if i != env.target], axis=0)
            )
            observation, *_ = env.step(env.expert_action())
        batch = preprocess_observation(
            {
                "pixels": {
                    key: np.stack([frame["pixels"][key] for frame in frames]) for key in ("front", "wrist")
                },
                "agent_pos": np.stack([frame["agent_pos"] for frame in frames]),
            }
        )
        batch = preprocessor({**batch, "task": [env.task_description] * len(frames)})
        image = policy.model_images(batch)[camera]  # also sets the instruction context of the sampler
        points = backbone.sample_image(image, backbone.image_regions[camera])[1].float()
        grid_hw = backbone.grid_hw(image.shape[-2:])
        uniform = torch.rand(points.shape, generator=generator)
        for source, sampled in (("", points), ("random_", uniform)):
            to_named = distances_to_mask(sampled, np.stack(named), grid_hw)
            to_other = distances_to_mask(sampled, np.stack(others), grid_hw)
            measured[f"{source}scene_on_target"].append(100 * float((to_named == 0).mean()))
            measured[f"{source}scene_near_target"].append(100 * float((to_named <= 1).mean()))
            measured[f"{source}nearest_named"].append(float(to_named.min(axis=1).mean()))
            measured[f"{source}nearest_other"].append(float(to_other.min(axis=1).mean()))
        first_frames.append(points[0])
        if scene < pictures:
            drawn.append(draw_points(to_rgb(image[0]), points[0], grid_hw))
    summary = {
        f"{source}{where}_target": float(np.mean(measured[f"{source}scene_{where}_target"]))
        for source in ("", "random_")
        for where in ("on", "near")
    }
    summary.update(
        {key: float(np.mean(values)) for key, values in measured.items() if key.endswith(("named", "other"))}
    )
    summary["layout_change"] = layout_change(torch.stack(first_frames), grid_hw)
    summary["points"] = scenes * env.episode_length * points.shape[1]
    summary["scene_on_target"] = measured["scene_on_target"]
    summary["random_scene_on_target"] = measured["random_scene_on_target"]
    return summary, drawn
