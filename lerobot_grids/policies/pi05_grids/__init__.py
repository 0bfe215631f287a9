from lerobot_grids.policies.pi05_grids.configuration_pi05_grids import PI05GridsConfig
from lerobot_grids.policies.pi05_grids.modeling_pi05_grids import PI05GridsPolicy
from lerobot_grids.policies.pi05_grids.processor_pi05_grids import make_pi05_grids_pre_post_processors

__all__ = ["PI05GridsConfig", "PI05GridsPolicy", "make_pi05_grids_pre_post_processors"]
