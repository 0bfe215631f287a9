from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig

__all__ = ["SmolVLAGridsConfig"]
