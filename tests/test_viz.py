"""``lerobot-grids-viz`` on checkpoints of the offline dataset."""

import json
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import DATASET_REPO_ID, make_config
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from rerun_recording import logged_components, logged_images, read_points
from test_lerobot_train import _tiny_args, lerobot_train

from lerobot_grids.evidence import viz
from lerobot_grids.policies.pi0_grids.modeling_pi0_grids import PI0GridsPolicy
from lerobot_grids.policies.pi0_grids.processor_pi0_grids import make_pi0_grids_pre_post_processors
from lerobot_grids.policies.points_picture import POINT_RGB
from lerobot_grids.scripts import lerobot_grids_viz


def test_points_are_drawn_at_their_token_centres():
    picture = np.zeros((128, 128, 3), dtype=np.uint8)
    drawn = viz.draw_points(picture, torch.tensor([[0.0, 0.0], [1.0, 1.0 / 3]]), (4, 4))
    # A 4x4 grid over 128 pixels: token centres at 16, 48, 80, 112.
    assert tuple(drawn[16, 16]) == POINT_RGB and tuple(drawn[48, 112]) == POINT_RGB
    assert tuple(drawn[80, 80]) == (0, 0, 0)


def test_a_training_checkpoint_needs_no_other_argument(dataset_root, tmp_path, monkeypatch):
    run = tmp_path / "run"
    # The instruction-conditioned content-addressed predictor: lerobot-train's parser takes its options, and
    # the points drawn are those the policy computes with the episode's instruction.
    lerobot_train(
        "--policy.type=smolvla_grids",
        "--policy.grids.num_tokens=3",
        "--policy.grids.predictor=attention",
        "--policy.grids.instruction=true",
        *_tiny_args(dataset_root, run, 2),
    )
    checkpoint = run / "checkpoints" / "last" / "pretrained_model"
    monkeypatch.chdir(tmp_path)
    lerobot_grids_viz.main([str(checkpoint), "--max-frames", "5"])
    # outputs/viz/<run>_<step>-<date-time>, not inside the checkpoint
    [output] = (tmp_path / "outputs" / "viz").iterdir()
    assert re.fullmatch(r"run_last-\d{8}-\d{6}", output.name)
    assert sorted(path.name for path in checkpoint.parent.iterdir()) == ["pretrained_model", "training_state"]
    summary = json.loads((output / "summary.json").read_text())
    assert json.loads((checkpoint / "config.json").read_text())["grids"]["predictor"] == "attention"
    assert summary["dataset"] == DATASET_REPO_ID and len(summary["frames"]) == 5
    for camera in ("front", "wrist"):
        assert iio.imread(output / f"points_{camera}.mp4").shape[:2] == (5, 128)  # 5 frames of 128x128
        assert iio.imread(output / f"points_{camera}.png").shape == (128, 5 * 128, 3)
        assert iio.imread(output / f"retention_{camera}.png").shape == (128, 5 * 128, 3)
        assert (output / f"self_similarity_{camera}.png").read_bytes()[:4] == b"\x89PNG"
        retention = summary["cameras"][f"observation.images.{camera}"]
        assert len(retention["retention_per_frame"]) == 5 and -1 <= retention["retention_mean"] <= 1
    # The rerun recording: each frame as recorded with the points drawn on the pictures, the state and action.
    points, images = read_points(output / "episode.rrd"), logged_images(output / "episode.rrd")
    assert images == {"observation.front", "observation.wrist"}
    by_frame = logged_components(output / "episode.rrd", index="frame_index")
    assert [frame for frame, _ in by_frame["observation.front:Image:buffer"]] == summary["frames"]
    first_frame, first_action = by_frame["action:Scalars:scalars"][0]
    assert first_frame == summary["frames"][0]
    assert first_action == pytest.approx(
        LeRobotDataset(DATASET_REPO_ID, root=dataset_root)[summary["frames"][0]]["action"].tolist()
    )
    for camera in ("front", "wrist"):
        logged = points[f"observation.{camera}/grids_points"]
        assert len(logged) == 5 and all(len(frame) == 3 for frame in logged)
        # Drawn on the recorded 48x64 frame where points_<camera>.png draws them on the 128x128 input (the
        # frame under 32 rows of padding): x scaled by 2, y by 2 after the padding.
        strip = iio.imread(output / f"points_{camera}.png")
        for x, y in logged[-1]:
            assert tuple(strip[int(32 + 2 * y), 4 * 128 + int(2 * x)]) == POINT_RGB
    # Its middle frame as the viewer shows it: the recorded 48x64 frames side by side, the dots where the
    # recording has the points, the frames as recorded elsewhere.
    live = iio.imread(output / "live_view.png")
    middle = summary["frames"][2]
    assert live.shape == (48, 128, 3)
    for offset, camera in ((0, "front"), (64, "wrist")):
        for x, y in points[f"observation.{camera}/grids_points"][2]:
            assert tuple(live[int(y), offset + int(x)]) == POINT_RGB
    recorded = viz.camera_frame(
        LeRobotDataset(DATASET_REPO_ID, root=dataset_root)[middle]["observation.images.front"]
    )
    assert (live[:, :64] == recorded).all(-1).mean() > 0.8
    with pytest.raises(SystemExit):  # refused with the usage, before anything is loaded
        lerobot_grids_viz.main([str(checkpoint), "--output-dir", str(output)])


