"""``pi0_grids`` and ``pi05_grids`` on LeRobot 0.5+: thin subclasses of LeRobot's own pi0 and pi0.5.

With ``sampler=dense`` a GridS policy must compute exactly what LeRobot's ``PI0Policy`` / ``PI05Policy``
computes on the same weights, noise and time: the reference below is the very same modules run by
LeRobot's classes (``PI0Policy``, ``PI0Pytorch``, ``PaliGemmaWithExpertModel``), and the full-size
module layout is checked against LeRobot's own constructor on the meta device.
On LeRobot 0.4.4 only the refusal of ``pi05_grids`` is checked here.
"""

import copy
import json

import pytest
import torch
from conftest import DATASET_REPO_ID, make_batch, make_config

from lerobot_grids import compat
from lerobot_grids.backbones import TINY_PALIGEMMA_TOKENIZER

if not compat.PI_ON_STOCK_TRANSFORMERS:

    def test_pi05_grids_is_refused_on_lerobot_044_naming_lerobot_06(dataset_root):
        from lerobot_grids.policies.pi05_grids.modeling_pi05_grids import PI05GridsPolicy

        with pytest.raises(ValueError, match=r"pi05_grids needs LeRobot 0.5 or later .*Install LeRobot 0.6"):
            PI05GridsPolicy(make_config("pi05_grids", dataset_root=dataset_root))

