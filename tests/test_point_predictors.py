"""Numerical tests of the point predictors beyond the paper's: content-addressed (``predictor=attention``) and
instruction-conditioned (``instruction=True``, with either predictor)."""

import pytest
import torch

from lerobot_grids.grids import GridSampler, GridSConfig, grid_centres, mean_pairwise_distance, spread_points
from lerobot_grids.point_predictors import AttentionPointPredictor

DIM, HEIGHT, WIDTH = 8, 6, 5


def sampler(**options) -> GridSampler:
    torch.manual_seed(0)
    config = GridSConfig(
        **{"num_tokens": 4, "predictor_hidden_dim": 16, "coord_encoder_hidden_dim": 16, **options}
    )
    return GridSampler(DIM, config).double()


def test_attention_predictor_gradients_agree_with_finite_differences():
    torch.manual_seed(0)
    predictor = AttentionPointPredictor(DIM, 3, 16, spread_points(3), use_context=True).double()
    torch.nn.init.normal_(predictor.context_queries.weight, std=0.1)  # zero at first: make the context count
    tokens = torch.randn(
        1, 4 * 3, DIM, dtype=torch.float64, requires_grad=True
    )  # small: one column per input
    context = torch.randn(1, DIM, dtype=torch.float64, requires_grad=True)
    centres = grid_centres((4, 3), dtype=torch.float64)

    def points(tokens, context, queries, anchors):
        parameters = {**dict(predictor.named_parameters()), "queries": queries, "anchors": anchors}
        return torch.func.functional_call(predictor, parameters, (tokens, centres, 0.25, context))

    inputs = (
        tokens,
        context,
        predictor.queries.detach().clone().requires_grad_(),
        predictor.anchors.detach().clone().requires_grad_(),
    )
    assert torch.autograd.gradcheck(points, inputs)


@pytest.mark.parametrize(
    "options",
    [{"predictor": "attention"}, {"predictor": "attention", "instruction": True}, {"instruction": True}],
)
def test_new_predictors_start_spread_and_gradients_reach_every_part(options):
    grids = sampler(**options)
    tokens = torch.randn(2, HEIGHT * WIDTH, DIM, dtype=torch.float64, requires_grad=True)
    context = torch.randn(2, DIM, dtype=torch.float64)
    sampled, points = grids(tokens, (HEIGHT, WIDTH), context=context)
    assert sampled.shape == (2, 4, DIM) and points.shape == (2, 4, 2)
    assert torch.all((points >= 0) & (points <= 1))
    # Training starts from spread points near the golden-ratio layout the paper's predictor starts from.
    assert mean_pairwise_distance(points) > 0.3
    torch.testing.assert_close(points, spread_points(4).expand(2, -1, -1).to(points.dtype), atol=0.15, rtol=0)
    sampled.pow(2).sum().backward()
    trained = {
        name
        for name, parameter in grids.named_parameters()
        if parameter.grad is not None and parameter.grad.abs().sum() > 0
    }
    expected = (
        {"attention_predictor.key.weight", "attention_predictor.queries", "attention_predictor.anchors"}
        if options.get("predictor") == "attention"
        else {"point_predictor.0.weight"}
    )
    if options.get("instruction"):
        expected |= (
            {"attention_predictor.context_queries.weight"}
            if options.get("predictor") == "attention"
            else {"instruction_proj.weight"}
        )
    assert expected <= trained, expected - trained
    assert tokens.grad.abs().sum() > 0


def test_attention_points_follow_the_content():
    """A query that matches one feature puts its point on the token carrying it, wherever that token is."""
    grids = sampler(predictor="attention", num_tokens=1, predictor_hidden_dim=DIM)
    predictor = grids.attention_predictor
    feature = torch.zeros(DIM, dtype=torch.float64)
    feature[:2] = torch.tensor([1.0, -1.0])
    with torch.no_grad():
        predictor.key.weight.copy_(torch.eye(DIM))
        predictor.key.bias.zero_()
        predictor.queries.copy_(200 * feature)
    centres = grid_centres((HEIGHT, WIDTH), dtype=torch.float64)
    for index in (0, 7, 29):
        tokens = torch.zeros(1, HEIGHT * WIDTH, DIM, dtype=torch.float64)
        tokens[0, index] = feature
        _, points = grids(tokens, (HEIGHT, WIDTH))
        torch.testing.assert_close(points[0, 0], centres[index], atol=0.02, rtol=0)


