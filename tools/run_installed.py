"""Run a command of the package as a user who installed the wheel has it: the wheel built from this checkout,
installed (offline, without dependencies) into a new virtual environment beside this environment's LeRobot,
the command run from a new folder outside the checkout.

    .venv/bin/python tools/run_installed.py lerobot-grids-demo --quick --output-dir $PWD/outputs/demo/<name>

Used by ``make demo-quick-installed`` (CI). tests/test_wheel.py checks the same install in the suite.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_wheel(folder: Path) -> Path:
    """The wheel of this checkout, built in ``folder`` from a copy of it (the build writes nothing into the
    checkout): what ``pip install lerobot_policy_grids`` installs."""
    source = folder / "source"
    for package in ("lerobot_grids", "lerobot_policy_grids"):
        shutil.copytree(REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(folder / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = (folder / "dist").glob("*.whl")
    return wheel


def install_wheel(wheel: Path, environment: Path) -> Path:
    """The ``bin`` folder of a new virtual environment at ``environment`` with ``wheel`` installed (offline,
    without dependencies) that sees this environment's packages after its own (a ``.pth`` line): LeRobot as
    the user has it, and the wheel's copy of the plugin before the checkout's editable install."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True, timeout=120)
    python = environment / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "lerobot_environment.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return environment / "bin"


def main(command: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="lerobot_grids_installed_") as folder:
        bin_dir = install_wheel(build_wheel(Path(folder)), Path(folder) / "env")
        (Path(folder) / "cwd").mkdir()
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        return subprocess.run(
            [str(bin_dir / command[0]), *command[1:]], cwd=Path(folder) / "cwd", env=env
        ).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
