"""Numerical tests of the GridS module (paper §3.2-3.3)."""

import pytest
import torch

from lerobot_grids.grids import (
    GridSampler,
    GridSConfig,
    bilinear_sample,
    grid_centres,
    mean_pairwise_distance,
)


def _grid(batch=2, height=3, width=5, channels=4, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, height, width, channels, generator=generator, dtype=dtype)


def test_point_on_token_centre_returns_that_token():
    feature_map = _grid()
    height, width = feature_map.shape[1:3]
    for row in range(height):
        for col in range(width):
            point = torch.tensor([[[col / (width - 1), row / (height - 1)]]], dtype=torch.float64).expand(
                2, 1, 2
            )
            sampled = bilinear_sample(feature_map, point)
            torch.testing.assert_close(sampled[:, 0], feature_map[:, row, col], rtol=0, atol=1e-12)


def test_midpoint_of_two_tokens_is_their_mean():
    feature_map = _grid()
    height, width = feature_map.shape[1:3]
    # Horizontal neighbours (row 1, cols 2 and 3) and vertical neighbours (rows 0 and 1, col 4).
    horizontal = torch.tensor([[2.5 / (width - 1), 1 / (height - 1)]], dtype=torch.float64)
    vertical = torch.tensor([[4 / (width - 1), 0.5 / (height - 1)]], dtype=torch.float64)
    sampled = bilinear_sample(
        feature_map, torch.stack([horizontal, vertical], dim=1).squeeze(2).expand(2, 2, 2)
    )
    torch.testing.assert_close(sampled[:, 0], (feature_map[:, 1, 2] + feature_map[:, 1, 3]) / 2)
    torch.testing.assert_close(sampled[:, 1], (feature_map[:, 0, 4] + feature_map[:, 1, 4]) / 2)


def test_interpolation_matches_equation_2_and_3():
    feature_map = _grid(batch=1)
    height, width = feature_map.shape[1:3]
    x, y = 0.37, 0.81
    gx, gy = x * (width - 1), y * (height - 1)
    x0, y0 = int(gx), int(gy)
    dx, dy = gx - x0, gy - y0
    expected = (
        (1 - dx) * (1 - dy) * feature_map[0, y0, x0]
        + dx * (1 - dy) * feature_map[0, y0, x0 + 1]
        + (1 - dx) * dy * feature_map[0, y0 + 1, x0]
        + dx * dy * feature_map[0, y0 + 1, x0 + 1]
    )
    sampled = bilinear_sample(feature_map, torch.tensor([[[x, y]]], dtype=torch.float64))
    torch.testing.assert_close(sampled[0, 0], expected)


