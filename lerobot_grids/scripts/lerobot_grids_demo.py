"""``lerobot-grids-demo``: dense SmolVLA against GridS on the offline tabletop task or Meta-World, with
LeRobot's tools.

One run, offline on a CPU, into a new folder: records the scripted experts into a LeRobotDataset, trains
the dense baseline and GridS (K = 16, 4, 1; other samplers and predictors with ``--models``) with
``lerobot-train`` from the shipped pretrained base policy, once per ``--seeds`` seed, evaluates them with
LeRobot's evaluation loop in distribution and out of it, measures where the sampler looks, and writes
``report.md``, ``results.json`` and plots. ``--quick`` is the same pipeline at CI scale. A run that was
interrupted continues with ``--resume`` (same options); ``--render`` writes a run folder's report again;
``--store`` copies a run's report with its first seed's checkpoints into the repository's ``docs/``.
The pipeline and its checks: :mod:`lerobot_grids.evidence.demo`.
"""

import argparse
from datetime import datetime
from pathlib import Path

from lerobot_grids.evidence.benchmarks import BENCHMARKS
from lerobot_grids.evidence.demo import FULL, KINDS, SCALES, default_models, render, run_demo
from lerobot_grids.evidence.store_run import store_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--benchmark",
        choices=list(BENCHMARKS),
        default="tabletop",
        help="task suite: our tabletop task (default) or Meta-World (needs the metaworld extra)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI scale: fewer episodes, steps and evaluations"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="new folder for everything (default outputs/demo/<date-time>)",
    )
    parser.add_argument(
        "--recipe",
        default=None,
        help="lerobot-train config: a file or a shipped config's name (default: smolvla_grids_<suite>)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1000],
        help="lerobot-train seeds; every policy is trained once per seed (default: 1000)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="policies to train: dense and <kind>_k<K>, kind one of "
        + ", ".join(KINDS)
        + "; ACT: act (dense) and act_k<K>"
        + f" (default: {' '.join(default_models(FULL))}; --quick: without K=1)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="finish the run that was interrupted in --output-dir (the same options; --models may "
        "add policies to it)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RUN_DIR",
        default=None,
        help="write the report and plots of a run folder again from what it stored, and exit",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="RUN_DIR",
        default=None,
        help="store a run folder (finished or not) in --output-dir, a new folder (e.g. docs/demo/<name>), "
        "with the first seed's checkpoints of --models (default: dense and every GridS policy at K=16 and "
        "K=1), made to run from the repository root on any machine, and exit",
    )
    return parser


def command_line(args: argparse.Namespace) -> str:
    """The command as the run stores it: the options that change what is run (not where it is written)."""
    return " ".join(
        [
            "lerobot-grids-demo",
            *([f"--benchmark {args.benchmark}"] if args.benchmark != "tabletop" else []),
            *(["--quick"] if args.quick else []),
            *(["--seeds", *map(str, args.seeds)] if args.seeds != [1000] else []),
            *(["--models", *args.models] if args.models else []),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.render is not None and args.store is not None:
        parser.error("--render and --store are two separate commands: give one.")
    if args.render is not None:
        results = render(args.render)
        output_dir = args.render
    elif args.store is not None:
        if args.output_dir is None:
            parser.error("--store needs --output-dir, the new folder to store the run in (docs/demo/<name>).")
        try:
            results = store_run(args.store, args.output_dir, args.models)
        except (ValueError, FileExistsError, FileNotFoundError) as error:
            parser.error(str(error))
        output_dir = args.output_dir
    else:
        if args.resume and args.output_dir is None:
            parser.error("--resume needs the --output-dir of the run to finish.")
        output_dir = args.output_dir or Path("outputs/demo") / datetime.now().strftime("%Y%m%d-%H%M%S")
        results = run_demo(
            output_dir,
            SCALES[args.benchmark, args.quick],
            args.recipe,
            command_line(args),
            args.seeds,
            args.models,
            args.resume,
            BENCHMARKS[args.benchmark],
        )
    print((output_dir / "report.md").read_text())
    print(f"Report: {output_dir / 'report.md'}")
    failed = [check["claim"] for check in results.get("checks", []) if not check["holds"]]
    if failed:
        print("Not shown by this run:\n- " + "\n- ".join(failed))


if __name__ == "__main__":
    main()
