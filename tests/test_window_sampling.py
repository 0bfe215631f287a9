"""GridS inside SmolVLA's vision tower (``--policy.grids.split_layer``): window reads, and the tower they
feed."""

import json

import draccus
import pytest
import torch
from conftest import make_batch, make_config
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

from lerobot_grids.backbones import TINY_SMOLVLM
from lerobot_grids.policies.options import PolicyOptionError
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy
from lerobot_grids.window_sampling import pool_windows, read_windows, window_offsets


def lattice(rows: int, columns: int, batch: int = 2) -> torch.Tensor:
    """``[B, rows*columns, 2]`` the window centres of a token grid, row-major: the dense tokens' order."""
    steps = [torch.linspace(0, 1, count, dtype=torch.float64) for count in (rows, columns)]
    ys, xs = torch.meshgrid(*steps, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1).expand(batch, -1, -1)


def test_window_offsets_are_row_by_row_around_the_centre():
    assert window_offsets(2).tolist() == [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]


def test_windows_read_on_the_lattice_are_the_patch_windows():
    patches = torch.randn(2, 8, 12, 5, dtype=torch.float64)  # 8x12 patches, 2x2 windows: a 4x6 token grid
    read = read_windows(patches, lattice(4, 6), window=2)
    windows = patches.view(2, 4, 2, 6, 2, 5).permute(0, 1, 3, 2, 4, 5).reshape(2, 24, 4, 5)
    torch.testing.assert_close(read, windows, rtol=0, atol=1e-12)
    torch.testing.assert_close(pool_windows(patches, 2), windows.mean(dim=2))


def test_window_reads_are_differentiable_in_the_points_and_the_patches():
    """Eq. 4 on the patch grid: gradients against finite differences, at points between patch centres."""
    generator = torch.Generator().manual_seed(0)
    patches = torch.randn(1, 8, 8, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    points = (torch.rand(1, 3, 2, dtype=torch.float64, generator=generator) * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, x: read_windows(x, p, window=2), (points, patches))


def _tiny_policy(dataset_root, **grids) -> SmolVLAGridsPolicy:
    torch.manual_seed(0)
    return SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, grids=grids))


@pytest.mark.parametrize("split_layer", [0, 1, 2])
def test_a_point_on_every_window_gives_the_dense_tower_tokens(dataset_root, monkeypatch, split_layer):
    """K = every window of the 4x4 token grid (the tiny tower at 128x128: 8x8 patches, 2x2 windows), points on
    the lattice, no coordinate embedding: the in-tower tokens are SmolVLA's dense connector tokens, whatever
    the split (0: the points are predicted from the patch embeddings; 2: after the whole tower), in
    float64."""
    torch.manual_seed(0)
    config = make_config(
        dataset_root=dataset_root,
        grids={"num_tokens": 16, "split_layer": split_layer, "coord_injection": False},
    )
    for key in config.image_features:  # square cameras: the whole grid is image
        config.input_features[key] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, 128, 128))
    policy = SmolVLAGridsPolicy(config).double()
    backbone = policy.grids_backbone
    monkeypatch.setattr(
        backbone.grids, "predict_points", lambda tokens, grid, context, region=None: lattice(*grid)
    )
    image = torch.rand(2, 3, 128, 128, dtype=torch.float64) * 2 - 1
    tokens, points = backbone.sample_inside_the_tower(image)
    dense, grid = backbone.dense_image_tokens(image)
    assert grid == (4, 4) and tokens.shape == dense.shape == (2, 16, 64)
    torch.testing.assert_close(tokens, dense, rtol=1e-9, atol=1e-9)


