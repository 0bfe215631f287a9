"""GridS points in LeRobot's live viewer (rerun): each action chunk's points, in the pixels of the camera
image they were read from, under the entity LeRobot logs that image to; nothing while the display is off."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import rerun as rr
import torch
from conftest import DATASET_REPO_ID, make_batch, make_config
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import make_pre_post_processors
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE
from rerun_recording import read_points
from test_image_region import policy_and_batch
from torch.nn.functional import adaptive_avg_pool2d

from lerobot_grids.grids import bilinear_sample, region_points_to_grid
from lerobot_grids.policies import live_view
from lerobot_grids.policies.points_picture import CELL_HEIGHT, POINT_RGB, camera_frame, where_it_looks
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy

# Cameras resized with padding on the top (4:3) or the left (3:4) for SmolVLA, on both sides for pi0, as they
# come for ACT.
CAMERAS = [
    ("smolvla_grids", (48, 64)),
    ("smolvla_grids", (64, 48)),
    ("smolvla_grids", (64, 64)),
    ("pi0_grids", (48, 64)),
    ("pi0_grids", (64, 48)),
    ("act_grids", (48, 64)),
]


@pytest.mark.parametrize(("policy_type", "image_hw"), CAMERAS)
def test_a_point_names_the_camera_pixel_it_was_read_from(policy_type, image_hw):
    """A ramp camera image (each pixel's value its own x and y): read at a point as the sampler reads its
    token grid (bilinear interpolation between token centres), from the backbone's input pooled into
    token-sized patches (a linear ramp's mean over a patch is its value at the patch centre), it gives back
    the camera coordinates that ``points_in_camera`` names for the point."""
    policy, _ = policy_and_batch(policy_type, image_hw, {})
    height, width = image_hw
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    key = next(iter(policy.config.image_features))

    def backbone_input(image):
        return policy.family_model_images({key: image[None]})[0][0].float()

    ramp = backbone_input(torch.stack([xs / width, ys / height, torch.full_like(xs, 0.5)]))
    rows, cols = policy.token_grid(tuple(ramp.shape[-2:]))
    top, bottom, left, right = policy.image_region(image_hw) or (0, rows - 1, 0, cols - 1)

    def patches(image):
        return adaptive_avg_pool2d(image, (rows, cols)).permute(1, 2, 0)[None]

    # The family's normalisation of a pixel value (SmolVLA and pi0: 2v - 1), from a black and a white image.
    black = patches(backbone_input(torch.zeros(3, height, width)))[0, top, left]
    white = patches(backbone_input(torch.ones(3, height, width)))[0, top, left]
    torch.manual_seed(1)
    points = region_points_to_grid(torch.rand(1, 32, 2), (rows, cols), (top, bottom, left, right))
    read = (bilinear_sample(patches(ramp), points)[0] - black) / (white - black)
    pixels = policy.points_in_camera(points[0], image_hw)
    assert (pixels >= 0).all() and (pixels[:, 0] <= width).all() and (pixels[:, 1] <= height).all()
    torch.testing.assert_close(read[:, 0] * width, pixels[:, 0], atol=0.05 * width / cols, rtol=0)
    torch.testing.assert_close(read[:, 1] * height, pixels[:, 1], atol=0.05 * height / rows, rtol=0)


def test_each_chunk_logs_its_points_on_each_cameras_image(checkpoint, dataset_root, tmp_path):
    """Where LeRobot's display started a rerun recording, every new action chunk logs each camera's K points
    (batch item 0, as the record and rollout loops act on one observation) under
    ``observation.<camera>/grids_points``, beneath the image LeRobot logs at ``observation.<camera>``."""
    policy = SmolVLAGridsPolicy.from_pretrained(checkpoint)
    frames = make_batch(policy.config, dataset_root, size=3)
    recording = rr.RecordingStream("lerobot_grids_test")
    path = tmp_path / "live.rrd"
    recording.save(path)
    expected = []
    with recording:  # the active recording, as LeRobot's init_rerun makes its own
        for index in range(3):
            policy.reset()
            policy.select_action(
                {
                    key: value[index : index + 1] if isinstance(value, torch.Tensor | list) else value
                    for key, value in frames.items()
                }
            )
            expected.append(policy.camera_points())
    recording.flush()
    logged = read_points(path)
    assert set(logged) == {"observation.front/grids_points", "observation.wrist/grids_points"}
    for camera in ("front", "wrist"):
        chunks = logged[f"observation.{camera}/grids_points"]
        assert len(chunks) == 3
        for points, chunk in zip(chunks, expected, strict=True):
            assert len(points) == 4  # K
            torch.testing.assert_close(
                torch.tensor(points), torch.from_numpy(chunk[f"observation.images.{camera}"][0]).float()
            )
    # The frames differ, and so do their points: each log is its own chunk's.
    front = logged["observation.front/grids_points"]
    assert not torch.equal(torch.tensor(front[0]), torch.tensor(front[1]))


def test_with_the_display_off_nothing_is_computed(checkpoint, dataset_root, monkeypatch):
    policy = SmolVLAGridsPolicy.from_pretrained(checkpoint)
    assert live_view.active_recording() is None

    def refuse():
        raise AssertionError("points mapped with the display off")

    monkeypatch.setattr(policy, "camera_points", refuse)
    assert torch.isfinite(policy.select_action(make_batch(policy.config, dataset_root, size=1))).all()


def test_the_card_picture_draws_each_cameras_points_on_its_frames(checkpoint, dataset_root):
    """Rows the cameras, columns frames evenly over the first episode, each frame as recorded (4:3, unpadded)
    with a dot at each point the policy reads there, placed as the live view places them."""
    policy = SmolVLAGridsPolicy.from_pretrained(checkpoint)
    dataset = LeRobotDataset(DATASET_REPO_ID, root=dataset_root, episodes=[0])
    preprocessor, _ = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    picture = where_it_looks(policy, preprocessor, dataset, frames=2)
    scale = CELL_HEIGHT / 48  # the test cameras' 48x64 frames
    assert picture.shape == (2 * CELL_HEIGHT, 2 * round(64 * scale), 3)
    for column, index in enumerate((0, dataset.num_frames - 1)):
        images = policy.model_images(preprocessor(dataset[index]))
        for row, camera in enumerate(policy.config.image_features):
            region = policy.grids_backbone.image_regions[row]
            points = policy.points_in_camera(policy.sample_image(images[row], region)[1][0], (48, 64))
            for x, y in (points * scale).tolist():
                pixel = picture[row * CELL_HEIGHT + int(y), column * round(64 * scale) + int(x)]
                assert tuple(pixel) == POINT_RGB, (camera, index, x, y, pixel)
    # Away from the dots, the frame as recorded.
    first = cv2.resize(camera_frame(dataset[0]["observation.images.front"]), (round(64 * scale), CELL_HEIGHT))
    assert (np.abs(picture[:CELL_HEIGHT, : first.shape[1]].astype(int) - first) <= 1).mean() > 0.9


def tabletop_policy(folder) -> tuple[Path, np.ndarray]:
    """A tiny smolvla_grids policy for the tabletop's cameras (front and wrist, 128x128) whose points are
    fixed (the paper's predictor with its last layer's weights zeroed reads at its starting points whatever
    the frame), saved with its processors; and those points in the cameras' pixels."""
    config = make_config(grids={"num_tokens": 4})
    camera = PolicyFeature(type=FeatureType.VISUAL, shape=(3, 128, 128))
    config.input_features = {
        f"{OBS_IMAGES}.front": camera,
        f"{OBS_IMAGES}.wrist": camera,
        OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(3,)),
    }
    config.output_features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(3,))}
    policy = SmolVLAGridsPolicy(config)
    with torch.no_grad():
        policy.grids.point_predictor[-1].weight.zero_()
    policy.save_pretrained(folder)
    unit = {"mean": torch.zeros(3), "std": torch.ones(3), "min": -torch.ones(3), "max": torch.ones(3)}
    for processor in make_pre_post_processors(config, dataset_stats={OBS_STATE: unit, ACTION: unit}):
        processor.save_pretrained(folder)
    start = torch.sigmoid(policy.grids.point_predictor[-1].bias.detach()).view(1, -1, 2)
    return folder, policy.points_in_camera(start[0], (128, 128)).numpy()


