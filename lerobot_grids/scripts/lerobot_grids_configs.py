"""``lerobot-grids-configs``: the recipes and robot configs that ship with the package, for ``--config_path``.

    lerobot-grids-configs                       # every shipped config: name, kind, path
    lerobot-grids-configs record                # the path of one, for LeRobot's --config_path:
    lerobot-record --config_path=$(lerobot-grids-configs record) --dataset.repo_id=<user>/<dataset> ...
    lerobot-grids-configs --copy-to my_configs  # copies of the configs to edit, in a new folder
    lerobot-grids-configs tiny_smolvlm          # a shipped asset folder (--policy.vlm_model_name=$(...))

The configs and assets are package data (``lerobot_grids/configs/``, ``lerobot_grids/assets/``), so this works
from any folder and from a wheel.
"""

import argparse
import shutil
import sys
from pathlib import Path

from lerobot_grids.configs import CONFIGS_DIR, KINDS, config_path, shipped_configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", nargs="?", help="a shipped config's or asset's name: print its path")
    parser.add_argument(
        "--copy-to",
        type=Path,
        metavar="FOLDER",
        help="a new folder to copy every shipped config into (kind by kind), to edit",
    )
    args = parser.parse_args(argv)
    configs = shipped_configs()
    if args.name is not None and args.copy_to is not None:
        parser.error("give a config's name or --copy-to, not both")
    if args.name is not None:
        if args.name not in configs:
            parser.error(f"no shipped config is named {args.name!r}; run lerobot-grids-configs to list them")
        print(config_path(args.name))
    elif args.copy_to is not None:
        if args.copy_to.exists():
            parser.error(f"{args.copy_to} already exists; choose a new folder (nothing is overwritten)")
        shutil.copytree(CONFIGS_DIR, args.copy_to, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        print(f"Copied the configs ({', '.join(KINDS)}) to {args.copy_to}")
    else:
        for name, path in configs.items():
            print(f"{name:36} {path.parent.name:9} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
