"""Real-time chunking (LeRobot's ``--policy.rtc_config``) with every GridS policy type, as LeRobot's RTC tests
check it for smolvla, pi0 and pi0.5: the processor is built only when configured, and a chunk guided by the
previous chunk's leftover differs from an unguided one, while with no leftover it is the unguided chunk."""

import pytest
import torch
from conftest import make_batch, make_config
from lerobot.policies.factory import get_policy_class
from lerobot.policies.rtc.configuration_rtc import RTCConfig

from lerobot_grids import compat

POLICY_TYPES = [
    "smolvla_grids",
    "pi0_grids",
    pytest.param(
        "pi05_grids", marks=pytest.mark.skipif(not compat.PI_ON_STOCK_TRANSFORMERS, reason="LeRobot 0.5+")
    ),
]


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_rtc_processor_exists_only_when_configured(dataset_root, policy_type):
    plain = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root))
    assert plain.rtc_processor is None and plain.model.rtc_processor is None and not plain._rtc_enabled()
    config = make_config(policy_type, dataset_root=dataset_root, rtc_config=RTCConfig(enabled=True))
    guided = get_policy_class(policy_type)(config)
    assert guided.rtc_processor is not None and guided.model.rtc_processor is guided.rtc_processor
    assert guided._rtc_enabled()


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_a_chunk_guided_by_the_previous_one_differs_and_without_one_is_the_plain_chunk(
    dataset_root, policy_type
):
    config = make_config(
        policy_type, dataset_root=dataset_root, rtc_config=RTCConfig(enabled=True, execution_horizon=3)
    )
    torch.manual_seed(0)
    policy = get_policy_class(policy_type)(config).eval()
    batch = make_batch(policy.config, dataset_root, size=1)
    noise = torch.randn(
        1, config.chunk_size, config.max_action_dim, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        plain = policy.predict_action_chunk(batch, noise=noise.clone())
        unguided = policy.predict_action_chunk(
            batch, noise=noise.clone(), prev_chunk_left_over=None, inference_delay=1
        )
        leftover = torch.full_like(plain[:, 1:], 3.0)  # far from what the policy would output
        guided = policy.predict_action_chunk(
            batch, noise=noise.clone(), prev_chunk_left_over=leftover, inference_delay=1, execution_horizon=3
        )
    assert plain.shape == guided.shape == (1, config.chunk_size, 6) and torch.isfinite(guided).all()
    torch.testing.assert_close(unguided, plain, rtol=0, atol=0)
    assert not torch.allclose(guided, plain)
    # Guidance pulls the first actions towards the leftover: the frozen prefix moves most.
    assert (guided[:, 0] - leftover[:, 0]).abs().mean() < (plain[:, 0] - leftover[:, 0]).abs().mean()
