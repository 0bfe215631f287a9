"""``pi05_grids``: pi0.5 whose cameras reach the language model as K GridS tokens each (paper Tab. 1, 4).

LeRobot's pi0.5 (``PI05Pytorch``, ``PI05Policy``: discretised state in the prompt, time-conditioned
adaptive RMS norm in the action expert) on the GridS backbone shared with ``pi0_grids``; GridS sits at
its ``embed_image``. State-dict keys are ``PI05Policy``'s, so dense pi05 checkpoints load as they are
(``--policy.init_from``). LeRobot 0.5 or later.
"""

from lerobot.policies.pi05.modeling_pi05 import PI05Policy, PI05Pytorch
from lerobot.policies.rtc.modeling_rtc import RTCProcessor
from torch import nn

from lerobot_grids import compat
from lerobot_grids.policies.pi0_grids.modeling_pi0_grids import PaliGemmaGridSPolicyMixin
from lerobot_grids.policies.pi0_grids.paligemma_with_expert import compile_pi_model, init_pi_model
from lerobot_grids.policies.pi05_grids.configuration_pi05_grids import PI05GridsConfig


class PI05GridsPytorch(PI05Pytorch):
    """LeRobot's ``PI05Pytorch`` on the GridS backbone (built here: LeRobot's ``__init__`` hard-codes pi0.5's
    sizes); the modules and their names are the same."""

    def __init__(self, config: PI05GridsConfig, rtc_processor: RTCProcessor | None = None):
        width = init_pi_model(self, config, rtc_processor, use_adarms=True)
        self.action_in_proj = nn.Linear(config.max_action_dim, width)
        self.action_out_proj = nn.Linear(width, config.max_action_dim)
        self.time_mlp_in = nn.Linear(width, width)
        self.time_mlp_out = nn.Linear(width, width)
        compile_pi_model(self, config)


class PI05GridsPolicy(PaliGemmaGridSPolicyMixin, PI05Policy):
    """pi0.5 with GridS token pruning, trained end to end with pi0.5's flow-matching loss (§3.4)."""

    config_class = PI05GridsConfig
    name = "pi05_grids"
    dense_type = "pi05"
    grids_prefix = "model.paligemma_with_expert.grids."
    model_class = PI05GridsPytorch

    def __init__(self, config: PI05GridsConfig, **kwargs):
        if not compat.PI_ON_STOCK_TRANSFORMERS:
            raise ValueError(
                f"pi05_grids needs LeRobot 0.5 or later (this is LeRobot {compat.LEROBOT_VERSION}): pi0.5's "
                "adaptive RMS norm runs on stock transformers only since LeRobot 0.5. Install LeRobot 0.6 "
                "(Python 3.12: pip install 'lerobot[pi]>=0.6,<0.7' lerobot_policy_grids), or use "
                "--policy.type=pi0_grids here."
            )
        super().__init__(config, **kwargs)
