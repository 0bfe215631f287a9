"""``lerobot-grids-init``: write a fresh GridS policy checkpoint folder for ``lerobot-train --policy.path``.

LeRobot 0.4.4's ``make_pre_post_processors`` gives every ``PI0Config`` subclass pi0's own processors,
which always tokenise with ``google/paligemma-3b-pt-224``; a fresh ``lerobot-train
--policy.type=pi0_grids`` run therefore ignores ``--policy.tokenizer_name`` there (LeRobot 0.6.1 finds our
processors itself and needs no extra step). This command builds the
policy with LeRobot's ``make_policy`` for a dataset's features (``--policy.init_from`` included) and
saves it with the policy type's own processors (ours for ``pi0_grids``: the configured tokenizer), so
that ``lerobot-train --policy.path=<output_dir>`` trains it with everything as configured::

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
    if cfg.output_dir.exists():
        raise FileExistsError(f"{cfg.output_dir} already exists; choose a new folder (nothing is overwritten).")
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
