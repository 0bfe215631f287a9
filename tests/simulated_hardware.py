"""Hardware simulated at the I/O boundary only, for LeRobot's real robot and camera classes.

- :class:`SimulatedFeetechBus`: Feetech STS3215 servos on a pseudo-terminal. LeRobot's
  ``FeetechMotorsBus`` opens the terminal's device path with pyserial like a USB serial adapter and speaks
  the Feetech protocol to it; a thread on the other end answers as the servos would (ping, read,
  write, sync read, sync write) from a control table per servo, with the addresses of LeRobot's own
  table.
- :class:`SimulatedRealSense`: the part of ``pyrealsense2`` (librealsense's Python binding) that
  LeRobot's ``RealSenseCamera`` calls, with devices that deliver RGB frames at the resolutions and
  frame rates their real counterparts support.
"""

import contextlib
import importlib.machinery
import os
import sys
import threading
import time
import tty
from types import SimpleNamespace

import numpy as np
from lerobot.motors.feetech.tables import MODEL_NUMBER_TABLE, STS_SMS_SERIES_CONTROL_TABLE

INST_PING, INST_READ, INST_WRITE, INST_SYNC_READ, INST_SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST_ID = 0xFE
ERROR_OVERLOAD = 0x20  # bit 5 of a status packet's error byte
SO100_MOTOR_IDS = {
    "shoulder_pan": 1,
    "shoulder_lift": 2,
    "elbow_flex": 3,
    "wrist_flex": 4,
    "wrist_roll": 5,
    "gripper": 6,
}
# Where each servo's encoder reads when the arm rests in the middle of its range, as assembled: LeRobot's
# calibration turns these into homing offsets of position - 2047 (+313, -262, +151, -488, +95, -30).
SO100_REST_POSITIONS = {1: 2360, 2: 1785, 3: 2198, 4: 1559, 5: 2142, 6: 2017}
RESOLUTION = 4096
STALE_PACKET_S = 0.02  # an unfinished packet is dropped after this long without another byte


def answer_at_once() -> None:
    """Run the calling thread as servos answer: at once, whatever else the machine is doing.

    LeRobot's Feetech driver (scservo_sdk) gives up on a reply after about 34 ms (its ``LATENCY_TIMER`` of 16
    ms, twice, plus 2). A servo answers in microseconds; a simulating thread of ordinary priority waits for a
    core behind every busy process (with two cores and four busy loops, tens of milliseconds), and in the test
    process also for Python's lock, which LeRobot's polling read loop takes back every few microseconds and
    hands over only after the switch interval (5 ms). So the thread takes a real-time priority (SCHED_FIFO, as
    root: here and in CI), which puts it on a core as soon as a packet arrives, and the process hands Python's
    lock over ten times sooner."""
    sys.setswitchinterval(0.0005)
    # not root: ordinary priority (on a busy machine a reply may then come too late)
    with contextlib.suppress(PermissionError):
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(1))


REPLY_GRACE_MS = 1000  # added to the reply window of LeRobot's Feetech driver for the simulated servos


def patient_serial_adapter() -> None:
    """Give the simulated servos a second more than LeRobot's Feetech driver waits for a status packet.

    LeRobot replaces scservo_sdk's reply window with its own, the packet's bytes plus 50 ms
    (``lerobot.motors.feetech.feetech.patch_setPacketTimeout``, set on every ``FeetechMotorsBus``'s port when
    it is made). A real servo answers in microseconds; here the answer comes from a thread of the test
    process, which on a machine whose two cores are taken by other work can be kept from answering longer than
    that even at a real-time priority, and LeRobot's reads do not retry. A packet that truly gets no reply
    (``SimulatedFeetechBus.fail``) is still reported, a second later. Call it in every process that drives the
    simulated servos, before their buses are made: the test process, and the LeRobot commands it starts
    (``with_simulated_cameras.py``)."""
    from lerobot.motors.feetech import feetech

    lerobot_window = getattr(feetech.patch_setPacketTimeout, "lerobot_window", feetech.patch_setPacketTimeout)

    def patient_window(port_handler, packet_length):
        lerobot_window(port_handler, packet_length)
        port_handler.packet_timeout += REPLY_GRACE_MS

    patient_window.lerobot_window = lerobot_window
    feetech.patch_setPacketTimeout = patient_window


def _checksum(body) -> int:
    return ~sum(body) & 0xFF


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    return abs(value) | (1 << sign_bit if value < 0 else 0)