def eval_video(policy: Path, output: Path, *options: str) -> np.ndarray:
    """The frames of lerobot-eval's video of one tabletop episode (seed 1000, one env in this process)."""
    command = [
        sys.executable,
        "-m",
        "lerobot.scripts.lerobot_eval",
        f"--policy.path={policy}",
        "--env.type=grids_tabletop",
        "--env.episode_length=8",
        "--eval.n_episodes=1",
        "--eval.batch_size=1",
        "--eval.use_async_envs=false",
        "--policy.device=cpu",
        "--seed=1000",
        f"--output_dir={output}",
        *options,
    ]
    finished = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    [video] = output.rglob("*.mp4")
    return iio.imread(video)


def test_eval_videos_with_points_differ_only_where_the_points_are_drawn(tmp_path):
    """``lerobot-eval --env.show_points=true`` (LeRobot's loop and video writer): the same episode as without
    the option, each frame after the first chunk with dots at the policy's points on both cameras (front and
    wrist side by side), and no other change beyond the video codec's blur around them."""
    policy, points = tabletop_policy(tmp_path / "policy")
    plain = eval_video(policy, tmp_path / "plain").astype(int)
    shown = eval_video(policy, tmp_path / "shown", "--env.show_points=true").astype(int)
    assert plain.shape == shown.shape and plain.shape[1:] == (128, 256, 3)
    codec_blur = 64  # the most the video codec changes a pixel by, between two runs, away from any dot
    assert np.abs(shown[0] - plain[0]).max() <= codec_blur  # rendered after the reset: no chunk, no points
    dots = np.concatenate([points, points + [128, 0]])  # the front camera's, then the wrist's
    ys, xs = np.mgrid[:128, :256]
    near = np.min(np.hypot(xs[..., None] - dots[:, 0], ys[..., None] - dots[:, 1]), axis=-1) <= 2 + 6
    for frame_plain, frame_shown in zip(plain[1:], shown[1:], strict=True):
        changed = np.abs(frame_shown - frame_plain).max(-1) > codec_blur
        assert changed.any() and not (changed & ~near).any()
        for x, y in dots.astype(int):  # the dot's colour at each point (the codec keeps it near)
            assert np.abs(frame_shown[y, x] - POINT_RGB).max() <= 90, (x, y, frame_shown[y, x])


