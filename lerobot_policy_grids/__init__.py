"""Entry module for LeRobot's plugin discovery.

``register_third_party_plugins()`` (run by lerobot-train, lerobot-eval, lerobot-record, LeRobot's async
robot client, ...) imports every installed distribution whose name starts with ``lerobot_policy_`` as
a module of that name. Importing this one registers the ``smolvla_grids``, ``pi0_grids``, ``pi05_grids`` and
``act_grids`` policy types, the ``intelrealsense_by_name`` camera type, the ``grids_tabletop`` env type, and
LeRobot's SO-100 follower and leader types that the shipped robot configs use (LeRobot's async robot client
does not import them itself).
"""

import lerobot.robots.so_follower  # noqa: F401
import lerobot.teleoperators.so_leader  # noqa: F401

import lerobot_grids.cameras  # noqa: F401
import lerobot_grids.envs  # noqa: F401
import lerobot_grids.policies  # noqa: F401
