"""``lerobot-grids-tabletop-pretrain``: the base policy the demo fine-tunes, pretrained on tabletop scenes.

Grounding (the tiny SmolVLM), then reach (the action expert), on fresh scenes of the tabletop task; writes
a dense ``smolvla`` checkpoint with its processors into a new folder, for ``--policy.init_from``
(``make pretrain``; ``lerobot_grids/assets/grids_tabletop_smolvla`` is the shipped one). The stages:
:mod:`lerobot_grids.evidence.tabletop_pretrain`.

``--transformers5-copy-of <checkpoint>`` instead writes a copy of a checkpoint pretrained under transformers 4
(LeRobot 0.4.4) that computes the same under transformers 5 (LeRobot 0.5+); the shipped
``grids_tabletop_smolvla_transformers5`` is ``--transformers5-copy-of
lerobot_grids/assets/grids_tabletop_smolvla``.
"""

import argparse
from pathlib import Path

from lerobot_grids.evidence.tabletop_pretrain import pretrain, write_transformers5_checkpoint
from lerobot_grids.scripts import at_least


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, required=True, help="new folder for the checkpoint")
    parser.add_argument("--steps", type=at_least(1), default=1500, help="grounding steps")
    parser.add_argument("--reach-steps", type=at_least(0), default=2500)
    parser.add_argument("--batch-size", type=at_least(1), default=32)
    parser.add_argument("--lr", type=float, default=3e-3, help="grounding learning rate")
    parser.add_argument("--reach-lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--transformers5-copy-of",
        type=Path,
        metavar="CHECKPOINT",
        help="write a transformers-5 copy of this transformers-4 checkpoint instead of pretraining",
    )
    args = parser.parse_args(argv)
    if args.transformers5_copy_of is not None:
        print(f"Wrote {write_transformers5_checkpoint(args.transformers5_copy_of, args.output_dir)}")
        return
    results = pretrain(
        args.output_dir, args.steps, args.reach_steps, args.batch_size, args.lr, args.reach_lr, seed=args.seed
    )
    grounded, reached = results["history"][-1]["validation"], results["reach_history"][-1:]
    print(
        f"Wrote {args.output_dir}: validation position error {grounded['position_error']:.3f} "
        f"(mean guess {results['before']['position_error_of_mean_guess']:.3f}), referring loss "
        f"{grounded['referring']:.4f}"
        + (
            f", reach goal error {reached[0]['validation']['goal_error']:.3f} (mean guess "
            f"{results['before']['goal_error_of_mean_guess']:.3f})"
            if reached
            else ""
        )
    )


if __name__ == "__main__":
    main()
