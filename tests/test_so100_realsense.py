"""The SO-100 / SO-101 + RealSense workflow through LeRobot's own commands, with the shipped configs.

LeRobot's SO follower / leader (one class each for the SO-100 and the SO-101) talk to simulated Feetech servos
on pseudo-terminals, and its RealSense camera to simulated devices (tests/simulated_hardware.py); the commands
run as users run them.
"""

import contextlib
import functools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO_ROOT, changed_copy, save_checkpoint
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from rerun_recording import logged_images, read_points
from simulated_hardware import (
    ERROR_OVERLOAD,
    SO100_MOTOR_IDS,
    SO100_REST_POSITIONS,
    SimulatedFeetechBus,
    SimulatedRealSense,
    patient_serial_adapter,
)

from lerobot_grids import compat
from lerobot_grids.configs import config_path, shipped_configs
from lerobot_grids.grids import region_points_to_grid
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy

LAUNCHER = Path(__file__).with_name("with_simulated_cameras.py")
BOTH_CAMERAS = "111=Intel RealSense D435,222=Intel RealSense D405"
TASK = "Pick up the green cube and place it into the green bowl."
CAMERAS = {
    "front": ("intelrealsense_by_name", "Intel RealSense D435", 640, 480, 30),
    "wrist": ("intelrealsense_by_name", "Intel RealSense D405", 640, 480, 30),
}
STEP_LIMIT = 5.0  # the configs' max_relative_target: degrees (joints), percent of the range (gripper)


patient_serial_adapter()


def robot_config(arm: str, name: str) -> str:
    """The shipped robot config ``name`` (teleoperate, record, deploy, rollout, async_client) of an arm."""
    return str(config_path(name if arm == "so100" else f"{name}_{arm}"))


@pytest.fixture
def arm(request) -> str:
    """The arm model whose configs a test runs (``so100`` unless parametrised)."""
    return getattr(request, "param", "so100")


class Terminal:
    """The calibrating user's terminal: LeRobot's prompts arrive by ``write``; ``press_enter`` types Enter on
    ``stdin`` (a pipe, which LeRobot's ``enter_pressed`` polls with ``select``)."""

    def __init__(self):
        self.seen: set[str] = set()
        read_end, self._write_end = os.pipe()
        self.stdin = os.fdopen(read_end, "r")

    def write(self, text: str) -> int:
        self.seen |= {prompt for prompt in ("middle of its range", "Press ENTER to stop") if prompt in text}
        return len(text)

    def flush(self) -> None:
        pass

    def press_enter(self) -> None:
        os.write(self._write_end, b"\n")

    def close(self) -> None:
        self.stdin.close()
        os.close(self._write_end)


def lerobot_calibrate(folder: Path, kind: str, arm_type: str, bus: SimulatedFeetechBus) -> None:
    """LeRobot's ``lerobot-calibrate`` (its ``calibrate``, in this process: a subprocess spends ~10 s
    importing) on ``bus``, answered as a user does: Enter with the arm resting mid-range, then every joint but
    wrist_roll moved to 1000 and 3000 (present positions after homing) and back, and Enter."""
    terminal = Terminal()
    with pytest.MonkeyPatch.context() as monkeypatch, ThreadPoolExecutor(1) as pool:
        # LeRobot 0.6's lerobot-calibrate imports librealsense: simulated, no device.
        monkeypatch.setitem(sys.modules, "pyrealsense2", SimulatedRealSense({}))
        from lerobot.scripts.lerobot_calibrate import (
            CalibrateConfig,
            RobotConfig,
            TeleoperatorConfig,
            calibrate,
        )

        choices = {"robot": RobotConfig, "teleop": TeleoperatorConfig}
        config = CalibrateConfig(
            **{
                kind: choices[kind].get_choice_class(arm_type)(
                    port=bus.port, id=arm_type, calibration_dir=folder
                )
            }
        )
        monkeypatch.setattr(sys, "stdin", terminal.stdin)
        monkeypatch.setattr(sys, "stdout", terminal)
        run_ = pool.submit(calibrate, config)
        deadline = time.monotonic() + 60

        def wait(done) -> None:
            while not done():
                assert not run_.done() and time.monotonic() < deadline, (
                    run_.exception() if run_.done() else "timeout"
                )
                time.sleep(0.01)

        wait(lambda: "middle of its range" in terminal.seen)
        terminal.press_enter()
        wait(lambda: "Press ENTER to stop" in terminal.seen)
        for position in (1000, 3000, 2047):
            for motor_id in SO100_MOTOR_IDS.values():
                if motor_id != SO100_MOTOR_IDS["wrist_roll"]:
                    bus.set_present(motor_id, position)
            reads = bus.position_reads
            wait(lambda reads=reads: bus.position_reads >= reads + 2)  # LeRobot has seen it
        terminal.press_enter()
        run_.result(timeout=60)
    terminal.close()


