"""``lerobot-grids-policy-server``: LeRobot's async-inference policy server, serving GridS policies too.

LeRobot's ``lerobot.async_inference.policy_server`` accepts only the policy types in its
``SUPPORTED_POLICIES`` and loads no plugin. This entry point registers the installed plugins, adds
our policy types (``smolvla_grids``, ``pi0_grids``, ``pi05_grids``) to that list in its own process, and runs
LeRobot's ``serve`` with the same options, with one check added to LeRobot's server: a GridS policy is
refused to a robot whose state size or cameras (count and names, after the client's ``rename_map``) differ
from what it was trained with, before the first observation is taken::

    lerobot-grids-policy-server --host=0.0.0.0 --port=8080

The robot side is LeRobot's own client, which loads plugins itself::

    python -m lerobot.async_inference.robot_client --config_path=$(lerobot-grids-configs async_client) \\
        --server_address=<server>:8080 --pretrained_name_or_path=<checkpoint> --task="<instruction>"
"""

import pickle  # nosec: LeRobot's wire format for the client's policy instructions

import grpc
from lerobot.async_inference import constants, policy_server
from lerobot.utils.constants import OBS_IMAGES
from lerobot.utils.import_utils import register_third_party_plugins

from lerobot_grids.policies import GRIDS_POLICY_TYPES
from lerobot_grids.policies.grids_policy import GridSPolicyMixin


class GridSPolicyServer(policy_server.PolicyServer):
    """LeRobot's ``PolicyServer``; a GridS policy is checked against the robot's features the client sent."""

    def SendPolicyInstructions(self, request, context):  # noqa: N802 (gRPC's name)
        reply = super().SendPolicyInstructions(request, context)
        if isinstance(self.policy, GridSPolicyMixin):
            rename_map = pickle.loads(request.data).rename_map or {}  # nosec: as LeRobot's server reads it
            features = {rename_map.get(key, key): value for key, value in self.lerobot_features.items()}
            cameras = [key for key in features if key.startswith(f"{OBS_IMAGES}.")]
            mismatches = self.policy.feature_mismatches(features, cameras, check_camera_names=True)
            if mismatches:
                message = (
                    f"The {self.policy.name} policy does not fit this robot: {'; '.join(mismatches)}. Use a "
                    "policy trained with this robot's joints and cameras. Nothing was sent to the robot."
                )
                self.logger.error(message)
                self.policy = None
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, message)
        return reply


def allow_grids_policies() -> None:
    register_third_party_plugins()
    constants.SUPPORTED_POLICIES.extend(
        t for t in GRIDS_POLICY_TYPES if t not in constants.SUPPORTED_POLICIES
    )
    policy_server.PolicyServer = GridSPolicyServer  # what LeRobot's serve() builds


def main() -> None:
    allow_grids_policies()
    policy_server.serve()


if __name__ == "__main__":
    main()
