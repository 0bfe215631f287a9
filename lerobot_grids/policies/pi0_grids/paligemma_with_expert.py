"""The PaliGemma + action-expert backbone of pi0 and pi0.5, at configurable sizes, with GridS at
``embed_image``.

LeRobot builds this backbone at pi0's sizes only (``gemma_2b`` + ``gemma_300m``, So400m at 224x224). Here
the same modules (LeRobot 0.5+: ``lerobot.policies.pi_gemma``'s, 0.4.4: stock transformers') are built
from :mod:`configuration_pi0_grids`'s variants, so tiny variants train on a CPU, with LeRobot's parameter
names. Everything that runs is LeRobot's ``PaliGemmaWithExpertModel`` (0.5+: its ``forward`` with the
``DynamicCache`` prefix, adaptive RMS norm for pi0.5), except ``embed_image``: GridS takes the dense tokens
of LeRobot's ``embed_image`` and returns K. On LeRobot 0.4.4, whose pi0 needs openpi's patched
transformers, ``forward`` is
:class:`~lerobot_grids.policies.pi0_grids.openpi_forward.OpenpiForwardOnStockTransformers`.
"""

import torch
from lerobot.policies.pi0.modeling_pi0 import GemmaConfig, PaliGemmaWithExpertModel, get_gemma_config
from torch import Tensor, nn
from transformers.models.auto import CONFIG_MAPPING

from lerobot_grids import compat
from lerobot_grids.grids import GridSampler, Region
from lerobot_grids.policies.grids_backbone import GridSBackboneMixin
from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import (
    SIGLIP_VARIANTS,
    TINY_GEMMA_VARIANTS,
    PaliGemmaGridSOptions,
)

if compat.PI_ON_STOCK_TRANSFORMERS:
    from lerobot.policies.pi_gemma import (
        PaliGemmaForConditionalGenerationWithPiGemma as PaliGemmaModelClass,
        PiGemmaForCausalLM as GemmaExpertClass,
    )

    BACKBONE_BASES = (PaliGemmaWithExpertModel,)
else:
    from transformers.models.gemma.modeling_gemma import GemmaForCausalLM as GemmaExpertClass
    from transformers.models.paligemma.modeling_paligemma import (
        PaliGemmaForConditionalGeneration as PaliGemmaModelClass,
    )

    from lerobot_grids.policies.pi0_grids.openpi_forward import OpenpiForwardOnStockTransformers

    BACKBONE_BASES = (OpenpiForwardOnStockTransformers, PaliGemmaWithExpertModel)


def gemma_config(variant: str) -> GemmaConfig:
    """LeRobot's Gemma width/depth spec of ``variant`` (pi0's own or one of our tiny ones)."""
    if variant in TINY_GEMMA_VARIANTS:
        return GemmaConfig(**TINY_GEMMA_VARIANTS[variant])
    return get_gemma_config(variant)


def _hf_text_config(spec: GemmaConfig, vocab_size: int, use_adarms: bool) -> dict:
    return {
        "hidden_size": spec.width,
        "intermediate_size": spec.mlp_dim,
        "num_attention_heads": spec.num_heads,
        "head_dim": spec.head_dim,
        "num_hidden_layers": spec.depth,
        "num_key_value_heads": spec.num_kv_heads,
        "hidden_activation": "gelu_pytorch_tanh",
        "vocab_size": vocab_size,
        "dtype": "float32",
        # pi_gemma's adaptive RMS norm (pi0.5's action expert); stock transformers ignores these.
        "use_adarms": use_adarms,
        "adarms_cond_dim": spec.width if use_adarms else None,
    }