@functools.cache
def calibrated(arm: str, folder: Path) -> dict[str, dict[int, tuple[int, int, int]]]:
    """Calibrate simulated ``arm`` follower and leader servos (as assembled: factory EEPROM, resting at
    ``SO100_REST_POSITIONS``) with lerobot-calibrate, once per test session: the files it wrote are in
    ``folder``, the servos' EEPROM afterwards (``{"follower"|"leader": {id: (homing_offset, min, max)}}``) is
    returned."""
    eeprom = {}
    for kind, role in (("robot", "follower"), ("teleop", "leader")):
        bus = SimulatedFeetechBus()
        lerobot_calibrate(folder, kind, f"{arm}_{role}", bus)
        eeprom[role] = bus.eeprom()
        bus.close()
    return eeprom


@pytest.fixture
def arms(arm, tmp_path, tmp_path_factory):
    """Simulated follower and leader buses, calibrated by lerobot-calibrate under the ids of ``arm``'s configs
    only: a config that named another arm's calibration file would find none. The calibration files are in
    ``tmp_path / "calibration"``; the servos hold the EEPROM lerobot-calibrate wrote and rest mid-range."""
    folder = tmp_path_factory.getbasetemp() / "lerobot_calibrate" / arm
    eeprom = calibrated(arm, folder)
    shutil.copytree(folder, tmp_path / "calibration")
    follower, leader = SimulatedFeetechBus(eeprom["follower"]), SimulatedFeetechBus(eeprom["leader"])
    yield follower, leader
    follower.close()
    leader.close()


def test_lerobot_calibrate_writes_its_calibration_to_the_servos_and_the_file(arms, tmp_path):
    """What lerobot-calibrate left on the servos (the ``arms`` buses start from it) equals its calibration
    files."""
    follower, leader = arms
    for bus, arm_id in ((follower, "so100_follower"), (leader, "so100_leader")):
        written = json.loads((tmp_path / "calibration" / f"{arm_id}.json").read_text())
        assert {
            name: (
                entry["id"],
                entry["homing_offset"],
                entry["range_min"],
                entry["range_max"],
                entry["drive_mode"],
            )
            for name, entry in written.items()
        } == {name: (motor_id, *bus.eeprom()[motor_id], 0) for name, motor_id in SO100_MOTOR_IDS.items()}
        # Half-turn homing: the resting position reads 2047; the ranges the joints were moved through.
        assert {motor_id: offset for motor_id, (offset, _, _) in bus.eeprom().items()} == {
            motor_id: position - 2047 for motor_id, position in SO100_REST_POSITIONS.items()
        }
        assert {name: (entry["range_min"], entry["range_max"]) for name, entry in written.items()} == {
            name: (0, 4095) if name == "wrist_roll" else (1000, 3000) for name in SO100_MOTOR_IDS
        }
        assert all(bus.present(motor_id) == 2047 for motor_id in SO100_MOTOR_IDS.values())


def run(
    command: str,
    *args: str,
    cameras: str = BOTH_CAMERAS,
    env: dict[str, str] | None = None,
    cwd: Path = REPO_ROOT,
) -> subprocess.CompletedProcess:
    # One torch thread: LeRobot's loops time their episodes by the wall clock, and torch's OpenMP workers wait
    # for each other spinning, so with the cores busy (LeRobot's image writer threads, other tests, other
    # work) one action chunk took 2.5 s instead of 0.05 and an episode of 2 s recorded a single frame.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "SIMULATED_REALSENSE": cameras,
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, str(LAUNCHER), command, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=cwd,
    )


def ports(tmp_path, follower, leader=None) -> list[str]:
    args = [f"--robot.port={follower.port}", f"--robot.calibration_dir={tmp_path / 'calibration'}"]
    if leader is not None:
        args += [f"--teleop.port={leader.port}", f"--teleop.calibration_dir={tmp_path / 'calibration'}"]
    return args


