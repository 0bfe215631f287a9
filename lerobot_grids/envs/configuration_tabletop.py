"""``--env.type=grids_tabletop``: the tabletop task of :mod:`lerobot_grids.envs.tabletop` as a LeRobot env.

``lerobot-eval --policy.path=<checkpoint> --env.type=grids_tabletop --env.variant=camera`` evaluates a
policy with LeRobot's own loop. The features match the datasets of ``lerobot-grids-tabletop-dataset``
(cameras ``front`` and ``wrist``, a 3-d state and action). ``--env.show_points=true`` draws a GridS policy's
points on the frames of the evaluation's videos (:mod:`lerobot_grids.envs.points_on_render`).
"""

from dataclasses import dataclass, field

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from lerobot_grids.envs.points_on_render import refuse_worker_processes
from lerobot_grids.envs.tabletop import VARIANTS

GYM_NAMESPACE = "lerobot_grids"


@EnvConfig.register_subclass("grids_tabletop")
@dataclass
class GridSTabletopEnv(EnvConfig):
    task: str | None = "GridSTabletop-v0"
    fps: int = 10
    variant: str = "default"  # one of VARIANTS; training data comes from "default"
    image_size: int = 128
    episode_length: int = 20
    show_points: bool = (
        False  # lerobot-eval's videos show the GridS policy's points (--eval.use_async_envs=false)
    )
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(
        default_factory=lambda: {
            ACTION: ACTION,
            "agent_pos": OBS_STATE,
            "pixels/front": f"{OBS_IMAGES}.front",
            "pixels/wrist": f"{OBS_IMAGES}.wrist",
        }
    )

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(
                f"--env.variant={self.variant!r} is not a variant: choose one of {', '.join(VARIANTS)}."
            )
        camera = PolicyFeature(type=FeatureType.VISUAL, shape=(self.image_size, self.image_size, 3))
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(3,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(3,)),
            "pixels/front": camera,
            "pixels/wrist": camera,
        }

    @property
    def package_name(self) -> str:
        return "lerobot_grids.envs"

    @property
    def gym_id(self) -> str:
        return f"{GYM_NAMESPACE}/{self.task}"

    @property
    def gym_kwargs(self) -> dict:
        return {
            "variant": self.variant,
            "image_size": self.image_size,
            "episode_length": self.episode_length,
            "show_points": self.show_points,
        }

    def create_envs(self, n_envs: int, use_async_envs: bool = False):
        """LeRobot 0.6's env factory (its own), refusing worker processes where the points are to be shown."""
        refuse_worker_processes(self.show_points, use_async_envs, n_envs)
        return super().create_envs(n_envs, use_async_envs)