@pytest.mark.parametrize(("num_tokens", "pitches"), [(16, 1.0), (4, 2.0), (1, 4.0)])
def test_the_share_prior_is_half_the_side_of_each_points_share_of_the_grid(num_tokens, pitches):
    """With the content term silenced (zero keys), a point is the prior-weighted mean of the token centres:
    ``attention_prior=share`` weighs them with a Gaussian ``sqrt(64 / K) / 2`` token pitches wide on an 8x8
    grid, ``token`` with one pitch whatever K; the two agree at K=16."""
    grid_hw, pitch = (8, 8), 1 / 7
    centres = grid_centres(grid_hw, dtype=torch.float64)
    tokens = torch.randn(1, 64, DIM, dtype=torch.float64)
    points = {}
    for prior in ("token", "share"):
        grids = sampler(predictor="attention", num_tokens=num_tokens, attention_prior=prior)
        with torch.no_grad():
            grids.attention_predictor.key.weight.zero_()
            grids.attention_predictor.key.bias.zero_()
            grids.attention_predictor.anchors.fill_(0.2)  # off-centre: the prior's width moves the mean
        points[prior] = grids.predict_points(tokens, grid_hw, None)[0]
    for prior, sigma in (("token", pitch), ("share", pitches * pitch)):
        weights = torch.softmax(-(centres - 0.2).square().sum(-1) / (2 * sigma**2), dim=0)
        expected = (weights[:, None] * centres).sum(0).expand(num_tokens, 2)
        torch.testing.assert_close(points[prior], expected)
    assert torch.equal(points["token"], points["share"]) == (num_tokens == 16)


@pytest.mark.parametrize("predictor", ["mlp", "attention"])
def test_instruction_moves_the_points_once_learned_and_is_required(predictor):
    grids = sampler(predictor=predictor, instruction=True)
    tokens = torch.randn(1, HEIGHT * WIDTH, DIM, dtype=torch.float64)
    red, blue = torch.randn(2, 1, DIM, dtype=torch.float64)
    # At first (zero weights) the instruction changes nothing: the predictor without it.
    torch.testing.assert_close(
        grids(tokens, (HEIGHT, WIDTH), red)[1], grids(tokens, (HEIGHT, WIDTH), blue)[1]
    )
    projection = (
        grids.attention_predictor.context_queries if predictor == "attention" else grids.instruction_proj
    )
    with torch.no_grad():
        projection.weight.normal_(std=1.0)
    moved = (grids(tokens, (HEIGHT, WIDTH), red)[1] - grids(tokens, (HEIGHT, WIDTH), blue)[1]).abs().max()
    assert moved > 0.01
    with pytest.raises(ValueError, match="instruction-conditioned .* got no instruction"):
        grids(tokens, (HEIGHT, WIDTH))


def test_bfloat16_tokens_keep_their_dtype_and_give_the_float32_points():
    grids = sampler(predictor="attention", instruction=True).float()
    with torch.no_grad():
        grids.attention_predictor.context_queries.weight.normal_(std=0.1)
    tokens, context = torch.randn(2, HEIGHT * WIDTH, DIM), torch.randn(2, DIM)
    sampled, points = grids(tokens.bfloat16(), (HEIGHT, WIDTH), context=context.bfloat16())
    assert sampled.dtype == torch.bfloat16 and points.dtype == torch.float32
    _, reference = grids(tokens, (HEIGHT, WIDTH), context=context)
    torch.testing.assert_close(points, reference, atol=0.02, rtol=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"predictor": "transformer"}, "Unknown GridS predictor 'transformer'"),
        ({"sampler": "topk", "predictor": "attention"}, "the 'topk' sampler predicts none"),
        ({"sampler": "dense", "instruction": True}, "the 'dense' sampler predicts none"),
    ],
)
def test_predictor_options_are_refused_where_they_mean_nothing(options, message):
    with pytest.raises(ValueError, match=message):
        GridSConfig(**options)


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "pi0_grids"])
def test_instruction_conditioned_attention_trains_in_the_policy_and_follows_the_instruction(
    dataset_root, policy_type
):
    from conftest import make_batch, make_config
    from lerobot.policies.factory import get_policy_class

    grids = {"num_tokens": 4, "predictor": "attention", "instruction": True}
    policy = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root, grids=grids))
    batch = make_batch(policy.config, dataset_root)
    loss, _ = policy.forward(batch)
    loss.backward()
    predictor = policy.grids.attention_predictor
    assert predictor.context_queries.weight.grad.abs().sum() > 0 and predictor.queries.grad.abs().sum() > 0
    with torch.no_grad():
        predictor.context_queries.weight.normal_(std=1.0)
        policy.forward(batch)
        points = policy.sampled_points()
        tokens = batch["observation.language.tokens"]
        other = dict(batch, **{"observation.language.tokens": (tokens + 1) % policy.language_vocab_size})
        policy.forward(other)
    moved = max(
        (points[key] - other_points).abs().max() for key, other_points in policy.sampled_points().items()
    )
    assert moved > 1e-3  # same images, another instruction: other points
