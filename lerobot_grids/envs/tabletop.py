"""A small tabletop pick task for judging token pruning offline: ``GridSTabletop-v0`` (gymnasium).

Three coloured blocks lie on a table; the instruction names one of them by colour ("Pick up the red
block."), so the task needs vision and language, and each block covers well under 1% of the front
view: the case where the paper says pruning can lose the contact point. Two RGB cameras as on the
SO-100 rig: ``front`` (fixed, oblique view of the table) and ``wrist`` (looks down from the gripper).

State and action are the gripper's table position and opening, ``[x, y, gripper]``, with ``x, y`` in
table units ([-1, 1], ``y`` away from the robot) and the gripper in [0 closed, 1 open]. Actions are
absolute goals, like the SO-100's goal positions: the gripper moves towards ``(x, y)`` at most
``max_step`` per step and closes when ``gripper < 0.5``; closing within ``grasp_radius`` of a block
grasps it. An episode has a fixed length; it succeeds when the named block is held at its end.

Variants (the ``variant`` argument) change what the cameras see, never the task: ``default`` (the
training distribution), ``distractors`` (two extra objects of unseen colours and shape),
``texture`` (another table and background), ``lighting`` (a warm, dimmer light), ``camera`` (the front
camera moved and turned), and ``blank`` (all images grey: the floor of a policy that ignores them).
Rendering is plain numpy and OpenCV: a top-down table canvas warped into each camera.
"""

from dataclasses import dataclass

import cv2
import gymnasium as gym
import numpy as np
from lerobot.utils.constants import OBS_IMAGES

from lerobot_grids.envs.points_on_render import PointsOnRender

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
UNSEEN_COLOURS = [(150, 60, 200), (250, 130, 20)]  # purple, orange: never in the training data
VARIANTS = ("default", "distractors", "texture", "lighting", "camera", "blank")
INSTRUCTION = "Pick up the {} block."
CANVAS = 256  # pixels of the top-down table canvas for the table's 2 x 2 units
TABLE_CORNERS = np.float32([[-1, -1], [1, -1], [1, 1], [-1, 1]])  # near-left, near-right, far-right, far-left
# Where the table corners appear in the front view (fractions of the image): the default camera, and the
# ``camera`` variant's, moved to the right and turned.
FRONT_VIEWS = {
    "default": np.float32([[0.04, 0.95], [0.96, 0.95], [0.80, 0.30], [0.20, 0.30]]),
    "camera": np.float32([[0.14, 0.99], [0.99, 0.82], [0.74, 0.24], [0.24, 0.36]]),
}
WRIST_HALF_WIDTH = 0.45  # table units seen from the gripper's centre to the wrist image's edge


@dataclass(frozen=True)
class Block:
    xy: np.ndarray
    rgb: tuple[int, int, int]
    round: bool = False


