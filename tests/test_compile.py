"""Compiled paths: ``--policy.compile_model`` for both GridS types, and nothing in our code that splits a
graph.

Compiled here with the ``aot_eager`` backend: Dynamo's graph capture and AOT autograd, as inductor gets them,
without inductor's code generation (minutes of C++ compilation on a CPU).
"""

import pytest
import torch
from conftest import make_batch, make_config
from lerobot.policies.factory import get_policy_class
from lerobot.policies.pi0.modeling_pi0 import make_att_2d_masks
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS
from test_distributed_training import SAMPLER_OPTIONS
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from lerobot_grids import compat
from lerobot_grids.grids import GridSampler, GridSConfig, grid_centres


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles anew (Dynamo's per-function recompilation limit counts across tests otherwise)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "options",
    SAMPLER_OPTIONS + [{"sampler": "dense"}],
    ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items()) or "paper",
)
def test_sampler_compiles_to_one_graph_forward_and_backward(options):
    """``fullgraph=True`` refuses any graph break: every sampler option is one graph, with the same tokens,
    points and gradients as eager."""
    torch.manual_seed(0)
    sampler = GridSampler(
        32, GridSConfig(**{"num_tokens": 4, **options} if options.get("sampler") != "dense" else options)
    )
    compiled = torch.compile(sampler, fullgraph=True, backend="aot_eager")
    tokens, context = torch.randn(2, 20, 32), torch.randn(2, 32)
    results = []
    for module in (sampler, compiled):
        inputs = tokens.clone().requires_grad_()
        torch.manual_seed(1)  # the random sampler's draw
        sampled, points = module(inputs, (4, 5), context=context)
        (sampled.square().sum() + points.sum()).backward()
        results.append((sampled, points, inputs.grad))
    for ours, eager in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, eager)


def test_grid_centres_are_made_once_and_serve_training_after_inference_mode():
    """LeRobot acts under ``torch.inference_mode``; centres first made there must not be inference tensors,
    which autograd refuses to save: a training step after an evaluation would fail. Centres made on fake
    tensors are not kept."""
    sampler = GridSampler(32, GridSConfig(num_tokens=4, predictor="attention"))
    grid = (3, 7)  # a grid no other test uses, so that it is first made here
    with torch.inference_mode():
        sampler(torch.randn(1, 21, 32), grid)
    assert grid_centres(grid, torch.device("cpu")) is grid_centres(grid, torch.device("cpu"))
    tokens = torch.randn(1, 21, 32, requires_grad=True)
    sampled, points = sampler(tokens, grid)
    (sampled.sum() + points.sum()).backward()
    assert tokens.grad is not None and sampler.attention_predictor.queries.grad is not None
    with FakeTensorMode():  # as the benchmark counts FLOPs: nothing fake is kept for later calls
        fake = grid_centres((3, 8), torch.device("cpu"))
    assert isinstance(fake, FakeTensor) and not isinstance(
        grid_centres((3, 8), torch.device("cpu")), FakeTensor
    )


