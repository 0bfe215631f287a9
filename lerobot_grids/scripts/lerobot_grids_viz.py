"""``lerobot-grids-viz``: where a GridS policy looks, on the frames of a LeRobotDataset episode.

For a ``smolvla_grids`` or ``pi0_grids`` checkpoint (local folder or Hub repo id) and one episode, writes
per camera the K sampled points on the frames (``points_<camera>.mp4`` and ``.png``), the
information-retention map (``retention_<camera>.png``, App. I eq. 5) and the token self-similarity
(``self_similarity_<camera>.png``, Fig. 7 right), a rerun recording of the episode with the points,
state and actions over time (``episode.rrd``: ``rerun episode.rrd``), and ``summary.json``. A checkpoint of a
``lerobot-train`` run needs no other argument: the dataset is read from the run's ``train_config.json``
beside the weights. What each file shows: :mod:`lerobot_grids.evidence.viz`.
"""

import argparse
from datetime import datetime
from pathlib import Path

from lerobot_grids.evidence.viz import dataset_of_run, episode_count, visualise
from lerobot_grids.output_folder import check_new, output_folder
from lerobot_grids.scripts import at_least


def default_output_dir(checkpoint: str) -> Path:
    """``outputs/viz/<checkpoint name>-<date-time>``; a ``lerobot-train`` checkpoint
    (``<run>/checkpoints/<step>/pretrained_model``) is named ``<run>_<step>``, a Hub repo id
    ``<user>_<name>``."""
    path = Path(checkpoint)
    if path.name == "pretrained_model" and path.parent.parent.name == "checkpoints":
        name = f"{path.parents[2].name}_{path.parent.name}"
    else:
        name = "_".join(path.parts[-2:]) if not path.is_dir() else path.name
    return Path("outputs/viz") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "checkpoint", help="smolvla_grids / pi0_grids checkpoint: local folder or Hub repo id"
    )
    parser.add_argument("--dataset-repo-id", help="default: the dataset of the checkpoint's training run")
    parser.add_argument("--dataset-root")
    parser.add_argument("--episode", type=at_least(0), default=0)
    parser.add_argument(
        "--video-backend", help="pyav or torchcodec (default: the training run's, else LeRobot's)"
    )
    parser.add_argument(
        "--max-frames", type=at_least(1), default=64, help="frames taken evenly over the episode"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--output-dir", type=Path, help="new folder (default: outputs/viz/<checkpoint name>-<date-time>)"
    )
    args = parser.parse_args(argv)
    output_dir = args.output_dir or default_output_dir(args.checkpoint)
    try:
        check_new(output_dir)
        repo_id, root, video_backend = args.dataset_repo_id, args.dataset_root, args.video_backend
        if repo_id is None:
            repo_id, root, run_backend = dataset_of_run(args.checkpoint)
            video_backend = video_backend or run_backend
        episodes = episode_count(repo_id, root)
    except (FileExistsError, FileNotFoundError) as error:
        parser.error(str(error))
    if args.episode >= episodes:
        parser.error(
            f"--episode {args.episode}: the dataset {repo_id} has {episodes} episodes (0 to {episodes - 1})."
        )
    with output_folder(output_dir):
        summary = visualise(
            args.checkpoint,
            output_dir,
            repo_id,
            root,
            args.episode,
            args.max_frames,
            args.device,
            video_backend=video_backend,
        )
    for camera, values in summary["cameras"].items():
        print(f"{camera}: mean information retention {values['retention_mean']:.3f}")
    print(f"Wrote {output_dir}")


if __name__ == "__main__":
    main()
