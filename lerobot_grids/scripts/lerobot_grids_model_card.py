"""``lerobot-grids-model-card``: write a trained GridS policy's model card into its checkpoint folder,
offline.

    lerobot-grids-model-card outputs/train/<run>/checkpoints/last/pretrained_model
    hf upload <user>/<policy name> outputs/train/<run>/checkpoints/last/pretrained_model

The card is the one LeRobot writes when it pushes a policy (``--policy.push_to_hub=true``), with the GridS
section; with the Hub offline it is written without the Hub's validation. An existing ``README.md`` is never
overwritten.
"""

import argparse
import sys
from pathlib import Path

from lerobot.utils.import_utils import register_third_party_plugins

from lerobot_grids.policies.grids_policy import write_model_card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a lerobot-train checkpoint's pretrained_model folder")
    args = parser.parse_args(argv)
    register_third_party_plugins()
    try:
        card = write_model_card(args.checkpoint)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    print(f"Wrote {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
