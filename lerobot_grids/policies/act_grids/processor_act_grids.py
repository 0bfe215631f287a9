"""Pre- and post-processors of ``act_grids``: ACT's own, since GridS acts inside the model."""

from typing import Any

import torch
from lerobot.policies.act.processor_act import make_act_pre_post_processors
from lerobot.processor import PolicyAction, PolicyProcessorPipeline

from lerobot_grids.policies.act_grids.configuration_act_grids import ACTGridsConfig


def make_act_grids_pre_post_processors(
    config: ACTGridsConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """ACT's pipelines (normalisation of images, state and action with the dataset's statistics)."""
    return make_act_pre_post_processors(config, dataset_stats=dataset_stats)