def decode_sign_magnitude(value: int, sign_bit: int) -> int:
    magnitude = value & ((1 << sign_bit) - 1)
    return -magnitude if value >> sign_bit & 1 else magnitude


class SimulatedFeetechBus:
    """Six STS3215 servos (ids 1-6, as on an SO-100 arm) behind a pseudo-terminal.

    ``port`` is the device path to give LeRobot. Each servo has an encoder position (0-4095); as on an
    STS3215, it reports ``Present_Position`` = encoder - ``Homing_Offset`` (EEPROM, sign-magnitude with the
    sign at bit 11), clamps a goal to its ``Min_Position_Limit``/``Max_Position_Limit`` and moves to it at
    once, but only while ``Torque_Enable`` is 1. Packets with a wrong checksum get no reply.
    ``goal_writes`` records every ``Goal_Position`` written, per motor id, and ``present_at_goal`` the present
    position when it arrived; ``set_present(id, value)`` moves a servo by hand (a leader arm, or any arm
    with torque off); ``fail(...)`` makes servos drop replies or report errors.
    """

    def __init__(
        self,
        calibration: dict[int, tuple[int, int, int]] | None = None,
        positions: dict[int, int] | None = None,
    ):
        """``calibration``: ``{id: (homing_offset, min_position, max_position)}`` in the servos' EEPROM, by
        default the factory state (0, 0, 4095); ``positions``: encoder positions, by default
        ``SO100_REST_POSITIONS``."""
        calibration = calibration or dict.fromkeys(SO100_MOTOR_IDS.values(), (0, 0, RESOLUTION - 1))
        self.tables = {motor_id: bytearray(256) for motor_id in calibration}
        self.encoders = dict(positions or SO100_REST_POSITIONS)
        for motor_id, (offset, low, high) in calibration.items():
            self._poke(motor_id, "Model_Number", MODEL_NUMBER_TABLE["sts3215"])
            self._poke(motor_id, "Firmware_Major_Version", 3)
            self._poke(motor_id, "Firmware_Minor_Version", 10)
            self._poke(motor_id, "ID", motor_id)
            self._poke(motor_id, "Homing_Offset", encode_sign_magnitude(offset, 11))
            self._poke(motor_id, "Min_Position_Limit", low)
            self._poke(motor_id, "Max_Position_Limit", high)
        self.goal_writes: dict[int, list[int]] = {motor_id: [] for motor_id in calibration}
        self.present_at_goal: dict[int, list[int]] = {motor_id: [] for motor_id in calibration}
        self.position_reads = 0  # sync reads of Present_Position answered
        self._faults: list[dict] = []
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        self._slave = slave
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _poke(self, motor_id: int, name: str, value: int) -> None:
        address, length = STS_SMS_SERIES_CONTROL_TABLE[name]
        self.tables[motor_id][address : address + length] = value.to_bytes(length, "little")

    def peek(self, motor_id: int, name: str) -> int:
        """A register's value as stored (sign-magnitude fields still encoded)."""
        address, length = STS_SMS_SERIES_CONTROL_TABLE[name]
        return int.from_bytes(self.tables[motor_id][address : address + length], "little")

    def eeprom(self) -> dict[int, tuple[int, int, int]]:
        """``{id: (homing_offset, min_position, max_position)}`` as the servos hold them now."""
        return {
            motor_id: (
                decode_sign_magnitude(self.peek(motor_id, "Homing_Offset"), 11),
                self.peek(motor_id, "Min_Position_Limit"),
                self.peek(motor_id, "Max_Position_Limit"),
            )
            for motor_id in self.tables
        }

    def _offset(self, motor_id: int) -> int:
        return decode_sign_magnitude(self.peek(motor_id, "Homing_Offset"), 11)

    def present(self, motor_id: int) -> int:
        return (self.encoders[motor_id] - self._offset(motor_id)) % RESOLUTION

    def set_present(self, motor_id: int, value: int) -> None:
        self.encoders[motor_id] = (value + self._offset(motor_id)) % RESOLUTION

    def fail(self, motor_id: int, register: str | None = None, error: int = 0, times: int | None = 1) -> None:
        """The next ``times`` replies of servo ``motor_id`` (to packets on ``register`` only, if given;
        ``None``: all from now on) are lost (``error=0``) or carry ``error`` in their error byte; the servo
        still executes what it was sent."""
        address = STS_SMS_SERIES_CONTROL_TABLE[register][0] if register else None
        self._faults.append({"id": motor_id, "address": address, "error": error, "times": times})

    def fail_pending(self) -> int:
        """How many of the failures asked for by ``fail`` have not happened yet."""
        return sum(fault["times"] for fault in self._faults if fault["times"] is not None)

    def heal(self) -> None:
        """The servos answer normally again."""
        self._faults.clear()

    def close(self) -> None:
        # Stop the thread before closing: a thread still reading a closed descriptor would read from the next
        # pseudo-terminal given that number and steal its packets.
        self._running = False
        os.write(self._slave, b"\0")  # wakes the thread's read
        self._thread.join(timeout=5)
        os.close(self._master)
        os.close(self._slave)

    def _status(self, motor_id: int, data: bytes = b"", address: int | None = None) -> bytes:
        error = 0
        for fault in self._faults:
            if fault["id"] == motor_id and fault["times"] != 0 and fault["address"] in (None, address):
                fault["times"] = None if fault["times"] is None else fault["times"] - 1
                if not fault["error"]:
                    return b""
                error = fault["error"]
                break
        body = [motor_id, len(data) + 2, error, *data]
        return bytes([0xFF, 0xFF, *body, _checksum(body)])

    def _read(self, motor_id: int, address: int, length: int) -> bytes:
        self._poke(motor_id, "Present_Position", self.present(motor_id))
        return bytes(self.tables[motor_id][address : address + length])

    def _write(self, motor_id: int, address: int, data: bytes) -> None:
        self.tables[motor_id][address : address + len(data)] = data
        goal_address, goal_length = STS_SMS_SERIES_CONTROL_TABLE["Goal_Position"]
        if address == goal_address and len(data) >= goal_length:
            goal = decode_sign_magnitude(int.from_bytes(data[:goal_length], "little"), 15)
            self.goal_writes[motor_id].append(goal)
            self.present_at_goal[motor_id].append(self.present(motor_id))
            if self.peek(motor_id, "Torque_Enable"):
                low, high = (
                    self.peek(motor_id, "Min_Position_Limit"),
                    self.peek(motor_id, "Max_Position_Limit"),
                )
                self.set_present(motor_id, min(max(goal, low), high))

    def _answer(self, motor_id: int, instruction: int, params: bytes) -> bytes:
        ids = [motor_id] if motor_id != BROADCAST_ID else sorted(self.tables)
        if instruction == INST_PING:
            return b"".join(self._status(i) for i in ids if i in self.tables)
        if instruction == INST_READ and motor_id in self.tables:
            address, length = params[0], params[1]
            return self._status(motor_id, self._read(motor_id, address, length), address)
        if instruction == INST_WRITE and motor_id in self.tables:
            self._write(motor_id, params[0], params[1:])
            return self._status(motor_id, address=params[0])
        if instruction == INST_SYNC_READ:
            address, length = params[0], params[1]
            if address == STS_SMS_SERIES_CONTROL_TABLE["Present_Position"][0]:
                self.position_reads += 1
            return b"".join(
                self._status(i, self._read(i, address, length), address)
                for i in params[2:]
                if i in self.tables
            )
        if instruction == INST_SYNC_WRITE:
            address, length = params[0], params[1]
            for start in range(2, len(params), length + 1):
                if params[start] in self.tables:
                    self._write(params[start], address, params[start + 1 : start + 1 + length])
        return b""

    def _serve(self) -> None:
        answer_at_once()
        buffer, last_byte_at = b"", 0.0
        while self._running:
            try:
                received = os.read(self._master, 1024)
            except OSError:
                return
            # As a servo's parser: a packet unfinished for longer than its bytes take (a writer that died
            # mid-packet) is dropped, so that it cannot swallow the next one.
            now = time.monotonic()
            if buffer and now - last_byte_at > STALE_PACKET_S:
                buffer = b""
            buffer, last_byte_at = buffer + received, now
            while True:
                start = buffer.find(b"\xff\xff")
                if start < 0 or len(buffer) < start + 4:
                    break
                length = buffer[start + 3]
                end = start + 4 + length
                if len(buffer) < end:
                    break
                packet = buffer[start:end]
                if _checksum(packet[2:-1]) != packet[-1]:
                    buffer = buffer[start + 1 :]  # not a packet here: look for the next header (no reply)
                    continue
                buffer = buffer[end:]
                motor_id, instruction, params = packet[2], packet[4], packet[5:-1]
                reply = self._answer(motor_id, instruction, params)
                if reply:
                    os.write(self._master, reply)


