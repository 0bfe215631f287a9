"""Pre- and post-processors of ``pi05_grids``: LeRobot's pi0.5 pipelines (state discretised into the prompt),
tokenising with ``config.tokenizer_name``."""

from typing import Any

import torch
from lerobot.policies.pi05 import processor_pi05
from lerobot.processor import PolicyAction, PolicyProcessorPipeline

from lerobot_grids.policies.pi0_grids.processor_pi0_grids import tokenizer_named
from lerobot_grids.policies.pi05_grids.configuration_pi05_grids import PI05GridsConfig


def make_pi05_grids_pre_post_processors(
    config: PI05GridsConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """LeRobot's ``make_pi05_pre_post_processors``, tokenising with ``config.tokenizer_name``."""
    with tokenizer_named(processor_pi05, config.tokenizer_name):
        return processor_pi05.make_pi05_pre_post_processors(config, dataset_stats=dataset_stats)
