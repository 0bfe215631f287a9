"""``act_grids``: LeRobot's ACT with GridS on each camera's feature map (numerics, loading, refusals)."""

import json

import pytest
import torch
from conftest import DATASET_REPO_ID, make_batch, make_config
from lerobot.policies.act.modeling_act import ACTPolicy, ACTSinusoidalPositionEmbedding2d
from lerobot.utils.constants import OBS_IMAGES
from test_lerobot_train import LEROBOT_TRAIN, _tiny_args, lerobot_train

from lerobot_grids.evidence.viz import visualise
from lerobot_grids.grids import grid_centres
from lerobot_grids.policies.act_grids import ACTGridsConfig, ACTGridsPolicy
from lerobot_grids.policies.act_grids.position_embedding import sinusoid_at_points
from lerobot_grids.policies.grids_policy import write_model_card
from lerobot_grids.policies.options import PolicyOptionError

# 96x128 images give ResNet-18 a 3x4 feature map: 12 cells per camera.
WIDE_IMAGES = (3, 96, 128)


def act_config(dataset_root, policy_type: str = "act_grids", image_shape=None, **options):
    config = make_config(policy_type, dataset_root, **options)
    if image_shape is not None:
        for feature in config.image_features.values():
            feature.shape = image_shape
    return config


def wide_batch(config, size: int = 2) -> dict:
    generator = torch.Generator().manual_seed(0)
    batch = {
        key: torch.randn(size, *feature.shape, generator=generator)
        for key, feature in config.input_features.items()
    }
    batch["action"] = torch.randn(
        size, config.chunk_size, config.action_feature.shape[0], generator=generator
    )
    batch["action_is_pad"] = torch.zeros(size, config.chunk_size, dtype=torch.bool)
    return batch


