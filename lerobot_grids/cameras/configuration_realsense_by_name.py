"""Camera type ``intelrealsense_by_name``: LeRobot's Intel RealSense camera config, found by name or serial.

Registering it imports neither ``pyrealsense2`` nor librealsense
(:func:`lerobot_grids.compat.import_realsense_config`), so the plugin loads on a training server without
cameras or ``libusb-1.0``; the camera itself (:mod:`lerobot_grids.cameras.camera_realsense_by_name`) is
imported only when a robot connects one.
"""

from dataclasses import dataclass

from lerobot.cameras.configs import CameraConfig

from lerobot_grids.compat import import_realsense_config

RealSenseCameraConfig = import_realsense_config()
# The D435 and D405 RGB sensors both stream these (width, height, fps), among others (Intel datasheets).
COMMON_COLOR_PROFILES = ((640, 480, 30), (640, 480, 15), (848, 480, 30), (1280, 720, 30), (1280, 720, 15))


@CameraConfig.register_subclass("intelrealsense_by_name")
@dataclass
class RealSenseByNameCameraConfig(RealSenseCameraConfig):
    """``RealSenseCameraConfig``; ``serial_number_or_name`` may be a name such as "Intel RealSense D435"."""
