"""Run a LeRobot command with simulated RealSense devices: ``python with_simulated_cameras.py lerobot-record
...`` (a console script) or ``python with_simulated_cameras.py -m lerobot.async_inference.robot_client ...``
(a module).

The devices are ``SIMULATED_REALSENSE="<serial>=<name>,..."``; they stand in for the ``pyrealsense2`` module
(librealsense), which LeRobot's RealSenseCamera (and ours) import. Everything else (motors on their serial
ports, the command itself) is real; LeRobot's Feetech driver waits a second longer for the simulated servos'
replies (``simulated_hardware.patient_serial_adapter``).
"""

import os
import runpy
import sys
from importlib.metadata import entry_points

from simulated_hardware import SimulatedRealSense, patient_serial_adapter

devices = dict(item.split("=", 1) for item in os.environ.get("SIMULATED_REALSENSE", "").split(",") if item)
sys.modules["pyrealsense2"] = SimulatedRealSense(devices)
patient_serial_adapter()  # the servos on the serial ports are simulated by the test process
if sys.argv[1] == "-m":
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[1:]
    (entry_point,) = entry_points(group="console_scripts", name=sys.argv[0])
    sys.exit(entry_point.load()())
