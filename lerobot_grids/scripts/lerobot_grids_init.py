"""``lerobot-grids-init``: write a fresh GridS policy checkpoint folder for ``lerobot-train --policy.path``.

It builds the policy with LeRobot's ``make_policy`` for a dataset's features (``--policy.init_from`` included)
and saves it with the policy type's own processors, without training: a start that can be inspected, shared or
trained from several times (``lerobot-train --policy.type=...`` does the same in one step, on both LeRobot
versions)::

    lerobot-grids-init --policy.type=pi0_grids --policy.tokenizer_name=<folder> \\
        --dataset.repo_id=<user>/<dataset> --output_dir=outputs/pi0_grids_start
    lerobot-train --policy.path=outputs/pi0_grids_start --dataset.repo_id=<user>/<dataset> ...
"""

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from lerobot.configs import parser
from lerobot.configs.default import DatasetConfig
from lerobot.configs.policies import PreTrainedConfig
from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
from lerobot.policies.factory import make_policy
from lerobot.utils.import_utils import register_third_party_plugins
from lerobot.utils.utils import init_logging

from lerobot_grids.output_folder import check_new


@dataclass
class InitPolicyConfig:
    policy: PreTrainedConfig
    dataset: DatasetConfig
    output_dir: Path


def make_policy_processors(config: PreTrainedConfig, dataset_stats: dict | None = None):
    """The policy type's own ``make_<type>_pre_post_processors``, next to its configuration module."""
    module = importlib.import_module(type(config).__module__.replace("configuration_", "processor_"))
    return getattr(module, f"make_{config.type}_pre_post_processors")(config, dataset_stats=dataset_stats)


@parser.wrap()
def init_policy(cfg: InitPolicyConfig) -> Path:
    check_new(cfg.output_dir, "--output_dir")
    meta = LeRobotDatasetMetadata(cfg.dataset.repo_id, root=cfg.dataset.root, revision=cfg.dataset.revision)
    policy = make_policy(cfg.policy, ds_meta=meta)
    policy.save_pretrained(cfg.output_dir)
    for processor in make_policy_processors(cfg.policy, dataset_stats=meta.stats):
        processor.save_pretrained(cfg.output_dir)
    logging.info("Wrote a new %s policy to %s", cfg.policy.type, cfg.output_dir)
    return cfg.output_dir


def main() -> None:
    init_logging()
    register_third_party_plugins()
    init_policy()


if __name__ == "__main__":
    main()
