from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy
from lerobot_grids.policies.smolvla_grids.processor_smolvla_grids import (
    make_smolvla_grids_pre_post_processors,
)

__all__ = ["SmolVLAGridsConfig", "SmolVLAGridsPolicy", "make_smolvla_grids_pre_post_processors"]
