"""LeRobot's Intel RealSense camera for the ``intelrealsense_by_name`` type: found by name, with clear errors.

LeRobot 0.4.4's ``intelrealsense`` camera cannot be given by name: its lookup reads a ``serial_number``
key that ``find_cameras()`` does not return and raises ``KeyError`` (huggingface/lerobot#2493, fixed in
0.6.0). On 0.4.4 this subclass looks the name up in ``find_cameras()``'s ``id``; on 0.6 LeRobot's own lookup
runs and its error gets the same advice. Either way it says when a camera given by serial number is not
plugged in, which setting a camera refused when its stream does not start, and what to install when
librealsense cannot be loaded. Everything else is LeRobot's ``RealSenseCamera``.
"""

from lerobot_grids import compat
from lerobot_grids.cameras.configuration_realsense_by_name import COMMON_COLOR_PROFILES

try:  # librealsense first: LeRobot 0.6 fails on it when importing its camera, 0.4.4 only logs the failure
    import pyrealsense2  # noqa: F401
    from lerobot.cameras.realsense.camera_realsense import RealSenseCamera
except ImportError as error:  # e.g. pyrealsense2 is there, librealsense's USB library is not
    raise ImportError(
        f"Intel RealSense cameras need librealsense, which could not be loaded ({error}). On Debian or "
        "Ubuntu install the system package libusb-1.0-0 (sudo apt-get install libusb-1.0-0); if pyrealsense2 "
        "itself is missing, pip install 'lerobot[intelrealsense]'. Training and evaluating policies need "
        "neither."
    ) from error

NAME_ADVICE = (
    "Plug it in, or set this camera's serial_number_or_name to a connected camera's serial number in the "
    "robot config (the robot: block of your --config_path, cameras: <key>:); lerobot-grids-cameras lists "
    "them."
)


class RealSenseByNameCamera(RealSenseCamera):
    def _find_serial_number_from_name(self, name: str) -> str:
        if compat.REALSENSE_NAME_LOOKUP_FIXED:
            try:
                return super()._find_serial_number_from_name(name)
            except ValueError as error:
                raise ValueError(f"{error}. {NAME_ADVICE}") from error
        cameras = self.find_cameras()
        matches = [camera for camera in cameras if camera["name"] == name]
        connected = [f"{camera['name']} (serial {camera['id']})" for camera in cameras] or ["none"]
        if not matches:
            raise ValueError(
                f"No RealSense camera named {name!r} is connected; connected: {', '.join(connected)}. "
                f"{NAME_ADVICE}"
            )
        if len(matches) > 1:
            raise ValueError(
                f"{len(matches)} RealSense cameras are named {name!r} ({', '.join(connected)}): set this "
                "camera's serial_number_or_name to its serial number in the robot config instead of the name."
            )
        return str(matches[0]["id"])

    def connect(self, warmup: bool = True) -> None:
        try:
            super().connect(warmup)
        except ConnectionError as error:
            if self.rs_profile is not None:  # the stream started: another failure
                raise
            connected = {str(camera["id"]): camera["name"] for camera in self.find_cameras()}
            if str(self.serial_number) not in connected:
                listed = (
                    ", ".join(f"{name} (serial {serial})" for serial, name in connected.items()) or "none"
                )
                raise ConnectionError(
                    f"No RealSense camera with serial number {self.serial_number} is connected; connected: "
                    f"{listed}. {NAME_ADVICE}"
                ) from error
            supported = ", ".join(f"{w}x{h}@{fps}" for w, h, fps in COMMON_COLOR_PROFILES)
            raise ConnectionError(
                f"{self.config.serial_number_or_name} (serial {self.serial_number}) did not start an RGB "
                f"stream of {self.config.width}x{self.config.height} at {self.config.fps} fps. The camera "
                "may not support this setting: set width, height and fps in the robot config to a mode the "
                f"D435 and D405 share ({supported})."
            ) from error
