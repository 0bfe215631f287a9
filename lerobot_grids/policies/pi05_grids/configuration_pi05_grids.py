"""Configuration of ``pi05_grids``: pi0.5 with GridS at the PaliGemma backbone's ``embed_image`` (paper Tab. 1, 4)."""

from dataclasses import dataclass

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.pi05.configuration_pi05 import PI05Config

from lerobot_grids import compat
from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PaliGemmaGridSOptions


@PreTrainedConfig.register_subclass("pi05_grids")
@dataclass
class PI05GridsConfig(PaliGemmaGridSOptions, PI05Config):
    """Every ``pi05`` option, plus :class:`~lerobot_grids.policies.pi0_grids.configuration_pi0_grids.PaliGemmaGridSOptions`'.

    Needs LeRobot 0.5 or later (Python >= 3.12): pi0.5 conditions its action expert's RMS norms on the
    flow-matching time (adaptive RMS norm), which LeRobot 0.4.4 takes from openpi's patched transformers
    fork; LeRobot 0.5+ has it on stock transformers (``lerobot.policies.pi_gemma``).
    """

    def __post_init__(self):
        if not compat.PI_ON_STOCK_TRANSFORMERS:
            raise ValueError(
                f"pi05_grids needs LeRobot 0.5 or later (this is LeRobot {compat.LEROBOT_VERSION}): pi0.5's adaptive "
                "RMS norm runs on stock transformers only since LeRobot 0.5. Install LeRobot 0.6 (Python 3.12: "
                "pip install 'lerobot[pi]>=0.6,<0.7' lerobot_policy_grids), or use --policy.type=pi0_grids here."
            )
        super().__post_init__()
