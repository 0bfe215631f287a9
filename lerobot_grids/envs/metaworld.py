"""LeRobot's Meta-World environment, rendered for a CPU, with scenes set by the reset seed and shifted
variants.

:class:`MetaWorldCPU` is LeRobot's own ``lerobot.envs.metaworld.MetaworldEnv`` (its task set-up, camera,
observation format, success signal and scripted experts), with the settings a CPU needs applied to the
MuJoCo model before its first render:

- ``image_size``: the camera renders ``image_size`` square (LeRobot's: 480);
- ``shadow_size`` and ``multisamples``: the shadow map and the anti-aliasing samples (LeRobot's: the model's
  own, 4096 and 4). Without them (0, 0) MuJoCo's software renderer draws a 224x224 frame about 5x faster;
- ``episode_length``: the steps before the episode is cut (LeRobot's env runs Meta-World's 500 whatever its
  config's ``episode_length`` says); the experts finish in under 100;
- the reset seed places the objects (``reset(seed=s)``: scene ``s``, on LeRobot 0.4.4 as on 0.6);
- ``variant``: what the camera sees, for robustness (the task itself is unchanged): ``default``; ``camera``,
  the camera moved; ``lighting``, the scene lit dimmer and warmer; ``blank``, black images (a policy that
  ignores the images: the floor of the success rate).
"""

import os

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):  # no screen: MuJoCo's EGL renderer
    os.environ.setdefault("MUJOCO_GL", "egl")  # (read when the first renderer is made)

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from lerobot.envs.metaworld import MetaworldEnv  # noqa: E402
from lerobot.utils.constants import OBS_IMAGE  # noqa: E402

from lerobot_grids.envs.points_on_render import PointsOnRender  # noqa: E402

VARIANTS = ("default", "camera", "lighting", "blank")
LEROBOT_RENDERING = {"image_size": 480, "shadow_size": 4096, "multisamples": 4}
CAMERA_SHIFT = np.array(
    [0.08, -0.12, 0.06]
)  # metres: right, towards the robot and up, for the camera variant
LIGHT_SCALE = np.array([0.55, 0.45, 0.3])  # the lights' diffuse colour (RGB) scaled: dimmer and warmer


class MetaWorldCPU(MetaworldEnv):
    def __init__(
        self,
        task: str,
        image_size: int = 224,
        shadow_size: int = 0,
        multisamples: int = 0,
        episode_length: int = 200,
        variant: str = "default",
        obs_type: str = "pixels_agent_pos",
        show_points: bool = False,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"Unknown Meta-World variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
        super().__init__(
            task=task, obs_type=obs_type, observation_width=image_size, observation_height=image_size
        )
        self.image_size, self.shadow_size, self.multisamples = image_size, shadow_size, multisamples
        self.episode_length, self.variant = episode_length, variant
        self._max_episode_steps = episode_length
        self._prepared = None  # the Meta-World env the settings were applied to
        self._last_raw_observation = None
        self._frame = None  # the camera's frame of the current state, as the last observation rendered it
        self._points = PointsOnRender([OBS_IMAGE]) if show_points else None  # --env.show_points=true

    def _prepare(self) -> None:
        """The settings, on the Meta-World env (LeRobot 0.6 creates it at the first reset), before it
        renders."""
        env = self._env
        if env is self._prepared:
            return
        model = env.model
        model.vis.quality.shadowsize, model.vis.quality.offsamples = self.shadow_size, self.multisamples
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.image_size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.image_size)
        env.mujoco_renderer.width = env.mujoco_renderer.height = self.image_size
        env.max_path_length = self.episode_length
        if self.variant == "camera":
            model.cam_pos[model.camera(self.camera_name).id] += CAMERA_SHIFT
        elif self.variant == "lighting":
            model.light_diffuse[:] = model.light_diffuse * LIGHT_SCALE
        mujoco.mj_forward(model, env.data)  # the moved camera's pose, before the frame of this reset is drawn
        self._prepared = env

    def reset(self, seed: int | None = None, **kwargs):
        if seed is not None and self._env is not None:  # LeRobot 0.6 seeds the scene itself; 0.4.4 does not
            self._env.seeded_rand_vec = True
            self._env.seed(seed)
        if self._points is not None:
            self._points.reset()
        return super().reset(seed=seed, **kwargs)

    def _format_raw_obs(self, raw_obs: np.ndarray) -> dict:
        self._prepare()
        self._last_raw_observation = raw_obs
        observation = super()._format_raw_obs(raw_obs)
        self._frame = observation["pixels"]
        if self.variant == "blank":
            observation["pixels"] = np.zeros_like(observation["pixels"])
        if self._points is not None:
            self._points.observed({OBS_IMAGE: observation["pixels"]})
        return observation

    def render(self) -> np.ndarray:
        """LeRobot's frame (the observation's camera) of the current state, with the policy's points on it
        where asked (``show_points``). The state has not moved since the last observation was rendered, so
        that frame is returned instead of drawing the same one again: ``lerobot-eval``'s videos (10 episodes
        of every evaluation) cost no rendering. ``blank`` shows the scene, not the black observation."""
        frame = super().render() if self._frame is None else self._frame.copy()
        return frame if self._points is None else self._points.draw({OBS_IMAGE: frame})[OBS_IMAGE]

    def close(self) -> None:
        if self._points is not None:
            self._points.close()
        super().close()

    def expert_action(self) -> np.ndarray:
        """The task's scripted expert (Meta-World's, as LeRobot maps it) on the last observation, in the
        action space's bounds."""
        action = self.expert_policy.get_action(self._last_raw_observation)
        return np.clip(action, self.action_space.low, self.action_space.high).astype(np.float32)
