"""LeRobot policy types of this package; importing it registers them with LeRobot's factory.

The factory finds ``<Name>Policy`` in the ``modeling_*`` module and ``make_<type>_pre_post_processors``
in the ``processor_*`` module next to each ``configuration_*`` module, importing them only when used.
"""

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.pi0 import processor_pi0

from lerobot_grids import compat
from lerobot_grids.policies.act_grids import ACTGridsConfig
from lerobot_grids.policies.grids_policy import grids_card_section
from lerobot_grids.policies.pi0_grids import PI0GridsConfig
from lerobot_grids.policies.pi0_grids.processor_pi0_grids import make_pi0_grids_pre_post_processors
from lerobot_grids.policies.pi05_grids import PI05GridsConfig
from lerobot_grids.policies.smolvla_grids import SmolVLAGridsConfig

GRIDS_CONFIGS = (SmolVLAGridsConfig, PI0GridsConfig, PI05GridsConfig, ACTGridsConfig)
GRIDS_POLICY_TYPES = tuple(PreTrainedConfig.get_choice_name(config) for config in GRIDS_CONFIGS)
compat.extend_free_model_card(grids_card_section, GRIDS_CONFIGS)
compat.route_family_processors(
    processor_pi0, "make_pi0_pre_post_processors", PI0GridsConfig, make_pi0_grids_pre_post_processors
)

__all__ = ["ACTGridsConfig", "PI0GridsConfig", "PI05GridsConfig", "SmolVLAGridsConfig"]