def short_episode(root: Path, repo_id: str) -> list[str]:
    return [
        f"--dataset.repo_id={repo_id}",
        f"--dataset.root={root}",
        "--dataset.num_episodes=1",
        "--dataset.episode_time_s=2",
        "--dataset.reset_time_s=0",
        "--dataset.fps=10",
    ]


@pytest.fixture
def follower(tmp_path_factory):
    """LeRobot's SO-100 follower (no cameras, the shipped step limit) on calibrated simulated servos,
    unconnected."""
    from lerobot.robots.so_follower import SO100Follower, SO100FollowerConfig

    folder = tmp_path_factory.getbasetemp() / "lerobot_calibrate" / "so100"
    bus = SimulatedFeetechBus(calibrated("so100", folder)["follower"])
    robot = SO100Follower(
        SO100FollowerConfig(
            port=bus.port, id="so100_follower", calibration_dir=folder, max_relative_target=STEP_LIMIT
        )
    )
    yield robot, bus
    bus.heal()
    if robot.is_connected:
        robot.disconnect()
    bus.close()


def test_the_servos_clamp_goals_to_their_limits_and_move_only_with_torque(follower):
    robot, bus = follower
    robot.connect()
    elbow = SO100_MOTOR_IDS["elbow_flex"]
    bus.set_present(elbow, 2990)  # near the top of its 1000-3000 range
    top = 1000 * 360 / 4095  # 3000 in degrees about the range's middle, 2000
    # A goal write has no reply: reading the state back after it shows what the servo did.
    robot.send_action({f"{name}.pos": 0.0 for name in SO100_MOTOR_IDS} | {"elbow_flex.pos": 180.0})
    assert (
        robot.get_observation()["elbow_flex.pos"] == pytest.approx(top) and bus.goal_writes[elbow][-1] > 3000
    )
    robot.bus.disable_torque()
    robot.send_action({f"{name}.pos": 0.0 for name in SO100_MOTOR_IDS})  # 5 degrees down: 57 steps
    assert robot.get_observation()["elbow_flex.pos"] == pytest.approx(top)  # written, not executed
    assert bus.goal_writes[elbow][-1] in (3000 - 57, 3000 - 56) and bus.present(elbow) == 3000


def test_a_lost_reply_is_retried(follower):
    """LeRobot's bus retries the torque-off write of its disconnect (num_retry=5): one lost reply costs a
    retry."""
    robot, bus = follower
    robot.connect()
    bus.fail(SO100_MOTOR_IDS["wrist_flex"], "Torque_Enable")
    robot.disconnect()
    assert all(bus.peek(motor_id, "Torque_Enable") == 0 for motor_id in SO100_MOTOR_IDS.values())
    assert bus.fail_pending() == 0


def test_a_servo_reporting_an_error_stops_the_connection_before_any_goal(follower):
    """A servo whose every reply carries an error byte (here overload) is not taken for a working servo:
    LeRobot's handshake refuses the arm, naming the servo, and no goal reaches the bus."""
    robot, bus = follower
    bus.fail(SO100_MOTOR_IDS["elbow_flex"], error=ERROR_OVERLOAD, times=None)
    with pytest.raises(RuntimeError, match=r"(?s)motor check failed.*Missing motor IDs:\n  - 3 "):
        robot.connect()
    assert not any(bus.goal_writes.values())


def test_a_camera_given_by_serial_number_that_is_not_plugged_in_is_named(monkeypatch):
    """Not a stream setting: the camera is not there (LeRobot's own message blames the pipeline)."""
    from lerobot_grids.cameras import RealSenseByNameCameraConfig

    devices = SimulatedRealSense({"111": "Intel RealSense D435"})
    monkeypatch.setitem(sys.modules, "pyrealsense2", devices)
    from lerobot.cameras.realsense import camera_realsense

    from lerobot_grids.cameras.camera_realsense_by_name import RealSenseByNameCamera

    monkeypatch.setattr(
        camera_realsense, "rs", devices, raising=False
    )  # imported earlier, with or without one
    camera = RealSenseByNameCamera(
        RealSenseByNameCameraConfig(serial_number_or_name="333", width=640, height=480, fps=30)
    )
    with pytest.raises(
        ConnectionError,
        match=r"No RealSense camera with serial number 333 is connected; "
        r"connected: Intel RealSense D435 \(serial 111\)\. Plug it in",
    ):
        camera.connect()


