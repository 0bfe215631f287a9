"""Every GridS policy type through LeRobot's async policy server (``lerobot-grids-policy-server``): loaded
from a checkpoint as the server loads one, a robot observation in, ``actions_per_chunk`` actions out, as they
reach the motors (after the checkpoint's postprocessor), and the same actions LeRobot's record loop would act
on."""

import pickle
import time

import numpy as np
import pytest
import torch
from conftest import DATASET_REPO_ID, make_config, make_processors
from lerobot.async_inference.configs import PolicyServerConfig
from lerobot.async_inference.helpers import RemotePolicyConfig, TimedObservation
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import get_policy_class
from test_motor_boundary import Context, robot_features

from lerobot_grids import compat
from lerobot_grids.scripts.lerobot_grids_policy_server import GridSPolicyServer, allow_grids_policies

TASK = "Pick up the green cube and place it into the green bowl."
POLICY_TYPES = [
    "smolvla_grids",
    "pi0_grids",
    pytest.param(
        "pi05_grids", marks=pytest.mark.skipif(not compat.PI_ON_STOCK_TRANSFORMERS, reason="LeRobot 0.5+")
    ),
    "act_grids",
]


def _checkpoint(policy_type, dataset_root, folder):
    config = make_config(policy_type, dataset_root=dataset_root)
    torch.manual_seed(0)
    get_policy_class(policy_type)(config).save_pretrained(folder)
    for processor in make_processors(config, LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta.stats):
        processor.save_pretrained(folder)
    return folder


def _raw_observation(features: dict) -> dict:
    """What LeRobot's robot client sends: joint positions by name, camera frames (uint8, H x W x 3), the
    task."""
    rng = np.random.default_rng(0)
    observation = {name: float(rng.uniform(-20, 20)) for name in features["observation.state"]["names"]}
    for key, feature in features.items():
        if key.startswith("observation.images."):
            observation[key.removeprefix("observation.images.")] = rng.integers(
                0, 256, feature["shape"], dtype=np.uint8
            )
    return {**observation, "task": TASK}


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_the_async_server_serves_every_grids_policy_type(dataset_root, tmp_path, policy_type):
    allow_grids_policies()
    checkpoint = _checkpoint(policy_type, dataset_root, tmp_path / policy_type)
    features = robot_features()
    from lerobot.transport import services_pb2

    setup = RemotePolicyConfig(
        policy_type=policy_type,
        pretrained_name_or_path=str(checkpoint),
        lerobot_features=features,
        actions_per_chunk=3,
        device="cpu",
    )
    server = GridSPolicyServer(PolicyServerConfig())
    server.SendPolicyInstructions(services_pb2.PolicySetup(data=pickle.dumps(setup)), Context())
    assert server.policy.name == policy_type
    observation = TimedObservation(timestamp=time.time(), timestep=7, observation=_raw_observation(features))
    torch.manual_seed(1)
    actions = server._predict_action_chunk(observation)
    assert [action.get_timestep() for action in actions] == [7, 8, 9]  # actions_per_chunk of the chunk
    chunk = torch.stack([action.get_action() for action in actions])
    assert chunk.shape == (3, 6) and torch.isfinite(chunk).all()
    assert server.policy.sampled_points().keys() == {"observation.images.front", "observation.images.wrist"}

    # The record loop's first action from the same observation and noise: the server's first.
    from lerobot.async_inference.helpers import raw_observation_to_observation

    batch = server.preprocessor(
        raw_observation_to_observation(
            observation.get_observation(), server.lerobot_features, server.policy_image_features
        )
    )
    server.policy.reset()
    torch.manual_seed(1)
    first = server.postprocessor(server.policy.select_action(batch))
    torch.testing.assert_close(first[0], chunk[0])
