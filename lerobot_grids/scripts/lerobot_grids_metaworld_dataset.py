"""``lerobot-grids-metaworld-dataset``: record Meta-World's scripted experts into a LeRobotDataset.

Episode ``i`` of each task is the scene of seed ``--seed + i``, rendered as ``--env.type=meta_world_cpu``
renders it, written into a new folder (:mod:`lerobot_grids.envs.metaworld_dataset`).
"""

import argparse
from pathlib import Path

from lerobot_grids.envs.metaworld_dataset import REPO_ID, record_metaworld_experts
from lerobot_grids.evidence.benchmarks import METAWORLD
from lerobot_grids.scripts import at_least


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="new folder to write the dataset into")
    parser.add_argument("--repo-id", default=REPO_ID)
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=list(METAWORLD.tasks),
        help="Meta-World v3 task names (default: the comparison's)",
    )
    parser.add_argument("--episodes", type=at_least(1), default=50, help="expert episodes per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=at_least(16), default=224)
    args = parser.parse_args(argv)
    dataset, skipped = record_metaworld_experts(
        args.root, args.tasks, args.episodes, args.repo_id, args.seed, args.image_size
    )
    print(
        f"Wrote {dataset.meta.total_episodes} episodes ({dataset.meta.total_frames} frames) to {args.root}"
        + "".join(
            f"; {task}: {count} expert episodes failed, skipped" for task, count in skipped.items() if count
        )
    )


if __name__ == "__main__":
    main()
