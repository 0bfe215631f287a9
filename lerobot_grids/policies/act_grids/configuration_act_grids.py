"""Configuration of ``act_grids``: ACT with GridS on each camera's feature map."""

from dataclasses import dataclass, field

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.act.configuration_act import ACTConfig

from lerobot_grids.policies.options import GridSOptions, PolicyOptionError, refused_as_option_error


@PreTrainedConfig.register_subclass("act_grids")
@dataclass
class ACTGridsConfig(ACTConfig):
    """Every ``act`` option, plus:

    Attributes:
        grids: the GridS sampler applied to each camera's feature map after ACT's input projection
            (``--policy.grids.num_tokens=16``, ``--policy.grids.sampler=dense`` for LeRobot's ACT unchanged,
            ``--policy.grids.predictor=attention``, ...). ACT reads no instruction and has no vision tower to
            split: ``grids.instruction`` and ``grids.split_layer`` are refused.
        init_from: Hub repo id or local folder of a dense ``act`` checkpoint whose weights initialise every
            dense parameter of a fresh policy; only the GridS parameters start new. Ignored when loading an
            ``act_grids`` checkpoint (``--policy.path``), whose own weights are used.
    """

    grids: GridSOptions = field(default_factory=GridSOptions)
    init_from: str | None = None

    def __post_init__(self):
        with refused_as_option_error():
            super().__post_init__()
        if isinstance(self.grids, dict):  # as from make_policy_config("act_grids", grids={...})
            self.grids = GridSOptions(**self.grids)
        if self.grids.instruction:
            raise PolicyOptionError(
                "act_grids cannot condition its sampler on the instruction: ACT reads no language. Drop "
                "--policy.grids.instruction, or use smolvla_grids, pi0_grids or pi05_grids."
            )
        if self.grids.split_layer is not None:
            raise PolicyOptionError(
                "act_grids samples ACT's feature map after its input projection; there is no vision tower to "
                "split (--policy.grids.split_layer is for smolvla_grids). Drop --policy.grids.split_layer."
            )
