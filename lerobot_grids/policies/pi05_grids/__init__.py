from lerobot_grids.policies.pi05_grids.configuration_pi05_grids import PI05GridsConfig

__all__ = ["PI05GridsConfig"]