def test_points_are_not_shown_from_worker_processes():
    from lerobot_grids.envs import GridSTabletopEnv

    with pytest.raises(ValueError, match="add --eval.use_async_envs=false"):
        GridSTabletopEnv(show_points=True).create_envs(n_envs=2, use_async_envs=True)


def decoded(message):
    """A Foxglove message as it goes on the wire (protobuf), decoded with its own schema."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    schema = message.get_schema()
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(bytes(schema.data)).file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema.name)).FromString(
        bytes(message.encode())
    )


class SentMessages:
    """Stands for one Foxglove channel (the WebSocket's boundary): keeps what is logged on it."""

    def __init__(self):
        self.messages = []

    def log(self, message, **_):
        self.messages.append(decoded(message))


def test_with_lerobots_foxglove_display_each_chunk_sends_its_points(checkpoint, dataset_root):
    """LeRobot 0.6's other display backend, its Foxglove server started as ``--display_mode=foxglove`` starts
    it (on the loopback): every chunk sends each camera's K points, in its image's pixels, as one
    ``PointsAnnotation`` on the topic beside the image's, through LeRobot's channel cache."""
    visualization = pytest.importorskip("lerobot.utils.foxglove_visualization", reason="LeRobot 0.6's")
    try:
        import foxglove  # noqa: F401
    except ImportError as error:  # its native library needs libusb-1.0 on the machine
        pytest.skip(f"foxglove-sdk does not load here: {error}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    visualization.init_foxglove(host="127.0.0.1", port=port)
    try:
        channels = live_view.active_foxglove_channels()
        assert channels == {}
        sent = {camera: SentMessages() for camera in ("front", "wrist")}
        channels.update({f"/observation/images/{camera}/grids_points": sent[camera] for camera in sent})
        policy = SmolVLAGridsPolicy.from_pretrained(checkpoint)
        frames = make_batch(policy.config, dataset_root, size=2)
        expected = []
        for index in range(2):
            policy.reset()
            policy.select_action(
                {
                    key: value[index : index + 1] if isinstance(value, torch.Tensor | list) else value
                    for key, value in frames.items()
                }
            )
            expected.append(policy.camera_points())
    finally:
        visualization.shutdown_foxglove()
    assert live_view.active_foxglove_channels() is None
    for camera, channel in sent.items():
        assert len(channel.messages) == 2
        for message, chunk in zip(channel.messages, expected, strict=True):
            (annotation,) = message.points
            points = [[point.x, point.y] for point in annotation.points]
            np.testing.assert_allclose(points, chunk[f"observation.images.{camera}"][0], rtol=0, atol=1e-4)