@pytest.mark.parametrize(
    ("arm", "config", "task_args"),
    [
        ("so100", "so100_pick_place", []),  # a task recipe: the task is in the file
        ("so101", "record_so101", [f"--dataset.single_task={TASK}"]),
    ],
    indirect=["arm"],
)
def test_teleoperated_recording_writes_a_valid_dataset(arms, config, task_args, tmp_path):
    follower, leader = arms
    for motor_id in SO100_MOTOR_IDS.values():
        leader.set_present(motor_id, 2100)  # the operator holds the leader arm here
    result = run(
        "lerobot-record",
        f"--config_path={config_path(config)}",
        *task_args,
        *ports(tmp_path, follower, leader),
        *short_episode(tmp_path / "recorded", "local/recorded"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # PyAV decodes (torchcodec needs FFmpeg installed on the system).
    dataset = LeRobotDataset("local/recorded", root=tmp_path / "recorded", video_backend="pyav")
    assert dataset.meta.camera_keys == ["observation.images.front", "observation.images.wrist"]
    assert dataset.meta.total_episodes == 1 and dataset.num_frames >= 10
    frame = dataset[0]
    assert frame["observation.images.front"].shape == (3, 480, 640)
    assert frame["task"] == TASK
    # Each camera where the config puts it: the simulated D435 (serial 111) is green 20, the D405 (222) 40
    # (video is lossy: channel means, with room for compression but not for the other camera).
    for key, green in (("front", 20), ("wrist", 40)):
        assert abs(frame[f"observation.images.{key}"][1].mean().item() * 255 - green) < 6, key
    # The leader's 2100, normalised by its calibration: steps (of 4095 per turn) above the middle of its range
    # in degrees for the joints (1000-3000, wrist_roll a whole turn 0-4095); percent of its range for the
    # gripper.
    ranges = [leader.eeprom()[motor_id][1:] for motor_id in SO100_MOTOR_IDS.values()]
    expected = torch.tensor([(2100 - (low + high) / 2) * 360 / 4095 for low, high in ranges[:5]] + [55.0])
    torch.testing.assert_close(frame["action"], expected, atol=0.05, rtol=0)
    assert len(frame["observation.state"]) == 6
    assert all(
        writes[-1] in (2099, 2100) for writes in follower.goal_writes.values()
    )  # the follower followed


def test_teleoperation_moves_the_follower_with_the_leader(arm, arms, tmp_path):
    """SO-100 (the SO-101's follower follows its leader in the recording test above)."""
    follower, leader = arms
    leader.set_present(SO100_MOTOR_IDS["elbow_flex"], 2500)
    result = run(
        "lerobot-teleoperate",
        f"--config_path={robot_config(arm, 'teleoperate')}",
        "--teleop_time_s=2",
        *ports(tmp_path, follower, leader),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert follower.goal_writes[SO100_MOTOR_IDS["elbow_flex"]][-1:] == [2500], result.stderr[-3000:]


@pytest.fixture
def librealsense(monkeypatch):
    """LeRobot 0.6's lerobot-record imports librealsense (pyrealsense2) with its config: simulated, no
    device."""
    monkeypatch.setitem(sys.modules, "pyrealsense2", SimulatedRealSense({}))


def decode(config_class, path: Path, part: str | None = None, **command_line):
    """A config file decoded into LeRobot's config class as its command-line parser decodes it, after
    ``register_third_party_plugins()`` (what LeRobot's commands do first: our camera type, and the SO arm
    types LeRobot's async client does not import). ``part``: one block of the file (``robot``) instead of the
    whole; ``command_line`` holds the values given as ``--a.b=...`` (``a={"b": ...}``) or ``--a=...``.
    (``draccus.parse`` decodes the same way and also builds a parser for every registered choice: ~9 s a
    file.)"""
    import draccus
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    written = yaml.safe_load(path.read_text())
    written = written[part] if part else written
    for key, value in command_line.items():
        written[key] = {**written.get(key, {}), **value} if isinstance(value, dict) else value
    return draccus.decode(config_class, written)


@pytest.mark.parametrize(
    ("recipe", "episodes"), [("pick_place", 83), ("transfer_pen", 74), ("stack_cubes", 75)]
)
def test_task_recipes_are_lerobot_record_configs(recipe, episodes, librealsense):
    from lerobot.scripts.lerobot_record import RecordConfig

    config = decode(RecordConfig, config_path(f"so100_{recipe}"), dataset={"repo_id": "user/data"})
    assert config.dataset.num_episodes == episodes and config.dataset.single_task
    assert config.robot.type == "so100_follower" and config.teleop.type == "so100_leader"
    assert {key: camera.serial_number_or_name for key, camera in config.robot.cameras.items()} == {
        "front": "Intel RealSense D435",
        "wrist": "Intel RealSense D405",
    }


@pytest.mark.parametrize("name", ["teleoperate", "record", "deploy", "rollout", "async_client"])
def test_so101_configs_are_lerobot_configs_of_an_so101_with_both_cameras(name, librealsense):
    from lerobot.async_inference.configs import RobotClientConfig
    from lerobot.robots.config import RobotConfig
    from lerobot.scripts.lerobot_record import RecordConfig
    from lerobot.scripts.lerobot_teleoperate import TeleoperateConfig
    from lerobot.teleoperators.config import TeleoperatorConfig

    path = Path(robot_config("so101", name))
    written = yaml.safe_load(path.read_text())
    if name in ("deploy", "rollout"):
        # Their commands take the policy from the command line (lerobot-rollout is LeRobot 0.6's): the robot
        # alone.
        robot, teleop = decode(RobotConfig, path, part="robot"), None
    else:
        config_class = {"teleoperate": TeleoperateConfig, "async_client": RobotClientConfig}.get(
            name, RecordConfig
        )
        command_line = {
            RecordConfig: {"dataset": {"repo_id": "user/data", "single_task": TASK}},
            RobotClientConfig: {"pretrained_name_or_path": "user/policy"},
        }.get(config_class, {})
        config = decode(config_class, path, **command_line)
        if config_class is RobotClientConfig:
            assert config.policy_type == "smolvla_grids"
        robot, teleop = config.robot, getattr(config, "teleop", None)
    # LeRobot registers so100_follower and so101_follower for one class (so100_leader and so101_leader for
    # another) and names a parsed config by the first, so the file's own words say which arm it is.
    assert written["robot"]["type"] == "so101_follower"
    assert type(robot) is RobotConfig.get_choice_class("so101_follower")
    assert robot.id == "so101_follower"  # the calibration file lerobot-calibrate wrote for it
    assert {
        key: (camera.type, camera.serial_number_or_name, camera.width, camera.height, camera.fps)
        for key, camera in robot.cameras.items()
    } == CAMERAS
    assert (teleop is not None) == (name in ("teleoperate", "record"))
    if teleop is not None:
        assert written["teleop"]["type"] == "so101_leader"
        assert type(teleop) is TeleoperatorConfig.get_choice_class("so101_leader")
        assert teleop.id == "so101_leader"


def load_config(path: Path):
    """A config file as draccus reads it, ``!include`` (relative to the file's folder) resolved."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor(
        "!include", lambda loader, node: load_config(path.parent / loader.construct_scalar(node))
    )
    return yaml.load(path.read_text(), Loader=Loader)


def test_every_robot_and_teleop_block_is_its_arm_config():
    """The robot: and teleop: blocks of every shipped config are the arm's own config (``<type>.yaml``),
    written out or included."""
    checked = []
    for path in [path for path in shipped_configs().values() if path.suffix == ".yaml"]:
        config = load_config(path)
        for key in ("robot", "teleop"):
            if key in config:
                arm_config = config_path(config[key]["type"])
                assert config[key] == load_config(arm_config), (
                    f"{path.name}: {key} differs from {arm_config.name}"
                )
                checked.append(f"{path.name}:{key}")
    assert {
        f"{name}_so101.yaml:robot" for name in ("teleoperate", "record", "deploy", "rollout", "async_client")
    } <= set(checked)
    assert {"teleoperate_so101.yaml:teleop", "record_so101.yaml:teleop", "record.yaml:robot"} <= set(checked)


def moved(follower: SimulatedFeetechBus, start: dict[int, int]) -> bool:
    """Whether any goal other than a joint's position at ``start`` reached the bus. lerobot-rollout (0.6)
    holds the arm where it found it when it stops (``return_to_initial_position``): those goals move nothing,
    give or take the one step LeRobot's normalisation round trip may round the gripper's 0-100 % by."""
    return any(
        abs(goal - start[motor]) > 1 for motor, goals in follower.goal_writes.items() for goal in goals
    )


def positions(follower: SimulatedFeetechBus) -> dict[int, int]:
    return {motor: follower.present(motor) for motor in follower.goal_writes}


def deploy(tmp_path, follower, policy: Path, *extra: str, cameras: str = BOTH_CAMERAS):
    """Run ``policy`` on the arm and record one short evaluation episode, with the LeRobot command and shipped
    config for that: ``lerobot-record`` + ``deploy.yaml`` (0.4.4), ``lerobot-rollout`` + ``rollout.yaml``
    (0.6)."""
    if compat.POLICY_ON_ROBOT_COMMAND == "lerobot-rollout":
        command = ["lerobot-rollout", f"--config_path={config_path('rollout')}", f"--task={TASK}", "--fps=10"]
        repo_id = "local/rollout_so100"  # lerobot-rollout's rule for its dataset names
    else:
        command, repo_id = ["lerobot-record", f"--config_path={config_path('deploy')}"], "local/eval_so100"
    return run(
        *command,
        f"--policy.path={policy}",
        f"--dataset.single_task={TASK}",
        *ports(tmp_path, follower),
        *short_episode(tmp_path / "eval", repo_id),
        *extra,
        cameras=cameras,
    )


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "act_grids"])
def test_deployment_moves_the_arm_at_most_one_step_limit_per_action(
    arms, tmp_path, checkpoint, dataset_root, policy_type
):
    """A policy whose action output is biased by +1000 (thousands of degrees once unnormalised): the shipped
    deploy (0.4.4) / rollout (0.6) config's max_relative_target lets each goal go at most 5 (degrees; percent
    for the gripper) beyond where the servo is. LeRobot records the action the policy asked for, before its
    clipping (record_loop's ``action_values`` on 0.4.4, ``send_next_action``'s return on 0.6): each goal
    written is that action clipped around the present position, in raw steps. ACT reads the cameras' 640x480
    frames as they come (a 15x20 feature map), SmolVLA resized with padding."""
    follower, _ = arms
    if policy_type != "smolvla_grids":
        checkpoint = save_checkpoint(policy_type, dataset_root, tmp_path / policy_type)
    pushing = changed_copy(checkpoint, tmp_path / "pushing", action_bias=1000.0)
    result = deploy(tmp_path, follower, pushing)
    assert result.returncode == 0, result.stderr[-3000:]
    repo_id = (
        "local/rollout_so100" if compat.POLICY_ON_ROBOT_COMMAND == "lerobot-rollout" else "local/eval_so100"
    )
    actions = torch.stack(list(LeRobotDataset(repo_id, root=tmp_path / "eval").hf_dataset["action"]))
    # far beyond any joint's range: the bias. How many actions a 2-second episode gets depends on how busy the
    # cores are (LeRobot's loop keeps wall-clock time; one when they are busy): each is checked.
    assert len(actions) >= 1 and (actions.abs() > 360).all()
    for index, (name, motor_id) in enumerate(SO100_MOTOR_IDS.items()):
        _, low, high = follower.eeprom()[motor_id]
        goals, presents = follower.goal_writes[motor_id], follower.present_at_goal[motor_id]
        # LeRobot's normalisation: degrees about the middle of the range (4095 steps a turn), or percent.
        if name == "gripper":
            to_raw = lambda v, low=low, high=high: int(  # noqa: E731
                min(100.0, max(0.0, v)) / 100 * (high - low) + low
            )
            to_unit = lambda p, low=low, high=high: (p - low) / (high - low) * 100  # noqa: E731
        else:
            to_raw = lambda v, low=low, high=high: int(v * 4095 / 360 + (low + high) / 2)  # noqa: E731
            to_unit = lambda p, low=low, high=high: (p - (low + high) / 2) * 360 / 4095  # noqa: E731
        step = to_raw(STEP_LIMIT) - to_raw(0)
        assert all(abs(goal - present) <= step + 1 for goal, present in zip(goals, presents, strict=False)), (
            name
        )
        assert all(low <= present <= high for present in [*presents, follower.present(motor_id)]), name
        # Towards the limit the policy points at, at most a step a frame (it gets there in about 18 frames).
        limit = high if actions[0, index] > 0 else low
        assert (
            0 < abs(presents[0] - limit) - abs(presents[len(actions) - 1] - limit) <= step * len(actions)
        ), name
        # The frames' goals (lerobot-rollout then returns the arm to where it started: more goals, no frames).
        for action, goal, present in zip(actions[:, index].tolist(), goals, presents, strict=False):
            clipped = min(max(action, to_unit(present) - STEP_LIMIT), to_unit(present) + STEP_LIMIT)
            assert abs(goal - to_raw(clipped)) <= 1, (name, action, goal, present)
        assert len(goals) >= len(actions)


@contextlib.contextmanager
def rerun_server(recording: Path):
    """A rerun server on the loopback saving what it receives to ``recording`` (the ``rerun`` command of the
    rerun-sdk that LeRobot's display uses); yields its port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).with_name("rerun")), "--bind", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--save", str(recording)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the command and the viewer binary it starts
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                message = server.communicate()[1][-2000:]
                raise RuntimeError(f"The rerun server did not start: {message}") from None
            time.sleep(0.2)
    try:
        yield port
        settled(recording)
    finally:
        # The whole group, by SIGTERM: a SIGINT reaches only the command, and not at all where the test runner
        # was started with SIGINT ignored (nohup, a background job), which its children inherit.
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=60)


def settled(path: Path, quiet_s: float = 1.0, limit_s: float = 60.0):
    """Waits until the file at ``path`` has stopped growing for ``quiet_s`` (the server has written what it
    received)."""
    deadline, size = time.monotonic() + limit_s, -1
    while time.monotonic() < deadline:
        current = path.stat().st_size if path.exists() else -1
        if current == size:
            return
        size = current
        time.sleep(quiet_s)


def test_the_live_view_shows_each_chunks_points_on_the_cameras_images(arms, tmp_path, checkpoint):
    """The deployment command with LeRobot's display on, sending to a rerun server on the loopback: under
    each camera's image as LeRobot logs it, the points of every action chunk the policy made, in the image's
    pixels. The paper's predictor with its last layer's weights zeroed reads at its starting points whatever
    the frame, so the points every chunk logs are known."""
    follower, _ = arms
    weight = "model.vlm_with_expert.grids.point_predictor.2.weight"
    fixed = changed_copy(checkpoint, tmp_path / "fixed", "model.safetensors", lambda t: t[weight].zero_())
    policy = SmolVLAGridsPolicy.from_pretrained(fixed)
    camera_hw = (480, 640)
    rows, cols = policy.token_grid(tuple(policy.image_cover(camera_hw).shape))
    start = torch.sigmoid(policy.grids.point_predictor[-1].bias.detach()).view(-1, 2)
    points = region_points_to_grid(start[None], (rows, cols), policy.image_region(camera_hw))[0]
    expected = policy.points_in_camera(points, camera_hw)
    recording = tmp_path / "live.rrd"
    with rerun_server(recording) as port:
        result = deploy(
            tmp_path,
            follower,
            fixed,
            "--display_data=true",
            "--display_ip=127.0.0.1",
            f"--display_port={port}",
        )
    assert result.returncode == 0, result.stderr[-3000:]
    repo_id = (
        "local/rollout_so100" if compat.POLICY_ON_ROBOT_COMMAND == "lerobot-rollout" else "local/eval_so100"
    )
    frames = LeRobotDataset(repo_id, root=tmp_path / "eval").num_frames
    logged, images = read_points(recording), logged_images(recording)
    assert {"observation.front", "observation.wrist"} <= images  # LeRobot's own logs of the cameras
    assert set(logged) == {"observation.front/grids_points", "observation.wrist/grids_points"}
    for chunks in logged.values():
        assert len(chunks) == math.ceil(frames / policy.config.n_action_steps), (len(chunks), frames)
        for chunk in chunks:
            torch.testing.assert_close(torch.tensor(chunk), expected)


def test_a_policy_for_other_features_is_refused_before_any_motor_command(arms, tmp_path, checkpoint):
    follower, _ = arms
    start = positions(follower)
    config = SmolVLAGridsPolicy.from_pretrained(checkpoint).config
    config.input_features["observation.state"].shape = (7,)  # a 7-joint arm's policy
    other = tmp_path / "seven_joints"
    SmolVLAGridsPolicy(config).save_pretrained(other)
    for name in ("policy_preprocessor.json", "policy_postprocessor.json"):
        (other / name).write_text((checkpoint / name).read_text())
    for stats in checkpoint.glob("*.safetensors"):
        if stats.name != "model.safetensors":
            (other / stats.name).write_bytes(stats.read_bytes())
    result = deploy(tmp_path, follower, other)
    assert result.returncode != 0
    assert "state observation.state: policy (7,), robot/dataset (6,)" in result.stderr
    assert not moved(follower, start)


def test_a_missing_camera_is_named_before_any_motor_command(arms, tmp_path, checkpoint):
    follower, _ = arms
    start = positions(follower)
    result = deploy(tmp_path, follower, checkpoint, cameras="111=Intel RealSense D435")
    assert result.returncode != 0
    # LeRobot 0.6 finds cameras by name itself (its message, our advice); on 0.4.4 the lookup is ours.
    assert "RealSense camera" in result.stderr and "'Intel RealSense D405'" in result.stderr
    assert "lerobot-grids-cameras lists them" in result.stderr
    assert not moved(follower, start)


def test_an_unsupported_resolution_is_named(monkeypatch):
    from lerobot_grids.cameras import RealSenseByNameCameraConfig

    devices = SimulatedRealSense({"111": "Intel RealSense D435"})
    monkeypatch.setitem(sys.modules, "pyrealsense2", devices)
    from lerobot.cameras.realsense import camera_realsense

    from lerobot_grids.cameras.camera_realsense_by_name import RealSenseByNameCamera

    monkeypatch.setattr(camera_realsense, "rs", devices, raising=False)
    camera = RealSenseByNameCamera(
        RealSenseByNameCameraConfig(
            serial_number_or_name="Intel RealSense D435", width=1920, height=1080, fps=30
        )
    )
    with pytest.raises(ConnectionError, match="did not start an RGB stream of 1920x1080 at 30 fps"):
        camera.connect()


def test_camera_check_says_which_camera_is_which_and_what_is_missing(tmp_path, wheel):
    """The first run is of the wheel (a regular install: its default robot config is package data)."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "installed")
    # The extracted wheel first on the path (before the checkout's editable install); run outside the
    # checkout.
    result = run(
        "-m",
        "lerobot_grids.scripts.lerobot_grids_cameras",
        env={"PYTHONPATH": str(tmp_path / "installed")},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Intel RealSense D435, serial 111 -> front" in result.stdout
    assert "Intel RealSense D405, serial 222 -> wrist" in result.stdout
    result = run("lerobot-grids-cameras", cameras="111=Intel RealSense D435")
    assert result.returncode == 1
    assert "MISSING wrist: no camera named or numbered 'Intel RealSense D405'" in result.stdout
    assert "set cameras: wrist: serial_number_or_name: to a connected camera's serial number" in result.stdout


def start_policy_server(tmp_path: Path) -> tuple[subprocess.Popen, int, dict]:
    """Our policy server entry point on a free loopback port (LeRobot writes its logs/ to ``tmp_path``);
    returns it, the port and the environment for the robot client."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SIMULATED_REALSENSE": BOTH_CAMERAS}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("lerobot-grids-policy-server")),
            "--host=127.0.0.1",
            f"--port={port}",
            "--fps=10",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return server, port, env


