"""Contracts LeRobot's own tests check for its policies (tests/policies, tests/processor at v0.4.4 and
v0.6.1), checked for every GridS policy type: the processors are the family's and reload to the same outputs;
forward and select_action leave their inputs as they were; forward returns the loss and its dict."""

import copy

import pytest
import torch
from conftest import DATASET_REPO_ID, make_batch, make_config, make_processors
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import get_policy_class, make_pre_post_processors

from lerobot_grids import compat

POLICY_TYPES = [
    "smolvla_grids",
    "pi0_grids",
    pytest.param(
        "pi05_grids", marks=pytest.mark.skipif(not compat.PI_ON_STOCK_TRANSFORMERS, reason="LeRobot 0.5+")
    ),
    "act_grids",
]


def _family_processors(config, stats):
    """LeRobot's processor factory of the policy's family, on the same config (for pi0/pi0.5 with the
    configured tokenizer in place of the Hub one they hard-code)."""
    if config.type == "smolvla_grids":
        from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

        return make_smolvla_pre_post_processors(config, dataset_stats=stats)
    if config.type == "act_grids":
        from lerobot.policies.act.processor_act import make_act_pre_post_processors

        return make_act_pre_post_processors(config, dataset_stats=stats)
    import inspect

    from lerobot_grids.policies.pi0_grids.processor_pi0_grids import tokenizer_named

    family = config.type.removesuffix("_grids")
    module = __import__(f"lerobot.policies.{family}.processor_{family}", fromlist=["_"])
    with tokenizer_named(module, config.tokenizer_name):
        return inspect.unwrap(getattr(module, f"make_{family}_pre_post_processors"))(
            config, dataset_stats=stats
        )


def _step_names(pipeline) -> list[str]:
    """The registry names the pipeline saves its steps under (what a checkpoint's processor JSON lists)."""
    return [getattr(type(step), "_registry_name", type(step).__name__) for step in pipeline.steps]


def _equal(first, second) -> bool:
    if torch.is_tensor(first):
        return torch.is_tensor(second) and first.shape == second.shape and torch.equal(first, second)
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(_equal(first[key], second[key]) for key in first)
    return first == second


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_processors_are_the_familys_steps_and_reload_to_the_same_outputs(dataset_root, tmp_path, policy_type):
    config = make_config(policy_type, dataset_root=dataset_root)
    dataset = LeRobotDataset(DATASET_REPO_ID, root=dataset_root)
    preprocessor, postprocessor = make_processors(config, dataset.meta.stats)
    family_pre, family_post = _family_processors(config, dataset.meta.stats)
    for ours, theirs in ((preprocessor, family_pre), (postprocessor, family_post)):
        assert _step_names(ours) == _step_names(theirs) and len(ours.steps) > 1
    frame = dataset[3]
    assert _equal(preprocessor(dict(frame)), family_pre(dict(frame)))

    preprocessor.save_pretrained(tmp_path)
    postprocessor.save_pretrained(tmp_path)
    loaded_pre, loaded_post = make_pre_post_processors(config, pretrained_path=str(tmp_path))
    assert _equal(loaded_pre(dict(frame)), preprocessor(dict(frame)))
    action = torch.randn(2, 6)
    torch.testing.assert_close(loaded_post(action.clone()), postprocessor(action.clone()), rtol=0, atol=0)


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_forward_and_select_action_leave_their_inputs_unchanged(dataset_root, policy_type):
    policy = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root))
    batch = make_batch(policy.config, dataset_root)
    before = copy.deepcopy(batch)
    loss, output = policy.forward(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and isinstance(output, dict)
    assert _equal(batch, before)
    observation = {key: value for key, value in batch.items() if key != "action"}
    before = copy.deepcopy(observation)
    policy.eval()
    with torch.no_grad():
        action = policy.select_action(observation)
    assert action.shape == (2, 6) and _equal(observation, before)


@pytest.mark.parametrize(
    "policy_type", [t for t in POLICY_TYPES if getattr(t, "values", [t])[0].startswith("pi0")]
)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(dataset_root, policy_type):
    """pi0/pi0.5's --policy.gradient_checkpointing=true recomputes activations in the backward pass: the same
    loss and gradients, the GridS sampler's included."""
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        config = make_config(policy_type, dataset_root=dataset_root, gradient_checkpointing=checkpointing)
        policy = get_policy_class(policy_type)(config).train()
        torch.manual_seed(1)
        loss, _ = policy.forward(make_batch(policy.config, dataset_root))
        loss.backward()
        results.append(
            (
                loss.detach(),
                {
                    name: p.grad.clone()
                    for name, p in policy.named_parameters()
                    if p.grad is not None and ".grids." in name
                },
            )
        )
    (plain_loss, plain_grads), (checkpointed_loss, checkpointed_grads) = results
    torch.testing.assert_close(checkpointed_loss, plain_loss)
    assert plain_grads and plain_grads.keys() == checkpointed_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, msg=name)


@pytest.mark.skipif(
    not hasattr(
        __import__("lerobot.policies.pi0.configuration_pi0", fromlist=["_"]).PI0Config, "use_relative_actions"
    ),
    reason="relative actions: LeRobot 0.6",
)
def test_relative_actions_round_trip_through_the_saved_processors(dataset_root, tmp_path):
    """pi0's --policy.use_relative_actions=true: the preprocessor trains on action - state, the postprocessor
    of a reloaded checkpoint (its absolute step re-linked by LeRobot's factory) gives the absolute action
    back."""
    config = make_config("pi0_grids", dataset_root=dataset_root, use_relative_actions=True)
    dataset = LeRobotDataset(DATASET_REPO_ID, root=dataset_root)
    for processor in make_processors(config, dataset.meta.stats):
        processor.save_pretrained(tmp_path)
    preprocessor, postprocessor = make_pre_post_processors(config, pretrained_path=str(tmp_path))
    frame = dataset[3]
    processed = preprocessor(dict(frame))
    plain, _ = make_processors(make_config("pi0_grids", dataset_root=dataset_root), dataset.meta.stats)
    assert not torch.allclose(processed["action"], plain(dict(frame))["action"])  # trained on action - state
    absolute = postprocessor(processed["action"])
    torch.testing.assert_close(absolute[0], frame["action"], rtol=1e-5, atol=1e-4)
    policy = get_policy_class("pi0_grids")(config).eval()
    with torch.no_grad():
        action = postprocessor(policy.select_action({k: v for k, v in processed.items() if k != "action"}))
    assert action.shape == (1, 6) and torch.isfinite(action).all()


@pytest.mark.parametrize("policy_type", POLICY_TYPES)
def test_a_checkpoint_saved_from_a_gathered_state_dict_reloads_equal(dataset_root, tmp_path, policy_type):
    """LeRobot 0.6.1's save_pretrained(state_dict=...) (how lerobot-train saves a model sharded over GPUs with
    FSDP): one model.safetensors that our strict loader reads back to the same weights."""
    import inspect

    policy_class = get_policy_class(policy_type)
    if "state_dict" not in inspect.signature(policy_class._save_pretrained).parameters:
        pytest.skip("save_pretrained(state_dict=...) is LeRobot 0.6's")
    policy = policy_class(make_config(policy_type, dataset_root=dataset_root))
    policy.save_pretrained(tmp_path, state_dict={k: v.clone() for k, v in policy.state_dict().items()})
    assert [path.name for path in tmp_path.glob("*.safetensors")] == ["model.safetensors"]
    reloaded = policy_class.from_pretrained(tmp_path).state_dict()
    assert all(torch.equal(value, reloaded[key]) for key, value in policy.state_dict().items())
