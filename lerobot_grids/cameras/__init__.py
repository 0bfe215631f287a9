"""Camera types of this package; importing it registers them with LeRobot's camera factory, which finds
``<Name>Camera`` here for a ``<Name>CameraConfig``.

The camera classes are imported on first use (PEP 562 ``__getattr__``): they need librealsense, which a
machine that only trains policies may not have.
"""

from lerobot_grids.cameras.configuration_realsense_by_name import RealSenseByNameCameraConfig

__all__ = ["RealSenseByNameCamera", "RealSenseByNameCameraConfig"]


def __getattr__(name: str):
    if name == "RealSenseByNameCamera":
        from lerobot_grids.cameras.camera_realsense_by_name import RealSenseByNameCamera

        return RealSenseByNameCamera
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
