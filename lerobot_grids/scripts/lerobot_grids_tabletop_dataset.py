"""``lerobot-grids-tabletop-dataset``: record the scripted expert of the tabletop task into a LeRobotDataset.

Episode ``i`` is the ``default`` variant's scene of seed ``--seed + i``, written into a new folder
(:mod:`lerobot_grids.envs.tabletop_dataset`).
"""

import argparse
from pathlib import Path

from lerobot_grids.envs.tabletop_dataset import REPO_ID, record_expert_episodes
from lerobot_grids.scripts import at_least


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="new folder to write the dataset into")
    parser.add_argument("--repo-id", default=REPO_ID)
    parser.add_argument("--episodes", type=at_least(1), default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dataset = record_expert_episodes(args.root, args.episodes, args.repo_id, args.seed)
    print(f"Wrote {dataset.meta.total_episodes} episodes ({dataset.meta.total_frames} frames) to {args.root}")


if __name__ == "__main__":
    main()
