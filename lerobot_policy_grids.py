"""Entry module for LeRobot's plugin discovery.

``register_third_party_plugins()`` (run by lerobot-train, lerobot-eval, lerobot-record, ...) imports
every installed distribution whose name starts with ``lerobot_policy_`` as a module of that name;
importing this one registers the ``smolvla_grids`` and ``pi0_grids`` policy types and the
``intelrealsense_by_name`` camera type.
"""

import lerobot_grids.cameras  # noqa: F401
import lerobot_grids.policies  # noqa: F401