class GridSTabletop(gym.Env):
    """The task; ``expert_action()`` is the scripted expert that solves it."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        variant: str = "default",
        image_size: int = 128,
        episode_length: int = 20,
        num_blocks: int = 3,
        block_half_size: float = 0.1,
        grasp_radius: float = 0.12,
        max_step: float = 0.15,
        render_mode: str = "rgb_array",
        show_points: bool = False,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
        if not 1 <= num_blocks <= len(COLOURS):
            raise ValueError(
                f"num_blocks must be between 1 and {len(COLOURS)} (one block per colour), got {num_blocks}."
            )
        self.variant, self.image_size, self.episode_length = variant, image_size, episode_length
        self.num_blocks, self.block_half_size = num_blocks, block_half_size
        self.grasp_radius, self.max_step, self.render_mode = grasp_radius, max_step, render_mode
        self._max_episode_steps = episode_length  # read by lerobot-eval
        image = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Dict({"front": image, "wrist": image}),
                "agent_pos": gym.spaces.Box(-2, 2, (3,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(np.float32([-1, -1, 0]), np.float32([1, 1, 1]))
        view = FRONT_VIEWS["camera" if variant == "camera" else "default"] * image_size
        self._table_to_front = cv2.getPerspectiveTransform(TABLE_CORNERS, view)
        self._canvas_to_front = self._table_to_front @ np.linalg.inv(_table_to_canvas())
        self.task_description = self.task = ""
        # The policy's points on the rendered frames (--env.show_points=true), by the policy's camera keys.
        self._cameras = {f"{OBS_IMAGES}.{name}": name for name in ("front", "wrist")}
        self._points = PointsOnRender(list(self._cameras)) if show_points else None

    # --- the scene ------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        names = list(rng.permutation(list(COLOURS))[: self.num_blocks])
        places = self._free_places(self.num_blocks)
        self.blocks = [Block(xy, COLOURS[name]) for xy, name in zip(places, names, strict=True)]
        self.target = int(rng.integers(self.num_blocks))
        self.task_description = self.task = INSTRUCTION.format(names[self.target])
        self.gripper_xy = np.float32([rng.uniform(-0.2, 0.2), -0.95])
        if self.variant == "distractors":  # drawn last: the scene itself is the default variant's
            extra = self._free_places(len(UNSEEN_COLOURS), [block.xy for block in self.blocks])
            self.blocks += [Block(xy, rgb, round=True) for xy, rgb in zip(extra, UNSEEN_COLOURS, strict=True)]
        self.gripper_open, self.held, self.steps = 1.0, None, 0
        self._table = self._draw_table()
        if self._points is not None:
            self._points.reset()
        return self._observation(), {"is_success": False}

    def _free_places(self, count: int, taken: list[np.ndarray] = ()) -> list[np.ndarray]:
        """``count`` block centres at least 0.4 apart (and from ``taken``): a grasp can only take one
        block."""
        places = list(taken)
        while len(places) < len(taken) + count:
            xy = self.np_random.uniform([-0.8, -0.5], [0.8, 0.8]).astype(np.float32)
            if all(np.linalg.norm(xy - other) >= 0.4 for other in places):
                places.append(xy)
        return places[len(taken) :]

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (3,) or not np.isfinite(action).all():
            raise ValueError(f"GridSTabletop takes finite [x, y, gripper] actions, got {action!r}.")
        move = np.clip(action[:2], -1, 1) - self.gripper_xy
        distance = float(np.linalg.norm(move))
        if distance > self.max_step:
            move *= self.max_step / distance
        self.gripper_xy = (self.gripper_xy + move).astype(np.float32)
        closing = self.gripper_open >= 0.5 > action[2]
        self.gripper_open = float(np.clip(action[2], 0, 1))
        if self.gripper_open >= 0.5:
            self.held = None
        elif closing:
            distances = [np.linalg.norm(block.xy - self.gripper_xy) for block in self.blocks]
            nearest = int(np.argmin(distances))
            self.held = nearest if distances[nearest] <= self.grasp_radius else None
        self.steps += 1
        success = self.held == self.target
        truncated = self.steps >= self.episode_length
        reward = float(success and truncated)
        return self._observation(), reward, False, truncated, {"is_success": bool(success and truncated)}

    def expert_action(self) -> np.ndarray:
        """The scripted expert: go to the named block, close the gripper on it, hold it."""
        target = self.blocks[self.target].xy
        arrived = np.linalg.norm(target - self.gripper_xy) < 0.02
        return np.float32([*target, 0.0 if arrived or self.held == self.target else 1.0])

    # --- rendering ------------------------------------------------------------------------------------
    def _draw_table(self) -> np.ndarray:
        """The top-down canvas of the table and the blocks that are not held."""
        canvas = np.empty((CANVAS, CANVAS, 3), np.uint8)
        if self.variant == "texture":
            squares = (np.indices((CANVAS, CANVAS)) // 32).sum(0) % 2
            canvas[:] = np.where(squares[..., None] == 1, (70, 90, 120), (120, 140, 160)).astype(np.uint8)
        else:
            grain = np.random.default_rng(0).normal(0, 6, (CANVAS, 1, 1))  # fixed wood grain along y
            canvas[:] = np.clip(np.float32([185, 160, 125]) + grain, 0, 255).astype(np.uint8)
        return canvas

    def _block_xy(self, index: int) -> np.ndarray:
        return self.gripper_xy if index == self.held else self.blocks[index].xy

    def _draw_block(self, canvas: np.ndarray, xy: np.ndarray, block: Block) -> None:
        u, v = cv2.perspectiveTransform(xy[None, None].astype(np.float32), _table_to_canvas())[0, 0]
        half = self.block_half_size * CANVAS / 2
        if block.round:
            cv2.circle(canvas, (int(u), int(v)), int(half), block.rgb, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(
                canvas, (int(u - half), int(v - half)), (int(u + half), int(v + half)), block.rgb, -1
            )

    def _blocks_on(self, canvas: np.ndarray) -> np.ndarray:
        canvas = canvas.copy()
        for index, block in enumerate(self.blocks):
            self._draw_block(canvas, self._block_xy(index), block)
        return canvas

    def _front_image(self, canvas: np.ndarray) -> np.ndarray:
        size = self.image_size
        background = (40, 70, 50) if self.variant == "texture" else (205, 205, 215)
        image = cv2.warpPerspective(
            canvas,
            self._canvas_to_front,
            (size, size),
            flags=cv2.INTER_AREA,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=background,
        )
        # The arm: from the robot's base below the near edge to the gripper, drawn over the table.
        base = self._to_front(np.float32([0.0, -1.3]))
        gripper = self._to_front(self.gripper_xy)
        cv2.line(image, base, gripper, (60, 60, 60), max(2, size // 40), cv2.LINE_AA)
        opening = int(size / 40 * (1 + self.gripper_open))
        for side in (-1, 1):
            tip = (gripper[0] + side * opening, gripper[1] - size // 30)
            cv2.line(image, (gripper[0] + side * opening, gripper[1]), tip, (20, 20, 20), max(1, size // 64))
        return self._light(image)

    def _wrist_image(self, canvas: np.ndarray) -> np.ndarray:
        size = self.image_size
        scale = size / (2 * WRIST_HALF_WIDTH)
        x, y = self.gripper_xy
        # Table (x, y) -> wrist pixel: centred on the gripper, far side up.
        table_to_wrist = np.float64(
            [[scale, 0, size / 2 - scale * x], [0, -scale, size / 2 + scale * y], [0, 0, 1]]
        )
        image = cv2.warpPerspective(
            canvas,
            table_to_wrist @ np.linalg.inv(_table_to_canvas()),
            (size, size),
            flags=cv2.INTER_AREA,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(90, 90, 90),
        )
        opening = int(size / 8 * (0.3 + self.gripper_open))
        for side in (-1, 1):  # the fingers, at the bottom of the wrist view
            cv2.rectangle(
                image,
                (size // 2 + side * opening - 3, size - size // 5),
                (size // 2 + side * opening + 3, size),
                (30, 30, 30),
                -1,
            )
        return self._light(image)

    def _to_front(self, xy: np.ndarray) -> tuple[int, int]:
        u, v = cv2.perspectiveTransform(xy[None, None].astype(np.float32), self._table_to_front)[0, 0]
        return int(round(u)), int(round(v))

    def _light(self, image: np.ndarray) -> np.ndarray:
        if self.variant == "blank":
            return np.full_like(image, 128)
        if self.variant == "lighting":
            return np.clip(image * np.float32([1.0, 0.85, 0.65]) * 0.85 + 10, 0, 255).astype(np.uint8)
        return image

    def target_mask_front(self) -> np.ndarray:
        """``H x W`` bool: the front-view pixels of the named block (for measuring where a sampler looks)."""
        return self.block_mask_front(self.target)

    def block_mask_front(self, index: int) -> np.ndarray:
        """``H x W`` bool: the front-view pixels of block ``index`` (where it is now: held blocks move)."""
        canvas = np.zeros((CANVAS, CANVAS, 3), np.uint8)
        self._draw_block(
            canvas,
            self._block_xy(index),
            Block(self.blocks[index].xy, (255, 255, 255), self.blocks[index].round),
        )
        warped = cv2.warpPerspective(
            canvas, self._canvas_to_front, (self.image_size,) * 2, flags=cv2.INTER_NEAREST
        )
        return warped[..., 0] > 0

    def _observation(self) -> dict:
        canvas = self._blocks_on(self._table)  # both cameras see the same table
        self._pixels = {"front": self._front_image(canvas), "wrist": self._wrist_image(canvas)}
        if self._points is not None:
            self._points.observed({key: self._pixels[name] for key, name in self._cameras.items()})
        return {"pixels": self._pixels, "agent_pos": np.float32([*self.gripper_xy, self.gripper_open])}

    def render(self) -> np.ndarray:
        """The last observation's front and wrist images side by side (what lerobot-eval saves as video),
        with the policy's points on them where asked (``show_points``)."""
        frames = {key: self._pixels[name] for key, name in self._cameras.items()}
        if self._points is not None:
            frames = self._points.draw(frames)
        return np.concatenate(list(frames.values()), axis=1)

    def close(self) -> None:
        if self._points is not None:
            self._points.close()
        super().close()


def _table_to_canvas() -> np.ndarray:
    """Table units -> top-down canvas pixels (far side up)."""
    scale = CANVAS / 2
    return np.float64([[scale, 0, scale], [0, -scale, scale], [0, 0, 1]])