def test_in_tower_policy_trains_the_sampler_and_the_tower_after_the_split(dataset_root):
    """Gradients reach the point predictor (through the bilinear window reads) and the tower's layers after
    the split, which train whatever freeze_vision_encoder says; the layers before it stay frozen as SmolVLA
    has them."""
    policy = _tiny_policy(dataset_root, num_tokens=4, split_layer=1, predictor="attention", instruction=True)
    batch = make_batch(policy.config, dataset_root)
    loss, _ = policy.forward(batch)
    loss.backward()
    vision = policy.grids_backbone.get_vlm_model().vision_model
    assert policy.config.freeze_vision_encoder
    assert all(p.grad is None and not p.requires_grad for p in vision.encoder.layers[0].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vision.encoder.layers[1].parameters())
    assert policy.grids.attention_predictor.queries.grad.abs().sum() > 0
    assert policy.grids.attention_predictor.context_queries.weight.grad.abs().sum() > 0
    points = policy.sampled_points()
    assert [tuple(p.shape) for p in points.values()] == [(2, 4, 2), (2, 4, 2)]
    # the language model sees K tokens per camera, as with GridS after the tower
    chunk = policy.eval().predict_action_chunk(batch)
    assert chunk.shape == (2, 4, 6) and torch.isfinite(chunk).all()


def test_in_tower_policy_starts_from_a_dense_smolvla_checkpoint(dataset_root, tmp_path):
    torch.manual_seed(3)
    SmolVLAPolicy(make_config("smolvla", dataset_root=dataset_root)).save_pretrained(tmp_path / "dense")
    policy = SmolVLAGridsPolicy(
        make_config(
            dataset_root=dataset_root,
            init_from=str(tmp_path / "dense"),
            grids={"num_tokens": 4, "split_layer": 1},
        )
    )
    dense = SmolVLAPolicy.from_pretrained(tmp_path / "dense").state_dict()
    ours = policy.state_dict()
    assert all(torch.equal(ours[name], value) for name, value in dense.items())
    assert set(ours) - set(dense) == {
        name for name in ours if name.startswith("model.vlm_with_expert.grids.")
    }


@pytest.mark.parametrize(
    ("policy_type", "grids", "message"),
    [
        ("smolvla_grids", {"split_layer": 3}, "beyond the vision tower's 2 layers"),
        ("smolvla_grids", {"split_layer": 1, "sampler": "topk"}, "needs --policy.grids.sampler=grids"),
        ("pi0_grids", {"split_layer": 1}, "is a smolvla_grids option"),
    ],
)
def test_bad_split_layers_are_refused_when_built(dataset_root, policy_type, grids, message):
    from lerobot.policies.factory import get_policy_class

    with pytest.raises(
        (ValueError, PolicyOptionError), match=message
    ):  # built: ValueError; parsed: PolicyOptionError
        get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root, grids=grids))


def test_pointing_measures_an_in_tower_policy(tmp_path):
    """The demo's pointing measurement reads the points wherever the policy samples (here inside the tower),
    for a policy started from the shipped tabletop base policy as the demo starts it."""
    import shutil

    from lerobot_grids.envs.tabletop import GridSTabletop
    from lerobot_grids.evidence.pointing import pointing
    from lerobot_grids.evidence.tabletop_pretrain import PRETRAINED_TABLETOP_SMOLVLA
    from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig

    dense = json.loads((PRETRAINED_TABLETOP_SMOLVLA / "config.json").read_text())
    config = draccus.decode(
        SmolVLAGridsConfig,
        {
            **{key: value for key, value in dense.items() if key != "type"},
            "vlm_model_name": str(TINY_SMOLVLM),
            "init_from": str(PRETRAINED_TABLETOP_SMOLVLA),
            "device": "cpu",
            "grids": {"num_tokens": 4, "split_layer": 1, "predictor": "attention", "instruction": True},
        },
    )
    SmolVLAGridsPolicy(config).save_pretrained(tmp_path / "ckpt")
    for processor in PRETRAINED_TABLETOP_SMOLVLA.glob("policy_*processor*"):
        shutil.copy(processor, tmp_path / "ckpt")
    summary, drawn = pointing(tmp_path / "ckpt", scenes=2, first_seed=0, pictures=1)
    assert summary["points"] == 2 * GridSTabletop().episode_length * 4 and len(drawn) == 1
    assert 0 <= summary["on_target"] <= 100 and summary["layout_change"] >= 0
