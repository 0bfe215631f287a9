"""The ``smolvla_grids`` policy inside LeRobot: factory, equivalence to smolvla, training, loading,
pushing."""

import json
import subprocess
import sys

import draccus
import pytest
import torch
from conftest import DATASET_REPO_ID, make_batch, make_config, make_processors
from lerobot.configs.default import DatasetConfig
from lerobot.configs.train import TrainPipelineConfig
from lerobot.configs.types import FeatureType, NormalizationMode
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from safetensors.torch import load_file
from transformers import AutoTokenizer

from lerobot_grids import compat
from lerobot_grids.backbones import TINY_SMOLVLM
from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy


def _noise_and_time(config, batch_size=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch_size, config.chunk_size, config.max_action_dim, generator=generator)
    return noise, torch.rand(batch_size, generator=generator) * 0.9 + 0.05


def test_plugin_discovery_registers_the_policy_types():
    """What lerobot-train does first: discover installed lerobot_policy_* distributions and import them."""
    code = (
        "from lerobot.utils.import_utils import register_third_party_plugins\n"
        "from lerobot.configs.policies import PreTrainedConfig\n"
        "assert 'smolvla_grids' not in PreTrainedConfig.get_known_choices()\n"
        "register_third_party_plugins()\n"
        "from lerobot.policies.factory import get_policy_class, make_policy_config\n"
        "for name in ('smolvla_grids', 'pi0_grids'):\n"
        "    config = make_policy_config(name, grids={'num_tokens': 4})\n"
        "    print(type(config).__name__, get_policy_class(name).__name__, config.grids.num_tokens)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [
        "SmolVLAGridsConfig",
        "SmolVLAGridsPolicy",
        "4",
        "PI0GridsConfig",
        "PI0GridsPolicy",
        "4",
    ]


def test_command_line_sets_nested_grids_options():
    """(A bad value is refused as the last line lerobot-train prints: tests/test_lerobot_train.py.)"""
    args = [
        "--policy.type=smolvla_grids",
        "--policy.grids.num_tokens=4",
        "--policy.grids.predictor=attention",
        "--policy.grids.split_layer=4",
        "--dataset.repo_id=user/data",
    ]
    config = draccus.parse(TrainPipelineConfig, args=args)
    assert isinstance(config.policy, SmolVLAGridsConfig)
    grids = config.policy.grids
    assert (grids.num_tokens, grids.predictor, grids.split_layer, grids.sampler) == (
        4,
        "attention",
        4,
        "grids",
    )


def test_processor_factory_of_the_policy_type(dataset_root):
    """LeRobot's factory builds the policy type's processors from its config and the dataset's statistics:
    the configured tokenizer and length, the device, SmolVLA's normalisation modes, and the statistics
    applied as given (the state and action normalised by hand)."""
    config = make_config(dataset_root=dataset_root, tokenizer_max_length=10)
    assert get_policy_class("smolvla_grids") is SmolVLAGridsPolicy
    dataset = LeRobotDataset(DATASET_REPO_ID, root=dataset_root)
    stats = dataset.meta.stats
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    steps = {type(step).__name__: step for step in preprocessor.steps}
    tokenizer = steps["TokenizerProcessorStep"]
    assert (tokenizer.tokenizer_name, tokenizer.max_length) == (str(TINY_SMOLVLM), 10)
    assert steps["DeviceProcessorStep"].device == "cpu"
    modes = {
        FeatureType.VISUAL: NormalizationMode.IDENTITY,
        FeatureType.STATE: NormalizationMode.MEAN_STD,
        FeatureType.ACTION: NormalizationMode.MEAN_STD,
    }
    assert steps["NormalizerProcessorStep"].norm_map == modes
    assert [type(step).__name__ for step in postprocessor.steps] == [
        "UnnormalizerProcessorStep",
        "DeviceProcessorStep",
    ]

    frame = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=False)))
    processed = preprocessor(dict(frame))
    for key in ("observation.state", "action"):
        mean, std = (torch.as_tensor(stats[key][name], dtype=torch.float32) for name in ("mean", "std"))
        torch.testing.assert_close(processed[key], (frame[key] - mean) / (std + 1e-8))
    assert torch.equal(processed["observation.images.front"], frame["observation.images.front"])
    # the task with SmolVLA's newline, cut at the configured length (the test dataset's task is longer)
    words = AutoTokenizer.from_pretrained(str(TINY_SMOLVLM))([f"{task}\n" for task in frame["task"]])[
        "input_ids"
    ]
    assert min(len(ids) for ids in words) > 10
    assert processed["observation.language.tokens"].tolist() == [ids[:10] for ids in words]
    torch.testing.assert_close(postprocessor(processed["action"]), frame["action"])


