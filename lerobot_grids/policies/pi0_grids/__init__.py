from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PI0GridsConfig
from lerobot_grids.policies.pi0_grids.modeling_pi0_grids import PI0GridsPolicy
from lerobot_grids.policies.pi0_grids.processor_pi0_grids import make_pi0_grids_pre_post_processors

__all__ = ["PI0GridsConfig", "PI0GridsPolicy", "make_pi0_grids_pre_post_processors"]