class PaliGemmaWithExpertGridSModel(GridSBackboneMixin, *BACKBONE_BASES):
    """PaliGemma (SigLIP + Gemma) and the Gemma action expert of pi0 / pi0.5, with GridS at ``embed_image``.

    ``use_adarms``: the action expert's norms are conditioned on the flow-matching time (pi0.5).
    """

    def __init__(self, config: PaliGemmaGridSOptions, use_adarms: bool = False):
        nn.Module.__init__(self)  # LeRobot's __init__ hard-codes pi0's sizes; the variants come from config
        self.freeze_vision_encoder = config.freeze_vision_encoder
        self.train_expert_only = config.train_expert_only
        language, expert = gemma_config(config.paligemma_variant), gemma_config(config.action_expert_variant)
        if (language.depth, language.num_heads, language.head_dim) != (
            expert.depth,
            expert.num_heads,
            expert.head_dim,
        ):
            raise ValueError(
                f"pi0's joint attention needs the same depth, heads and head_dim in both Gemmas: "
                f"{config.paligemma_variant} has {(language.depth, language.num_heads, language.head_dim)}, "
                f"{config.action_expert_variant} has {(expert.depth, expert.num_heads, expert.head_dim)}."
            )

        paligemma_config = CONFIG_MAPPING["paligemma"](
            text_config={
                "model_type": "gemma",
                **_hf_text_config(language, config.vocab_size, use_adarms=False),
            },
            vision_config={
                "model_type": "siglip_vision_model",
                **SIGLIP_VARIANTS[config.vision_variant],
                "patch_size": 14,
                "image_size": config.image_resolution[0],
                "projection_dim": language.width,
                "projector_hidden_act": "gelu_fast",
                "vision_use_head": False,
                "dtype": "float32",
            },
            projection_dim=language.width,
            image_token_index=config.vocab_size,
        )
        expert_config = CONFIG_MAPPING["gemma"](**_hf_text_config(expert, config.vocab_size, use_adarms))
        self.paligemma = PaliGemmaModelClass(config=paligemma_config)
        self.gemma_expert = GemmaExpertClass(config=expert_config)
        self.gemma_expert.model.embed_tokens = None
        self.grids = GridSampler(language.width, config.grids)
        self.start_grids_record()

        self.to_bfloat16_for_selected_params(config.dtype)
        self.grids.float()  # the sampler trains in float32 whatever the backbone's precision
        if not compat.PI_ON_STOCK_TRANSFORMERS:
            self.cast_vision_embeddings()
        self._set_requires_grad()

    @property
    def patch_size(self) -> int:
        return self.paligemma.config.vision_config.patch_size

    def grid_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """SigLIP's token grid for an image of ``image_hw``."""
        return image_hw[0] // self.patch_size, image_hw[1] // self.patch_size

    if compat.PI_ON_STOCK_TRANSFORMERS:

        def dense_image_tokens(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
            """LeRobot's ``embed_image`` (SigLIP tokens projected to the language width) and their grid."""
            return PaliGemmaWithExpertModel.embed_image(self, image), self.grid_hw(image.shape[-2:])

    def use_sampler(self, sampler: nn.Module) -> None:
        """Sample with ``sampler`` from now on."""
        self.grids = sampler

    def sample_image(self, image: Tensor, region: Region | None) -> tuple[Tensor, Tensor]:
        return self.grids(*self.dense_image_tokens(image), context=self.grids_context, region=region)


def init_pi_model(model: nn.Module, config: PaliGemmaGridSOptions, rtc_processor, use_adarms: bool) -> int:
    """What LeRobot's ``PI0Pytorch.__init__`` / ``PI05Pytorch.__init__`` set before their projections, on the
    GridS backbone; returns the action expert's width for the projections."""
    nn.Module.__init__(model)
    model.config = config
    model.rtc_processor = rtc_processor
    model.paligemma_with_expert = PaliGemmaWithExpertGridSModel(config, use_adarms=use_adarms)
    model.gradient_checkpointing_enabled = False
    return gemma_config(config.action_expert_variant).width


def compile_pi_model(model: nn.Module, config: PaliGemmaGridSOptions) -> None:
    """``--policy.compile_model``, as LeRobot's pi0 and pi0.5 do it."""
    if config.compile_model:
        torch.set_float32_matmul_precision("high")
        model.sample_actions = torch.compile(model.sample_actions, mode=config.compile_mode)
        model.forward = torch.compile(model.forward, mode=config.compile_mode)
