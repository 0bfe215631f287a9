"""GridS points where LeRobot shows the cameras. In its live viewer: with LeRobot's display on
(``--display_data=true`` of ``lerobot-record`` on 0.4.4 and ``lerobot-rollout`` on 0.6, the rerun viewer),
each new action chunk's K points per camera are logged as ``rr.Points2D`` under the entity LeRobot logs that
camera's image to (``observation.<camera>``, :func:`points_entity`), in the image's pixels, so the viewer
draws them on it; with LeRobot 0.6's other backend (``--display_mode=foxglove``), as Foxglove
``ImageAnnotations`` on a topic beside the image's (:func:`foxglove_topic`).

Nothing is imported or computed while the display is off: :func:`active_recording` finds the rerun recording
LeRobot's ``init_rerun`` started in this process, or ``None`` in a dictionary look-up and one call, and
:func:`active_foxglove_channels` LeRobot's Foxglove server the same way.

On the frames an env renders for ``lerobot-eval``'s videos: an env asked to show the points
(``--env.show_points=true``, :mod:`lerobot_grids.envs.points_on_render`) calls :func:`want_chunks`, and until
it is closed every action chunk the policy makes in this process is published (:func:`publish_chunk`) with the
camera images it was made from, for the env to find its own row of the batch.
"""

import itertools
import sys
import time
import weakref
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


def active_foxglove_channels() -> dict | None:
    """The channels of LeRobot 0.6's Foxglove stream (``--display_mode=foxglove``: the server its
    ``init_foxglove`` started in this process), or ``None`` where it runs no such server."""
    module = sys.modules.get("lerobot.utils.foxglove_visualization")
    stream = None if module is None else module.log_foxglove_data
    return None if getattr(stream, "server", None) is None else stream.channels


def foxglove_topic(camera_key: str) -> str:
    """The topic of a camera's points: beside the one LeRobot's Foxglove stream sends its image on
    (``observation.images.front`` -> ``/observation/images/front/grids_points``), for Foxglove's Image panel
    to draw them on it."""
    name = camera_key.removeprefix(OBS_IMAGES + ".").replace(".", "_")
    return f"/{OBS_STR}/images/{name}/{POINTS_ENTITY}"


def send_foxglove_points(
    channels: dict, pixels_by_camera: dict[str, np.ndarray], image_hw: dict[str, tuple[int, int]]
) -> None:
    """Send each camera's ``[K, 2]`` points, in the pixels of its image, as Foxglove ``ImageAnnotations``
    (one ``PointsAnnotation``) on :func:`foxglove_topic`, through LeRobot's channel cache."""
    from foxglove.channels import ImageAnnotationsChannel
    from foxglove.messages import (
        Color,
        ImageAnnotations,
        Point2,
        PointsAnnotation,
        PointsAnnotationType,
        Timestamp,
    )

    now = time.time_ns()
    stamp = Timestamp(sec=now // 1_000_000_000, nsec=now % 1_000_000_000)
    colour = Color(r=POINT_RGB[0] / 255, g=POINT_RGB[1] / 255, b=POINT_RGB[2] / 255, a=1.0)
    for camera, pixels in pixels_by_camera.items():
        topic = foxglove_topic(camera)
        if topic not in channels:
            channels[topic] = ImageAnnotationsChannel(topic)
        points = PointsAnnotation(
            timestamp=stamp,
            type=PointsAnnotationType.Points,
            points=[Point2(x=float(x), y=float(y)) for x, y in pixels],
            outline_color=colour,
            thickness=2 * max(2.0, min(image_hw[camera]) / 60),
        )
        channels[topic].log(ImageAnnotations(points=[points]))


def show_first_item(pixels_by_camera: dict[str, np.ndarray], image_hw: dict, recording, channels) -> None:
    """Batch item 0's points (the record and rollout loops act on one observation) in the rerun
    ``recording`` and on the Foxglove ``channels``, where each is not ``None``."""
    first = {camera: pixels[0] for camera, pixels in pixels_by_camera.items()}
    if recording is not None:
        log_points(recording, first, image_hw)
    if channels is not None:
        send_foxglove_points(channels, first, image_hw)


@dataclass(frozen=True)
class PublishedChunk:
    """An action chunk's points for every item of its batch (``[B, K, 2]`` per camera, in the pixels of its
    image) and the camera images it was made from (``[B, 3, H, W]`` as the policy got them), under a serial
    number that changes with every chunk."""

    serial: int
    images: dict[str, np.ndarray]
    pixels: dict[str, np.ndarray]


_listeners = weakref.WeakSet()  # what draws the chunks' points: the open envs' PointsOnRender
_latest: PublishedChunk | None = None
_serials = itertools.count()


def want_chunks(listener) -> None:
    """Until ``listener`` stops wanting them (:func:`stop_wanting_chunks`, or it is gone),
    :func:`publish_chunk` keeps every chunk the policy makes in this process."""
    _listeners.add(listener)


def stop_wanting_chunks(listener) -> None:
    _listeners.discard(listener)


def chunks_wanted() -> bool:
    return len(_listeners) > 0


def publish_chunk(images: dict[str, np.ndarray], pixels: dict[str, np.ndarray]) -> None:
    global _latest
    _latest = PublishedChunk(next(_serials), images, pixels)


def latest_chunk() -> PublishedChunk | None:
    return _latest
