"""Where a GridS policy looks, on the frames of a LeRobotDataset episode (behind ``lerobot-grids-viz``).

:func:`visualise`, for a ``smolvla_grids`` or ``pi0_grids`` checkpoint (local folder or Hub repo id) and one
episode, writes per camera, on each frame as the policy sees it (resized with padding):

- ``points_<camera>.mp4`` and ``points_<camera>.png`` (a strip): the K sampled points drawn on the frame;
- ``retention_<camera>.png``: the information-retention map (App. I eq. 5) over the frame, and in
  ``summary.json`` its mean per frame and over the episode;
- ``self_similarity_<camera>.png``: the token self-similarity of the dense tokens and of the K tokens
  that reach the language model (Fig. 7 right), on the first frame;
- ``episode.rrd``: the episode's frames as recorded, with the points on them, the state and the recorded
  action over time, to scrub through in rerun's viewer (``rerun episode.rrd``), under the entities of
  LeRobot's live display; ``live_view.png``: its middle frame as the viewer shows it (each camera's image with
  its points).

A checkpoint of a ``lerobot-train`` run needs no other argument: the dataset is read from the run's
``train_config.json`` beside the weights. Nothing is computed past the image embedding, so a checkpoint
takes seconds.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import rerun as rr
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import NormalizationMode
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE
from torch import Tensor

import lerobot_grids.policies  # noqa: F401  (registers the policy types)
from lerobot_grids.evidence.retention import information_retention, token_self_similarity
from lerobot_grids.grids import bilinear_sample
from lerobot_grids.output_folder import new_output_dir
from lerobot_grids.policies import live_view
from lerobot_grids.policies.grids_policy import checkpoint_file
from lerobot_grids.policies.points_picture import camera_frame, draw_dots

TRAIN_CONFIG = "train_config.json"
RECORDING = "episode.rrd"
LIVE_VIEW = "live_view.png"  # the recording's middle frame as the viewer shows it


def load_policy(source: str, device: str):
    config = PreTrainedConfig.from_pretrained(source)
    config.device = device
    policy = get_policy_class(config.type).from_pretrained(source, config=config)
    if not hasattr(policy, "grids_backbone"):
        raise ValueError(
            f"{source} is a {config.type!r} checkpoint: lerobot-grids-viz shows GridS policies "
            "(smolvla_grids, pi0_grids, pi05_grids, act_grids)."
        )
    preprocessor, _ = make_pre_post_processors(policy.config, pretrained_path=source)
    return policy.eval(), preprocessor


def dataset_of_run(source: str) -> tuple[str, str | None, str | None]:
    """The dataset a lerobot-train checkpoint was trained on, and its video backend, from its
    train_config.json.

    A dataset root the run was given relative to the folder it was started from is found from there: a local
    ``<run>/checkpoints/<step>/pretrained_model`` whose run was written to a relative ``output_dir`` tells
    that folder, wherever this command is run from."""
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, TRAIN_CONFIG)):
        raise FileNotFoundError(
            f"{source} has no {TRAIN_CONFIG} to find its training dataset in (a stored checkpoint keeps "
            "none): give the dataset with --dataset-repo-id (and --dataset-root for a local one)."
        )
    train = json.loads(Path(checkpoint_file(source, TRAIN_CONFIG)).read_text())
    dataset, root = train["dataset"], train["dataset"].get("root")
    if (
        root is not None
        and not Path(root).is_absolute()
        and os.path.isdir(source)
        and train.get("output_dir")
    ):
        run, output_dir = Path(source).absolute().parents[2], Path(train["output_dir"])
        depth = len(output_dir.parts)
        if not output_dir.is_absolute() and run.parts[-depth:] == output_dir.parts:
            root = str(run.parents[depth - 1] / root)
    return dataset["repo_id"], root, dataset.get("video_backend")


def episode_count(repo_id: str, root: str | None) -> int:
    """Episodes of a dataset, read from its metadata; a local ``root`` that does not exist is said as such
    (LeRobot would ask the Hub for it and leave the empty folder behind)."""
    if root is not None and not Path(root).is_dir():
        raise FileNotFoundError(
            f"The dataset folder {Path(root).absolute()} does not exist. Give the dataset's folder with "
            "--dataset-root (and its repo id with --dataset-repo-id)."
        )
    return LeRobotDatasetMetadata(repo_id, root=root).total_episodes


def to_rgb(image: Tensor, normalised: bool = False) -> np.ndarray:
    """A ``[3, H, W]`` model input in [-1, 1] as an ``H x W x 3`` uint8 picture; ``normalised`` (ACT's input,
    normalised with the dataset's mean and standard deviation): each channel stretched over 0-255."""
    pixels = image.float().permute(1, 2, 0).cpu().numpy()
    if normalised:
        low, high = pixels.min(axis=(0, 1)), pixels.max(axis=(0, 1))
        return ((pixels - low) / np.maximum(high - low, 1e-6) * 255).round().astype(np.uint8)
    return ((pixels + 1) * 127.5).clip(0, 255).astype(np.uint8)


def draw_points(picture: np.ndarray, points: Tensor, grid_hw: tuple[int, int]) -> np.ndarray:
    """The points (``(0, 0)`` top-left token centre, ``(1, 1)`` bottom-right) as dots on the picture of the
    backbone's input."""
    height, width = picture.shape[:2]
    rows, cols = grid_hw
    pixels = torch.stack(
        [(points[:, 0] * (cols - 1) + 0.5) * width / cols, (points[:, 1] * (rows - 1) + 0.5) * height / rows],
        dim=-1,
    )
    return draw_dots(picture, pixels)


def overlay_map(picture: np.ndarray, values: Tensor, grid_hw: tuple[int, int]) -> np.ndarray:
    """A ``[H*W]`` map in [0, 1] over the picture, red (0) to green (1)."""
    grid = values.view(*grid_hw).clamp(0, 1).cpu().numpy()
    heat = cv2.resize(grid, picture.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    colour = np.stack([(1 - heat) * 255, heat * 255, np.zeros_like(heat)], axis=-1).astype(np.uint8)
    return cv2.addWeighted(picture, 0.5, colour, 0.5, 0)


def strip(pictures: list[np.ndarray], count: int = 8) -> np.ndarray:
    chosen = np.linspace(0, len(pictures) - 1, min(count, len(pictures))).round().astype(int)
    return np.concatenate([pictures[i] for i in chosen], axis=1)


def save_self_similarity(dense: Tensor, sampled: Tensor, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for axis, tokens, name in zip(
        axes, (dense, sampled), ("dense tokens", "tokens to the language model"), strict=True
    ):
        image = axis.imshow(
            token_self_similarity(tokens[None])[0].cpu().numpy(), vmin=-1, vmax=1, cmap="RdBu_r"
        )
        axis.set(title=f"{name} ({tokens.shape[0]})", xlabel="token", ylabel="token")
    figure.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    figure.suptitle(title)
    figure.savefig(path, dpi=110)
    plt.close(figure)


@dataclass
class CameraFrame:
    """What one camera's frame shows: the K points drawn on it as the policy sees it, its retention map (eq.
    5) and that map's mean, the dense and sampled tokens (for the self-similarity plot), and the points in the
    pixels of the frame as recorded."""

    points_picture: np.ndarray
    retention_picture: np.ndarray
    retention_mean: float
    dense_tokens: Tensor
    sampled_tokens: Tensor
    camera_pixels: np.ndarray


@torch.no_grad()
def read_frame(policy, batch: dict) -> dict[str, CameraFrame]:
    """Each camera's :class:`CameraFrame` for one preprocessed frame, as the policy sees it."""
    interpolation = policy.config.grids.interpolation
    images = policy.model_images(batch)  # also sets the instruction context and image regions of the sampler
    normalised = policy.config.normalization_mapping.get("VISUAL") != NormalizationMode.IDENTITY
    frames = {}
    for camera, image, region in zip(
        policy.config.image_features, images, policy.grids_backbone.image_regions, strict=False
    ):
        dense, grid_hw = policy.dense_image_tokens(image)
        tokens, points = policy.sample_image(image, region)
        # Eq. 5 compares the dense tokens with what was read from them (before coordinate encoding); for GridS
        # inside the tower: with what a read of the dense tokens at its points would keep.
        read = bilinear_sample(dense.view(1, *grid_hw, -1), points.to(dense.dtype), interpolation)
        retention = information_retention(dense, read)[0]
        picture = to_rgb(image[0], normalised)
        frames[camera] = CameraFrame(
            points_picture=draw_points(picture, points[0], grid_hw),
            retention_picture=overlay_map(picture, retention, grid_hw),
            retention_mean=retention.mean().item(),
            dense_tokens=dense[0],
            sampled_tokens=tokens[0],
            camera_pixels=policy.points_in_camera(points[0], policy.camera_image_hw[camera]).numpy(),
        )
    return frames


def visualise(
    source: str,
    output_dir: Path,
    repo_id: str | None = None,
    root: str | None = None,
    episode: int = 0,
    max_frames: int = 64,
    device: str = "cpu",
    fps: int = 10,
    video_backend: str | None = None,
) -> dict:
    """Writes the module's pictures for ``episode`` of the dataset (by default the one ``source`` was trained
    on) into ``output_dir``, a new folder, and returns ``summary.json``'s content."""
    output_dir = new_output_dir(output_dir)
    policy, preprocessor = load_policy(source, device)
    if repo_id is None:
        repo_id, root, run_backend = dataset_of_run(source)
        video_backend = video_backend or run_backend
    dataset = LeRobotDataset(repo_id, root=root, episodes=[episode], video_backend=video_backend)
    cameras = [key for key in policy.config.image_features if key in dataset.meta.camera_keys]
    frames = np.linspace(0, dataset.num_frames - 1, min(max_frames, dataset.num_frames)).round().astype(int)
    read = {camera: [] for camera in cameras}
    recording = rr.RecordingStream("lerobot_grids_viz")
    recording.save(output_dir / RECORDING)
    for position, index in enumerate(frames):
        item = dataset[int(index)]
        read_item = read_frame(policy, preprocessor(item))
        for camera in cameras:
            read[camera].append(read_item[camera])
        camera_pixels = {camera: read_item[camera].camera_pixels for camera in cameras}
        log_frame(recording, item, camera_pixels)
        if position == len(frames) // 2:
            iio.imwrite(output_dir / LIVE_VIEW, live_view_picture(item, camera_pixels))
    recording.disconnect()  # closes the file, complete, before anything reads it
    summary = {
        "checkpoint": source,
        "dataset": repo_id,
        "episode": episode,
        "frames": frames.tolist(),
        "grids": vars(policy.config.grids),
        "cameras": {
            camera: write_camera(read[camera], camera, output_dir, fps, frames[0]) for camera in cameras
        },
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def live_view_picture(item: dict, camera_pixels: dict[str, np.ndarray]) -> np.ndarray:
    """A frame as the viewer shows it from what :func:`log_frame` logs: each camera's frame as recorded with
    its points drawn where they are logged, the cameras side by side."""
    pictures = [draw_dots(camera_frame(item[camera]), pixels) for camera, pixels in camera_pixels.items()]
    height = max(picture.shape[0] for picture in pictures)
    return np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in pictures], axis=1)


def log_frame(recording, item: dict, camera_pixels: dict[str, np.ndarray]) -> None:
    """One dataset frame into the episode's rerun recording, on its ``frame_index`` and ``timestamp``
    timelines: each camera's frame as recorded at ``observation.<camera>`` with the policy's points on it
    (``observation.<camera>/grids_points``: the live view's entities), the state and the recorded action."""
    recording.set_time("frame_index", sequence=int(item["frame_index"]))
    recording.set_time("timestamp", duration=float(item["timestamp"]))
    sizes = {camera: tuple(item[camera].shape[-2:]) for camera in camera_pixels}
    for camera in camera_pixels:
        rr.log(live_view.camera_entity(camera), rr.Image(camera_frame(item[camera])), recording=recording)
    live_view.log_points(recording, camera_pixels, sizes)
    for key in (OBS_STATE, ACTION):
        if key in item:
            rr.log(key, rr.Scalars(item[key].float().flatten().numpy()), recording=recording)


def write_camera(
    frames: list[CameraFrame], camera: str, output_dir: Path, fps: int, first_index: int
) -> dict:
    """One camera's video, strips and self-similarity plot (first frame); returns its retention summary."""
    name = camera.removeprefix(f"{OBS_IMAGES}.")
    drawn = [frame.points_picture for frame in frames]
    iio.imwrite(output_dir / f"points_{name}.mp4", np.stack(drawn), fps=fps, codec="libx264")
    iio.imwrite(output_dir / f"points_{name}.png", strip(drawn))
    iio.imwrite(output_dir / f"retention_{name}.png", strip([frame.retention_picture for frame in frames]))
    save_self_similarity(
        frames[0].dense_tokens,
        frames[0].sampled_tokens,
        output_dir / f"self_similarity_{name}.png",
        f"{name}, frame {first_index}",
    )
    means = [frame.retention_mean for frame in frames]
    return {"retention_per_frame": means, "retention_mean": float(np.mean(means))}
