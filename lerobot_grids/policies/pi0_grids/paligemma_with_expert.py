"""pi0's PaliGemma + action-expert backbone on stock transformers, with GridS at ``embed_image``.

LeRobot 0.4.4's pi0 is written against openpi's patched transformers (``transformers_replace`` in
openpi, transformers 4.53.2) and refuses to run on any release from the package index. What pi0 uses
of that patch, without adaptive RMS norm (which only pi05 uses):

1. Gemma RMS norms are called as ``norm(x, cond=None)`` and return ``(normed, gate)``; with no
   condition the gate is ``None`` and the normalisation is stock Gemma's; residuals are plain sums
   (``_gated_residual`` with no gate).
2. Gemma models do not multiply input embeddings by ``sqrt(hidden_size)``: pi0 scales the language
   embeddings itself and leaves image embeddings unscaled.
3. PaliGemma image features are not divided by ``sqrt(hidden_size)``.
4. A forward with ``use_cache=False`` and a prefix key-value cache attends to the cached prefix and
   leaves the cache as it is (each denoising step reuses the same prefix).
5. Hidden states are cast to bfloat16 before bfloat16 layers (the SigLIP encoder, the Gemma layers).

This module gives pi0's backbone those semantics by implementing its ``forward`` and ``embed_image``
on stock transformers modules, used as they are (attention, MLP, norms, rotary embedding); nothing in
transformers is patched, so every other model in the process keeps stock behaviour. Where openpi's
patched transformers is installed, the same code runs unchanged (its norms' ``(tensor, None)`` is
unpacked by :func:`rms_norm`). Parameter names are those of LeRobot's ``PaliGemmaWithExpertModel``.
"""

import torch
from lerobot.policies.pi0.modeling_pi0 import GemmaConfig, PaliGemmaWithExpertModel, get_gemma_config
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers.models.auto import CONFIG_MAPPING
from transformers.models.gemma.modeling_gemma import GemmaForCausalLM, apply_rotary_pos_emb, eager_attention_forward
from transformers.models.paligemma.modeling_paligemma import PaliGemmaForConditionalGeneration

from lerobot_grids.grids import GridSampler
from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import (
    SIGLIP_VARIANTS,
    TINY_GEMMA_VARIANTS,
    PI0GridsConfig,
)

KVCache = list[tuple[Tensor, Tensor]]


def gemma_config(variant: str) -> GemmaConfig:
    """LeRobot's Gemma width/depth spec of ``variant`` (pi0's own or one of our tiny ones)."""
    if variant in TINY_GEMMA_VARIANTS:
        return GemmaConfig(**TINY_GEMMA_VARIANTS[variant])
    return get_gemma_config(variant)


def _hf_text_config(spec: GemmaConfig, vocab_size: int) -> dict:
    return {
        "hidden_size": spec.width,
        "intermediate_size": spec.mlp_dim,
        "num_attention_heads": spec.num_heads,
        "head_dim": spec.head_dim,
        "num_hidden_layers": spec.depth,
        "num_key_value_heads": spec.num_kv_heads,
        "hidden_activation": "gelu_pytorch_tanh",
        "vocab_size": vocab_size,
    }


def rms_norm(norm: nn.Module, states: Tensor) -> Tensor:
    """A Gemma RMS norm without condition: stock transformers returns the tensor, openpi's patched
    transformers ``(tensor, None)``; either way the tensor, so the backbone runs with or without the patch."""
    normed = norm(states)
    return normed[0] if isinstance(normed, tuple) else normed


def _to_dtype_of(module: nn.Module):
    """Forward hook casting a module's output to the dtype of ``module``'s parameters (openpi patch, 5.)."""

    def hook(_, __, output):
        return output.to(next(module.parameters()).dtype)

    return hook