def _run_started_elsewhere(checkpoint, dataset_root, work) -> Path:
    """A lerobot-train run started in ``work`` with a relative --dataset.root and --output_dir (as README
    commands are)."""
    shutil.copytree(dataset_root, work / "data" / "so100")
    folder = work / "outputs" / "train" / "run" / "checkpoints" / "000002" / "pretrained_model"
    shutil.copytree(checkpoint, folder)
    train = {"dataset": {"repo_id": DATASET_REPO_ID, "root": "data/so100"}, "output_dir": "outputs/train/run"}
    (folder / "train_config.json").write_text(json.dumps(train))
    return folder


def test_a_run_with_a_relative_dataset_root_is_read_from_any_folder(
    checkpoint, dataset_root, tmp_path, monkeypatch
):
    folder = _run_started_elsewhere(checkpoint, dataset_root, tmp_path / "work")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    lerobot_grids_viz.main([str(folder), "--max-frames", "2", "--episode", "1"])
    assert [path.name for path in (tmp_path / "elsewhere").iterdir()] == [
        "outputs"
    ]  # no stray dataset folder
    [output] = (tmp_path / "elsewhere" / "outputs" / "viz").iterdir()
    assert json.loads((output / "summary.json").read_text())["episode"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--episode", "99"], r"--episode 99: the dataset local/so100_grids_test has 2 episodes \(0 to 1\)"),
        (["--max-frames", "0"], "argument --max-frames: must be at least 1, got 0"),
        (
            ["--dataset-root", "missing"],
            r"The dataset folder .*missing does not exist. Give the dataset's folder",
        ),
    ],
)
def test_bad_arguments_are_refused_before_any_work_and_leave_nothing(
    checkpoint, dataset_root, tmp_path, monkeypatch, capsys, args, message
):
    folder = _run_started_elsewhere(checkpoint, dataset_root, tmp_path / "work")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    extra = ["--dataset-repo-id", DATASET_REPO_ID] if "--dataset-root" in args else []
    with pytest.raises(SystemExit) as exit_info:
        lerobot_grids_viz.main([str(folder), *args, *extra])
    assert exit_info.value.code == 2 and re.search(message, capsys.readouterr().err.strip().splitlines()[-1])
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_checkpoint_without_its_training_run_asks_for_the_dataset(checkpoint, tmp_path, capsys):
    """A stored checkpoint (``lerobot-grids-demo --store`` keeps no train_config.json) names no dataset."""
    stored = tmp_path / "stored"
    shutil.copytree(checkpoint, stored, ignore=shutil.ignore_patterns("train_config.json"))
    with pytest.raises(SystemExit) as exit_info:
        lerobot_grids_viz.main([str(stored), "--output-dir", str(tmp_path / "viz")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and "has no train_config.json" in last and "--dataset-repo-id" in last
    assert not (tmp_path / "viz").exists()


def test_a_failed_run_leaves_no_output_folder(checkpoint, dataset_root, tmp_path, monkeypatch):
    folder = _run_started_elsewhere(checkpoint, dataset_root, tmp_path / "work")
    monkeypatch.setattr(lerobot_grids_viz, "visualise", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        lerobot_grids_viz.main([str(folder), "--output-dir", str(tmp_path / "viz" / "new")])
    assert not (tmp_path / "viz").exists()


def test_default_output_folder_names_a_hub_checkpoint_or_a_folder(tmp_path):
    hub = lerobot_grids_viz.default_output_dir("user/smolvla_grids_so100")
    assert hub.parent == Path("outputs/viz") and re.fullmatch(
        r"user_smolvla_grids_so100-\d{8}-\d{6}", hub.name
    )
    assert lerobot_grids_viz.default_output_dir(str(tmp_path)).name.startswith(f"{tmp_path.name}-")


def test_dense_pi0_keeps_all_information(dataset_root, tmp_path):
    """With every token kept, each dense token is its own sample: retention 1 everywhere."""
    config = make_config("pi0_grids", dataset_root=dataset_root, grids={"sampler": "dense"})
    checkpoint = tmp_path / "pi0"
    PI0GridsPolicy(config).save_pretrained(checkpoint)
    stats = LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta.stats
    for processor in make_pi0_grids_pre_post_processors(config, dataset_stats=stats):
        processor.save_pretrained(checkpoint)
    summary = viz.visualise(
        str(checkpoint), tmp_path / "viz", DATASET_REPO_ID, str(dataset_root), episode=1, max_frames=3
    )
    for camera in summary["cameras"].values():
        assert camera["retention_mean"] == pytest.approx(1.0, abs=1e-5)
    # 64 points (the 8x8 token centres) drawn on each 112x112 frame.
    assert iio.imread(tmp_path / "viz" / "points_front.png").shape == (112, 3 * 112, 3)
