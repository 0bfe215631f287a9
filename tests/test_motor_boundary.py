"""Checks before anything reaches the motors, on every path that acts: the async policy server (LeRobot's
server with our check, LeRobot's robot client), lerobot-eval, and the deployment command (lerobot-record on
LeRobot 0.4.4, lerobot-rollout on 0.6) against the simulated arm."""

import json
import pickle
import shutil
import time
from pathlib import Path

import pytest
from conftest import POSTPROCESSOR_STATS, changed_copy
from lerobot.async_inference.configs import PolicyServerConfig
from lerobot.async_inference.helpers import RemotePolicyConfig
from test_so100_realsense import (  # noqa: F401 (fixtures)
    BOTH_CAMERAS,
    LAUNCHER,
    TASK,
    arm,
    arms,
    deploy,
    moved,
    ports,
    positions,
    start_policy_server,
    start_robot_client,
)

from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy
from lerobot_grids.scripts.lerobot_grids_policy_server import GridSPolicyServer, allow_grids_policies


class AbortedError(Exception):
    pass


class Context:
    """The part of a gRPC servicer context the server uses: ``abort`` ends the call with a status."""

    def peer(self):
        return "ipv4:127.0.0.1:1"

    def abort(self, code, details):
        raise AbortedError(f"{code}: {details}")


def instructions(checkpoint: Path, features: dict, rename_map: dict | None = None):
    from lerobot.transport import services_pb2

    config = RemotePolicyConfig(
        policy_type="smolvla_grids",
        pretrained_name_or_path=str(checkpoint),
        lerobot_features=features,
        actions_per_chunk=4,
        device="cpu",
        rename_map=rename_map or {},
    )
    return services_pb2.PolicySetup(data=pickle.dumps(config))


def robot_features(state: int = 6, cameras=("front", "wrist")) -> dict:
    """What LeRobot's robot client sends for an SO arm (``hw_to_dataset_features`` of its observation)."""
    features = {
        "observation.state": {
            "dtype": "float32",
            "shape": (state,),
            "names": [f"j{i}.pos" for i in range(state)],
        }
    }
    for name in cameras:
        features[f"observation.images.{name}"] = {
            "dtype": "image",
            "shape": (480, 640, 3),
            "names": ["height", "width", "channels"],
        }
    return features


@pytest.mark.parametrize(
    ("features", "rename_map", "message"),
    [
        (robot_features(state=7), None, r"state observation.state: policy \(6,\), robot/dataset \(7,\)"),
        (
            robot_features(cameras=("front",)),
            None,
            r"cameras: policy \[.*wrist'\], robot/dataset \['observation.images.front'\]",
        ),
        (
            robot_features(cameras=("top", "wrist")),
            None,
            r"camera names: policy .* robot \['observation.images.top'",
        ),
    ],
)
def test_async_server_refuses_a_policy_that_does_not_fit_the_robot(checkpoint, features, rename_map, message):
    allow_grids_policies()
    server = GridSPolicyServer(PolicyServerConfig())
    with pytest.raises(AbortedError, match=f"FAILED_PRECONDITION.*{message}"):
        server.SendPolicyInstructions(instructions(checkpoint, features, rename_map), Context())
    assert server.policy is None  # nothing left to act with


def test_async_server_accepts_the_robot_it_was_trained_for_and_renamed_cameras(checkpoint):
    allow_grids_policies()
    server = GridSPolicyServer(PolicyServerConfig())
    server.SendPolicyInstructions(instructions(checkpoint, robot_features()), Context())
    assert isinstance(server.policy, SmolVLAGridsPolicy)
    renamed = {"observation.images.top": "observation.images.front"}
    server.SendPolicyInstructions(
        instructions(checkpoint, robot_features(cameras=("top", "wrist")), renamed), Context()
    )
    assert isinstance(server.policy, SmolVLAGridsPolicy)


