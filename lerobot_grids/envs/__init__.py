"""Simulated tasks as LeRobot env types: ``--env.type=grids_tabletop`` and ``--env.type=meta_world_cpu``.

The tabletop task's modules: ``tabletop`` (the env and its scripted expert), ``configuration_tabletop`` and
``tabletop_dataset`` (the expert recorded into a LeRobotDataset); Meta-World's: ``metaworld`` (LeRobot's env
with CPU rendering options), ``configuration_metaworld`` and ``metaworld_dataset`` (the scripted experts
recorded). The demo's base policy is pretrained in :mod:`lerobot_grids.evidence.tabletop_pretrain`.
"""

import gymnasium as gym

from lerobot_grids.envs.configuration_metaworld import METAWORLD_GYM_ID, MetaWorldCPUEnv
from lerobot_grids.envs.configuration_tabletop import GYM_NAMESPACE, GridSTabletopEnv
from lerobot_grids.envs.tabletop import GridSTabletop

# No wrappers (the episode length is the env's own): lerobot-eval reads the instruction from the env's
# ``task_description`` attribute, which gymnasium's wrappers would hide.
if f"{GYM_NAMESPACE}/GridSTabletop-v0" not in gym.registry:
    gym.register(
        f"{GYM_NAMESPACE}/GridSTabletop-v0",
        entry_point=GridSTabletop,
        order_enforce=False,
        disable_env_checker=True,
    )
if f"{GYM_NAMESPACE}/{METAWORLD_GYM_ID}" not in gym.registry:  # Meta-World is imported when one is made
    gym.register(
        f"{GYM_NAMESPACE}/{METAWORLD_GYM_ID}",
        entry_point="lerobot_grids.envs.metaworld:MetaWorldCPU",
        order_enforce=False,
        disable_env_checker=True,
    )

__all__ = ["GridSTabletop", "GridSTabletopEnv", "MetaWorldCPUEnv"]
