"""``lerobot-grids-metaworld-points``: where GridS policies put their points on Meta-World, from scene to
scene and with the camera moved (:mod:`lerobot_grids.evidence.points_under_shift`).

    lerobot-grids-metaworld-points --checkpoints <pretrained_model folder> [...] --output-dir <new folder>

Writes ``points.json`` (each policy's measures, by its folder's name) and ``points_<name>.png``.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

import imageio.v3 as iio
from lerobot.configs.policies import PreTrainedConfig

from lerobot_grids.envs import MetaWorldCPUEnv
from lerobot_grids.envs.configuration_metaworld import EnvOptionError
from lerobot_grids.envs.metaworld import VARIANTS
from lerobot_grids.evidence.benchmarks import METAWORLD
from lerobot_grids.evidence.demo import EVAL_SEED
from lerobot_grids.evidence.points_under_shift import DEFAULT, points_under_shift
from lerobot_grids.evidence.viz import load_policy
from lerobot_grids.output_folder import check_new, output_folder
from lerobot_grids.scripts import at_least


def sampler_of(checkpoint: Path) -> str | None:
    """The checkpoint's ``--policy.grids.sampler``, or ``None`` for a policy type without GridS."""
    grids = getattr(PreTrainedConfig.from_pretrained(checkpoint), "grids", None)
    return None if grids is None else grids.sampler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoints", type=Path, nargs="+", required=True, help="GridS policies' pretrained_model folders"
    )
    parser.add_argument("--output-dir", type=Path, required=True, help="new folder for the results")
    parser.add_argument("--tasks", nargs="+", default=list(METAWORLD.tasks))
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(METAWORLD.shifted_variants),
        choices=[variant for variant in VARIANTS if variant not in (DEFAULT, "blank")],
        help="shifted variants whose points are compared with the same scenes' in distribution",
    )
    parser.add_argument("--scenes", type=at_least(1), default=5, help="per task, from the evaluation's seed")
    parser.add_argument("--image-size", type=at_least(16), default=METAWORLD.image_size)
    args = parser.parse_args(argv)
    names = [path.name for path in args.checkpoints]
    if len(set(names)) < len(names):
        parser.error(
            f"--checkpoints: the folders' names ({', '.join(names)}) name the results and must differ; "
            "give each policy's folder its own name."
        )
    missing = [str(path) for path in args.checkpoints if not (path / "config.json").is_file()]
    if missing:
        parser.error(f"--checkpoints: no policy (config.json) in {', '.join(missing)}.")
    pointless = [str(path) for path in args.checkpoints if sampler_of(path) in (None, "dense")]
    if pointless:
        parser.error(
            f"--checkpoints: {', '.join(pointless)} sample no points (a dense sampler, or not a GridS "
            "policy); give GridS checkpoints."
        )
    for task in args.tasks:
        try:
            MetaWorldCPUEnv(task=task, image_size=args.image_size)
        except EnvOptionError as error:
            parser.error(
                str(error).replace("--env.task", "--tasks").replace("--env.image_size", "--image-size")
            )
    try:
        check_new(args.output_dir)
    except FileExistsError as error:
        parser.error(str(error))
    command = ["lerobot-grids-metaworld-points", *(sys.argv[1:] if argv is None else argv)]
    results = {
        "command": shlex.join(command),
        "tasks": args.tasks,
        "scenes_per_task": args.scenes,
        "first_seed": EVAL_SEED,
        "policies": {},
    }
    with output_folder(args.output_dir) as output_dir:
        for name, checkpoint in zip(names, args.checkpoints, strict=True):
            policy, preprocessor = load_policy(str(checkpoint), "cpu")
            summary, picture = points_under_shift(
                policy, preprocessor, args.tasks, args.variants, args.scenes, EVAL_SEED, args.image_size
            )
            results["policies"][name] = {"checkpoint": str(checkpoint), **summary}
            iio.imwrite(output_dir / f"points_{name}.png", picture)
            print(name, json.dumps(summary))
        (output_dir / "points.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
