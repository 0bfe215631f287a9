"""Installing and importing the plugin in the user's LeRobot environment (0.4.4 or 0.6.x)."""

import json
import re
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

LEROBOT_PINNED = {
    "lerobot",
    "torch",
    "transformers",
    "draccus",
    "huggingface-hub",
    "huggingface_hub",
    "safetensors",
}


def test_installing_into_this_lerobot_environment_changes_none_of_its_versions(tmp_path):
    """pip's resolver report of installing this checkout, with no package index: everything it requires is
    satisfied by the LeRobot environment as it is, and the only thing it would install is the plugin."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-index",
            "--no-build-isolation",
            "--quiet",
            "--report",
            str(report),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installed = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert installed == {"lerobot_policy_grids"}
    assert not installed & LEROBOT_PINNED


def test_plugin_loads_without_librealsense_and_the_camera_names_the_system_package():
    """As on a training server: pyrealsense2 installed, librealsense's libusb-1.0 missing. The plugin (and
    with it every policy type and the camera type) loads; only making a RealSense camera fails, saying what to
    install."""
    script = textwrap.dedent(
        """
        import importlib.abc, sys

        # librealsense's binary fails to load, as without libusb
        class NoLibusb(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "pyrealsense2.pyrealsense2":
                    raise ImportError(
                        "libusb-1.0.so.0: cannot open shared object file: No such file or directory"
                    )

        sys.meta_path.insert(0, NoLibusb())
        from lerobot.utils.import_utils import register_third_party_plugins
        register_third_party_plugins()
        import lerobot_policy_grids  # noqa: F401
        from lerobot.cameras.configs import CameraConfig
        from lerobot.cameras.utils import make_cameras_from_configs
        from lerobot.configs.policies import PreTrainedConfig
        print(sorted(t for t in PreTrainedConfig.get_known_choices() if t.endswith("_grids")))
        config = CameraConfig.get_choice_class("intelrealsense_by_name")(
            serial_number_or_name="Intel RealSense D435"
        )
        print("pyrealsense2 loaded:", "pyrealsense2" in sys.modules)
        try:
            make_cameras_from_configs({"front": config})
        except Exception as error:
            print("ERROR", error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "['act_grids', 'pi05_grids', 'pi0_grids', 'smolvla_grids']" in result.stdout
    assert "pyrealsense2 loaded: False" in result.stdout
    assert "ERROR" in result.stdout and "install the system package libusb-1.0-0" in result.stdout


def test_the_readme_and_docs_links_resolve():
    """Every relative link of the README and docs/*.md names a file in the repository, and every in-page link
    of the README a heading of it (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens)."""
    pages = [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]
    missing = [
        (page.name, target)
        for page in pages
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
        if not target.startswith("http") and not (page.parent / target).exists()
    ]
    readme = (REPO_ROOT / "README.md").read_text()
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.*)$", readme, re.M)
    }
    dangling = sorted(set(re.findall(r"\]\(#([^)]+)\)", readme)) - anchors)
    assert len(pages) >= 4 and missing == [] and dangling == []
