"""LeRobot policy types of this package; importing it registers them with LeRobot's factory.

The factory finds ``<Name>Policy`` in the ``modeling_*`` module and ``make_<type>_pre_post_processors``
in the ``processor_*`` module next to each ``configuration_*`` module, importing them only when used.
"""

from lerobot_grids.policies.pi0_grids import PI0GridsConfig
from lerobot_grids.policies.smolvla_grids import SmolVLAGridsConfig

__all__ = ["PI0GridsConfig", "SmolVLAGridsConfig"]
