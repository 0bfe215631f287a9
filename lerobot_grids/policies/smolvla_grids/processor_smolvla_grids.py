"""Pre- and post-processors of ``smolvla_grids``: SmolVLA's own, since GridS acts inside the model."""

from typing import Any

import torch
from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
from lerobot.processor import PolicyAction, PolicyProcessorPipeline

from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig


def make_smolvla_grids_pre_post_processors(
    config: SmolVLAGridsConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """SmolVLA's pipelines (normalisation, task tokenisation with ``config.vlm_model_name``'s tokenizer)."""
    return make_smolvla_pre_post_processors(config, dataset_stats=dataset_stats)
