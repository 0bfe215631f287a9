"""``smolvla_grids``: SmolVLA whose cameras reach the language model as K GridS tokens each.

GridS sits exactly at ``SmolVLMWithExpertModel.embed_image`` (dense 8x8 connector tokens in, K tokens
out, paper §3.2); everything before and after is LeRobot's SmolVLA, unchanged. Every dense parameter
keeps its LeRobot name, so dense ``smolvla`` weights load as they are (``--policy.init_from``).
"""

from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel
from torch import Tensor

from lerobot_grids.grids import GridSampler, GridSConfig
from lerobot_grids.policies.grids_policy import GridSPolicyMixin
from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig


class SmolVLMWithExpertGridSModel(SmolVLMWithExpertModel):
    """SmolVLA's backbone, with ``embed_image`` returning K GridS tokens per camera.

    ``VLAFlowMatching`` builds the dense backbone class itself, so the GridS backbone is made from a
    built one by :meth:`add_grids`, which keeps every dense parameter and its name.
    """

    grids: GridSampler
    sampled_points: list[Tensor]
    grids_context: Tensor | None  # the instruction, for an instruction-conditioned sampler

    @classmethod
    def add_grids(cls, backbone: SmolVLMWithExpertModel, config: GridSConfig) -> "SmolVLMWithExpertGridSModel":
        backbone.__class__ = cls
        backbone.grids = GridSampler(backbone.config.text_config.hidden_size, config)
        backbone.sampled_points = []
        backbone.grids_context = None
        return backbone

    def grid_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Token grid of the connector output for an image of ``image_hw``: the vision patches, merged by
        the pixel shuffle."""
        stride = self.config.vision_config.patch_size * self.config.scale_factor
        return image_hw[0] // stride, image_hw[1] // stride

    def dense_image_tokens(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """SmolVLA's ``[B, H*W, C]`` connector tokens of ``image`` and their grid ``(H, W)``."""
        return super().embed_image(image), self.grid_hw(image.shape[-2:])

    def embed_image(self, image: Tensor) -> Tensor:
        tokens, points = self.grids(*self.dense_image_tokens(image), context=self.grids_context)
        self.sampled_points.append(points.detach())
        return tokens


class SmolVLAGridsPolicy(GridSPolicyMixin, SmolVLAPolicy):
    """SmolVLA with GridS token pruning, trained end to end with SmolVLA's flow-matching loss (§3.4)."""

    config_class = SmolVLAGridsConfig
    name = "smolvla_grids"
    dense_type = "smolvla"
    grids_prefix = "model.vlm_with_expert.grids."

    def __init__(self, config: SmolVLAGridsConfig, **kwargs):
        super().__init__(config, **kwargs)
        # Outside the VLM, so SmolVLA's freezing (train_expert_only, freeze_vision_encoder) never
        # freezes the sampler: it is always trained.
        backbone = SmolVLMWithExpertGridSModel.add_grids(self.model.vlm_with_expert, config.grids)
        if config.resize_imgs_with_padding is not None:  # images reach the backbone at this size
            width, height = config.resize_imgs_with_padding
            backbone.grids.check_grid(backbone.grid_hw((height, width)))
        if kwargs.get("dataset_meta") is not None:  # given by LeRobot's make_policy
            self.check_robot_features(kwargs["dataset_meta"])
        if config.init_from:
            self.load_dense_weights(config.init_from)

    @property
    def grids_backbone(self) -> SmolVLMWithExpertGridSModel:
        return self.model.vlm_with_expert

    @property
    def language_vocab_size(self) -> int:
        return self.grids_backbone.vlm.get_input_embeddings().num_embeddings

    def _get_action_chunk(self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs) -> Tensor:
        """SmolVLA's action chunk (``select_action`` and ``predict_action_chunk`` both make it here), refused
        if it is not finite as it would reach the motors (:meth:`check_finite`)."""
        return self.check_finite(super()._get_action_chunk(batch, noise, **kwargs))

    def model_images(self, batch: dict) -> list[Tensor]:
        """Each camera's image as the backbone receives it (resized with padding, in [-1, 1])."""
        return self.prepare_images(batch)[0]

    def prepare_images(self, batch):
        self.start_images(batch)
        return super().prepare_images(batch)

    def forward(self, batch, noise=None, time=None, reduction: str = "mean"):
        """SmolVLA's loss; the output dict adds ``grids_point_spread/<camera>`` (the collapse indicator)."""
        self.check_training_batch(batch)
        loss, loss_dict = super().forward(batch, noise=noise, time=time, reduction=reduction)
        return loss, self.report_point_spread(loss_dict)