@pytest.mark.parametrize("grid_hw", [(15, 20), (3, 4), (7, 5), (1, 1)])
def test_the_position_embedding_at_a_cell_centre_is_acts(grid_hw):
    dimension = 64
    acts = ACTSinusoidalPositionEmbedding2d(dimension // 2)(torch.zeros(1, 8, *grid_hw))
    acts = acts.flatten(2).transpose(1, 2)[0]  # [H*W, D], row-major as ACT flattens its cells
    ours = sinusoid_at_points(grid_centres(grid_hw).unsqueeze(0), grid_hw, dimension)[0]
    torch.testing.assert_close(ours, acts, rtol=0, atol=1e-6)


def test_the_position_embedding_is_differentiable_in_the_points():
    points = torch.rand(2, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: sinusoid_at_points(p, (3, 4), 16), (points,))


def test_the_dense_sampler_is_lerobots_act_bit_for_bit(dataset_root):
    torch.manual_seed(0)
    dense = ACTPolicy(act_config(dataset_root, "act"))
    grids = ACTGridsPolicy(act_config(dataset_root, grids={"sampler": "dense"}))
    grids.load_state_dict(dense.state_dict(), strict=True)
    batch = make_batch(dense.config, dataset_root)
    assert torch.equal(dense.predict_action_chunk(batch), grids.predict_action_chunk(batch))
    dense.train(), grids.train()
    torch.manual_seed(1)
    dense_loss, _ = dense.forward(batch)
    torch.manual_seed(1)
    grids_loss, _ = grids.forward(batch)
    assert torch.equal(dense_loss, grids_loss)


def test_every_cell_read_where_it_lies_is_the_dense_model(dataset_root):
    """Top-k with K = every cell reads each cell at its centre, with ACT's position embedding there (no
    coordinate embedding): the encoder and the decoder's cross-attention do not depend on the tokens' order,
    so the chunk is the dense ACT's."""
    torch.manual_seed(0)
    dense = ACTPolicy(act_config(dataset_root, "act", WIDE_IMAGES))
    every_cell = {"sampler": "topk", "num_tokens": 12, "coord_injection": False}
    grids = ACTGridsPolicy(act_config(dataset_root, image_shape=WIDE_IMAGES, grids=every_cell))
    assert grids.feature_grid(WIDE_IMAGES[1:]) == (3, 4)
    grids.load_state_dict(dense.state_dict(), strict=True)
    batch = wide_batch(dense.config)
    torch.testing.assert_close(grids.predict_action_chunk(batch), dense.predict_action_chunk(batch))


def test_the_chunk_reaches_the_points_as_finite_differences_say(dataset_root):
    """The gradient of the action chunk with respect to the point predictor's output bias (which moves the
    points) is the central differences' (eq. 4 through ACT's encoder and decoder). In float32: ACT makes its
    latent in float32 whatever the weights' dtype."""
    config = act_config(dataset_root, image_shape=WIDE_IMAGES, grids={"num_tokens": 3}, use_vae=False)
    policy = ACTGridsPolicy(config).eval()
    batch = {key: value for key, value in wide_batch(config).items() if key != "action_is_pad"}
    batch[OBS_IMAGES] = [batch[key] for key in config.image_features]
    policy.start_images(batch)
    bias = policy.grids.point_predictor[-1].bias

    def chunk_sum() -> torch.Tensor:
        return policy.model(batch)[0].sum()

    analytic = torch.autograd.grad(chunk_sum(), bias)[0]
    step = 1e-3
    with torch.no_grad():
        for index in range(bias.numel()):
            bias[index] += step
            up = chunk_sum()
            bias[index] -= 2 * step
            down = chunk_sum()
            bias[index] += step
            torch.testing.assert_close(analytic[index], (up - down) / (2 * step), rtol=2e-2, atol=2e-3)
    assert analytic.abs().min() > 0


def test_training_trains_the_sampler_and_reports_the_point_spread(dataset_root):
    config = act_config(dataset_root, image_shape=WIDE_IMAGES, grids={"num_tokens": 4})
    policy = ACTGridsPolicy(config)
    loss, output = policy.forward(wide_batch(config))
    loss.backward()
    assert policy.grids.point_predictor[0].weight.grad.abs().sum() > 0
    assert set(output) >= {"l1_loss", "grids_point_spread/front", "grids_point_spread/wrist"}
    assert {key: tuple(points.shape) for key, points in policy.sampled_points().items()} == {
        "observation.images.front": (2, 4, 2),
        "observation.images.wrist": (2, 4, 2),
    }


@pytest.mark.parametrize(
    ("grids", "message"),
    [
        ({"instruction": True}, "ACT reads no language"),
        ({"split_layer": 1}, "no vision tower to split"),
    ],
)
def test_options_act_cannot_use_are_refused(grids, message):
    with pytest.raises(PolicyOptionError, match=message):
        ACTGridsConfig(grids=grids)


def test_more_tokens_than_the_feature_map_has_cells_are_refused(dataset_root):
    with pytest.raises(ValueError, match=r"cannot pick 5 tokens from a 2x2 grid .*feature map.*num_tokens"):
        ACTGridsPolicy(act_config(dataset_root, grids={"sampler": "topk", "num_tokens": 5}))


def test_init_from_a_dense_act_checkpoint_and_strict_loading(dataset_root, tmp_path):
    dense = ACTPolicy(act_config(dataset_root, "act"))
    dense.save_pretrained(tmp_path / "act")
    policy = ACTGridsPolicy(
        act_config(dataset_root, grids={"num_tokens": 2}, init_from=str(tmp_path / "act"))
    )
    own = policy.state_dict()
    for key, value in dense.state_dict().items():
        assert torch.equal(own[key], value), key
    assert sorted({key.split(".")[1] for key in own if key not in dense.state_dict()}) == ["grids"]
    policy.save_pretrained(tmp_path / "act_grids")
    loaded = ACTGridsPolicy.from_pretrained(tmp_path / "act_grids")
    batch = make_batch(policy.config, dataset_root)
    assert torch.equal(loaded.predict_action_chunk(batch), policy.eval().predict_action_chunk(batch))
    with pytest.raises(ValueError, match="is a 'act' checkpoint, not a act_grids one.*--policy.init_from"):
        ACTGridsPolicy.from_pretrained(tmp_path / "act")


def test_act_grids_acts_on_an_empty_task_as_act_does(dataset_root):
    """ACT reads no instruction: an empty task is no reason to refuse (the VLA types refuse it)."""
    policy = ACTGridsPolicy(act_config(dataset_root, grids={"num_tokens": 2})).eval()
    batch = make_batch(policy.config, dataset_root)
    batch["task"] = ["", ""]
    assert policy.select_action(batch).shape == (2, 6)


def test_lerobot_train_trains_act_grids(dataset_root, tmp_path):
    """The plugin type through LeRobot's own command, offline (no ImageNet weights)."""
    assert LEROBOT_TRAIN.is_file()
    lerobot_train(
        "--policy.type=act_grids",
        "--policy.grids.num_tokens=2",
        "--policy.pretrained_backbone_weights=null",
        "--policy.dim_model=32",
        "--policy.dim_feedforward=64",
        "--policy.n_heads=2",
        "--policy.chunk_size=4",
        "--policy.n_action_steps=4",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        *[
            option
            for option in _tiny_args(dataset_root, tmp_path / "run", 2)
            if not option.startswith("--policy.")
        ],
    )
    saved = tmp_path / "run" / "checkpoints" / "000002" / "pretrained_model"
    policy = ACTGridsPolicy.from_pretrained(saved)
    assert policy.config.grids.num_tokens == 2 and policy.config.pretrained_backbone_weights is None
    # Its model card, offline, as LeRobot writes one when it pushes (with the GridS section).
    text = write_model_card(saved).read_text()
    assert f"datasets: {DATASET_REPO_ID}" in text and "- grids" in text and "act_grids" in text
    assert "This act policy feeds each camera to its transformer" in text and "| `num_tokens` | `2` |" in text
    assert "](grids_points.png)" in text and (saved / "grids_points.png").read_bytes()[:4] == b"\x89PNG"
    # Where it looks, on the dataset it was trained on (lerobot-grids-viz's pictures and summary).
    summary = visualise(str(saved), tmp_path / "viz", max_frames=4)
    assert set(summary["cameras"]) == {"observation.images.front", "observation.images.wrist"}
    for name in ("points_front.mp4", "points_wrist.png", "retention_front.png", "self_similarity_wrist.png"):
        assert (tmp_path / "viz" / name).is_file(), name
    assert all(
        0 <= value <= 1 for camera in summary["cameras"].values() for value in camera["retention_per_frame"]
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("observation.state", r"observation 'observation.state' has non-finite values .* no action was made"),
        ("observation.images.front", r"observation 'observation.images.front' has non-finite values"),
    ],
)
def test_a_non_finite_observation_is_refused_on_every_acting_path(dataset_root, key, message):
    policy = ACTGridsPolicy(act_config(dataset_root))
    for act in (policy.select_action, policy.predict_action_chunk):
        batch = make_batch(policy.config, dataset_root)
        batch[key].view(-1)[0] = float("nan")
        policy.reset()
        with pytest.raises(ValueError, match=message):
            act(batch)


