"""The policy's GridS points on the frames an env renders, so that ``lerobot-eval``'s videos show where the
policy read (``--env.show_points=true`` of our env types; LeRobot's eval loop and video writer unchanged).

LeRobot's eval loop gives the policy the vectorised envs' observations as one batch and renders each env after
each step. The policy publishes each chunk's points with the images it was made from
(:mod:`lerobot_grids.policies.live_view`); each env finds its own row of that batch, the one whose images are
those of the observation it returned before the step (the policy's preprocessor may have normalised them:
they match up to a per-channel affine map), and draws that row's points on every frame it renders until the
next chunk: where the policy read for the actions being carried out.
"""

import multiprocessing

import numpy as np

from lerobot_grids.policies import live_view
from lerobot_grids.policies.points_picture import draw_dots

MATCH = 0.999  # least per-channel correlation between an env's frame and its row of the policy's batch


def matching_row(images: np.ndarray, frame: np.ndarray) -> int | None:
    """The row of ``images`` (``[B, 3, H, W]``, as the policy got them) that is ``frame`` (``H x W x 3``
    uint8) up to a per-channel affine map (LeRobot's scaling to [0, 1], a normalisation); ``None`` if none
    is."""
    if images.shape[-2:] != frame.shape[:2]:
        return None
    ours = frame.transpose(2, 0, 1).reshape(3, -1).astype(np.float64)
    best, best_score = None, MATCH
    for row, image in enumerate(images.reshape(images.shape[0], 3, -1).astype(np.float64)):
        scores = []
        for mine, theirs in zip(ours, image, strict=True):
            if mine.std() == 0 or theirs.std() == 0:  # a uniform channel matches a uniform channel
                scores.append(1.0 if mine.std() == theirs.std() else 0.0)
            else:
                scores.append(np.corrcoef(mine, theirs)[0, 1])
        if (score := min(scores)) >= best_score:
            best, best_score = row, score
    return best


IN_WORKER_PROCESS = (
    "--env.show_points=true draws the policy's points on the frames in the process the policy runs in, and "
    "the envs would run in worker processes: add --eval.use_async_envs=false."
)


def refuse_worker_processes(show_points: bool, use_async_envs: bool, n_envs: int) -> None:
    """Refuse, before any env is made, to show the points in envs LeRobot 0.6 would run in worker processes
    (asynchronous vector envs, which it makes for more than one env)."""
    if show_points and use_async_envs and n_envs > 1:
        raise ValueError(IN_WORKER_PROCESS)


class PointsOnRender:
    """One env's part: the policy camera keys of the frames its ``render`` shows, the observations it
    returns (:meth:`reset`, :meth:`observed`), and the points of the policy's row for it (:meth:`draw`)."""

    def __init__(self, cameras: list[str]):
        if multiprocessing.parent_process() is not None:
            raise RuntimeError(IN_WORKER_PROCESS)
        live_view.want_chunks(self)
        self.cameras = cameras
        self.reset()

    def close(self) -> None:
        """The env is closed: the policy stops publishing its chunks for it."""
        live_view.stop_wanting_chunks(self)

    def reset(self) -> None:
        """A new episode: no chunk made on it yet."""
        self.serial, self.points, self.current, self.acted_on = None, {}, None, None

    def observed(self, frames: dict[str, np.ndarray]) -> None:
        """An observation the env returns (``{camera key: H x W x 3 uint8}``); the one before it is the one
        the policy made its latest chunk from, if it made one."""
        self.acted_on, self.current = self.current, frames

    def draw(self, frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``frames`` (``{camera key: H x W x 3 uint8}``, as the env renders them) with the points of the
        latest chunk made on this env's observation drawn on them."""
        chunk = live_view.latest_chunk()
        if chunk is not None and chunk.serial != self.serial and self.acted_on is not None:
            self.serial, self.points = chunk.serial, {}
            for camera in self.cameras:
                if (
                    camera in chunk.images
                    and (row := matching_row(chunk.images[camera], self.acted_on[camera])) is not None
                ):
                    self.points[camera] = chunk.pixels[camera][row]
        drawn = {}
        for camera, frame in frames.items():
            if camera in self.points:  # in the pixels of the observed frame: scaled to the rendered one
                observed_hw = self.acted_on[camera].shape[:2]
                scale = np.array([frame.shape[1] / observed_hw[1], frame.shape[0] / observed_hw[0]])
                frame = draw_dots(frame, self.points[camera] * scale)
            drawn[camera] = frame
        return drawn