def start_robot_client(tmp_path: Path, follower, port: int, env: dict, policy: Path) -> subprocess.Popen:
    """LeRobot's robot client (the shipped async_client config: SO-100 and both cameras) asking for
    ``policy``."""
    return subprocess.Popen(
        [
            sys.executable,
            str(LAUNCHER),
            "-m",
            "lerobot.async_inference.robot_client",
            f"--config_path={config_path('async_client')}",
            f"--server_address=127.0.0.1:{port}",
            f"--pretrained_name_or_path={policy}",
            "--actions_per_chunk=4",
            "--fps=10",
            f"--task={TASK}",
            *ports(tmp_path, follower),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_async_server_and_robot_client_run_a_grids_policy_over_loopback(arms, tmp_path, checkpoint):
    """LeRobot's robot client (SO-100 + cameras) and its policy server, started by our entry point."""
    import time

    follower, _ = arms
    server, port, env = start_policy_server(tmp_path)
    client = start_robot_client(tmp_path, follower, port, env, checkpoint)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(follower.goal_writes[1]) < 3 and client.poll() is None:
            time.sleep(0.5)
    finally:
        client.terminate()
        server.terminate()
        client_log = client.communicate(timeout=30)[0]
        server_log = server.communicate(timeout=30)[0]
    assert len(follower.goal_writes[1]) >= 3, client_log[-3000:] + server_log[-3000:]
    assert "smolvla_grids" in server_log
    assert all(1000 <= goal <= 3000 for goals in follower.goal_writes.values() for goal in goals)