def test_async_server_refuses_non_finite_statistics(checkpoint, tmp_path):
    broken = changed_copy(
        checkpoint,
        tmp_path / "nan_stats",
        POSTPROCESSOR_STATS,
        lambda t: t["action.std"].__setitem__(5, float("nan")),
    )
    allow_grids_policies()
    server = GridSPolicyServer(PolicyServerConfig())
    with pytest.raises(ValueError, match=rf"non-finite .* in {POSTPROCESSOR_STATS}: \['action.std'\]"):
        server.SendPolicyInstructions(instructions(broken, robot_features()), Context())


def test_robot_client_gets_the_refusal_and_moves_nothing(arms, tmp_path, checkpoint):  # noqa: F811
    """LeRobot's robot client (cameras front and wrist) asks for a policy trained with cameras front and top:
    refused over the wire, before any observation is taken."""
    follower, _ = arms
    start = positions(follower)
    other = tmp_path / "front_top"
    shutil.copytree(checkpoint, other)
    config = json.loads((other / "config.json").read_text())
    config["input_features"]["observation.images.top"] = config["input_features"].pop(
        "observation.images.wrist"
    )
    (other / "config.json").write_text(json.dumps(config))
    server, port, env = start_policy_server(tmp_path)
    server_log = ""
    while (
        "started" not in server_log.lower() and server.poll() is None
    ):  # the client does not retry a refused connection
        server_log += server.stdout.readline()
    client = None
    try:
        # After the refusal LeRobot's client returns from its main, but the connected robot's camera threads
        # keep the process alive: read its output until the refusal appears, then stop it.
        client = start_robot_client(tmp_path, follower, port, env, other)
        log, deadline = "", time.monotonic() + 120
        while "does not fit this robot" not in log and time.monotonic() < deadline and client.poll() is None:
            log += client.stdout.readline()
        time.sleep(1)  # anything the client would do after the refusal
    finally:
        if client is not None:
            client.terminate()
            log += client.communicate(timeout=30)[0]
        server.terminate()
        server_log += server.communicate(timeout=30)[0]
    assert "Failed to connect to policy server" in log and "does not fit this robot: camera names" in log, (
        log[-3000:] + server_log[-3000:]
    )
    assert not moved(follower, start)


def test_an_action_that_unnormalises_to_infinity_never_reaches_the_bus(
    arms,  # noqa: F811
    tmp_path,
    checkpoint,  # noqa: F811
):
    """Finite statistics, finite policy output (bias 10 in normalised units), but 10 * 3e38 overflows: the
    check on the unnormalised action stops the deployment command before any goal is written."""
    follower, _ = arms
    start = positions(follower)
    broken = changed_copy(
        checkpoint,
        tmp_path / "overflow",
        POSTPROCESSOR_STATS,
        lambda t: t["action.std"].fill_(3e38),
        action_bias=10.0,
    )
    result = deploy(tmp_path, follower, broken)
    assert result.returncode != 0 and "non-finite action (after unnormalisation" in result.stderr, (
        result.stderr[-3000:]
    )
    assert not moved(follower, start)


def test_lerobot_eval_refuses_an_env_with_other_features(checkpoint, tmp_path):
    """An SO-100 policy (6 joints) on the tabletop env (action [x, y, gripper]), through lerobot-eval's
    ``eval_main`` (in this process): refused when loaded, before the first step (LeRobot's make_policy gives a
    loaded policy the env's action features; its cameras LeRobot checks itself)."""
    from lerobot_grids.envs import GridSTabletopEnv
    from lerobot_grids.evidence.demo import evaluate

    with pytest.raises(
        ValueError,
        match=r"does not fit the environment or robot it was given: "
        r"action: policy \(6,\), env/robot \(3,\)",
    ):
        evaluate(checkpoint, GridSTabletopEnv(), 1, tmp_path / "eval")
    assert not (tmp_path / "eval" / "eval_info.json").exists()