def test_dense_sampler_computes_exactly_what_smolvla_computes(dataset_root):
    torch.manual_seed(0)
    dense = SmolVLAPolicy(make_config("smolvla", dataset_root=dataset_root))
    grids = SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, grids={"sampler": "dense"}))
    grids.load_state_dict(dense.state_dict(), strict=True)  # no extra parameters, same names
    batch = make_batch(dense.config, dataset_root)
    noise, time = _noise_and_time(dense.config)
    dense_loss, _ = dense.forward(dict(batch), noise=noise, time=time)
    grids_loss, _ = grids.forward(dict(batch), noise=noise, time=time)
    assert torch.equal(dense_loss, grids_loss)
    dense_actions = dense.predict_action_chunk(dict(batch), noise=noise)
    grids_actions = grids.predict_action_chunk(dict(batch), noise=noise)
    assert torch.equal(dense_actions, grids_actions)


def test_grids_feeds_k_tokens_per_camera_to_the_language_model(dataset_root):
    config = make_config(dataset_root=dataset_root, grids={"num_tokens": 3})
    policy = SmolVLAGridsPolicy(config)
    batch = make_batch(config, dataset_root)
    images, masks = policy.prepare_images(batch)
    dense_images, _ = SmolVLAGridsPolicy(
        make_config(dataset_root=dataset_root, grids={"sampler": "dense"})
    ).prepare_images(batch)
    tokens = batch["observation.language.tokens"]
    prefix, _, _ = policy.model.embed_prefix(
        images, masks, tokens, batch["observation.language.attention_mask"], state=policy.prepare_state(batch)
    )
    # 2 cameras x 3 GridS tokens + language tokens + 1 state token; the dense grid at 128x128 is 4x4.
    assert prefix.shape[1] == 2 * 3 + tokens.shape[1] + 1
    assert policy.model.vlm_with_expert.grid_hw(dense_images[0].shape[-2:]) == (4, 4)
    points = policy.sampled_points()
    assert list(points) == ["observation.images.front", "observation.images.wrist"]
    assert points["observation.images.front"].shape == (2, 3, 2)


def test_grids_parameters_train_while_smolvla_freezes_the_vlm(dataset_root):
    config = make_config(dataset_root=dataset_root, train_expert_only=True, freeze_vision_encoder=True)
    policy = SmolVLAGridsPolicy(config)
    policy.train()
    grids_parameters = dict(policy.grids.named_parameters())
    assert grids_parameters and all(p.requires_grad for p in grids_parameters.values())
    assert not any(p.requires_grad for p in policy.model.vlm_with_expert.vlm.parameters())
    optimised = {id(p) for p in policy.get_optim_params() if p.requires_grad}
    assert all(id(p) in optimised for p in grids_parameters.values())

    before = {name: p.detach().clone() for name, p in grids_parameters.items()}
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    loss, output = policy.forward(make_batch(config, dataset_root))
    loss.backward()
    assert policy.grids.point_predictor[0].weight.grad.abs().sum() > 0
    optimizer.step()
    assert any(not torch.equal(before[name], p) for name, p in grids_parameters.items())
    # The collapse indicator of each camera is in the output dict that lerobot-train logs.
    assert set(output) >= {"grids_point_spread/front", "grids_point_spread/wrist"}
    assert 0 < output["grids_point_spread/front"] < 1.5


def test_collapsed_points_are_reported(dataset_root, caplog):
    policy = SmolVLAGridsPolicy(make_config(dataset_root=dataset_root))
    with torch.no_grad():  # every point at the image centre, whatever the input
        policy.grids.point_predictor[-1].weight.zero_()
        policy.grids.point_predictor[-1].bias.zero_()
    _, output = policy.forward(make_batch(policy.config, dataset_root))
    assert output["grids_point_spread/front"] == 0
    assert "collapsed" in caplog.text


def test_init_from_dense_checkpoint_loads_every_dense_weight(dataset_root, tmp_path):
    torch.manual_seed(1)
    dense = SmolVLAPolicy(make_config("smolvla", dataset_root=dataset_root))
    dense.save_pretrained(tmp_path / "dense")
    policy = SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, init_from=str(tmp_path / "dense")))
    grids_state = policy.state_dict()
    for name, tensor in dense.state_dict().items():
        assert torch.equal(grids_state[name], tensor), name
    new = sorted(set(grids_state) - set(dense.state_dict()))
    assert new and all(name.startswith("model.vlm_with_expert.grids.") for name in new)