def test_gradients_agree_with_finite_differences():
    feature_map = _grid(batch=2, height=4, width=3).requires_grad_()
    # Points away from token centres, where bilinear interpolation is smooth.
    points = torch.tensor(
        [[[0.13, 0.41], [0.77, 0.29], [0.55, 0.92]], [[0.31, 0.12], [0.62, 0.58], [0.09, 0.86]]],
        dtype=torch.float64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(bilinear_sample, (feature_map, points))


def test_nearest_has_no_gradient_to_points_and_bilinear_has():
    feature_map = _grid()
    points = torch.tensor([[[0.3, 0.6], [0.8, 0.2]]] * 2, dtype=torch.float64, requires_grad=True)
    bilinear_sample(feature_map, points, "bilinear").sum().backward()
    assert points.grad.abs().sum() > 0
    points.grad = None
    bilinear_sample(feature_map, points, "nearest").sum().backward()
    assert torch.count_nonzero(points.grad) == 0


def test_sampler_gradients_reach_predictor_and_features():
    torch.manual_seed(0)
    sampler = GridSampler(
        8, GridSConfig(num_tokens=4, predictor_hidden_dim=16, coord_encoder_hidden_dim=16)
    ).double()
    tokens = torch.randn(2, 6 * 5, 8, dtype=torch.float64, requires_grad=True)
    sampled, points = sampler(tokens, (6, 5))
    assert sampled.shape == (2, 4, 8) and points.shape == (2, 4, 2)
    assert torch.all((points >= 0) & (points <= 1))
    sampled.pow(2).sum().backward()
    assert tokens.grad.abs().sum() > 0
    assert sampler.point_predictor[0].weight.grad.abs().sum() > 0
    assert sampler.coord_encoder[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("grid_hw", [(4, 4), (3, 7)])
def test_k_equal_one_and_k_equal_grid_size(grid_hw):
    height, width = grid_hw
    tokens = torch.randn(3, height * width, 8)
    for num_tokens in (1, height * width):
        sampler = GridSampler(8, GridSConfig(num_tokens=num_tokens, predictor_hidden_dim=16))
        sampled, points = sampler(tokens, grid_hw)
        assert sampled.shape == (3, num_tokens, 8)
        assert points.shape == (3, num_tokens, 2)


def test_non_square_grid_uses_given_shape():
    """A 2x8 grid is not a 4x4 one: the token at row 1, col 0 sits at point (0, 1)."""
    tokens = torch.arange(16, dtype=torch.float64).view(1, 16, 1)
    sampled = bilinear_sample(tokens.view(1, 2, 8, 1), torch.tensor([[[0.0, 1.0]]], dtype=torch.float64))
    assert sampled.item() == 8.0
    centres = grid_centres((2, 8))
    assert centres.shape == (16, 2)
    torch.testing.assert_close(centres[8], torch.tensor([0.0, 1.0]))


def test_batch_items_are_independent():
    torch.manual_seed(0)
    sampler = GridSampler(8, GridSConfig(num_tokens=5, predictor_hidden_dim=16))
    tokens = torch.randn(4, 12, 8)
    sampled, points = sampler(tokens, (3, 4))
    alone, alone_points = sampler(tokens[2:3], (3, 4))
    torch.testing.assert_close(sampled[2:3], alone)
    torch.testing.assert_close(points[2:3], alone_points)
    changed = tokens.clone()
    changed[0] += 1.0
    sampled_changed, _ = sampler(changed, (3, 4))
    torch.testing.assert_close(sampled_changed[1:], sampled[1:])


def test_bfloat16():
    torch.manual_seed(0)
    sampler = GridSampler(8, GridSConfig(num_tokens=4, predictor_hidden_dim=16))
    tokens = torch.randn(2, 16, 8)
    reference, reference_points = sampler(tokens, (4, 4))
    sampled, points = sampler.to(torch.bfloat16)(tokens.to(torch.bfloat16), (4, 4))
    assert sampled.dtype == torch.bfloat16
    torch.testing.assert_close(sampled.float(), reference, atol=0.1, rtol=0.05)
    torch.testing.assert_close(points.float(), reference_points, atol=0.02, rtol=0)
    sampled.float().sum().backward()
    assert sampler.point_predictor[0].weight.grad.abs().sum() > 0


def test_dense_passes_tokens_through_unchanged():
    sampler = GridSampler(8, GridSConfig(sampler="dense"))
    assert len(list(sampler.parameters())) == 0
    tokens = torch.randn(2, 12, 8)
    sampled, points = sampler(tokens, (3, 4))
    assert sampled is tokens
    assert points.shape == (2, 12, 2)


def test_topk_picks_largest_norm_tokens_and_random_picks_distinct_tokens():
    tokens = torch.zeros(1, 9, 3)
    tokens[0, 4] = 10.0  # centre of a 3x3 grid
    tokens[0, 8] = 5.0  # bottom-right
    topk = GridSampler(3, GridSConfig(num_tokens=2, sampler="topk", coord_injection=False))
    sampled, points = topk(tokens, (3, 3))
    torch.testing.assert_close(sampled[0], tokens[0, [4, 8]])
    torch.testing.assert_close(points[0], torch.tensor([[0.5, 0.5], [1.0, 1.0]]))

    random = GridSampler(3, GridSConfig(num_tokens=9, sampler="random", coord_injection=False))
    sampled, points = random(torch.arange(9.0).view(1, 9, 1).expand(1, 9, 3).contiguous(), (3, 3))
    assert sorted(sampled[0, :, 0].tolist()) == list(range(9))


def test_initial_points_are_spread_and_collapse_indicator_detects_collapse():
    sampler = GridSampler(8, GridSConfig(num_tokens=16, predictor_hidden_dim=16))
    _, points = sampler(torch.randn(2, 64, 8), (8, 8))
    assert mean_pairwise_distance(points) > 0.2
    collapsed = torch.full((2, 16, 2), 0.3)
    assert mean_pairwise_distance(collapsed) == 0
    two = torch.tensor([[[0.0, 0.0], [0.6, 0.8]]])
    torch.testing.assert_close(mean_pairwise_distance(two), torch.tensor(1.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_tokens": 0}, "num_tokens must be at least 1"),
        ({"sampler": "fancy"}, "Unknown GridS sampler 'fancy'"),
        ({"pooling": "median"}, "Unknown GridS pooling 'median'"),
        ({"interpolation": "bicubic"}, "Unknown GridS interpolation 'bicubic'"),
        # Settings that would have no effect in their combination (written to the config and the card,
        # unread).
        (
            {"predictor": "attention", "pooling": "max"},
            r"pooling='max' has no effect \(only the mlp predictor",
        ),
        ({"attention_prior": "share"}, r"attention_prior='share' has no effect \(only the attention"),
        ({"predictor": "attention", "attention_prior": "wide"}, "Unknown GridS attention_prior 'wide'"),
        ({"sampler": "topk", "interpolation": "nearest"}, "interpolation='nearest' has no effect"),
        ({"sampler": "random", "predictor_hidden_dim": 8}, "predictor_hidden_dim=8 has no effect"),
        (
            {"sampler": "dense", "num_tokens": 4},
            "num_tokens=4 has no effect .*Drop --policy.grids.num_tokens",
        ),
        (
            {"coord_injection": False, "coord_encoder_hidden_dim": 8},
            "coord_encoder_hidden_dim=8 has no effect",
        ),
    ],
)
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GridSConfig(**kwargs)


@pytest.mark.parametrize("sampler_name", ["random", "topk", "grids"])
def test_samplers_refuse_more_tokens_than_the_grid_has(sampler_name):
    sampler = GridSampler(4, GridSConfig(num_tokens=17, sampler=sampler_name))
    with pytest.raises(ValueError, match="cannot pick 17 tokens from a 4x4 grid of 16"):
        sampler(torch.randn(1, 16, 4), (4, 4))


def test_information_retention_is_max_cosine_to_any_sample():
    from lerobot_grids.evidence.retention import information_retention, token_self_similarity

    dense = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-1.0, 0.0]]])
    sampled = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]])
    expected = torch.tensor([[1.0, 1.0, 2**-0.5, 0.0]])
    torch.testing.assert_close(information_retention(dense, sampled), expected)
    # Sampling a token exactly keeps it fully; every token keeps itself.
    torch.testing.assert_close(information_retention(dense, dense), torch.ones(1, 4))
    similarity = token_self_similarity(dense)
    torch.testing.assert_close(similarity.diagonal(dim1=1, dim2=2), torch.ones(1, 4))
    torch.testing.assert_close(similarity[0, 0, 3], torch.tensor(-1.0))


