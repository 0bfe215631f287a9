"""Pre- and post-processors of ``pi0_grids``: LeRobot's pi0 pipelines, tokenising with
``config.tokenizer_name``."""

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from unittest import mock

import torch
from lerobot.policies.pi0 import processor_pi0
from lerobot.processor import PolicyAction, PolicyProcessorPipeline, TokenizerProcessorStep

from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PI0GridsConfig


@contextmanager
def tokenizer_named(processor_module: ModuleType, tokenizer_name: str) -> Iterator[None]:
    """While a LeRobot processor factory of ``processor_module`` runs, its ``TokenizerProcessorStep`` loads
    ``tokenizer_name`` instead of the name the factory hard-codes (``google/paligemma-3b-pt-224`` for pi0
    and pi0.5). The steps are LeRobot's; they save and load as LeRobot's ``tokenizer_processor``."""

    class NamedTokenizerProcessorStep(TokenizerProcessorStep):
        def __post_init__(self):
            self.tokenizer_name = tokenizer_name
            super().__post_init__()

    with mock.patch.object(processor_module, "TokenizerProcessorStep", NamedTokenizerProcessorStep):
        yield


def make_pi0_grids_pre_post_processors(
    config: PI0GridsConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """LeRobot's ``make_pi0_pre_post_processors``, tokenising with ``config.tokenizer_name``."""
    with tokenizer_named(processor_pi0, config.tokenizer_name):
        return inspect.unwrap(processor_pi0.make_pi0_pre_post_processors)(config, dataset_stats=dataset_stats)