# Colour profiles (width, height, fps) of the RGB sensors, from Intel's datasheets (a subset).
REALSENSE_COLOR_PROFILES = {
    "Intel RealSense D435": {(640, 480, 30), (640, 480, 15), (1280, 720, 30), (848, 480, 30), (424, 240, 30)},
    "Intel RealSense D405": {(640, 480, 30), (640, 480, 15), (1280, 720, 30), (848, 480, 30), (424, 240, 30)},
}


class SimulatedRealSense:
    """A stand-in for the ``pyrealsense2`` module with the given devices ``{serial: name}`` plugged in."""

    def __init__(self, devices: dict[str, str]):
        self.devices = devices
        self.__spec__ = importlib.machinery.ModuleSpec("pyrealsense2", None)  # LeRobot 0.6 looks it up
        module = self
        self.camera_info = SimpleNamespace(
            name="name",
            serial_number="serial_number",
            firmware_version="firmware_version",
            usb_type_descriptor="usb_type_descriptor",
            physical_port="physical_port",
            product_id="product_id",
            product_line="product_line",
        )
        self.stream = SimpleNamespace(color="color", depth="depth")
        self.format = SimpleNamespace(rgb8="rgb8", z16="z16")

        class Device:
            def __init__(self, serial: str):
                self.info = {
                    "name": module.devices[serial],
                    "serial_number": serial,
                    "firmware_version": "5.16.0.1",
                    "usb_type_descriptor": "3.2",
                    "physical_port": f"/dev/video-{serial}",
                    "product_id": "0B07",
                    "product_line": "D400",
                }

            def get_info(self, key):
                return self.info[key]

            def query_sensors(self):
                default = SimpleNamespace(
                    is_video_stream_profile=lambda: True,
                    is_default=lambda: True,
                    stream_name=lambda: "Color",
                    format=lambda: SimpleNamespace(name="rgb8"),
                    width=lambda: 640,
                    height=lambda: 480,
                    fps=lambda: 30,
                )
                default.as_video_stream_profile = lambda: default
                return [SimpleNamespace(get_stream_profiles=lambda: [default])]

        class Context:
            def query_devices(self):
                return [Device(serial) for serial in module.devices]

        class Config:
            def __init__(self):
                self.serial, self.color = None, None

            def enable_device(self, serial):
                self.serial = serial

            def enable_stream(self, stream, width=None, height=None, fmt=None, fps=None):
                if stream == "color":
                    self.color = (width, height, fps)

        class VideoProfile:
            def __init__(self, width, height, fps):
                self._width, self._height, self._fps = width, height, fps

            def as_video_stream_profile(self):
                return self

            def width(self):
                return self._width

            def height(self):
                return self._height

            def fps(self):
                return self._fps

        class Frame:
            def __init__(self, data):
                self.data = data

            def get_data(self):
                return self.data

        class Frames:
            def __init__(self, data):
                self.color = Frame(data)

            def get_color_frame(self):
                return self.color

        class Pipeline:
            def __init__(self):
                self.profile = None
                self.count = 0
                self.next_frame_at = 0.0  # time.monotonic() of the last frame delivered

            def start(self, config):
                if config.serial not in module.devices:
                    raise RuntimeError("No device connected")
                name = module.devices[config.serial]
                width, height, fps = config.color or (640, 480, 30)
                if (width, height, fps) not in REALSENSE_COLOR_PROFILES[name]:
                    raise RuntimeError("Couldn't resolve requests")
                self.profile = SimpleNamespace(get_stream=lambda stream: VideoProfile(width, height, fps))
                self.serial = config.serial
                return self.profile

            def try_wait_for_frames(self, timeout_ms=0):
                return True, self.wait_for_frames(timeout_ms)

            def wait_for_frames(self, timeout_ms=0):
                # As the device: the next frame comes a frame period after the last (LeRobot's reading thread
                # calls this in a loop; a frame at once would make it spin, taking the CPU the policy needs).
                period = 1 / self.profile.get_stream("color").fps()
                self.next_frame_at = max(self.next_frame_at + period, time.monotonic())
                time.sleep(max(0.0, self.next_frame_at - time.monotonic()))
                self.count += 1
                width, height, _ = (
                    self.profile.get_stream("color").width(),
                    self.profile.get_stream("color").height(),
                    0,
                )
                image = np.full((height, width, 3), (self.count * 7) % 255, dtype=np.uint8)
                image[..., 1] = int(self.serial[-1]) * 20  # each camera its own colour
                return Frames(image)

            def stop(self):
                self.profile = None

        self.context, self.config, self.pipeline = Context, Config, Pipeline
        self.pipeline_profile = SimpleNamespace