REGION_SAMPLERS = [
    {"sampler": "grids"},
    {"sampler": "grids", "predictor": "attention"},
    {"sampler": "grids", "predictor": "attention", "instruction": True},
    {"sampler": "topk"},
    {"sampler": "random"},
]


@pytest.mark.parametrize("options", REGION_SAMPLERS)
def test_no_sampler_reads_outside_the_image_region(options):
    """A 4x6 grid whose top row and left column are padding (region rows 1-3, columns 1-5): whatever the
    padding tokens hold (here large, to lure top-k), the samples and points are the same, and every point lies
    inside."""
    torch.manual_seed(0)
    sampler = GridSampler(8, GridSConfig(num_tokens=4, **options))
    tokens, context = torch.randn(3, 24, 8), torch.randn(3, 8)
    padded = tokens.clone().view(3, 4, 6, 8)
    padded[:, 0], padded[:, :, 0] = 50 * torch.randn(3, 6, 8), 50 * torch.randn(3, 4, 8)
    region = (1, 3, 1, 5)
    torch.manual_seed(1)
    sampled, points = sampler(tokens, (4, 6), context, region=region)
    torch.manual_seed(1)
    sampled_padded, points_padded = sampler(padded.view(3, 24, 8), (4, 6), context, region=region)
    torch.testing.assert_close(sampled, sampled_padded)
    torch.testing.assert_close(points, points_padded)
    assert (points[..., 0] >= 1 / 5 - 1e-6).all() and (points[..., 1] >= 1 / 3 - 1e-6).all()


def test_points_pushed_to_the_edge_stop_at_the_regions_edge():
    """The paper's predictor saturated towards the top-left corner reads the region's corner token, not
    padding."""
    sampler = GridSampler(8, GridSConfig(num_tokens=2))
    with torch.no_grad():
        sampler.point_predictor[-1].bias.fill_(-30.0)
    _, points = sampler(torch.randn(1, 32, 8), (4, 8), region=(2, 3, 0, 7))  # a 8-wide image over two rows
    torch.testing.assert_close(points, torch.tensor([[[0.0, 2 / 3], [0.0, 2 / 3]]]), atol=1e-6, rtol=0)


def test_the_whole_grid_as_region_changes_nothing():
    torch.manual_seed(0)
    sampler = GridSampler(8, GridSConfig(num_tokens=4, predictor="attention"))
    tokens = torch.randn(2, 20, 8)
    for got, expected in zip(
        sampler(tokens, (4, 5), region=(0, 3, 0, 4)), sampler(tokens, (4, 5)), strict=True
    ):
        torch.testing.assert_close(got, expected)
