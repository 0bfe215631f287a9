"""``lerobot-grids-tabletop-pretrain``: the base policy the demo fine-tunes, pretrained on tabletop scenes.

Grounding (the tiny SmolVLM), then reach (the action expert), on fresh scenes of the tabletop task; writes
a dense ``smolvla`` checkpoint with its processors into a new folder, for ``--policy.init_from``
(``make pretrain``; ``lerobot_grids/assets/grids_tabletop_smolvla`` is the shipped one). The stages:
:mod:`lerobot_grids.envs.tabletop_pretrain`.
"""

import argparse
from pathlib import Path

from lerobot_grids.envs.tabletop_pretrain import pretrain


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, required=True, help="new folder for the checkpoint")
    parser.add_argument("--steps", type=int, default=1500, help="grounding steps")
    parser.add_argument("--reach-steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3, help="grounding learning rate")
    parser.add_argument("--reach-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = pretrain(args.output_dir, args.steps, args.reach_steps, args.batch_size, args.lr, args.reach_lr,
                       seed=args.seed)
    grounded, reached = results["history"][-1]["validation"], results["reach_history"][-1:]
    print(f"Wrote {args.output_dir}: validation position error {grounded['position_error']:.3f} "
          f"(mean guess {results['before']['position_error_of_mean_guess']:.3f}), referring loss "
          f"{grounded['referring']:.4f}" + (f", reach goal error {reached[0]['validation']['goal_error']:.3f} (mean guess "
                                            f"{results['before']['goal_error_of_mean_guess']:.3f})" if reached else ""))


if __name__ == "__main__":
    main()
