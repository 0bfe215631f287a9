"""GridS points in LeRobot's live viewer: with LeRobot's display on (``--display_data=true`` of
``lerobot-record`` on 0.4.4 and ``lerobot-rollout`` on 0.6, the rerun viewer), each new action chunk's K
points per camera are logged as ``rr.Points2D`` under the entity LeRobot logs that camera's image to
(``observation.<camera>``, :func:`points_entity`), in the image's pixels, so the viewer draws them on it.

Nothing is imported or computed while the display is off: :func:`active_recording` finds the rerun recording
LeRobot's ``init_rerun`` started in this process, or ``None`` in a dictionary look-up and one call.
"""

import sys

import numpy as np
from lerobot.utils.constants import OBS_IMAGES, OBS_STR

from lerobot_grids.policies.points_picture import POINT_RGB

POINTS_ENTITY = "grids_points"


def active_recording():
    """The rerun recording LeRobot's display started (``rr.init`` in ``init_rerun``), or ``None`` where rerun
    was never imported or never initialised in this process (the display is off)."""
    rerun = sys.modules.get("rerun")
    return None if rerun is None else rerun.get_data_recording()


def camera_entity(camera_key: str) -> str:
    """The entity LeRobot's display logs a camera's image to: ``observation.<camera>`` (``log_rerun_data`` of
    the robot's observation, whose keys are the camera names)."""
    return f"{OBS_STR}.{camera_key.removeprefix(OBS_IMAGES + '.')}"


def points_entity(camera_key: str) -> str:
    """The entity of a camera's points: a child of its image's (``observation.images.front`` ->
    ``observation.front/grids_points``), so that the viewer draws them on it."""
    return f"{camera_entity(camera_key)}/{POINTS_ENTITY}"


def log_points(
    recording, pixels_by_camera: dict[str, np.ndarray], image_hw: dict[str, tuple[int, int]]
) -> None:
    """Log each camera's ``[K, 2]`` points, ``(x, y)`` in the pixels of its ``image_hw`` image (``(0, 0)``
    the top-left corner), to ``recording``."""
    import rerun as rr

    for camera, pixels in pixels_by_camera.items():
        radius = max(2.0, min(image_hw[camera]) / 60)
        rr.log(
            points_entity(camera),
            rr.Points2D(pixels, radii=radius, colors=POINT_RGB),
            recording=recording,
        )