else:
    from lerobot.configs.types import FeatureType, NormalizationMode
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.policies.pi0.configuration_pi0 import PI0Config
    from lerobot.policies.pi0.modeling_pi0 import PaliGemmaWithExpertModel, PI0Policy, PI0Pytorch
    from lerobot.policies.pi05.configuration_pi05 import PI05Config
    from lerobot.policies.pi05.modeling_pi05 import (
        PaliGemmaWithExpertModel as PI05Backbone,
        PI05Policy,
        PI05Pytorch,
    )
    from safetensors.torch import load_file, save_model

    from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PI0GridsConfig
    from lerobot_grids.policies.pi0_grids.modeling_pi0_grids import PI0GridsPytorch
    from lerobot_grids.policies.pi05_grids.configuration_pi05_grids import PI05GridsConfig
    from lerobot_grids.policies.pi05_grids.modeling_pi05_grids import PI05GridsPytorch

    LEROBOT = {  # GridS type -> LeRobot's policy, model and backbone classes
        "pi0_grids": (PI0Policy, PI0Pytorch, PaliGemmaWithExpertModel),
        "pi05_grids": (PI05Policy, PI05Pytorch, PI05Backbone),
    }
    POLICY_TYPES = list(LEROBOT)

    def _policy(policy_type, dataset_root, **options):
        torch.manual_seed(0)
        policy = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root, **options))
        with torch.no_grad():  # random norm weights: a wrongly applied norm cannot pass unnoticed
            for name, parameter in policy.named_parameters():
                if "norm" in name:
                    parameter.normal_(0, 0.5)
        return policy.eval()

    def _as_lerobot(policy):
        """A copy of ``policy`` whose every method is LeRobot's: the GridS sampler is gone and the classes are
        LeRobot's own policy, model and backbone."""
        reference = copy.deepcopy(policy)
        policy_class, model_class, backbone_class = LEROBOT[policy.name]
        backbone = reference.model.paligemma_with_expert
        del backbone.grids, backbone.sampled_points
        backbone.__class__, reference.model.__class__, reference.__class__ = (
            backbone_class,
            model_class,
            policy_class,
        )
        return reference

    @pytest.mark.parametrize(
        ("dense_config", "grids_model", "policy_config"),
        [(PI0Config, PI0GridsPytorch, PI0GridsConfig), (PI05Config, PI05GridsPytorch, PI05GridsConfig)],
    )
    def test_full_size_modules_are_lerobots(dense_config, grids_model, policy_config):
        """gemma_2b + gemma_300m, So400m at 224x224, built on the meta device by LeRobot's own constructor."""
        reference_class = PI0Pytorch if dense_config is PI0Config else PI05Pytorch
        with torch.device("meta"):
            reference = reference_class(dense_config())
            ours = grids_model(policy_config(grids={"sampler": "dense"}))
        expected = {name: (tuple(t.shape), t.dtype) for name, t in reference.state_dict().items()}
        assert {name: (tuple(t.shape), t.dtype) for name, t in ours.state_dict().items()} == expected
        ours_backbone, lerobot_backbone = ours.paligemma_with_expert, reference.paligemma_with_expert
        for part in ("paligemma", "gemma_expert"):
            assert type(getattr(ours_backbone, part)) is type(getattr(lerobot_backbone, part))
        assert ours_backbone.gemma_expert.config.use_adarms == lerobot_backbone.gemma_expert.config.use_adarms

    @pytest.mark.parametrize("policy_type", POLICY_TYPES)
    def test_dense_sampler_gives_lerobots_loss_and_action_chunk(dataset_root, policy_type):
        policy = _policy(policy_type, dataset_root, grids={"sampler": "dense"})
        reference = _as_lerobot(policy)
        assert type(reference).forward is LEROBOT[policy_type][0].forward
        batch = make_batch(policy.config, dataset_root)
        generator = torch.Generator().manual_seed(6)
        noise, time = torch.randn(2, 4, 32, generator=generator), torch.tensor([0.2, 0.9])

        def loss(model):
            images, masks = model._preprocess_images(batch)
            lang = (batch["observation.language.tokens"], batch["observation.language.attention_mask"])
            if policy_type == "pi0_grids":
                inputs = (images, masks, *lang, model.prepare_state(batch), model.prepare_action(batch))
            else:
                inputs = (images, masks, *lang, model.prepare_action(batch))
            return model.model.forward(*inputs, noise=noise, time=time)

        ours_loss, lerobot_loss = loss(policy), loss(reference)
        assert torch.equal(ours_loss, lerobot_loss)
        chunk_noise = torch.randn(2, 4, 32, generator=generator)
        ours_chunk = policy.predict_action_chunk(dict(batch), noise=chunk_noise)
        lerobot_chunk = reference.predict_action_chunk(dict(batch), noise=chunk_noise)
        assert ours_chunk.shape == (2, 4, 6) and torch.equal(ours_chunk, lerobot_chunk)
        # The dense sampler is not a no-op by accident: GridS K=4 changes the chunk.
        grids = _policy(policy_type, dataset_root, grids={"num_tokens": 4})
        grids.load_state_dict(policy.state_dict(), strict=False)
        assert not torch.equal(grids.predict_action_chunk(dict(batch), noise=chunk_noise), ours_chunk)

    @pytest.mark.parametrize("policy_type", POLICY_TYPES)
    def test_grids_trains_acts_and_reloads(dataset_root, tmp_path, policy_type):
        config = make_config(policy_type, dataset_root=dataset_root, grids={"num_tokens": 4})
        policy = get_policy_class(policy_type)(config)
        policy.train()
        loss, output = policy.forward(make_batch(config, dataset_root))
        loss.backward()
        assert policy.grids.point_predictor[0].weight.grad.abs().sum() > 0
        assert set(output) >= {"grids_point_spread/front", "grids_point_spread/wrist"}
        policy.eval()
        policy.save_pretrained(tmp_path / "ckpt")
        assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["type"] == policy_type
        loaded = get_policy_class(policy_type).from_pretrained(tmp_path / "ckpt")
        batch, noise = make_batch(config, dataset_root), torch.randn(2, 4, 32)
        actions = policy.predict_action_chunk(dict(batch), noise=noise)
        assert torch.isfinite(actions).all()
        assert torch.equal(actions, loaded.predict_action_chunk(dict(batch), noise=noise))

    @pytest.mark.parametrize("policy_type", POLICY_TYPES)
    def test_init_from_a_dense_lerobot_checkpoint(dataset_root, tmp_path, policy_type):
        dense = _as_lerobot(_policy(policy_type, dataset_root, grids={"sampler": "dense"}))
        folder = tmp_path / "dense"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"type": dense.name}))
        save_model(
            dense, str(folder / "model.safetensors")
        )  # as LeRobot saves a policy (shared tensors once)
        state = load_file(folder / "model.safetensors")
        policy = get_policy_class(policy_type)(
            make_config(policy_type, dataset_root=dataset_root, init_from=str(folder))
        )
        loaded = policy.state_dict()
        for name, tensor in state.items():
            assert torch.equal(loaded[name], tensor), name

    @pytest.mark.skipif(not compat.PROCESSORS_BY_CONVENTION, reason="LeRobot 0.6.1's factory convention")
    @pytest.mark.parametrize("policy_type", POLICY_TYPES)
    def test_lerobots_factory_gives_the_policy_types_own_processors(dataset_root, policy_type):
        """LeRobot's factory builds the pipelines from the config (our tokenizer, not LeRobot's hard-coded
        PaliGemma one; its length; the device) and the dataset's statistics, in the normalisation modes of
        LeRobot's pi0 (mean/std) and pi0.5 (quantiles), the action normalised by hand."""
        config = make_config(policy_type, dataset_root=dataset_root)
        dataset = LeRobotDataset(DATASET_REPO_ID, root=dataset_root)
        stats = dataset.meta.stats
        preprocessor, _ = make_pre_post_processors(config, dataset_stats=stats)
        steps = {type(step).__name__: step for step in preprocessor.steps}
        tokenizer = next(step for step in preprocessor.steps if hasattr(step, "input_tokenizer"))
        assert tokenizer.input_tokenizer.name_or_path == str(TINY_PALIGEMMA_TOKENIZER)
        assert tokenizer.max_length == 16 and steps["DeviceProcessorStep"].device == "cpu"
        mode = NormalizationMode.MEAN_STD if policy_type == "pi0_grids" else NormalizationMode.QUANTILES
        assert steps["NormalizerProcessorStep"].norm_map == {
            FeatureType.VISUAL: NormalizationMode.IDENTITY,
            FeatureType.STATE: mode,
            FeatureType.ACTION: mode,
        }
        frame = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=False)))
        action = frame["action"]
        if mode is NormalizationMode.MEAN_STD:
            mean, std = torch.as_tensor(stats["action"]["mean"]), torch.as_tensor(stats["action"]["std"])
            expected = (action - mean) / (std + 1e-8)
        else:
            low, high = torch.as_tensor(stats["action"]["q01"]), torch.as_tensor(stats["action"]["q99"])
            expected = 2 * (action - low) / (high - low + 1e-8) - 1
        torch.testing.assert_close(preprocessor(dict(frame))["action"], expected.float())
