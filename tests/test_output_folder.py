"""One rule for every folder the package's commands write: a new or empty one; nothing is ever overwritten."""

import pytest

from lerobot_grids.demo_dataset import make_so100_demo_dataset
from lerobot_grids.output_folder import check_new, new_dataset_root


def test_a_new_or_empty_folder_is_taken_and_anything_else_refused_naming_the_option(tmp_path):
    check_new(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_new(tmp_path / "empty")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "episode.parquet").write_text("recorded")
    with pytest.raises(FileExistsError, match=r"full already exists and is not empty; choose a new --root"):
        check_new(tmp_path / "full", "--root")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="choose a new --output-dir"):
        check_new(tmp_path / "file")
    assert (tmp_path / "full" / "episode.parquet").read_text() == "recorded"


def test_a_dataset_goes_into_an_empty_folder_and_never_over_one(tmp_path):
    """LeRobot's LeRobotDataset.create makes the dataset's folder itself: an empty one is made room for."""
    (tmp_path / "empty").mkdir()
    assert new_dataset_root(tmp_path / "empty") == tmp_path / "empty" and not (tmp_path / "empty").exists()
    (tmp_path / "empty").mkdir()
    dataset = make_so100_demo_dataset(tmp_path / "empty", num_episodes=1, episode_length=2)
    assert dataset.meta.total_episodes == 1
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        make_so100_demo_dataset(tmp_path / "empty", num_episodes=1, episode_length=2)
    assert dataset.meta.total_episodes == 1
