"""``pi0_grids``: pi0 whose cameras reach the language model as K GridS tokens each (paper Tab. 1).

GridS sits at the PaliGemma backbone's ``embed_image`` (16x16 SigLIP tokens at 224x224 in, K out).
Everything else is LeRobot's pi0 (``PI0Pytorch``'s prefix/suffix embedding, flow-matching loss and
denoising loop, ``PI0Policy``'s batch handling), on the backbone of
:mod:`lerobot_grids.policies.pi0_grids.paligemma_with_expert`. State-dict keys are ``PI0Policy``'s, so
dense pi0 checkpoints load as they are (``--policy.init_from``).
"""

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.pi0.modeling_pi0 import PI0Policy, PI0Pytorch
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.policies.rtc.modeling_rtc import RTCProcessor
from torch import Tensor, nn

from lerobot_grids.policies.grids_policy import GridSPolicyMixin
from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PI0GridsConfig
from lerobot_grids.policies.pi0_grids.paligemma_with_expert import (
    PaliGemmaWithExpertGridSModel,
    compile_pi_model,
    init_pi_model,
)


class PI0GridsPytorch(PI0Pytorch):
    """LeRobot's ``PI0Pytorch`` on the GridS backbone.

    Built here rather than by ``PI0Pytorch.__init__``, which hard-codes pi0's sizes (and, on LeRobot 0.4.4,
    refuses stock transformers); the modules and their names are the same.
    """

    def __init__(self, config: PI0GridsConfig, rtc_processor: RTCProcessor | None = None):
        width = init_pi_model(self, config, rtc_processor, use_adarms=False)
        self.action_in_proj = nn.Linear(config.max_action_dim, width)
        self.action_out_proj = nn.Linear(width, config.max_action_dim)
        self.state_proj = nn.Linear(config.max_state_dim, width)
        self.action_time_mlp_in = nn.Linear(2 * width, width)
        self.action_time_mlp_out = nn.Linear(width, width)
        compile_pi_model(self, config)


class PaliGemmaGridSPolicyMixin(GridSPolicyMixin):
    """What ``pi0_grids`` and ``pi05_grids`` add to LeRobot's ``PI0Policy`` / ``PI05Policy`` (put before
    it)."""

    model_class: type[nn.Module]  # the GridS ``PI0Pytorch`` / ``PI05Pytorch``

    def __init__(self, config: PreTrainedConfig, **kwargs):
        # LeRobot's __init__ would build its own model at pi0's sizes; the rest is what it does.
        PreTrainedPolicy.__init__(self, config)
        config.validate_features()
        self.config = config
        self.init_rtc_processor()
        self.model = self.model_class(config, rtc_processor=self.rtc_processor)
        if config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.model.to(config.device)
        self.reset()
        self.grids_backbone.cameras = len(config.image_features)
        self.check_and_initialise(kwargs.get("dataset_meta"))

    @property
    def grids_backbone(self) -> PaliGemmaWithExpertGridSModel:
        return self.model.paligemma_with_expert

    @property
    def language_vocab_size(self) -> int:
        return self.grids_backbone.paligemma.get_input_embeddings().num_embeddings

    @classmethod
    def load_pretrained_weights(cls, pretrained_name_or_path: str, *, config: PreTrainedConfig, **kwargs):
        """LeRobot's generic loader: our checkpoints need none of LeRobot's pi0 key fixes."""
        return PreTrainedPolicy.from_pretrained.__func__(
            cls, pretrained_name_or_path, config=config, **kwargs
        )

    def predict_action_chunk(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        """LeRobot's action chunk (its ``select_action`` makes chunks here too), refused if it is not finite
        as it would reach the motors, its points shown where LeRobot's display is on
        (:meth:`finish_chunk`)."""
        self.check_acting_inputs(batch)
        return self.finish_chunk(super().predict_action_chunk(batch, **kwargs))

    def dense_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Keys of a dense checkpoint as LeRobot's ``from_pretrained`` maps them: openpi's renames, then the
        ``model.`` prefix where it is missing."""
        fixed = self._fix_pytorch_state_dict_keys(state_dict, self.config)
        return {key if key.startswith("model.") else f"model.{key}": value for key, value in fixed.items()}

    def model_images(self, batch: dict) -> list[Tensor]:
        """Each camera's image as the backbone receives it (resized with padding, in [-1, 1])."""
        return self._preprocess_images(batch)[0]

    def _preprocess_images(self, batch: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        self.start_images(batch)
        return super()._preprocess_images(batch)

    def family_model_images(self, batch: dict) -> list[Tensor]:
        # the family's own method, past this mixin's override (which also records the sampler's inputs)
        return super(PaliGemmaGridSPolicyMixin, self)._preprocess_images(batch)[0]  # noqa: UP008

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        """LeRobot's loss; the output dict adds ``grids_point_spread/<camera>`` (the collapse indicator)."""
        self.check_training_batch(batch)
        loss, loss_dict = super().forward(batch, reduction=reduction)
        return loss, self.report_point_spread(loss_dict)


class PI0GridsPolicy(PaliGemmaGridSPolicyMixin, PI0Policy):
    """pi0 with GridS token pruning, trained end to end with pi0's flow-matching loss (§3.4)."""

    config_class = PI0GridsConfig
    name = "pi0_grids"
    dense_type = "pi0"
    grids_prefix = "model.paligemma_with_expert.grids."
    model_class = PI0GridsPytorch