def test_init_from_refuses_other_architectures_and_policy_types(dataset_root, tmp_path):
    SmolVLAPolicy(make_config("smolvla", dataset_root=dataset_root, num_vlm_layers=2)).save_pretrained(
        tmp_path / "short"
    )
    with pytest.raises(
        ValueError, match=r"Missing from the checkpoint: \['model.vlm_with_expert.lm_expert.layers.2"
    ):
        SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, init_from=str(tmp_path / "short")))
    ACTConfig(pretrained_backbone_weights=None).save_pretrained(tmp_path / "act")
    with pytest.raises(ValueError, match="is a 'act' checkpoint, not a dense 'smolvla' one"):
        SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, init_from=str(tmp_path / "act")))


def test_save_and_load_round_trip(dataset_root, tmp_path):
    torch.manual_seed(2)
    config = make_config(dataset_root=dataset_root, grids={"num_tokens": 5, "pooling": "max"})
    policy = SmolVLAGridsPolicy(config)
    policy.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["type"] == "smolvla_grids"
    assert saved["grids"]["num_tokens"] == 5 and saved["grids"]["pooling"] == "max"
    loaded = SmolVLAGridsPolicy.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.grids == config.grids
    for name, tensor in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    batch = make_batch(config, dataset_root)
    noise, _ = _noise_and_time(config)
    assert torch.equal(
        policy.predict_action_chunk(dict(batch), noise=noise),
        loaded.predict_action_chunk(dict(batch), noise=noise),
    )


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ({"num_tokens": 8}, "grids.num_tokens: checkpoint 5, requested 8"),
        ({"sampler": "dense"}, "grids.sampler: checkpoint 'grids', requested 'dense'"),
        (
            {"num_tokens": 5, "predictor": "attention"},
            "grids.predictor: checkpoint 'mlp', requested 'attention'",
        ),
        ({"num_tokens": 5, "instruction": True}, "grids.instruction: checkpoint False, requested True"),
    ],
)
def test_loading_with_other_grids_settings_is_refused(dataset_root, tmp_path, requested, message):
    SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, grids={"num_tokens": 5})).save_pretrained(
        tmp_path / "ckpt"
    )
    with pytest.raises(ValueError, match=message):
        SmolVLAGridsPolicy.from_pretrained(
            tmp_path / "ckpt", config=make_config(dataset_root=dataset_root, grids=requested)
        )


def test_loading_a_dense_checkpoint_as_smolvla_grids_points_to_init_from(dataset_root, tmp_path):
    SmolVLAPolicy(make_config("smolvla", dataset_root=dataset_root)).save_pretrained(tmp_path / "dense")
    with pytest.raises(ValueError, match="--policy.init_from="):
        SmolVLAGridsPolicy.from_pretrained(tmp_path / "dense")


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "pi0_grids"])
def test_a_state_of_another_size_is_refused_before_any_action(dataset_root, policy_type):
    """On every path that acts (lerobot-rollout loads a policy without the robot's features): a 7-joint state
    for a 6-joint policy would be zero-padded to max_state_dim and acted on."""
    policy = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root))
    batch = make_batch(policy.config, dataset_root)
    batch["observation.state"] = torch.cat(
        [batch["observation.state"], batch["observation.state"][..., :1]], dim=-1
    )
    with pytest.raises(ValueError, match=r"state observation.state: policy \(6,\), robot/dataset \(7,\)"):
        policy.select_action(batch)


