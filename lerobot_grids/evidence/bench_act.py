"""What :mod:`lerobot_grids.evidence.bench` measures, for ACT (``act_grids``).

LeRobot's ACT as its SO-100 tutorial trains it (ResNet-18, 512-wide transformer with 4 encoder layers and 1
decoder layer, chunks of 100) with random weights, reading the SO-100's two 640x480 cameras as they come (a
15x20 feature map each: 300 tokens per camera, 602 encoder tokens with the latent and the state). The variants
share the model; only the sampler at ``model.grids`` changes (:meth:`ACTGridsPolicy.use_sampler`): ``dense``
is LeRobot's encoder and decoder untouched. FLOP phases: ``vision`` (the ResNet and ACT's input projection),
``grids``, ``transformer encoder``, ``transformer decoder``, ``vae encoder`` (training), ``backward``,
``other``.
"""

from collections.abc import Callable

import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE
from torch import Tensor, nn

from lerobot_grids.grids import GridSConfig
from lerobot_grids.policies.act_grids.configuration_act_grids import ACTGridsConfig
from lerobot_grids.policies.act_grids.modeling_act_grids import ACTGridsPolicy, ACTSequenceSampler

PHASES = ("vision", "transformer encoder", "transformer decoder")
ACT_ARCHITECTURES: dict[str, Callable[[], ACTGridsConfig]] = {
    "act": lambda: ACTGridsConfig(pretrained_backbone_weights=None),
    "act_tiny": lambda: ACTGridsConfig(
        pretrained_backbone_weights=None,
        dim_model=32,
        n_heads=2,
        dim_feedforward=64,
        n_encoder_layers=2,
        latent_dim=8,
        chunk_size=10,
        n_action_steps=10,
    ),
}
IMAGE_HW = {"act": (480, 640), "act_tiny": (96, 128)}  # act_tiny: a 3x4 feature map


class NoImageTokensACT(ACTSequenceSampler):
    """A sampler that keeps no token of any camera: the images go through the ResNet and stop there."""

    def __init__(self, dim: int, leading_tokens: int):
        super().__init__(dim, GridSConfig(sampler="topk", coord_injection=False), leading_tokens)

    def forward(self, tokens: Tensor, grid_hw: tuple[int, int], context=None, region=None):
        return tokens[:, :0], tokens.new_zeros(tokens.shape[0], 0, 2)


def build_act_policy(architecture: str, device: str, cameras: tuple[str, ...]) -> ACTGridsPolicy:
    """The architecture with random weights, ``cameras`` at its image size and SO-100's 6 joints."""
    config = ACT_ARCHITECTURES[architecture]()
    config.device = device
    config.input_features = {
        camera: PolicyFeature(FeatureType.VISUAL, (3, *IMAGE_HW[architecture])) for camera in cameras
    }
    config.input_features[OBS_STATE] = PolicyFeature(FeatureType.STATE, (6,))
    config.output_features = {ACTION: PolicyFeature(FeatureType.ACTION, (6,))}
    config.grids = GridSConfig(sampler="dense")
    with torch.device(device):
        return ACTGridsPolicy(config).to(device)


def act_samplers(policy: ACTGridsPolicy, ks: list[int], dense: str, no_image_tokens: str) -> dict:
    """``dense``, ``K=k`` for each k and ``no image tokens``, each set for the policy's cameras."""
    dim, lead = policy.config.dim_model, policy.leading_tokens
    samplers = {dense: ACTSequenceSampler(dim, GridSConfig(sampler="dense"), lead)}
    for k in ks:
        samplers[f"K={k}"] = ACTSequenceSampler(dim, GridSConfig(num_tokens=k), lead)
    samplers[no_image_tokens] = NoImageTokensACT(dim, lead)
    grids = [policy.feature_grid(tuple(f.shape[-2:])) for f in policy.config.image_features.values()]
    device = next(policy.parameters()).device
    for sampler in samplers.values():
        sampler.camera_grids = grids
    return {name: sampler.to(device) for name, sampler in samplers.items()}


def act_inputs(policy: ACTGridsPolicy, batch_size: int, device: str) -> dict:
    """A batch as ACT's model takes it: normalised images per camera, state, an action chunk."""
    config = policy.config
    with torch.device(device):
        images = [torch.randn(batch_size, *feature.shape) for feature in config.image_features.values()]
        return {
            OBS_STATE: torch.randn(batch_size, config.robot_state_feature.shape[0]),
            OBS_IMAGES: images,
            **dict(zip(config.image_features, images, strict=True)),
            ACTION: torch.randn(batch_size, config.chunk_size, config.action_feature.shape[0]),
            "action_is_pad": torch.zeros(batch_size, config.chunk_size, dtype=torch.bool),
        }


def act_inference(policy: ACTGridsPolicy, inputs: dict) -> Tensor:
    """One action chunk of ACT's model, as LeRobot's ``predict_action_chunk`` makes it (eval mode: no VAE)."""
    policy.eval()
    with torch.no_grad():
        return policy.model(inputs)[0]


def act_training_loss(policy: ACTGridsPolicy, inputs: dict) -> Tensor:
    """ACT's training loss (L1 and the VAE's KL), LeRobot's ``ACTPolicy.forward`` in train mode."""
    policy.train()
    return ACTPolicy.forward(policy, inputs)[0]


def act_phase_modules(policy: ACTGridsPolicy) -> dict[str, list[nn.Module]]:
    model = policy.model
    phases = {
        "vision": [model.backbone, model.encoder_img_feat_input_proj],
        "grids": [model.grids],
        "transformer encoder": [*model.encoder.layers, model.encoder.norm],
        "transformer decoder": [*model.decoder.layers, model.decoder.norm],
    }
    if policy.config.use_vae:
        phases["vae encoder"] = [model.vae_encoder]
    return phases


def act_encoder_tokens(policy: ACTGridsPolicy, inputs: dict) -> int:
    """Tokens entering ACT's transformer encoder per sample (the latent, the state, the cameras')."""
    seen = []
    handle = policy.model.encoder.layers[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        act_inference(policy, {key: _first(value) for key, value in inputs.items()})
    finally:
        handle.remove()
    return seen[0].shape[0]


def _first(value):
    return [item[:1] for item in value] if isinstance(value, list) else value[:1]
