"""pi0's backbone ``forward`` on stock transformers, for LeRobot 0.4.4 (whose pi0 needs openpi's patched fork).

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

:class:`OpenpiForwardOnStockTransformers` gives pi0's backbone those semantics by implementing its
``forward`` and dense image embedding on stock transformers modules, used as they are (attention, MLP,
norms, rotary embedding); nothing in transformers is patched, so every other model in the process keeps
stock behaviour. Where openpi's patched transformers is installed, the same code runs unchanged (its
norms' ``(tensor, None)`` is unpacked by :func:`rms_norm`). LeRobot 0.5+ runs pi0 on stock transformers
itself, and this module is not used there (:mod:`lerobot_grids.compat`).
"""

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb, eager_attention_forward

KVCache = list[tuple[Tensor, Tensor]]


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


class OpenpiForwardOnStockTransformers:
    """pi0's backbone ``forward`` and dense image tokens with openpi's semantics (put before LeRobot 0.4.4's
    ``PaliGemmaWithExpertModel``)."""

    def cast_vision_embeddings(self) -> None:
        """Cast the SigLIP embeddings to the encoder's dtype (openpi patch, 5.)."""
        vision = self.paligemma.model.vision_tower.vision_model
        vision.embeddings.register_forward_hook(_to_dtype_of(vision.encoder))

    def dense_image_tokens(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """SigLIP tokens projected to the language width, unscaled (openpi patch, 3.), and their grid."""
        model = self.paligemma.model
        tokens = model.multi_modal_projector(model.vision_tower(image).last_hidden_state)
        return tokens, self.grid_hw(image.shape[-2:])

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

