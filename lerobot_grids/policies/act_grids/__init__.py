from lerobot_grids.policies.act_grids.configuration_act_grids import ACTGridsConfig
from lerobot_grids.policies.act_grids.modeling_act_grids import ACTGridsPolicy
from lerobot_grids.policies.act_grids.processor_act_grids import make_act_grids_pre_post_processors

__all__ = ["ACTGridsConfig", "ACTGridsPolicy", "make_act_grids_pre_post_processors"]
