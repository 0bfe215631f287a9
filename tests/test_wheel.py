"""The wheel is the product: installed into a fresh environment outside the checkout, beside the LeRobot
already installed, it carries every shipped config, asset and the license, and its commands find them from any
folder."""

import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from run_installed import install_wheel  # tools/ (conftest puts it on the path)

from lerobot_grids.configs import CONFIGS_DIR, shipped_configs

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The ``bin`` folder of a new environment with the wheel installed beside this environment's LeRobot."""
    return install_wheel(wheel, tmp_path_factory.mktemp("fresh") / "env")


def run_installed(bin_dir: Path, command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [str(bin_dir / command), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**env, "HF_HUB_OFFLINE": "1"},
    )


def test_wheel_carries_every_config_asset_and_the_license(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    package_root = CONFIGS_DIR.parents[1]
    for name, path in shipped_configs().items():
        files = [path] if path.is_file() else [file for file in path.rglob("*") if file.is_file()]
        missing = [
            str(file.relative_to(package_root))
            for file in files
            if str(file.relative_to(package_root)) not in names
        ]
        assert not missing, f"{name}: not in the wheel: {missing}"
    assert any(
        name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names
    )


def test_installed_commands_find_the_shipped_configs_from_any_folder(installed, tmp_path):
    location = run_installed(
        installed, "python", "-c", "import lerobot_grids; print(lerobot_grids.__file__)", cwd=tmp_path
    )
    assert location.returncode == 0, location.stderr[-2000:]
    assert not Path(location.stdout.strip()).is_relative_to(REPO_ROOT)  # the wheel's copy, not the checkout
    listing = run_installed(installed, "lerobot-grids-configs", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert [line.split()[0] for line in listing.stdout.splitlines()] == list(shipped_configs())
    record = run_installed(installed, "lerobot-grids-configs", "record", cwd=tmp_path)
    record_path = Path(record.stdout.strip())
    assert record_path.is_file() and record_path.parent.parent.parent == Path(location.stdout.strip()).parent
    # LeRobot's own parser reads it (as lerobot-record would) in the installed environment; LeRobot 0.6's
    # lerobot-record imports librealsense, which needs libusb (not on the test machines): an empty stand-in.
    parsed = run_installed(
        installed,
        "python",
        "-c",
        (
            "import sys, types, importlib.machinery; stand_in = types.ModuleType('pyrealsense2'); "
            "stand_in.__spec__ = importlib.machinery.ModuleSpec('pyrealsense2', None); "
            "sys.modules['pyrealsense2'] = stand_in; import draccus; from lerobot.scripts.lerobot_record "
            "import RecordConfig; import lerobot_grids.cameras; from lerobot.utils.import_utils import "
            "register_third_party_plugins; register_third_party_plugins(); config = "
            "draccus.parse(RecordConfig, config_path=sys.argv[1], args=['--dataset.repo_id=user/data', "
            "'--dataset.single_task=Pick up the cube.']); print(config.robot.type, "
            "sorted(config.robot.cameras))"
        ),
        str(record_path),
        cwd=tmp_path,
    )
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    assert parsed.stdout.split()[-3:] == ["so100_follower", "['front',", "'wrist']"]
    copied = run_installed(installed, "lerobot-grids-configs", "--copy-to", "mine", cwd=tmp_path)
    assert copied.returncode == 0 and (tmp_path / "mine" / "policies" / "smolvla_grids_so100.json").is_file()
    again = run_installed(installed, "lerobot-grids-configs", "--copy-to", "mine", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr.splitlines()[-1]


def test_installed_package_trains_a_shipped_recipe_and_writes_its_card_outside_the_checkout(
    installed, tmp_path
):
    """The smoke recipe of docs/datasets.md, as written there, from a folder that is not the checkout; then
    the checkpoint's model card with the Hub offline."""
    dataset = run_installed(
        installed,
        "lerobot-grids-demo-dataset",
        "--root",
        "outputs/so100_demo",
        "--episodes",
        "2",
        "--episode-length",
        "8",
        cwd=tmp_path,
    )
    assert dataset.returncode == 0, dataset.stderr[-3000:]
    recipe = run_installed(
        installed, "lerobot-grids-configs", "smolvla_grids_cpu_demo", cwd=tmp_path
    ).stdout.strip()
    backbone = run_installed(installed, "lerobot-grids-configs", "tiny_smolvlm", cwd=tmp_path).stdout.strip()
    trained = run_installed(
        installed,
        "python",
        "-m",
        "lerobot.scripts.lerobot_train",
        f"--config_path={recipe}",
        f"--policy.vlm_model_name={backbone}",
        "--dataset.root=outputs/so100_demo",
        "--output_dir=outputs/train/so100_smoke",
        "--steps=2",
        "--batch_size=2",
        "--save_freq=2",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = tmp_path / "outputs/train/so100_smoke/checkpoints/last/pretrained_model"
    assert (checkpoint / "model.safetensors").is_file()
    # Its model card, written offline (HF_HUB_OFFLINE=1) into the folder for a later upload; never
    # overwritten.
    card = run_installed(installed, "lerobot-grids-model-card", str(checkpoint), cwd=tmp_path)
    assert card.returncode == 0, card.stderr[-3000:]
    text = (checkpoint / "README.md").read_text()
    assert "datasets: local/so100_grids_demo" in text and "- grids" in text and "smolvla_grids" in text
    assert "## GridS token pruning" in text and "| `num_tokens` | `16` |" in text
    again = run_installed(installed, "lerobot-grids-model-card", str(checkpoint), cwd=tmp_path)
    assert again.returncode == 2 and "README.md already exists" in again.stderr.splitlines()[-1]
    assert (checkpoint / "README.md").read_text() == text
