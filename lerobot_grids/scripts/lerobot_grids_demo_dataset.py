"""``lerobot-grids-demo-dataset``: write a small SO-100-shaped LeRobotDataset for tests and the demo.

SO-100's features (6 joints, cameras ``front`` and ``wrist``) with procedural, learnable content, written
into a new folder with LeRobot's own API (:mod:`lerobot_grids.demo_dataset`).
"""

import argparse
from pathlib import Path

from lerobot_grids.demo_dataset import make_so100_demo_dataset
from lerobot_grids.scripts import at_least


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="new folder to write the dataset into")
    parser.add_argument("--repo-id", default="local/so100_grids_demo")
    parser.add_argument("--episodes", type=at_least(1), default=4)
    parser.add_argument("--episode-length", type=at_least(1), default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = make_so100_demo_dataset(
        args.root,
        args.repo_id,
        num_episodes=args.episodes,
        episode_length=args.episode_length,
        seed=args.seed,
    )
    print(f"Wrote {dataset.meta.total_episodes} episodes ({dataset.meta.total_frames} frames) to {args.root}")


if __name__ == "__main__":
    main()
