"""``pi0_grids`` on stock transformers: pi0's semantics, LeRobot's key names, loading, training."""

import json

import pytest
import torch
from conftest import make_batch, make_config
from lerobot.policies.pi0.configuration_pi0 import PI0Config
from lerobot.policies.pi0.modeling_pi0 import PI0Pytorch, make_att_2d_masks
from safetensors.torch import load_file, save_file
from transformers.cache_utils import DynamicCache

from lerobot_grids import compat
from lerobot_grids.policies.options import PolicyOptionError
from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PI0GridsConfig
from lerobot_grids.policies.pi0_grids.modeling_pi0_grids import PI0GridsPolicy, PI0GridsPytorch
from lerobot_grids.policies.pi0_grids.processor_pi0_grids import make_pi0_grids_pre_post_processors

# LeRobot 0.4.4 only: our backbone's own forward (openpi's semantics on stock transformers). On LeRobot 0.5+
# the backbone runs LeRobot's own forward, checked against LeRobot's pi0 in test_pi_grids_lerobot05.py.
openpi_forward_only = pytest.mark.skipif(
    compat.PI_ON_STOCK_TRANSFORMERS, reason="LeRobot 0.5+ runs LeRobot's own pi0 backbone forward"
)


def _float64_policy(dataset_root, dtype=torch.float64, **options) -> PI0GridsPolicy:
    torch.manual_seed(0)
    policy = PI0GridsPolicy(make_config("pi0_grids", dataset_root=dataset_root, **options)).to(dtype)
    # Random norm weights, so a wrongly applied norm cannot pass unnoticed (Gemma's start at zero).
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "norm" in name:
                parameter.normal_(0, 0.5)
    return policy.eval()


@openpi_forward_only
def test_state_dict_keys_and_shapes_are_lerobot_pi0s():
    """Full-size pi0 (gemma_2b + gemma_300m, So400m, 224x224), built on the meta device."""
    reference = PI0Pytorch.__new__(PI0Pytorch)
    with torch.device("meta"), pytest.raises(ValueError, match="incorrect transformer version"):
        reference.__init__(PI0Config())  # LeRobot builds every module, then refuses stock transformers
    with torch.device("meta"):
        ours = PI0GridsPytorch(PI0GridsConfig(grids={"sampler": "dense"}))
    expected = {name: tuple(t.shape) for name, t in reference.state_dict().items()}
    assert {name: tuple(t.shape) for name, t in ours.state_dict().items()} == expected
    with torch.device("meta"):
        grids = PI0GridsPytorch(PI0GridsConfig(grids={"num_tokens": 16}))
    extra = set(grids.state_dict()) - set(expected)
    assert extra and all(name.startswith("paligemma_with_expert.grids.") for name in extra)


@openpi_forward_only
def test_image_features_are_unscaled_paligemma_features(dataset_root):
    """openpi's PaliGemma does not divide image features by sqrt(width) (stock transformers does)."""
    policy = _float64_policy(dataset_root, grids={"sampler": "dense"})
    backbone = policy.model.paligemma_with_expert
    image = torch.rand(2, 3, 112, 112, dtype=torch.float64) * 2 - 1
    stock = backbone.paligemma.model.get_image_features(image)
    ours = backbone.embed_image(image)
    assert ours.shape == (2, 64, 64)  # 8x8 patches of 14 pixels, Gemma width 64
    torch.testing.assert_close(ours, stock * 64**0.5)


def _prefix_inputs(policy, length=7, seed=1):
    generator = torch.Generator().manual_seed(seed)
    width = policy.model.paligemma_with_expert.paligemma.config.text_config.hidden_size
    embeds = torch.randn(2, length, width, generator=generator, dtype=torch.float64)
    pad = torch.ones(2, length, dtype=torch.bool)
    pad[1, -2:] = False  # padded tokens in the second item
    att = torch.zeros(2, length, dtype=torch.bool)
    mask = policy.model._prepare_attention_masks_4d(make_att_2d_masks(pad, att)).double()
    return embeds, pad, mask, torch.cumsum(pad, dim=1) - 1


