"""Camera types of this package; importing it registers them with LeRobot's camera factory, which finds
``<Name>Camera`` here for a ``<Name>CameraConfig``."""

from lerobot_grids.cameras.realsense_by_name import RealSenseByNameCamera, RealSenseByNameCameraConfig

__all__ = ["RealSenseByNameCamera", "RealSenseByNameCameraConfig"]
