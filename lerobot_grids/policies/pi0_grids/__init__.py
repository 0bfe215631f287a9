from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PI0GridsConfig

__all__ = ["PI0GridsConfig"]