@openpi_forward_only
def test_prefix_pass_is_transformers_gemma_without_the_embedding_normaliser(dataset_root):
    policy = _float64_policy(dataset_root)
    backbone = policy.model.paligemma_with_expert
    embeds, _, mask, positions = _prefix_inputs(policy)
    (ours, _), cache = backbone.forward(mask, positions, None, [embeds, None], use_cache=True)
    language_model = backbone.paligemma.model.language_model
    language_model.config._attn_implementation = "eager"  # as pi0 sets it
    stock = language_model(
        inputs_embeds=embeds / language_model.config.hidden_size**0.5,
        attention_mask=mask,
        position_ids=positions,
    ).last_hidden_state
    # transformers' eager attention takes its softmax in float32, ours (SDPA) in the inputs' float64
    torch.testing.assert_close(ours, stock, rtol=1e-6, atol=1e-6)
    assert len(cache) == len(language_model.layers)


@openpi_forward_only
def test_suffix_pass_attends_to_the_cached_prefix_and_leaves_it_unchanged(dataset_root):
    """Each denoising step's suffix attends to the cached prefix (against transformers' own Gemma with a
    cache); the prefix is left as it is, and later steps write their keys and values into the buffers the
    first laid out."""
    policy = _float64_policy(dataset_root)
    backbone = policy.model.paligemma_with_expert
    embeds, pad, prefix_mask, positions = _prefix_inputs(policy)
    _, cache = backbone.forward(prefix_mask, positions, None, [embeds, None], use_cache=True)
    cached = [(k.clone(), v.clone()) for k, v in cache]

    suffix_pad, suffix_att = (
        torch.ones(2, 5, dtype=torch.bool),
        torch.tensor([[1, 1, 0, 0, 0]] * 2, dtype=torch.bool),
    )
    full = torch.cat([pad[:, None, :].expand(2, 5, 7), make_att_2d_masks(suffix_pad, suffix_att)], dim=2)
    mask = policy.model._prepare_attention_masks_4d(full).double()
    suffix_positions = pad.sum(-1, keepdim=True) + torch.cumsum(suffix_pad, dim=1) - 1
    expert = backbone.gemma_expert.model
    expert.config._attn_implementation = "eager"
    buffers = []
    for step in range(3):  # every denoising step sees the same prefix
        suffix = torch.randn(
            2,
            5,
            expert.config.hidden_size,
            generator=torch.Generator().manual_seed(step),
            dtype=torch.float64,
        )
        (_, ours), _ = backbone.forward(mask, suffix_positions, cache, [None, suffix], use_cache=False)
        stock_cache = DynamicCache()
        for index, (k, v) in enumerate(cached):
            stock_cache.update(k, v, index)
        stock = expert(
            inputs_embeds=suffix / expert.config.hidden_size**0.5,
            attention_mask=mask,
            position_ids=suffix_positions,
            past_key_values=stock_cache,
        ).last_hidden_state
        torch.testing.assert_close(
            ours, stock, rtol=1e-6, atol=1e-6
        )  # softmax in float32 in eager transformers
        buffers.append([key.data_ptr() for key, _ in cache._buffers.values()])
    for (k, v), (k0, v0) in zip(cache, cached, strict=True):
        assert torch.equal(k, k0) and torch.equal(v, v0)
    assert buffers[0] == buffers[1] == buffers[2]  # laid out once, written in place after


