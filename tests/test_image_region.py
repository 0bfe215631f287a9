"""Points on the image, never on the padding: a non-square camera is resized and padded to the backbone's
square input by LeRobot's own preprocessing (SmolVLA pads the top or the left, pi0 both sides); the sampler
reads only the token rows and columns the image covers, for every predictor and inside the vision tower."""

import pytest
import torch
from conftest import make_config
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.factory import get_policy_class
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

# (policy type, camera height x width) -> the region (top, bottom, left, right) of its token grid the image
# covers. SmolVLA's tiny backbone at 128x128: a 4x4 grid of 32-pixel tokens; pi0's at 112x112: an 8x8 grid of
# 14-pixel ones.
EXPECTED_REGIONS = {
    ("smolvla_grids", (48, 64)): (1, 3, 0, 3),  # 4:3 -> 128x96 under 32 rows of padding on top
    ("smolvla_grids", (64, 48)): (0, 3, 1, 3),  # 3:4 -> 96x128 beside 32 columns on the left
    ("smolvla_grids", (64, 64)): None,
    ("pi0_grids", (48, 64)): (1, 6, 0, 7),  # 4:3 -> 112x84 between 14 rows above and below
    ("pi0_grids", (64, 48)): (0, 7, 1, 6),
    ("pi0_grids", (64, 64)): None,
}
PREDICTORS = {
    "mlp": {},
    "attention+instruction": {"predictor": "attention", "instruction": True},
    "in-tower": {"predictor": "attention", "split_layer": 1},
}


def policy_and_batch(policy_type: str, image_hw: tuple[int, int], grids: dict):
    config = make_config(policy_type, grids={"num_tokens": 4, **grids})
    camera = PolicyFeature(type=FeatureType.VISUAL, shape=(3, *image_hw))
    config.input_features = {
        f"{OBS_IMAGES}.front": camera,
        f"{OBS_IMAGES}.wrist": camera,
        OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(6,)),
    }
    config.output_features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(6,))}
    torch.manual_seed(0)
    policy = get_policy_class(policy_type)(config)
    batch = {key: torch.rand(2, 3, *image_hw) for key in config.image_features}
    tokens = torch.randint(5, 60, (2, 8))
    batch |= {
        OBS_STATE: torch.randn(2, 6),
        ACTION: torch.randn(2, config.chunk_size, 6),
        "action_is_pad": torch.zeros(2, config.chunk_size, dtype=torch.bool),
        "observation.language.tokens": tokens,
        "observation.language.attention_mask": torch.ones_like(tokens).bool(),
    }
    return policy, batch


@pytest.mark.parametrize("predictor", list(PREDICTORS))
@pytest.mark.parametrize(("policy_type", "image_hw"), list(EXPECTED_REGIONS))
def test_every_point_lies_on_the_image_never_on_the_padding(policy_type, image_hw, predictor):
    if policy_type == "pi0_grids" and predictor == "in-tower":
        pytest.skip("split_layer samples inside SmolVLM's tower only")
    policy, batch = policy_and_batch(policy_type, image_hw, PREDICTORS[predictor])
    region = EXPECTED_REGIONS[policy_type, image_hw]
    assert policy.image_region(image_hw) == region
    # Saturated towards the padding: the paper's predictor pushed to the top-left corner, the attention
    # anchors there.
    grids = policy.grids
    with torch.no_grad():
        if predictor == "mlp":
            grids.point_predictor[-1].bias.fill_(-30.0)
        else:
            grids.attention_predictor.anchors.fill_(0.0)
    rows, cols = policy.grids_backbone.grid_hw(tuple(policy.model_images(batch)[0].shape[-2:]))
    top, bottom, left, right = region or (0, rows - 1, 0, cols - 1)
    policy.forward(batch)
    sampled = policy.sampled_points()
    assert list(sampled) == list(policy.config.image_features)
    for points in sampled.values():
        x, y = points[..., 0] * (cols - 1), points[..., 1] * (rows - 1)  # in token pitches
        assert (y >= top - 1e-5).all() and (y <= bottom + 1e-5).all(), (y.min(), region)
        assert (x >= left - 1e-5).all() and (x <= right + 1e-5).all(), (x.min(), region)
