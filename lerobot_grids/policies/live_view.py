"""GridS points where LeRobot shows the cameras. In its live viewer: with LeRobot's display on
(``--display_data=true`` of ``lerobot-record`` on 0.4.4 and ``lerobot-rollout`` on 0.6, the rerun viewer),
each new action chunk's K points per camera are logged as ``rr.Points2D`` under the entity LeRobot logs that
camera's image to (``observation.<camera>``, :func:`points_entity`), in the image's pixels, so the viewer
draws them on it.

Nothing is imported or computed while the display is off: :func:`active_recording` finds the rerun recording
LeRobot's ``init_rerun`` started in this process, or ``None`` in a dictionary look-up and one call.

On the frames an env renders for ``lerobot-eval``'s videos: an env asked to show the points
(``--env.show_points=true``, :mod:`lerobot_grids.envs.points_on_render`) calls :func:`want_chunks`, and from
then on every action chunk the policy makes in this process is published (:func:`publish_chunk`) with the
camera images it was made from, for the env to find its own row of the batch.
"""

import itertools
import sys
from dataclasses import dataclass

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


def log_first_item(recording, pixels_by_camera: dict[str, np.ndarray], image_hw: dict) -> None:
    """:func:`log_points` of batch item 0 (the record and rollout loops act on one observation)."""
    log_points(recording, {camera: pixels[0] for camera, pixels in pixels_by_camera.items()}, image_hw)


@dataclass(frozen=True)
class PublishedChunk:
    """An action chunk's points for every item of its batch (``[B, K, 2]`` per camera, in the pixels of its
    image) and the camera images it was made from (``[B, 3, H, W]`` as the policy got them), under a serial
    number that changes with every chunk."""

    serial: int
    images: dict[str, np.ndarray]
    pixels: dict[str, np.ndarray]


_chunks_wanted = False
_latest: PublishedChunk | None = None
_serials = itertools.count()


def want_chunks() -> None:
    """From now on, :func:`publish_chunk` keeps every chunk the policy makes in this process."""
    global _chunks_wanted
    _chunks_wanted = True


def chunks_wanted() -> bool:
    return _chunks_wanted


def publish_chunk(images: dict[str, np.ndarray], pixels: dict[str, np.ndarray]) -> None:
    global _latest
    _latest = PublishedChunk(next(_serials), images, pixels)


def latest_chunk() -> PublishedChunk | None:
    return _latest
