"""``act_grids``: ACT whose transformer reads K GridS tokens per camera instead of every feature-map cell.

LeRobot's ACT projects each camera's ResNet feature map (``H x W`` cells, 15 x 20 for a 480 x 640 image) to
the transformer's width and feeds every cell to its encoder, with a 2-D sinusoidal position embedding added to
the queries and keys of every layer; the decoder cross-attends to all of them. Here, right where the encoder
starts, each camera's projected cells are replaced by K tokens read at learned points (paper §3.2, the
coordinate embedding included), and each token's position embedding is ACT's evaluated at its point
(:func:`~lerobot_grids.policies.act_grids.position_embedding.sinusoid_at_points`); the decoder attends to
those. Everything else is LeRobot's ACT, unchanged: the backbone, the projections, the VAE, the loss. Every
dense parameter keeps its LeRobot name, so dense ``act`` weights load as they are (``--policy.init_from``),
and ``--policy.grids.sampler=dense`` is LeRobot's ACT exactly (nothing of it is touched).
"""

import torch
from lerobot.policies.act.modeling_act import ACTDecoder, ACTEncoder, ACTPolicy
from torch import Tensor

from lerobot_grids.grids import GridSampler, GridSConfig, Region
from lerobot_grids.policies.act_grids.configuration_act_grids import ACTGridsConfig
from lerobot_grids.policies.act_grids.position_embedding import sinusoid_at_points
from lerobot_grids.policies.grids_policy import GridSPolicyMixin


