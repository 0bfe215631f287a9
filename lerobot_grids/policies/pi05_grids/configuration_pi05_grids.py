"""Configuration of ``pi05_grids``: pi0.5 with GridS at the PaliGemma backbone's ``embed_image`` (paper Tab.
1, 4)."""

from dataclasses import dataclass

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.pi05.configuration_pi05 import PI05Config

from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PaliGemmaGridSOptions


@PreTrainedConfig.register_subclass("pi05_grids")
@dataclass
class PI05GridsConfig(PaliGemmaGridSOptions, PI05Config):
    """Every ``pi05`` option, plus
    :class:`~lerobot_grids.policies.pi0_grids.configuration_pi0_grids.PaliGemmaGridSOptions`'.

    The policy needs LeRobot 0.5 or later (Python >= 3.12): pi0.5 conditions its action expert's RMS norms on
    the flow-matching time (adaptive RMS norm), which LeRobot 0.4.4 takes from openpi's patched transformers
    fork; LeRobot 0.5+ has it on stock transformers (``lerobot.policies.pi_gemma``). On 0.4.4 the config
    parses (recipes can be checked) and the policy refuses to be built.
    """
