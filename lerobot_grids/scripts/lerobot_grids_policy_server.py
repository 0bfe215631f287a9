"""``lerobot-grids-policy-server``: LeRobot's async-inference policy server, serving GridS policies too.

LeRobot's ``lerobot.async_inference.policy_server`` accepts only the policy types in its
``SUPPORTED_POLICIES`` and loads no plugin. This entry point registers the installed plugins, adds
our policy types (``smolvla_grids``, ``pi0_grids``, ``pi05_grids``) to that list in its own process, and runs LeRobot's ``serve`` with
the same options::

    lerobot-grids-policy-server --host=0.0.0.0 --port=8080

The robot side is LeRobot's own client, which loads plugins itself::

    python -m lerobot.async_inference.robot_client --config_path=robot_configs/async_client.yaml \\
        --server_address=<server>:8080 --pretrained_name_or_path=<checkpoint> --task="<instruction>"
"""

from lerobot.async_inference import constants, policy_server
from lerobot.utils.import_utils import register_third_party_plugins

from lerobot_grids.policies import GRIDS_POLICY_TYPES


def allow_grids_policies() -> None:
    register_third_party_plugins()
    constants.SUPPORTED_POLICIES.extend(t for t in GRIDS_POLICY_TYPES if t not in constants.SUPPORTED_POLICIES)


def main() -> None:
    allow_grids_policies()
    policy_server.serve()


if __name__ == "__main__":
    main()
