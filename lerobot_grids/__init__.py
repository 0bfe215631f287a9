"""GridS (Differentiable Grid Sampler, "See What Matters", ICML 2026) for LeRobot's VLA policies.

``lerobot_grids.grids`` is the pure-torch sampler; ``lerobot_grids.policies`` registers the LeRobot
policy types (imported by LeRobot's plugin discovery through the ``lerobot_policy_grids`` module).
"""

from lerobot_grids.grids import GridSampler, GridSConfig

__all__ = ["GridSampler", "GridSConfig"]
