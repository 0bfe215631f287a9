"""``lerobot-grids-demo``: dense SmolVLA against GridS on the offline tabletop task, with LeRobot's tools.

One run, offline on a CPU, into a new folder: records the scripted expert into a LeRobotDataset, trains
the dense baseline and GridS (K = 16, 4, 1) with ``lerobot-train`` from the shipped pretrained base policy,
evaluates them with LeRobot's evaluation loop in distribution and out of it, measures where the sampler
looks, and writes ``report.md``, ``results.json`` and plots. ``--quick`` is the same pipeline at CI scale.
The pipeline and its checks: :mod:`lerobot_grids.evidence.demo`.
"""

import argparse
from datetime import datetime
from pathlib import Path

from lerobot_grids.evidence.demo import FULL, QUICK, RECIPE, run_demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI scale: fewer episodes, steps and evaluations")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="new folder for everything (default outputs/demo/<date-time>)")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="lerobot-train config file")
    args = parser.parse_args(argv)
    output_dir = args.output_dir or Path("outputs/demo") / datetime.now().strftime("%Y%m%d-%H%M%S")
    command = "lerobot-grids-demo" + (" --quick" if args.quick else "")
    results = run_demo(output_dir, QUICK if args.quick else FULL, args.recipe, command)
    print((output_dir / "report.md").read_text())
    print(f"Report: {output_dir / 'report.md'}")
    failed = [check["claim"] for check in results["checks"] if not check["holds"]]
    if failed:
        print("Not shown by this run:\n- " + "\n- ".join(failed))


if __name__ == "__main__":
    main()
