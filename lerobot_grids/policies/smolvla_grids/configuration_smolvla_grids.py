"""Configuration of ``smolvla_grids``: SmolVLA with GridS at the backbone's ``embed_image``."""

from dataclasses import dataclass, field

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

from lerobot_grids.policies.options import GridSOptions, refused_as_option_error


@PreTrainedConfig.register_subclass("smolvla_grids")
@dataclass
class SmolVLAGridsConfig(SmolVLAConfig):
    """Every ``smolvla`` option, plus:

    Attributes:
        grids: the GridS sampler applied to each camera's tokens (``--policy.grids.num_tokens=16``,
            ``--policy.grids.sampler=dense`` for the unpruned baseline, ``--policy.grids.split_layer=4`` to
            sample inside the vision tower after its 4th layer, ...).
        init_from: Hub repo id or local folder of a dense ``smolvla`` checkpoint (for example
            ``lerobot/smolvla_base``) whose weights initialise every dense parameter of a fresh
            policy; only the GridS parameters start new. Ignored when loading a ``smolvla_grids``
            checkpoint (``--policy.path``), whose own weights are used.
    """

    grids: GridSOptions = field(default_factory=GridSOptions)
    init_from: str | None = None

    def __post_init__(self):
        with refused_as_option_error():
            super().__post_init__()
        if isinstance(self.grids, dict):  # as from make_policy_config("smolvla_grids", grids={...})
            self.grids = GridSOptions(**self.grids)