def test_grouped_query_attention_is_attention_with_shared_key_value_heads():
    """Against attention written out with each key-value head repeated for its group of query heads (Gemma's
    ``repeat_kv``), in float64, with pi0's additive mask (a padded key masked for every query)."""
    from lerobot_grids.policies.pi0_grids.openpi_forward import grouped_query_attention

    generator = torch.Generator().manual_seed(0)
    for heads, groups in ((8, 1), (4, 2), (2, 2)):
        query = torch.randn(2, heads, 5, 16, generator=generator, dtype=torch.float64)
        key, value = (
            torch.randn(2, groups, 9, 16, generator=generator, dtype=torch.float64) for _ in range(2)
        )
        visible = torch.rand(2, 1, 5, 9, generator=generator) < 0.7
        visible[..., 0], visible[1, ..., -1] = True, False
        mask = torch.where(visible, 0.0, -2.3819763e38).double()
        repeated = [tensor.repeat_interleave(heads // groups, dim=1) for tensor in (key, value)]
        weights = torch.softmax(query @ repeated[0].transpose(-1, -2) * 0.25 + mask, dim=-1)
        torch.testing.assert_close(
            grouped_query_attention(query, key, value, mask, 0.25),
            (weights @ repeated[1]).transpose(1, 2),
            rtol=1e-12,
            atol=1e-12,
        )


@openpi_forward_only
def test_training_and_inference_paths_give_the_same_velocity(dataset_root):
    """Joint attention (training) and prefix cache + suffix pass (inference) compute the same v_t.

    In float32: pi0 casts the expert output to float32 before its action head."""
    policy = _float64_policy(dataset_root, dtype=torch.float32)
    model = policy.model
    batch = make_batch(policy.config, dataset_root)
    images, masks = policy._preprocess_images(batch)
    tokens, token_masks = batch["observation.language.tokens"], batch["observation.language.attention_mask"]
    state = policy.prepare_state(batch)
    x_t = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(3))
    time = torch.tensor([0.3, 0.8])

    # Training, with noise and actions chosen so that the noisy actions are x_t and u_t = noise - actions = 1:
    # the per-element loss is (1 - v_t)^2.
    noise = x_t + (1 - time[:, None, None])
    losses = model.forward(images, masks, tokens, token_masks, state, noise - 1, noise=noise, time=time)
    # Inference: the velocity of one denoising step at the same x_t and time.
    prefix, prefix_pad, prefix_att = model.embed_prefix(images, masks, tokens, token_masks)
    prefix_mask = model._prepare_attention_masks_4d(make_att_2d_masks(prefix_pad, prefix_att))
    _, cache = model.paligemma_with_expert.forward(
        prefix_mask, torch.cumsum(prefix_pad, 1) - 1, None, [prefix, None], use_cache=True
    )
    v_infer = model.denoise_step(state, prefix_pad, cache, x_t, time)
    torch.testing.assert_close(losses, (1 - v_infer) ** 2, atol=1e-5, rtol=1e-4)


def test_dense_sampler_keeps_every_image_token_and_grids_keeps_k(dataset_root):
    dense = _float64_policy(dataset_root, grids={"sampler": "dense"})
    grids = _float64_policy(dataset_root, grids={"num_tokens": 4})
    image = torch.rand(2, 3, 112, 112, dtype=torch.float64)
    assert dense.model.paligemma_with_expert.embed_image(image).shape[1] == 64
    assert grids.model.paligemma_with_expert.embed_image(image).shape[1] == 4


def test_grids_trains_while_pi0_freezes_the_vlm_and_reports_spread(dataset_root):
    config = make_config(
        "pi0_grids", dataset_root=dataset_root, train_expert_only=True, grids={"num_tokens": 4}
    )
    policy = PI0GridsPolicy(config)
    policy.train()
    assert all(p.requires_grad for p in policy.grids.parameters())
    assert not any(p.requires_grad for p in policy.model.paligemma_with_expert.paligemma.parameters())
    loss, output = policy.forward(make_batch(config, dataset_root))
    loss.backward()
    assert policy.grids.point_predictor[0].weight.grad.abs().sum() > 0
    assert set(output) >= {"grids_point_spread/front", "grids_point_spread/wrist"}
    actions = policy.predict_action_chunk(make_batch(config, dataset_root))
    assert actions.shape == (2, 4, 6) and torch.isfinite(actions).all()


def _write_dense_pi0_checkpoint(policy: PI0GridsPolicy, folder, openpi_names: bool) -> None:
    """A dense checkpoint in LeRobot's pi0 format: ``"type": "pi0"`` and PI0Policy's keys, or openpi's
    converted names (no ``model.`` prefix, ``time_mlp_*``) which PI0Policy.from_pretrained maps."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"type": "pi0", "paligemma_variant": "gemma_tiny"}))
    state, saved = {}, set()
    for name, tensor in policy.state_dict().items():
        if (
            tensor.data_ptr() in saved
        ):  # a tied weight (transformers 4's lm_head) is saved once, as LeRobot does
            continue
        saved.add(tensor.data_ptr())
        if openpi_names:
            name = name.removeprefix("model.").replace("action_time_mlp_", "time_mlp_")
        state[name] = tensor.clone()
    save_file(state, folder / "model.safetensors")


@pytest.mark.parametrize("openpi_names", [False, True])
def test_init_from_a_dense_pi0_checkpoint(dataset_root, tmp_path, openpi_names):
    torch.manual_seed(4)
    dense = PI0GridsPolicy(make_config("pi0_grids", dataset_root=dataset_root, grids={"sampler": "dense"}))
    _write_dense_pi0_checkpoint(dense, tmp_path / "dense", openpi_names)
    policy = PI0GridsPolicy(
        make_config("pi0_grids", dataset_root=dataset_root, init_from=str(tmp_path / "dense"))
    )
    state = policy.state_dict()
    for name, tensor in dense.state_dict().items():
        assert torch.equal(state[name], tensor), name
    assert {n for n in state if n not in dense.state_dict()} == {
        n for n in state if n.startswith("model.paligemma_with_expert.grids.")
    }


def test_init_from_refuses_other_checkpoints(dataset_root, tmp_path):
    small = PI0GridsPolicy(
        make_config("pi0_grids", dataset_root=dataset_root, grids={"sampler": "dense"}, max_state_dim=16)
    )
    _write_dense_pi0_checkpoint(small, tmp_path / "other", openpi_names=False)
    with pytest.raises(
        ValueError,
        match=r"other shapes for \['model.state_proj.weight \(checkpoint \(32, 16\), policy \(32, 32\)\)'\]",
    ):
        PI0GridsPolicy(make_config("pi0_grids", dataset_root=dataset_root, init_from=str(tmp_path / "other")))
    missing = tmp_path / "missing"
    _write_dense_pi0_checkpoint(
        small.__class__(make_config("pi0_grids", dataset_root=dataset_root, grids={"sampler": "dense"})),
        missing,
        openpi_names=False,
    )
    state = load_file(missing / "model.safetensors")
    del state["model.state_proj.bias"]
    save_file(state, missing / "model.safetensors")
    with pytest.raises(ValueError, match=r"Missing from the checkpoint: \['model.state_proj.bias'\]"):
        PI0GridsPolicy(make_config("pi0_grids", dataset_root=dataset_root, init_from=str(missing)))
    (tmp_path / "smolvla").mkdir()
    (tmp_path / "smolvla" / "config.json").write_text(json.dumps({"type": "smolvla"}))
    with pytest.raises(ValueError, match="is a 'smolvla' checkpoint, not a dense 'pi0' one"):
        PI0GridsPolicy(
            make_config("pi0_grids", dataset_root=dataset_root, init_from=str(tmp_path / "smolvla"))
        )


def test_save_load_round_trip_and_other_grids_settings_refused(dataset_root, tmp_path):
    torch.manual_seed(5)
    config = make_config("pi0_grids", dataset_root=dataset_root, grids={"num_tokens": 3})
    policy = PI0GridsPolicy(config)
    policy.save_pretrained(tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["type"] == "pi0_grids"
    loaded = PI0GridsPolicy.from_pretrained(tmp_path / "ckpt")
    batch = make_batch(config, dataset_root)
    noise = torch.randn(2, 4, 32)
    assert torch.equal(
        policy.predict_action_chunk(dict(batch), noise=noise),
        loaded.predict_action_chunk(dict(batch), noise=noise),
    )
    with pytest.raises(ValueError, match="grids.num_tokens: checkpoint 3, requested 16"):
        PI0GridsPolicy.from_pretrained(
            tmp_path / "ckpt", config=make_config("pi0_grids", dataset_root=dataset_root)
        )


def test_processors_tokenise_with_the_configured_tokenizer(dataset_root):
    config = make_config("pi0_grids", dataset_root=dataset_root)
    preprocessor, _ = make_pi0_grids_pre_post_processors(config)
    tokenizer = next(step for step in preprocessor.steps if hasattr(step, "input_tokenizer")).input_tokenizer
    assert tokenizer.name_or_path == config.tokenizer_name
    batch = make_batch(config, dataset_root)
    tokens = batch["observation.language.tokens"]
    assert tokens.shape == (2, 16) and (tokens[:, 0] == tokenizer.bos_token_id).all()
    assert tokens.max() < config.vocab_size


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"paligemma_variant": "gemma_7b"}, "Unknown Gemma variant 'gemma_7b' for paligemma_variant"),
        (
            {"image_resolution": (224, 160)},
            r"PaliGemma needs square images, got image_resolution=\[224, 160\]",
        ),
        ({"vision_variant": "siglip_giant"}, "Unknown vision_variant 'siglip_giant'"),
        ({"grids": {"num_tokens": 0}}, "num_tokens must be at least 1"),
    ],
)
def test_bad_config_is_refused(options, message):
    with pytest.raises(PolicyOptionError, match=message):
        PI0GridsConfig(**options)


def test_mismatched_gemma_pair_and_too_many_discrete_tokens_are_refused(dataset_root):
    with pytest.raises(ValueError, match="same depth, heads and head_dim"):
        PI0GridsPolicy(
            make_config("pi0_grids", dataset_root=dataset_root, action_expert_variant="gemma_300m")
        )
    with pytest.raises(
        ValueError, match="cannot pick 49 tokens from a 6x8 grid of 48, the part of the backbone's"
    ):
        PI0GridsPolicy(
            make_config("pi0_grids", dataset_root=dataset_root, grids={"sampler": "topk", "num_tokens": 49})
        )


@openpi_forward_only
def test_backbone_runs_unchanged_with_openpi_patched_norms(dataset_root):
    """Where openpi's patched transformers is installed, Gemma norms return (tensor, gate=None)."""
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    class PatchedNorm(GemmaRMSNorm):  # the patched interface: norm(x, cond=None) -> (normed, gate)
        def forward(self, x, cond=None):
            return super().forward(x), None

    policy = _float64_policy(dataset_root)
    backbone = policy.model.paligemma_with_expert
    embeds, _, mask, positions = _prefix_inputs(policy)
    (stock, _), _ = backbone.forward(mask, positions, None, [embeds, None], use_cache=True)
    norms = [module for module in backbone.modules() if isinstance(module, GemmaRMSNorm)]
    for module in norms:
        module.__class__ = PatchedNorm
    (patched, _), _ = backbone.forward(mask, positions, None, [embeds, None], use_cache=True)
    assert norms and torch.equal(stock, patched)


@openpi_forward_only
def test_dense_training_loss_is_lerobot_pi0s(dataset_root, monkeypatch):
    """sampler=dense against LeRobot's own pi0 joint forward (``compute_layer_complete``) on the same
    weights and noise, to float32's rounding. That code needs the patched interface (norms returning ``(x,
    gate)``, ``modeling_gemma._gated_residual``), given here inside this test only. Inference is tied to the
    same computation by test_training_and_inference_paths_give_the_same_velocity."""
    import types

    from lerobot.policies.pi0.modeling_pi0 import PaliGemmaWithExpertModel
    from transformers.models.gemma import modeling_gemma
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    policy = _float64_policy(dataset_root, dtype=torch.float32, grids={"sampler": "dense"})
    model = policy.model
    batch = make_batch(policy.config, dataset_root)
    images, masks = policy._preprocess_images(batch)
    inputs = (
        images,
        masks,
        batch["observation.language.tokens"],
        batch["observation.language.attention_mask"],
        policy.prepare_state(batch),
        policy.prepare_action(batch),
    )
    generator = torch.Generator().manual_seed(6)
    noise, time = torch.randn(2, 4, 32, generator=generator), torch.tensor([0.2, 0.9])
    ours = model.forward(*inputs, noise=noise, time=time)

    class PatchedNorm(GemmaRMSNorm):
        def forward(self, x, cond=None):
            return super().forward(x), None

    monkeypatch.setattr(modeling_gemma, "_gated_residual", lambda x, y, gate: x + y, raising=False)
    backbone = model.paligemma_with_expert
    for module in backbone.modules():
        if isinstance(module, GemmaRMSNorm):
            monkeypatch.setattr(module, "__class__", PatchedNorm)
    monkeypatch.setattr(backbone, "forward", types.MethodType(PaliGemmaWithExpertModel.forward, backbone))
    assert backbone.forward.__func__ is PaliGemmaWithExpertModel.forward  # LeRobot's code runs now
    lerobot = model.forward(*inputs, noise=noise, time=time)
    # equal to float32's rounding: our attention runs on SDPA (grouped_query_attention), LeRobot's in eager
    # matmuls
    torch.testing.assert_close(ours, lerobot, rtol=1e-5, atol=1e-6)


def test_bfloat16_policy_matches_float32_within_its_precision_and_samples_in_float32(dataset_root):
    """``--policy.dtype=bfloat16`` (LeRobot's pi0 option): the backbone's weights in bfloat16, the GridS
    sampler in float32; with the float32 policy's weights, noise and time, the flow-matching loss, the action
    chunk, the sampled points and the sampler's gradients (training in bfloat16) agree within bfloat16's
    precision."""
    torch.manual_seed(0)
    full = PI0GridsPolicy(make_config("pi0_grids", dataset_root=dataset_root, grids={"num_tokens": 4})).eval()
    half = PI0GridsPolicy(
        make_config("pi0_grids", dataset_root=dataset_root, grids={"num_tokens": 4}, dtype="bfloat16")
    ).eval()
    half.load_state_dict(full.state_dict())  # copied into each parameter's own dtype
    backbone = half.model.paligemma_with_expert
    assert backbone.paligemma.model.language_model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert {p.dtype for p in backbone.grids.parameters()} == {torch.float32}
    batch = make_batch(full.config, dataset_root)
    generator = torch.Generator().manual_seed(1)
    noise, time = torch.randn(2, 4, 32, generator=generator), torch.tensor([0.3, 0.8])
    losses, chunks, points, gradients = [], [], [], []
    for policy in (full, half):
        with torch.no_grad():
            chunks.append(policy.predict_action_chunk(dict(batch), noise=noise).float())
        points.append(policy.sampled_points()["observation.images.front"])
        images, masks = policy.train()._preprocess_images(batch)
        loss = (
            policy.model.forward(
                images,
                masks,
                batch["observation.language.tokens"],
                batch["observation.language.attention_mask"],
                policy.prepare_state(batch),
                policy.prepare_action(batch),
                noise=noise,
                time=time,
            )
            .float()
            .mean()
        )
        loss.backward()
        losses.append(loss.detach())
        gradients.append(torch.cat([p.grad.flatten() for p in policy.grids.parameters()]))
    assert points[1].dtype == torch.float32
    # measured: about 0.04% (loss), 0.2% of the largest action (chunk), under 0.001 (points) on both versions
    torch.testing.assert_close(losses[1], losses[0], rtol=0.01, atol=0)
    torch.testing.assert_close(chunks[1], chunks[0], rtol=0, atol=0.01 * chunks[0].abs().max().item())
    torch.testing.assert_close(points[1], points[0], rtol=0, atol=0.005)
    assert (
        gradients[1].dtype == torch.float32
        and torch.cosine_similarity(gradients[1], gradients[0], dim=0) > 0.98
    )
    assert not torch.equal(chunks[1], chunks[0])  # the bfloat16 weights did compute