class PaliGemmaWithExpertGridSModel(PaliGemmaWithExpertModel):
    """PaliGemma (SigLIP + Gemma) and the Gemma action expert of pi0, with GridS at ``embed_image``."""

    def __init__(self, config: PI0GridsConfig):
        nn.Module.__init__(self)  # LeRobot's __init__ hard-codes pi0's sizes; the variants come from config
        self.freeze_vision_encoder = config.freeze_vision_encoder
        self.train_expert_only = config.train_expert_only
        language, expert = gemma_config(config.paligemma_variant), gemma_config(config.action_expert_variant)
        if (language.depth, language.num_heads, language.head_dim) != (expert.depth, expert.num_heads, expert.head_dim):
            raise ValueError(
                f"pi0's joint attention needs the same depth, heads and head_dim in both Gemmas: "
                f"{config.paligemma_variant} has {(language.depth, language.num_heads, language.head_dim)}, "
                f"{config.action_expert_variant} has {(expert.depth, expert.num_heads, expert.head_dim)}."
            )

        paligemma_config = CONFIG_MAPPING["paligemma"](
            text_config={"model_type": "gemma", **_hf_text_config(language, config.vocab_size)},
            vision_config={
                "model_type": "siglip_vision_model",
                **SIGLIP_VARIANTS[config.vision_variant],
                "patch_size": 14,
                "image_size": config.image_resolution[0],
                "projection_dim": language.width,
                "projector_hidden_act": "gelu_fast",
                "vision_use_head": False,
            },
            projection_dim=language.width,
            image_token_index=config.vocab_size,
        )
        expert_config = CONFIG_MAPPING["gemma"](**_hf_text_config(expert, config.vocab_size))
        self.paligemma = PaliGemmaForConditionalGeneration(config=paligemma_config)
        self.gemma_expert = GemmaForCausalLM(config=expert_config)
        self.gemma_expert.model.embed_tokens = None
        self.grids = GridSampler(language.width, config.grids)
        self.sampled_points: list[Tensor] = []

        self.to_bfloat16_for_selected_params(config.dtype)
        self.grids.float()  # the sampler trains in float32 whatever the backbone's precision
        vision = self.paligemma.model.vision_tower.vision_model
        vision.embeddings.register_forward_hook(_to_dtype_of(vision.encoder))
        self._set_requires_grad()

    @property
    def patch_size(self) -> int:
        return self.paligemma.config.vision_config.patch_size

    def dense_image_tokens(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """SigLIP tokens projected to the language width, unscaled (openpi patch, 3.), and their grid."""
        model = self.paligemma.model
        tokens = model.multi_modal_projector(model.vision_tower(image).last_hidden_state)
        return tokens, (image.shape[-2] // self.patch_size, image.shape[-1] // self.patch_size)

    def embed_image(self, image: Tensor) -> Tensor:
        tokens, points = self.grids(*self.dense_image_tokens(image))
        self.sampled_points.append(points.detach())
        return tokens

    def forward(
        self,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: KVCache | None = None,
        inputs_embeds: list[Tensor | None] | None = None,
        use_cache: bool | None = None,
        adarms_cond: list[Tensor | None] | None = None,
    ) -> tuple[list[Tensor | None], KVCache | None]:
        """Run the prefix (``inputs_embeds[0]``, through PaliGemma's Gemma), the suffix (``[1]``, through
        the action expert) or both in joint attention, as pi0 calls it.

        ``attention_mask`` is pi0's additive 4D mask over (cached prefix +) the given tokens. With
        ``use_cache`` the per-layer keys and values are returned; a given ``past_key_values`` is attended
        to and left unchanged.
        """
        if adarms_cond is not None and any(cond is not None for cond in adarms_cond):
            raise NotImplementedError("pi0_grids has no adaptive RMS norm (pi05's time conditioning).")
        models = [self.paligemma.model.language_model, self.gemma_expert.model]
        streams = [(model, embeds) for model, embeds in zip(models, inputs_embeds, strict=True) if embeds is not None]
        hidden = [embeds.to(model.layers[0].self_attn.q_proj.weight.dtype) for model, embeds in streams]
        cos, sin = models[0].rotary_emb(hidden[0], position_ids)
        use_checkpointing = self.training and any(model.gradient_checkpointing for model in models)
        cache = [] if use_cache else None
        for layer_index in range(len(models[0].layers)):
            layers = [model.layers[layer_index] for model, _ in streams]
            past = past_key_values[layer_index] if past_key_values is not None else None
            arguments = (layers, hidden, attention_mask, cos, sin, past)
            if use_checkpointing:
                hidden, key_value = checkpoint(self._joint_layer, *arguments, use_reentrant=False)
            else:
                hidden, key_value = self._joint_layer(*arguments)
            if cache is not None:
                cache.append(key_value)
        outputs = iter(rms_norm(model.norm, states) for (model, _), states in zip(streams, hidden, strict=True))
        return [next(outputs) if embeds is not None else None for embeds in inputs_embeds], cache

    @staticmethod
    def _joint_layer(
        layers: list[nn.Module],
        hidden: list[Tensor],
        attention_mask: Tensor | None,
        cos: Tensor,
        sin: Tensor,
        past: tuple[Tensor, Tensor] | None,
    ) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """One pre-norm Gemma layer over the concatenated token streams, each with its own weights."""
        normed = [rms_norm(layer.input_layernorm, states) for layer, states in zip(layers, hidden, strict=True)]

        def heads(projection: str) -> Tensor:  # [B, heads, tokens of all streams, head_dim]
            return torch.cat(
                [
                    getattr(layer.self_attn, projection)(states).unflatten(-1, (-1, layer.self_attn.head_dim))
                    for layer, states in zip(layers, normed, strict=True)
                ],
                dim=1,
            ).transpose(1, 2)

        query, key = apply_rotary_pos_emb(heads("q_proj"), heads("k_proj"), cos, sin)
        value = heads("v_proj")
        if past is not None:
            key, value = torch.cat([past[0], key], dim=2), torch.cat([past[1], value], dim=2)
        attention = layers[0].self_attn
        attended, _ = eager_attention_forward(attention, query, key, value, attention_mask, attention.scaling)
        attended = attended.flatten(2)

        outputs, start = [], 0
        for layer, states in zip(layers, hidden, strict=True):
            end = start + states.shape[1]
            output_projection = layer.self_attn.o_proj
            states = states + output_projection(attended[:, start:end].to(output_projection.weight.dtype))
            mlp_input = rms_norm(layer.post_attention_layernorm, states).to(layer.mlp.up_proj.weight.dtype)
            outputs.append(states + layer.mlp(mlp_input))
            start = end
        return outputs, (key, value)

