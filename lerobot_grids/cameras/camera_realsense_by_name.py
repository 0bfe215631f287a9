"""LeRobot's Intel RealSense camera, found by its name, with clear errors (camera type
``intelrealsense_by_name``).

LeRobot 0.4.4's ``intelrealsense`` camera cannot be given by name: its lookup reads a ``serial_number``
key that ``find_cameras()`` does not return and raises ``KeyError`` (huggingface/lerobot#2493, fixed
after 0.4.4). This subclass looks the name up in ``find_cameras()``'s ``id``, and says which setting a
camera refused when its stream does not start. Everything else is LeRobot's ``RealSenseCamera``.
"""

from dataclasses import dataclass

from lerobot.cameras.configs import CameraConfig
from lerobot.cameras.realsense.camera_realsense import RealSenseCamera
from lerobot.cameras.realsense.configuration_realsense import RealSenseCameraConfig

# The D435 and D405 RGB sensors both stream these (width, height, fps), among others (Intel datasheets).
COMMON_COLOR_PROFILES = ((640, 480, 30), (640, 480, 15), (848, 480, 30), (1280, 720, 30), (1280, 720, 15))


@CameraConfig.register_subclass("intelrealsense_by_name")
@dataclass
class RealSenseByNameCameraConfig(RealSenseCameraConfig):
    """``RealSenseCameraConfig``; ``serial_number_or_name`` may be a name such as "Intel RealSense D435"."""


class RealSenseByNameCamera(RealSenseCamera):
    def _find_serial_number_from_name(self, name: str) -> str:
        cameras = self.find_cameras()
        matches = [camera for camera in cameras if camera["name"] == name]
        connected = [f"{camera['name']} (serial {camera['id']})" for camera in cameras] or ["none"]
        if not matches:
            raise ValueError(
                f"No RealSense camera named {name!r} is connected; connected: {', '.join(connected)}. Plug it in, "
                "or set this camera's serial_number_or_name to a connected camera's serial number in the robot "
                "config (robot_configs/so100_follower.yaml, cameras: <key>:); lerobot-grids-cameras lists them."
            )
        if len(matches) > 1:
            raise ValueError(
                f"{len(matches)} RealSense cameras are named {name!r} ({', '.join(connected)}): set this camera's "
                "serial_number_or_name to its serial number in the robot config instead of the name."
            )
        return str(matches[0]["id"])

    def connect(self, warmup: bool = True) -> None:
        try:
            super().connect(warmup)
        except ConnectionError as error:
            if self.rs_profile is not None:  # the stream started: another failure
                raise
            supported = ", ".join(f"{w}x{h}@{fps}" for w, h, fps in COMMON_COLOR_PROFILES)
            raise ConnectionError(
                f"{self.config.serial_number_or_name} (serial {self.serial_number}) did not start an RGB stream of "
                f"{self.config.width}x{self.config.height} at {self.config.fps} fps. The camera may not support "
                f"this setting: set width, height and fps in the robot config to a mode the D435 and D405 share "
                f"({supported})."
            ) from error
