"""``lerobot-grids-metaworld-rendering``: one policy's Meta-World success at ``meta_world_cpu``'s rendering
and at LeRobot's own, on the same scenes (:mod:`lerobot_grids.evidence.metaworld_rendering`).

    lerobot-grids-metaworld-rendering --checkpoint <pretrained_model folder> --output <new file.json>
"""

import argparse
import json
from pathlib import Path

from lerobot_grids.evidence.benchmarks import METAWORLD
from lerobot_grids.evidence.metaworld_rendering import rendering_check
from lerobot_grids.scripts import at_least


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="a trained policy's pretrained_model folder"
    )
    parser.add_argument("--output", type=Path, required=True, help="new JSON file for the result")
    parser.add_argument("--tasks", nargs="+", default=list(METAWORLD.tasks))
    parser.add_argument("--episodes", type=at_least(1), default=5, help="per task and rendering")
    parser.add_argument("--episode-length", type=at_least(1), default=METAWORLD.episode_length)
    args = parser.parse_args(argv)
    if args.output.exists():
        parser.error(f"{args.output} already exists; choose a new file (nothing is overwritten).")
    result = rendering_check(args.checkpoint, args.tasks, args.episodes, args.episode_length)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    for name, by_task in result["success"].items():
        print(name, by_task)


if __name__ == "__main__":
    main()
