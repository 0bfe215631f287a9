"""pi0's backbone ``forward`` on stock transformers, for LeRobot 0.4.4 (whose pi0 needs openpi's patched
fork).

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
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers.models.gemma.modeling_gemma import apply_rotary_pos_emb


class PrefixKeyValueCache:
    """The prefix's keys and values per layer (pi0's ``past_key_values``), left as they are (openpi patch,
    4.), with room after them for a suffix: the first denoising step lays prefix and suffix out in one buffer
    per layer, and each later step writes its suffix's keys and values there in place and attends to the
    whole, instead of concatenating prefix and suffix anew in every layer and step."""

    def __init__(self):
        self.prefix: list[tuple[Tensor, Tensor]] = []
        self._buffers: dict[int, tuple[Tensor, Tensor]] = {}

    def append(self, key_value: tuple[Tensor, Tensor]) -> None:
        self.prefix.append(key_value)

    def __len__(self) -> int:
        return len(self.prefix)

    def __iter__(self):
        return iter(self.prefix)

    def with_suffix(self, layer_index: int, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, heads, prefix + suffix, head_dim]`` keys and values of layer ``layer_index``."""
        prefix_key, prefix_value = self.prefix[layer_index]
        length = prefix_key.shape[2]
        buffers = self._buffers.get(layer_index)
        if (
            buffers is None
            or buffers[0].shape != (*key.shape[:2], length + key.shape[2], key.shape[3])
            or buffers[0].dtype != key.dtype
        ):
            buffers = (torch.cat([prefix_key, key], dim=2), torch.cat([prefix_value, value], dim=2))
            self._buffers[layer_index] = buffers
        else:
            buffers[0][:, :, length:] = key
            buffers[1][:, :, length:] = value
        return buffers


def grouped_query_attention(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scale: float
) -> Tensor:
    """Scaled dot-product attention of ``query [B, heads, T, D]`` over ``key``/``value [B, kv heads, S, D]``
    (each group of ``heads / kv heads`` consecutive query heads shares one key-value head, as in Gemma), with
    pi0's additive ``mask [B, 1, T, S]``; ``[B, T, heads, D]``.

    The heads of a group are folded into the query length, so torch's SDPA kernels (masks supported) attend to
    the shared keys and values as they are, without copying them once per query head (transformers'
    ``repeat_kv``).
    """
    batch, heads, length, dim = query.shape
    groups = key.shape[1]
    per_group = heads // groups
    folded = query.reshape(batch, groups, per_group * length, dim)
    if mask is not None:
        mask = mask[..., : key.shape[2]].to(query.dtype).repeat(1, 1, per_group, 1)
    attended = F.scaled_dot_product_attention(folded, key, value, attn_mask=mask, scale=scale)
    return attended.reshape(batch, heads, length, dim).transpose(1, 2)


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
        past_key_values: PrefixKeyValueCache | None = None,
        inputs_embeds: list[Tensor | None] | None = None,
        use_cache: bool | None = None,
        adarms_cond: list[Tensor | None] | None = None,
    ) -> tuple[list[Tensor | None], PrefixKeyValueCache | None]:
        """Run the prefix (``inputs_embeds[0]``, through PaliGemma's Gemma), the suffix (``[1]``, through
        the action expert) or both in joint attention, as pi0 calls it.

        ``attention_mask`` is pi0's additive 4D mask over (cached prefix +) the given tokens. With
        ``use_cache`` the per-layer keys and values are returned; a given ``past_key_values`` is attended
        to and left unchanged.
        """
        if adarms_cond is not None and any(cond is not None for cond in adarms_cond):
            raise NotImplementedError("pi0_grids has no adaptive RMS norm (pi05's time conditioning).")
        models = [self.paligemma.model.language_model, self.gemma_expert.model]
        streams = [
            (model, embeds) for model, embeds in zip(models, inputs_embeds, strict=True) if embeds is not None
        ]
        hidden = [embeds.to(model.layers[0].self_attn.q_proj.weight.dtype) for model, embeds in streams]
        cos, sin = models[0].rotary_emb(hidden[0], position_ids)
        use_checkpointing = self.training and any(model.gradient_checkpointing for model in models)
        cache = PrefixKeyValueCache() if use_cache else None
        for layer_index in range(len(models[0].layers)):
            layers = [model.layers[layer_index] for model, _ in streams]
            arguments = (layers, hidden, attention_mask, cos, sin, past_key_values, layer_index)
            if use_checkpointing:
                hidden, key_value = checkpoint(self._joint_layer, *arguments, use_reentrant=False)
            else:
                hidden, key_value = self._joint_layer(*arguments)
            if cache is not None:
                cache.append(key_value)
        outputs = iter(
            rms_norm(model.norm, states) for (model, _), states in zip(streams, hidden, strict=True)
        )
        return [next(outputs) if embeds is not None else None for embeds in inputs_embeds], cache

    @staticmethod
    def _joint_layer(
        layers: list[nn.Module],
        hidden: list[Tensor],
        attention_mask: Tensor | None,
        cos: Tensor,
        sin: Tensor,
        past: PrefixKeyValueCache | None,
        layer_index: int,
    ) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """One pre-norm Gemma layer over the concatenated token streams, each with its own weights; attends to
        the ``past`` prefix's keys and values of layer ``layer_index`` too, when given."""
        normed = [
            rms_norm(layer.input_layernorm, states) for layer, states in zip(layers, hidden, strict=True)
        ]

        def heads(projection: str) -> Tensor:  # [B, heads, tokens of all streams, head_dim]
            projected = [
                getattr(layer.self_attn, projection)(states).unflatten(-1, (-1, layer.self_attn.head_dim))
                for layer, states in zip(layers, normed, strict=True)
            ]
            return (projected[0] if len(projected) == 1 else torch.cat(projected, dim=1)).transpose(1, 2)

        query, key = apply_rotary_pos_emb(heads("q_proj"), heads("k_proj"), cos, sin)
        value = heads("v_proj")
        cached = (key, value)
        if past is not None:
            key, value = past.with_suffix(layer_index, key, value)
        attention = layers[0].self_attn
        attended = grouped_query_attention(query, key, value, attention_mask, attention.scaling).flatten(2)

        outputs, start = [], 0
        for layer, states in zip(layers, hidden, strict=True):
            end = start + states.shape[1]
            output_projection = layer.self_attn.o_proj
            states = states + output_projection(attended[:, start:end].to(output_projection.weight.dtype))
            mlp_input = rms_norm(layer.post_attention_layernorm, states).to(layer.mlp.up_proj.weight.dtype)
            outputs.append(states + layer.mlp(mlp_input))
            start = end
        return outputs, cached
