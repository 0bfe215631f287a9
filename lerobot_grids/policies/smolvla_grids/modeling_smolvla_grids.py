"""``smolvla_grids``: SmolVLA whose cameras reach the language model as K GridS tokens each.

GridS sits exactly at ``SmolVLMWithExpertModel.embed_image`` (dense 8x8 connector tokens in, K tokens
out, paper §3.2); everything before and after is LeRobot's SmolVLA, unchanged. Every dense parameter
keeps its LeRobot name, so dense ``smolvla`` weights load as they are (``--policy.init_from``).
"""

import logging
import os
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.constants import SAFETENSORS_SINGLE_FILE
from huggingface_hub.repocard import ModelCard
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel
from lerobot.utils.constants import OBS_IMAGES
from safetensors.torch import load_model
from torch import Tensor

from lerobot_grids.grids import GridSampler, GridSConfig, mean_pairwise_distance
from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig

GRIDS_PREFIX = "model.vlm_with_expert.grids."
# Below this mean pairwise distance (in units of the image side) the K points count as collapsed.
COLLAPSE_THRESHOLD = 0.02
_HUB_KWARGS = ("force_download", "resume_download", "proxies", "token", "cache_dir", "local_files_only", "revision")


class SmolVLMWithExpertGridSModel(SmolVLMWithExpertModel):
    """SmolVLA's backbone, with ``embed_image`` returning K GridS tokens per camera.

    ``VLAFlowMatching`` builds the dense backbone class itself, so the GridS backbone is made from a
    built one by :meth:`add_grids`, which keeps every dense parameter and its name.
    """

    grids: GridSampler
    sampled_points: list[Tensor]

    @classmethod
    def add_grids(cls, backbone: SmolVLMWithExpertModel, config: GridSConfig) -> "SmolVLMWithExpertGridSModel":
        backbone.__class__ = cls
        backbone.grids = GridSampler(backbone.config.text_config.hidden_size, config)
        backbone.sampled_points = []
        return backbone

    def grid_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Token grid of the connector output for an image of ``image_hw``: the vision patches, merged by
        the pixel shuffle."""
        stride = self.config.vision_config.patch_size * self.config.scale_factor
        return image_hw[0] // stride, image_hw[1] // stride

    def embed_image(self, image: Tensor) -> Tensor:
        tokens, points = self.grids(super().embed_image(image), self.grid_hw(image.shape[-2:]))
        self.sampled_points.append(points.detach())
        return tokens


class SmolVLAGridsPolicy(SmolVLAPolicy):
    """SmolVLA with GridS token pruning, trained end to end with SmolVLA's flow-matching loss (§3.4)."""

    config_class = SmolVLAGridsConfig
    name = "smolvla_grids"

    def __init__(self, config: SmolVLAGridsConfig, **kwargs):
        super().__init__(config, **kwargs)
        # Outside the VLM, so SmolVLA's freezing (train_expert_only, freeze_vision_encoder) never
        # freezes the sampler: it is always trained.
        backbone = SmolVLMWithExpertGridSModel.add_grids(self.model.vlm_with_expert, config.grids)
        if config.resize_imgs_with_padding is not None:  # images reach the backbone at this size
            width, height = config.resize_imgs_with_padding
            backbone.grids.check_grid(backbone.grid_hw((height, width)))
        self._collapse_reported = False
        if config.init_from:
            self.load_dense_weights(config.init_from)

    @property
    def grids(self) -> GridSampler:
        return self.model.vlm_with_expert.grids

    def load_dense_weights(self, source: str | Path) -> None:
        """Load every dense weight of a ``smolvla`` checkpoint (Hub repo id or local folder).

        Only the GridS parameters may be absent from it; any other missing or unexpected key is an error.
        """
        source = str(source)
        dense_config = PreTrainedConfig.from_pretrained(source)
        if dense_config.type != "smolvla":
            raise ValueError(
                f"--policy.init_from={source} is a {dense_config.type!r} checkpoint, not a dense 'smolvla' one "
                "(such as lerobot/smolvla_base). To continue training a smolvla_grids checkpoint, use "
                "--policy.path instead."
            )
        weights = (
            os.path.join(source, SAFETENSORS_SINGLE_FILE)
            if os.path.isdir(source)
            else hf_hub_download(source, SAFETENSORS_SINGLE_FILE)
        )
        missing, unexpected = load_model(self, weights, strict=False, device=str(next(self.parameters()).device))
        not_grids = sorted(key for key in missing if not key.startswith(GRIDS_PREFIX))
        if not_grids or unexpected:
            raise ValueError(
                f"The smolvla checkpoint {source} does not match this policy's architecture. "
                f"Missing from the checkpoint: {not_grids or 'none'}. Not in this policy: {sorted(unexpected) or 'none'}. "
                "Set the architecture options (vlm_model_name, num_vlm_layers, expert_width_multiplier, ...) "
                "to the checkpoint's values."
            )
        logging.info("Initialised smolvla_grids from %s; new GridS parameters: %d", source, len(missing))

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path: str | Path, *, config: PreTrainedConfig | None = None, **kwargs):
        """Load a ``smolvla_grids`` checkpoint; a requested ``config`` must keep the checkpoint's GridS settings."""
        hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
        saved_config = PreTrainedConfig.from_pretrained(pretrained_name_or_path, **hub_kwargs)
        if not isinstance(saved_config, SmolVLAGridsConfig):
            raise ValueError(
                f"{pretrained_name_or_path} is a {saved_config.type!r} checkpoint, not a smolvla_grids one. "
                "To start smolvla_grids from dense smolvla weights, use --policy.type=smolvla_grids "
                f"--policy.init_from={pretrained_name_or_path}."
            )
        if config is None:
            config = saved_config
        differences = [
            f"grids.{name}: checkpoint {getattr(saved_config.grids, name)!r}, requested {getattr(config.grids, name)!r}"
            for name in GridSConfig.__dataclass_fields__
            if getattr(saved_config.grids, name) != getattr(config.grids, name)
        ]
        if differences:
            raise ValueError(
                f"The smolvla_grids checkpoint {pretrained_name_or_path} was trained with other GridS settings "
                f"than requested ({'; '.join(differences)}). Drop the --policy.grids.* overrides to use the "
                "checkpoint as trained, or train a new policy with the settings you want."
            )
        config.init_from = None  # the checkpoint's own weights replace any dense initialisation
        return super().from_pretrained(pretrained_name_or_path, config=config, **kwargs)

    def prepare_images(self, batch):
        empty_cameras = f"{OBS_IMAGES}.empty_camera_"
        missing = [key for key in self.config.image_features if key not in batch and not key.startswith(empty_cameras)]
        if missing:
            present = [key for key in batch if key.startswith(OBS_IMAGES)]
            raise ValueError(
                f"The batch has no image for camera(s) {missing}: this policy was trained with "
                f"{list(self.config.image_features)} and got {present}. Give every camera the policy was "
                "trained with, under the same key (rename keys with --rename_map)."
            )
        self.model.vlm_with_expert.sampled_points.clear()
        return super().prepare_images(batch)

    def sampled_points(self) -> dict[str, Tensor]:
        """``{camera key: [B, K, 2] points}`` of the last forward or action chunk, ``(x, y)`` in ``[0, 1]``."""
        return dict(zip(self.config.image_features, self.model.vlm_with_expert.sampled_points, strict=True))

    def forward(self, batch, noise=None, time=None, reduction: str = "mean"):
        """SmolVLA's loss; the output dict adds, per camera, ``grids_point_spread/<camera>``: the mean
        pairwise distance of the K sampled points, which falls to 0 when they collapse into one spot."""
        loss, loss_dict = super().forward(batch, noise=noise, time=time, reduction=reduction)
        if self.config.grids.sampler == "grids" and self.config.grids.num_tokens > 1:
            for key, points in self.sampled_points().items():
                spread = mean_pairwise_distance(points).item()
                loss_dict[f"grids_point_spread/{key.removeprefix(OBS_IMAGES + '.')}"] = spread
                if spread < COLLAPSE_THRESHOLD and not self._collapse_reported:
                    self._collapse_reported = True
                    logging.warning(
                        "GridS points of %s have collapsed into one spot (mean pairwise distance %.4f): "
                        "the K tokens read the same features. Lower the learning rate or check the data.",
                        key,
                        spread,
                    )
        return loss, loss_dict

    def generate_model_card(
        self, dataset_repo_id: str, model_type: str, license: str | None, tags: list[str] | None
    ) -> ModelCard:
        card = super().generate_model_card(dataset_repo_id, model_type, license, [*(tags or []), "grids"])
        settings = "\n".join(f"| `{name}` | `{value}` |" for name, value in vars(self.config.grids).items())
        card.text += (
            "\n## GridS token pruning\n\n"
            "This SmolVLA policy feeds each camera to its language model as K tokens read by the "
            "Differentiable Grid Sampler (GridS, \"See What Matters\", ICML 2026) at learned continuous "
            "points, instead of the dense connector tokens. Load it with the `lerobot_policy_grids` "
            "package installed (`pip install lerobot_policy_grids`).\n\n"
            f"| GridS setting | value |\n|---|---|\n{settings}\n"
        )
        return card
