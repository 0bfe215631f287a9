"""``lerobot-grids-cameras``: the RealSense cameras plugged in, and which camera of a robot config each is.

    lerobot-grids-cameras                       # against the shipped so100_follower config's cameras
    lerobot-grids-cameras --robot-config <yaml> # against another robot config

Exits with 1, saying what to do, when a configured camera is missing or asks for a stream setting that
not both the D435 and D405 support.
"""

import argparse
import sys
from pathlib import Path

import draccus
from lerobot.robots import so_follower  # noqa: F401  (registers so100_follower)
from lerobot.robots.config import RobotConfig
from lerobot.utils.import_utils import register_third_party_plugins

import lerobot_grids.cameras  # noqa: F401  (registers intelrealsense_by_name)
from lerobot_grids.cameras.camera_realsense_by_name import RealSenseByNameCamera
from lerobot_grids.cameras.configuration_realsense_by_name import COMMON_COLOR_PROFILES
from lerobot_grids.configs import config_path

DEFAULT_ROBOT_CONFIG = config_path("so100_follower")
REALSENSE_TYPES = ("intelrealsense", "intelrealsense_by_name")


def check_cameras(robot_config: Path) -> list[str]:
    """Report lines; problems start with ``MISSING`` or ``UNSUPPORTED``."""
    robot = draccus.parse(RobotConfig, config_path=robot_config, args=[])
    wanted = {key: camera for key, camera in robot.cameras.items() if camera.type in REALSENSE_TYPES}
    found = RealSenseByNameCamera.find_cameras()
    lines = [f"{len(found)} RealSense camera(s) connected:"]
    for device in found:
        roles = [
            key
            for key, camera in wanted.items()
            if camera.serial_number_or_name in (device["name"], str(device["id"]))
        ]
        role = f"-> {', '.join(roles)}" if roles else "-> no camera of the config"
        lines.append(f"  {device['name']}, serial {device['id']} {role}")
    for key, camera in wanted.items():
        target = camera.serial_number_or_name
        matches = [d for d in found if target in (d["name"], str(d["id"]))]
        if not matches:
            lines.append(
                f"MISSING {key}: no camera named or numbered {target!r}. Plug it in, or set cameras: {key}: "
                "serial_number_or_name: to a connected camera's serial number in the robot config."
            )
        elif len(matches) > 1:
            lines.append(
                f"MISSING {key}: {len(matches)} cameras are named {target!r}; set cameras: {key}: "
                "serial_number_or_name: to the serial number of the one to use in the robot config."
            )
        setting = (camera.width, camera.height, camera.fps)
        if None not in setting and setting not in COMMON_COLOR_PROFILES:
            supported = ", ".join(f"{w}x{h}@{fps}" for w, h, fps in COMMON_COLOR_PROFILES)
            lines.append(
                f"UNSUPPORTED {key}: {camera.width}x{camera.height} at {camera.fps} fps is not a mode both "
                f"the D435 and D405 stream ({supported}): set cameras: {key}: width, height and fps to one "
                "of them in the robot config."
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--robot-config", type=Path, default=DEFAULT_ROBOT_CONFIG)
    register_third_party_plugins()
    lines = check_cameras(parser.parse_args(argv).robot_config)
    print("\n".join(lines))
    return 1 if any(line.startswith(("MISSING", "UNSUPPORTED")) for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