@pytest.mark.parametrize("sampler", ["topk", "grids"])
def test_more_tokens_than_the_cameras_image_covers_are_refused_when_built(dataset_root, sampler):
    """The test cameras (64x48) cover 3x4 of the tiny backbone's 4x4 token grid: 12 tokens, not 16."""
    with pytest.raises(
        ValueError,
        match=r"cannot pick 13 tokens from a 3x4 grid of 12, the part of the backbone's "
        r"token grid that observation.images.front's 64x48 image covers",
    ):
        SmolVLAGridsPolicy(
            make_config(dataset_root=dataset_root, grids={"sampler": sampler, "num_tokens": 13})
        )


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "pi0_grids", "pi05_grids"])
def test_push_to_hub_uploads_config_weights_processors_and_card(
    dataset_root, tmp_path, fake_hub, policy_type
):
    from lerobot.policies.factory import get_policy_class

    if policy_type == "pi05_grids" and not compat.PI_ON_STOCK_TRANSFORMERS:
        pytest.skip("pi05_grids needs LeRobot 0.5+")

    config = make_config(
        policy_type, dataset_root=dataset_root, grids={"num_tokens": 4}, repo_id="user/so100_grids"
    )
    policy = get_policy_class(policy_type)(config)
    dataset = DatasetConfig(repo_id=DATASET_REPO_ID, root=str(dataset_root))
    train_config = TrainPipelineConfig(dataset=dataset, policy=config)
    policy.push_model_to_hub(train_config)  # LeRobot's own push, as lerobot-train calls it
    for processor in make_processors(config):
        processor.push_to_hub(config.repo_id)

    files = fake_hub.files["user/so100_grids"]
    saved_config = json.loads(files["config.json"])
    assert saved_config["type"] == policy_type and saved_config["grids"]["num_tokens"] == 4
    (tmp_path / "model.safetensors").write_bytes(files["model.safetensors"])
    weights = load_file(tmp_path / "model.safetensors")
    assert torch.equal(
        weights[policy.grids_prefix + "point_predictor.2.bias"], policy.grids.point_predictor[2].bias
    )
    assert {"policy_preprocessor.json", "policy_postprocessor.json", "train_config.json"} <= set(files)
    card = files["README.md"].decode()
    assert "GridS token pruning" in card and "| `num_tokens` | `4` |" in card
    assert policy_type in card and fake_hub.validated_cards
    # The picture of where it looks on the training data, beside the card that shows it.
    assert "![Where this policy reads its images](grids_points.png)" in card
    assert files["grids_points.png"][:4] == b"\x89PNG"


def test_a_push_whose_dataset_cannot_be_read_goes_without_the_picture(dataset_root, fake_hub, caplog):
    config = make_config(dataset_root=dataset_root, grids={"num_tokens": 4}, repo_id="user/so100_grids")
    train_config = TrainPipelineConfig(dataset=DatasetConfig(repo_id="user/elsewhere"), policy=config)
    SmolVLAGridsPolicy(config).push_model_to_hub(train_config)  # offline: the Hub's dataset is out of reach
    files = fake_hub.files["user/so100_grids"]
    assert "grids_points.png" not in files and "model.safetensors" in files
    card = files["README.md"].decode()
    assert "GridS token pruning" in card and "grids_points.png" not in card
    assert "shows no picture of where the policy looks: the dataset user/elsewhere could not be read" in (
        caplog.text
    )


def test_bfloat16_vlm_acts_and_trains_like_float32_within_its_precision(dataset_root):
    """SmolVLA loads its pretrained VLM in bfloat16 (``load_vlm_weights=true``) and keeps the action expert in
    float32; ``accelerate launch --mixed_precision=bf16`` trains under bfloat16 autocast. The sampler stays in
    float32 (its points too); with the float32 policy's weights and noise, the chunk, the loss and the
    sampler's gradients agree within bfloat16's precision."""
    torch.manual_seed(0)
    config = make_config(
        dataset_root=dataset_root, grids={"num_tokens": 4, "predictor": "attention", "instruction": True}
    )
    full = SmolVLAGridsPolicy(config)
    half = SmolVLAGridsPolicy(config)
    half.load_state_dict(full.state_dict())
    half.model.vlm_with_expert.vlm.to(torch.bfloat16)  # as from_pretrained(torch_dtype="bfloat16") gives it
    assert {p.dtype for p in half.grids.parameters()} == {torch.float32}
    batch = make_batch(config, dataset_root)
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(2, config.chunk_size, config.max_action_dim, generator=generator)
    time = torch.tensor([0.3, 0.8])
    results = {}
    for name, policy, autocast in (
        ("float32", full, False),
        ("bfloat16", half, False),
        ("autocast", full, True),
    ):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            chunk = policy.eval().predict_action_chunk(dict(batch), noise=noise).float()
        points = policy.sampled_points()["observation.images.front"]
        policy.train().zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _ = policy.forward(dict(batch), noise=noise, time=time)
        loss.backward()
        gradient = torch.cat([p.grad.flatten() for p in policy.grids.parameters()])
        results[name] = (chunk, points, loss.float(), gradient)
    chunk, points, loss, gradient = results["float32"]
    for name in ("bfloat16", "autocast"):
        assert results[name][1].dtype == torch.float32 and results[name][3].dtype == torch.float32
        torch.testing.assert_close(results[name][0], chunk, rtol=0, atol=0.02 * chunk.abs().max().item())
        torch.testing.assert_close(results[name][1], points, rtol=0, atol=0.01)
        torch.testing.assert_close(results[name][2], loss, rtol=0.02, atol=0)
        assert torch.cosine_similarity(results[name][3], gradient, dim=0) > 0.98
        assert not torch.equal(results[name][0], chunk)  # bfloat16 did compute
