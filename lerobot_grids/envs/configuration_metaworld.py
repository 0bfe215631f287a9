"""``--env.type=meta_world_cpu``: LeRobot's Meta-World env config with the settings a CPU needs.

A subclass of LeRobot's own ``metaworld`` env config (its task names, fps, observation type, features map):
the same tasks, camera and observations, through :class:`lerobot_grids.envs.metaworld.MetaWorldCPU` (LeRobot's
env class, rendered smaller and without shadows or anti-aliasing, with an episode length that is used, and
shifted variants). ``lerobot-eval --policy.path=<checkpoint> --env.type=meta_world_cpu --env.task=push-v3``
evaluates a policy with LeRobot's own loop; ``--env.type=metaworld`` evaluates it at LeRobot's rendering
(480x480, shadows, 4x anti-aliasing), about 5x slower on a CPU. One task per evaluation (LeRobot 0.4.4 makes
one task per env config of a plugin); LeRobot's ``metaworld`` type takes its difficulty groups
(``--env.task=easy``).

Its type name does not contain "metaworld": LeRobot 0.4.4 builds every env type whose name does with its own
Meta-World env class, which takes none of these settings.
"""

from dataclasses import dataclass

from draccus.utils import ParsingError
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig, MetaworldEnv

from lerobot_grids.envs.configuration_tabletop import GYM_NAMESPACE
from lerobot_grids.envs.points_on_render import refuse_worker_processes

METAWORLD_GYM_ID = "MetaWorldCPU-v0"
INSTALL_HINT = "pip install 'lerobot_grids[metaworld]' (Meta-World 3.0.0 and a MuJoCo it runs on)"


class EnvOptionError(ParsingError):
    """A bad ``--env.*`` value: draccus passes its message on as the last thing the user reads."""


@EnvConfig.register_subclass("meta_world_cpu")
@dataclass
class MetaWorldCPUEnv(MetaworldEnv):
    task: str = "push-v3"
    variant: str = "default"  # lerobot_grids.envs.metaworld.VARIANTS; training data comes from "default"
    image_size: int = 224  # LeRobot's: 480
    shadow_size: int = 0  # LeRobot's: 4096 (the model's own)
    multisamples: int = 0  # LeRobot's: 4 (the model's own)
    episode_length: int = 200  # LeRobot's metaworld env runs 500 steps whatever its config says
    show_points: bool = (
        False  # lerobot-eval's videos show the GridS policy's points (--eval.use_async_envs=false)
    )

    def __post_init__(self):
        try:
            from lerobot.envs.metaworld import TASK_DESCRIPTIONS

            from lerobot_grids.envs.metaworld import VARIANTS
        except ImportError as error:
            raise EnvOptionError(
                f"--env.type=meta_world_cpu needs Meta-World ({error}): {INSTALL_HINT}."
            ) from None
        super().__post_init__()
        self.task = self.task.removeprefix("metaworld-")
        if self.task not in TASK_DESCRIPTIONS:
            raise EnvOptionError(
                f"--env.task={self.task!r} is not one Meta-World v3 task: name one, such as push-v3 or "
                f"reach-v3 (LeRobot's metaworld_config.json lists them; groups such as easy are for "
                f"--env.type=metaworld)."
            )
        if self.variant not in VARIANTS:
            raise EnvOptionError(
                f"--env.variant={self.variant!r} is not a variant: choose one of {', '.join(VARIANTS)}."
            )
        for name in ("image_size", "episode_length"):
            if getattr(self, name) < 1:
                raise EnvOptionError(f"--env.{name} must be at least 1, got {getattr(self, name)}.")
        if self.obs_type != "pixels_agent_pos":
            raise EnvOptionError(
                f"--env.obs_type={self.obs_type!r}: meta_world_cpu gives the image and the 4-d state "
                "(pixels_agent_pos), as the policies trained on its datasets expect."
            )
        self.features["pixels/top"] = PolicyFeature(
            type=FeatureType.VISUAL, shape=(self.image_size, self.image_size, 3)
        )

    @property
    def package_name(self) -> str:
        return "lerobot_grids.envs"

    @property
    def gym_id(self) -> str:
        return f"{GYM_NAMESPACE}/{METAWORLD_GYM_ID}"

    @property
    def gym_kwargs(self) -> dict:
        return {
            "task": self.task,
            "variant": self.variant,
            "image_size": self.image_size,
            "shadow_size": self.shadow_size,
            "multisamples": self.multisamples,
            "episode_length": self.episode_length,
            "show_points": self.show_points,
        }

    def create_envs(self, n_envs: int, use_async_envs: bool = False):
        """LeRobot 0.6's env factory: the one task through gymnasium, as LeRobot 0.4.4 makes it (not LeRobot's
        Meta-World env class, which the parent's ``create_envs`` builds), refusing worker processes where the
        points are to be shown."""
        refuse_worker_processes(self.show_points, use_async_envs, n_envs)
        return EnvConfig.create_envs(self, n_envs, use_async_envs)
