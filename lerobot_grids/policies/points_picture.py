"""Pictures of where a GridS policy reads: its K points per camera drawn on the camera's frames.

:func:`where_it_looks` makes the picture a GridS model card shows (``grids_points.png`` beside the card, on
the Hub and in a checkpoint folder): rows the cameras, columns frames taken evenly over the first episode of a
LeRobotDataset, each frame as the camera recorded it with the points the policy reads on it, placed by
``points_in_camera`` (through the resize with padding, as the live view places them).
"""

import cv2
import numpy as np
import torch
from torch import Tensor

POINT_RGB = (255, 40, 200)
CARD_PICTURE = "grids_points.png"
CELL_HEIGHT = 240  # each frame of the card picture, resized to this height (its points drawn first)


def draw_dots(picture: np.ndarray, pixels: np.ndarray | Tensor) -> np.ndarray:
    """``[K, 2]`` points, ``(x, y)`` in the picture's pixels (``(0, 0)`` its top-left corner), as dots on a
    copy of the ``H x W x 3`` uint8 picture."""
    height, width = picture.shape[:2]
    drawn = picture.copy()
    radius = max(2, min(height, width) // 60)
    for x, y in np.asarray(pixels, dtype=np.float64).tolist():
        centre = (min(int(x), width - 1), min(int(y), height - 1))
        cv2.circle(drawn, centre, radius, POINT_RGB, thickness=-1)
        cv2.circle(drawn, centre, radius, (255, 255, 255), thickness=1)
    return drawn


def camera_frame(image: Tensor) -> np.ndarray:
    """A ``[3, H, W]`` camera frame in [0, 1] (LeRobot's datasets and cameras) as an ``H x W x 3`` uint8
    picture."""
    return (image.float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def where_it_looks(policy, preprocessor, dataset, frames: int = 4) -> np.ndarray:
    """The picture (``H x W x 3`` uint8) of ``policy``'s points on ``frames`` frames taken evenly over
    ``dataset`` (a LeRobotDataset of one episode), one row per camera of the policy the dataset has; each
    frame goes through ``preprocessor`` (the policy's) as the policy reads it."""
    cameras = [key for key in policy.config.image_features if key in dataset.meta.camera_keys]
    if not cameras:
        raise ValueError(
            f"The dataset has none of the policy's cameras {list(policy.config.image_features)} "
            f"(it has {dataset.meta.camera_keys})."
        )
    training = policy.training
    policy.eval()
    rows = {camera: [] for camera in cameras}
    try:
        for index in np.linspace(0, dataset.num_frames - 1, min(frames, dataset.num_frames)).round():
            item = dataset[int(index)]
            images = policy.model_images(preprocessor(item))
            regions = policy.grids_backbone.image_regions
            for camera, image, region in zip(policy.config.image_features, images, regions, strict=False):
                if camera not in rows:
                    continue
                points = policy.sample_image(image, region)[1][0]
                pixels = policy.points_in_camera(points, tuple(item[camera].shape[-2:]))
                drawn = draw_dots(camera_frame(item[camera]), pixels)
                width = round(drawn.shape[1] * CELL_HEIGHT / drawn.shape[0])
                rows[camera].append(cv2.resize(drawn, (width, CELL_HEIGHT), interpolation=cv2.INTER_AREA))
    finally:
        policy.train(training)
    strips = [np.concatenate(row, axis=1) for row in rows.values()]
    width = max(strip.shape[1] for strip in strips)  # cameras of other shapes: rows padded on the right
    return np.concatenate([np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0))) for s in strips], axis=0)