class ACTSequenceSampler(GridSampler):
    """GridS on ACT's encoder input: ``[leading tokens (latent, state, env state), camera 1's cells, ...]``
    in, the leading tokens and K tokens per camera out, with their position embeddings.

    Per call of the policy (set by it before the model runs): ``camera_grids``, each camera's feature-map grid
    in ACT's camera order. ``sampled_points`` keeps the last call's points, one ``[B, K, 2]`` per camera;
    ``encoder_pos_embed`` the position embeddings of the tokens it returned, for the decoder.
    """

    def __init__(self, dim: int, config: GridSConfig, leading_tokens: int):
        super().__init__(dim, config)
        self.leading_tokens = leading_tokens
        self.camera_grids: list[tuple[int, int]] = []
        self.sampled_points: list[Tensor] = []
        self.sampled_cameras: list[str | None] | None = None
        self.image_regions: list[Region | None] = []
        self.grids_context = None
        self.encoder_pos_embed: Tensor | None = None

    def sample_sequence(self, tokens: Tensor, pos_embed: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens [S, B, D]`` and ``pos_embed [S, 1, D]`` as ACT's encoder gets them, each camera's cells
        replaced by K tokens; returns ``(tokens [S', B, D], pos_embed [S', B, D])``."""
        lead, batch, dim = self.leading_tokens, tokens.shape[1], tokens.shape[2]
        cells = sum(height * width for height, width in self.camera_grids)
        if lead + cells != tokens.shape[0]:
            raise RuntimeError(
                f"ACT's encoder got {tokens.shape[0]} tokens, not the {lead} leading tokens and the "
                f"{cells} feature-map cells of the cameras {self.camera_grids} this sampler was set for."
            )
        kept, positions, points = [tokens[:lead]], [pos_embed[:lead].expand(-1, batch, -1)], []
        start = lead
        for grid_hw in self.camera_grids:
            end = start + grid_hw[0] * grid_hw[1]
            sampled, camera_points = self(tokens[start:end].transpose(0, 1), grid_hw)
            kept.append(sampled.transpose(0, 1))
            embedded = sinusoid_at_points(camera_points, grid_hw, dim).to(pos_embed.dtype)
            positions.append(embedded.transpose(0, 1))
            points.append(camera_points.detach())
            start = end
        self.sampled_points = points
        self.encoder_pos_embed = torch.cat(positions)
        return torch.cat(kept), self.encoder_pos_embed


class ACTGridSEncoder(ACTEncoder):
    """ACT's encoder, reading each camera as K GridS tokens (:class:`ACTSequenceSampler`)."""

    @classmethod
    def add_grids(cls, encoder: ACTEncoder, sampler: ACTSequenceSampler) -> "ACTGridSEncoder":
        encoder.__class__ = cls
        encoder.__dict__["sampler"] = sampler  # not a submodule: the sampler's weights live at model.grids
        return encoder

    def forward(self, x: Tensor, pos_embed: Tensor | None = None, key_padding_mask: Tensor | None = None):
        x, pos_embed = self.sampler.sample_sequence(x, pos_embed)
        return super().forward(x, pos_embed=pos_embed, key_padding_mask=key_padding_mask)


class ACTGridSDecoder(ACTDecoder):
    """ACT's decoder, cross-attending to the encoder's GridS tokens with their position embeddings."""

    @classmethod
    def add_grids(cls, decoder: ACTDecoder, sampler: ACTSequenceSampler) -> "ACTGridSDecoder":
        decoder.__class__ = cls
        decoder.__dict__["sampler"] = sampler
        return decoder

    def forward(self, x, encoder_out, decoder_pos_embed=None, encoder_pos_embed=None):
        return super().forward(x, encoder_out, decoder_pos_embed, self.sampler.encoder_pos_embed)


class ACTGridsPolicy(GridSPolicyMixin, ACTPolicy):
    """ACT with GridS token pruning, trained end to end with ACT's L1 (and KL) loss."""

    config_class = ACTGridsConfig
    name = "act_grids"
    dense_type = "act"
    grids_prefix = "model.grids."
    reads_instruction = False

    def __init__(self, config: ACTGridsConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.use_sampler(ACTSequenceSampler(config.dim_model, config.grids, self.leading_tokens))
        self.check_and_initialise(kwargs.get("dataset_meta"))

    @property
    def leading_tokens(self) -> int:
        """ACT's encoder tokens before the cameras': the latent, the state, the environment state."""
        return 1 + bool(self.config.robot_state_feature) + bool(self.config.env_state_feature)

    def use_sampler(self, sampler: ACTSequenceSampler) -> None:
        """Sample with ``sampler`` from now on (its weights at ``model.grids``); a ``dense`` one leaves ACT's
        encoder and decoder LeRobot's own."""
        self.model.grids = sampler
        if sampler.config.sampler == "dense":
            self.model.encoder.__class__, self.model.decoder.__class__ = ACTEncoder, ACTDecoder
        else:
            ACTGridSEncoder.add_grids(self.model.encoder, sampler)
            ACTGridSDecoder.add_grids(self.model.decoder, sampler)

    @property
    def grids_backbone(self) -> ACTSequenceSampler:
        return self.model.grids

    @property
    def grids(self) -> ACTSequenceSampler:
        return self.model.grids

    def feature_grid(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The backbone's feature-map grid for a camera image of ``image_hw`` (found once per size)."""
        grids = self.__dict__.setdefault("_feature_grids", {})
        if image_hw not in grids:
            parameter = next(self.model.backbone.parameters())
            with torch.no_grad():
                image = torch.zeros(1, 3, *image_hw, device=parameter.device, dtype=parameter.dtype)
                grids[image_hw] = tuple(self.model.backbone(image)["feature_map"].shape[-2:])
        return grids[image_hw]

    def image_region(self, image_hw: tuple[int, int]) -> Region | None:
        """ACT resizes and pads nothing: every cell of the feature map is the image's."""
        return None

    def token_grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """The backbone's feature map (:meth:`feature_grid`)."""
        return self.feature_grid(input_hw)

    def check_camera_grids(self) -> None:
        """Refuse, when the policy is made, more tokens per camera than its feature map has cells."""
        for key, feature in self.config.image_features.items():
            self.grids.check_grid(self.feature_grid(tuple(feature.shape[-2:])), f" ({key}'s feature map)")

    def start_images(self, batch: dict) -> None:
        super().start_images(batch)
        self.grids.camera_grids = [
            self.feature_grid(tuple(batch[key].shape[-2:])) for key in self.config.image_features
        ]

    def model_images(self, batch: dict) -> list[Tensor]:
        """Each camera's image as ACT's backbone receives it (normalised by the preprocessor, not resized)."""
        self.start_images(batch)
        return [batch[key] for key in self.config.image_features]

    def family_model_images(self, batch: dict) -> list[Tensor]:
        """ACT's backbone reads each camera's image as it comes."""
        return [batch[key] for key in self.config.image_features if key in batch]

    def dense_image_tokens(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """ACT's projected feature-map cells of ``image`` as ``[B, H*W, D]`` tokens, and the map's grid."""
        cells = self.model.encoder_img_feat_input_proj(self.model.backbone(image)["feature_map"])
        return cells.flatten(2).transpose(1, 2), tuple(cells.shape[-2:])

    def sample_image(self, image: Tensor, region: Region | None) -> tuple[Tensor, Tensor]:
        return self.grids(*self.dense_image_tokens(image), region=region)

    def predict_action_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        """ACT's action chunk (``select_action`` makes it here too), refused if it is not finite as it would
        reach the motors, its points shown where LeRobot's display is on (:meth:`finish_chunk`)."""
        self.check_acting_inputs(batch)
        self.start_images(batch)
        return self.finish_chunk(super().predict_action_chunk(batch))

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        """ACT's loss; the output dict adds ``grids_point_spread/<camera>`` (the collapse indicator)."""
        self.check_training_batch(batch)
        self.start_images(batch)
        loss, loss_dict = super().forward(batch)
        return loss, self.report_point_spread(loss_dict)
