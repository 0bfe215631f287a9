"""``smolvla_grids``: SmolVLA whose cameras reach the language model as K GridS tokens each.

GridS sits exactly at ``SmolVLMWithExpertModel.embed_image`` (dense 8x8 connector tokens in, K tokens
out, paper §3.2); everything before and after is LeRobot's SmolVLA, unchanged. Every dense parameter
keeps its LeRobot name, so dense ``smolvla`` weights load as they are (``--policy.init_from``).

With ``--policy.grids.split_layer=L`` GridS samples inside the vision tower instead: its first L layers run on
every patch, the points are predicted from their output (one feature per pixel-shuffle window), each point
reads the 4x4 window of patches the pixel shuffle would merge (:mod:`lerobot_grids.window_sampling`), and the
remaining layers, the post-layernorm, the pixel shuffle and the connector run on those K windows only.
"""

import torch
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel
from torch import Tensor, nn

from lerobot_grids.grids import GridSampler, GridSConfig, Region
from lerobot_grids.policies.grids_backbone import GridSBackboneMixin
from lerobot_grids.policies.grids_policy import GridSPolicyMixin
from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig
from lerobot_grids.window_sampling import pool_windows, read_windows


class SmolVLMWithExpertGridSModel(GridSBackboneMixin, SmolVLMWithExpertModel):
    """SmolVLA's backbone, with ``embed_image`` returning K GridS tokens per camera.

    ``VLAFlowMatching`` builds the dense backbone class itself, so the GridS backbone is made from a
    built one by :meth:`add_grids`, which keeps every dense parameter and its name.
    """

    @classmethod
    def add_grids(
        cls, backbone: SmolVLMWithExpertModel, config: GridSConfig
    ) -> "SmolVLMWithExpertGridSModel":
        backbone.__class__ = cls
        backbone.use_sampler(backbone.make_sampler(config))
        backbone.start_grids_record()
        return backbone

    def make_sampler(self, config: GridSConfig) -> GridSampler:
        """The sampler of ``config``: on the connector's tokens, or with ``split_layer`` inside the vision
        tower (points predicted from the tower's features, coordinates embedded at the language model's
        width)."""
        width = self.config.text_config.hidden_size
        if config.split_layer is None:
            return GridSampler(width, config)
        depth = self.config.vision_config.num_hidden_layers
        if config.split_layer > depth:
            raise ValueError(
                f"--policy.grids.split_layer={config.split_layer} is beyond the vision tower's {depth} "
                f"layers: give 0 to {depth} (the layers that run on every patch before the points are "
                "predicted)."
            )
        return GridSampler(self.config.vision_config.hidden_size, config, context_dim=width, output_dim=width)

    def use_sampler(self, sampler: nn.Module) -> None:
        """Sample with ``sampler`` from now on. Sampling inside the tower, the tower's layers after the split
        and its post-layernorm see K windows instead of every patch: they train whatever
        ``freeze_vision_encoder`` and ``train_expert_only`` say; every other vision layer is as SmolVLA's
        options have it."""
        self.grids = sampler
        vision = self.get_vlm_model().vision_model
        frozen = self.freeze_vision_encoder or self.train_expert_only
        split = self.split_layer
        for index, layer in enumerate(vision.encoder.layers):
            layer.requires_grad_(not frozen or (split is not None and index >= split))
        vision.post_layernorm.requires_grad_(not frozen or split is not None)

    @property
    def split_layer(self) -> int | None:
        """The vision tower layers run on every patch before sampling inside it; ``None``: GridS samples its
        output."""
        return self.grids.config.split_layer

    def grid_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Token grid of the connector output for an image of ``image_hw``: the vision patches, merged by
        the pixel shuffle."""
        stride = self.config.vision_config.patch_size * self.config.scale_factor
        return image_hw[0] // stride, image_hw[1] // stride

    def dense_image_tokens(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """SmolVLA's ``[B, H*W, C]`` connector tokens of ``image`` and their grid ``(H, W)``."""
        return SmolVLMWithExpertModel.embed_image(self, image), self.grid_hw(image.shape[-2:])

    def sample_image(self, image: Tensor, region: Region | None) -> tuple[Tensor, Tensor]:
        """Wherever GridS samples: the connector's tokens, or inside the vision tower."""
        if self.split_layer is None:
            return self.grids(*self.dense_image_tokens(image), context=self.grids_context, region=region)
        return self.sample_inside_the_tower(image, region)

    def sample_inside_the_tower(self, image: Tensor, region: Region | None = None) -> tuple[Tensor, Tensor]:
        """``([B, K, C] tokens, [B, K, 2] points)``: SmolVLM's vision tower and connector, with GridS after
        layer ``split_layer`` (see the module). With a point on each window of the lattice (K = all windows),
        the tokens are the dense connector tokens: attention, MLPs and norms do not depend on the patches'
        order, and each patch keeps the position embedding it got at the input."""
        vision, connector = self.get_vlm_model().vision_model, self.get_vlm_model().connector
        window = self.config.scale_factor
        pixels = image.to(dtype=vision.dtype)
        batch, patch = pixels.shape[0], self.config.vision_config.patch_size
        height, width = pixels.shape[-2] // patch, pixels.shape[-1] // patch
        every_patch = torch.ones(batch, height, width, dtype=torch.bool, device=pixels.device)
        hidden = vision.embeddings(pixel_values=pixels, patch_attention_mask=every_patch)
        layers = vision.encoder.layers
        for layer in layers[: self.split_layer]:
            hidden = layer(hidden, attention_mask=None)
        patches = hidden.view(batch, height, width, -1)
        grid = self.grid_hw(image.shape[-2:])
        self.grids.check_grid(grid)
        points = self.grids.predict_points(pool_windows(patches, window), grid, self.grids_context, region)
        hidden = read_windows(patches, points, window, self.grids.config.interpolation).flatten(1, 2)
        for layer in layers[self.split_layer :]:
            hidden = layer(hidden, attention_mask=None)
        hidden = vision.post_layernorm(hidden)
        tokens = connector(hidden.view(batch * points.shape[1], window * window, -1)).view(
            batch, points.shape[1], -1
        )
        return self.grids.embed_coordinates(tokens, points), points


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
        backbone.cameras = len(config.image_features)
        self.check_and_initialise(kwargs.get("dataset_meta"))

    @property
    def grids_backbone(self) -> SmolVLMWithExpertGridSModel:
        return self.model.vlm_with_expert

    @property
    def language_vocab_size(self) -> int:
        return self.grids_backbone.vlm.get_input_embeddings().num_embeddings

    def fully_trained_modules(self) -> list[str]:
        """The sampler and, sampling inside the vision tower, the tower's layers after the split and its
        post-layernorm: they see K windows instead of every patch
        (:meth:`SmolVLMWithExpertGridSModel.use_sampler`)."""
        split = self.grids_backbone.split_layer
        if split is None:
            return super().fully_trained_modules()
        vision = self.grids_backbone.get_vlm_model().vision_model
        late = {id(module) for module in [*vision.encoder.layers[split:], vision.post_layernorm]}
        return super().fully_trained_modules() + [
            name for name, module in self.named_modules() if id(module) in late
        ]

    def _get_action_chunk(self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs) -> Tensor:
        """SmolVLA's action chunk (``select_action`` and ``predict_action_chunk`` both make it here), refused
        if it is not finite as it would reach the motors, its points shown where LeRobot's display is on
        (:meth:`finish_chunk`)."""
        self.check_acting_inputs(batch)
        return self.finish_chunk(super()._get_action_chunk(batch, noise, **kwargs))

    def model_images(self, batch: dict) -> list[Tensor]:
        """Each camera's image as the backbone receives it (resized with padding, in [-1, 1])."""
        return self.prepare_images(batch)[0]

    def prepare_images(self, batch):
        self.start_images(batch)
        return super().prepare_images(batch)

    def family_model_images(self, batch: dict) -> list[Tensor]:
        return SmolVLAPolicy.prepare_images(self, batch)[0]

    def forward(self, batch, noise=None, time=None, reduction: str = "mean"):
        """SmolVLA's loss; the output dict adds ``grids_point_spread/<camera>`` (the collapse indicator)."""
        self.check_training_batch(batch)
        loss, loss_dict = super().forward(batch, noise=noise, time=time, reduction=reduction)
        return loss, self.report_point_spread(loss_dict)