def test_a_non_finite_chunk_is_not_handed_out(dataset_root):
    policy = ACTGridsPolicy(act_config(dataset_root))
    with torch.no_grad():
        policy.model.action_head.bias.fill_(float("nan"))
    for act in (policy.select_action, policy.predict_action_chunk):
        policy.reset()
        with pytest.raises(RuntimeError, match="act_grids policy produced a non-finite action .* not sent"):
            act(make_batch(policy.config, dataset_root))


def test_the_so100_recipe_is_lerobots_act_with_16_tokens_per_camera():
    """LeRobot's ACT defaults (its SO-100 tutorial trains them: 100k steps, batch 8, ImageNet ResNet-18), with
    GridS at K = 16: decoded as lerobot-train decodes --config_path."""
    import draccus
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.policies.act.configuration_act import ACTConfig

    from lerobot_grids.configs import config_path

    written = json.loads(config_path("act_grids_so100").read_text())
    config = draccus.decode(TrainPipelineConfig, {**written, "dataset": {"repo_id": "user/so100_data"}})
    assert isinstance(config.policy, ACTGridsConfig) and config.policy.grids.num_tokens == 16
    assert (config.steps, config.batch_size) == (TrainPipelineConfig.steps, TrainPipelineConfig.batch_size)
    acts = {name: getattr(ACTConfig(), name) for name in ACTConfig.__dataclass_fields__}
    ours = {name: getattr(config.policy, name) for name in acts}
    assert {name: value for name, value in ours.items() if value != acts[name]} == {}
