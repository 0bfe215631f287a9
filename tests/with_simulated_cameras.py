"""Run a LeRobot command with simulated RealSense devices: ``python with_simulated_cameras.py lerobot-record ...``.

The devices are ``SIMULATED_REALSENSE="<serial>=<name>,..."``; LeRobot's RealSenseCamera (and ours) read
frames from them instead of librealsense. Everything else (motors on their serial ports, the command
itself) is real.
"""

import os
import sys
from importlib.metadata import entry_points

import lerobot.cameras.realsense.camera_realsense as camera_realsense
from simulated_hardware import SimulatedRealSense

devices = dict(item.split("=", 1) for item in os.environ.get("SIMULATED_REALSENSE", "").split(",") if item)
camera_realsense.rs = SimulatedRealSense(devices)
command = sys.argv[1]
sys.argv = sys.argv[1:]
(entry_point,) = entry_points(group="console_scripts", name=command)
sys.exit(entry_point.load()())