def _model_inputs(policy, batch: dict) -> tuple:
    if policy.name == "smolvla_grids":
        images, masks = policy.prepare_images(batch)
    else:
        images, masks = policy._preprocess_images(batch)
    return (
        images,
        masks,
        batch[OBS_LANGUAGE_TOKENS],
        batch[OBS_LANGUAGE_ATTENTION_MASK],
        policy.prepare_state(batch),
    )


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "pi0_grids"])
def test_lerobot_compile_model_acts_and_trains_as_eager(dataset_root, monkeypatch, policy_type):
    """``--policy.compile_model=true --policy.compile_mode=...``: the policy's ``sample_actions`` and
    ``forward`` compiled as LeRobot's SmolVLA and pi0 compile them (our pi0 model does what LeRobot's does),
    with the mode given; the action chunk, the loss and the sampler's gradients are the eager policy's, with
    the same weights and noise."""
    modes, compile_function = [], torch.compile

    def compile_for_the_test(function, *, mode=None, **_):
        modes.append(mode)
        return compile_function(function, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_for_the_test)
    options = {
        "grids": {"num_tokens": 4, "predictor": "attention", "instruction": True},
        **({"num_steps": 3} if policy_type == "smolvla_grids" else {}),
    }  # denoising steps, as the tiny pi0's
    torch.manual_seed(0)
    policy_class = get_policy_class(policy_type)
    eager = policy_class(make_config(policy_type, dataset_root=dataset_root, **options))
    compiled = policy_class(
        make_config(
            policy_type, dataset_root=dataset_root, compile_model=True, compile_mode="max-autotune", **options
        )
    )
    compiled.load_state_dict(eager.state_dict())
    assert modes == ["max-autotune", "max-autotune"]

    batch = make_batch(eager.config, dataset_root)
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(2, eager.config.chunk_size, eager.config.max_action_dim, generator=generator)
    time = torch.tensor([0.3, 0.8])
    chunks, losses, gradients = [], [], []
    for policy in (eager, compiled):
        with torch.no_grad():
            chunks.append(policy.eval().predict_action_chunk(dict(batch), noise=noise))
        assert len(policy.sampled_points()) == len(policy.config.image_features)  # one record per camera
        policy.train()
        inputs = _model_inputs(policy, dict(batch))
        actions = policy.prepare_action(batch)
        loss = policy.model.forward(*inputs, actions, noise=noise, time=time).mean()
        loss.backward()
        losses.append(loss)
        gradients.append({name: p.grad for name, p in policy.grids.named_parameters()})
    torch.testing.assert_close(chunks[1], chunks[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-4, atol=1e-6)
    assert gradients[0]["attention_predictor.queries"].abs().sum() > 0


@pytest.mark.skipif(compat.PI_ON_STOCK_TRANSFORMERS, reason="LeRobot 0.5+ runs pi0's backbone forward itself")
def test_pi0_backbone_forward_compiles_to_one_graph(dataset_root):
    """Our pi0 backbone forward on LeRobot 0.4.4 (prefix pass with its cache, then two denoising steps written
    into the cache's buffers) is one graph each, with eager's outputs."""
    torch.manual_seed(0)
    policy = get_policy_class("pi0_grids")(make_config("pi0_grids", dataset_root=dataset_root)).eval()
    model = policy.model
    backbone = model.paligemma_with_expert
    compiled = torch.compile(backbone.forward, fullgraph=True, backend="aot_eager")
    batch = make_batch(policy.config, dataset_root)
    with torch.no_grad():
        images, masks = policy._preprocess_images(batch)
        prefix, prefix_pad, prefix_att = model.embed_prefix(
            images, masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
        )
        state = policy.prepare_state(batch)
        outputs = []
        for forward in (backbone.forward, compiled):
            prefix_mask = model._prepare_attention_masks_4d(make_att_2d_masks(prefix_pad, prefix_att))
            _, cache = forward(
                prefix_mask, torch.cumsum(prefix_pad, 1) - 1, None, [prefix, None], use_cache=True
            )
            steps = []
            for step in range(2):
                x_t = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(step))
                suffix, suffix_pad, suffix_att, _ = model.embed_suffix(state, x_t, torch.full((2,), 0.5))
                full = torch.cat(
                    [
                        prefix_pad[:, None, :].expand(-1, suffix.shape[1], -1),
                        make_att_2d_masks(suffix_pad, suffix_att),
                    ],
                    dim=2,
                )
                positions = prefix_pad.sum(-1, keepdim=True) + torch.cumsum(suffix_pad, dim=1) - 1
                (_, suffix_out), _ = forward(
                    model._prepare_attention_masks_4d(full), positions, cache, [None, suffix], use_cache=False
                )
                steps.append(suffix_out)
            outputs.append(steps)
    for ours, eager in zip(outputs[1], outputs[0], strict=True):
        torch.testing.assert_close(ours, eager)


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "pi0_grids"])
def test_sampled_points_stay_one_record_per_camera_when_the_model_is_called_directly(
    dataset_root, policy_type
):
    """A compiled ``sample_actions`` (or a benchmark) called again and again without the policy's batch
    handling keeps one record per camera: the record does not grow."""
    policy = get_policy_class(policy_type)(
        make_config(policy_type, dataset_root=dataset_root, grids={"num_tokens": 4})
    ).eval()
    inputs = _model_inputs(policy, make_batch(policy.config, dataset_root))
    with torch.no_grad():
        for _ in range(3):
            policy.model.sample_actions(*inputs)
    assert len(policy.grids_backbone.sampled_points) == len(policy.config.image_features) == 2
