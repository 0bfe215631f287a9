"""LoRA fine-tuning through LeRobot's own PEFT path (``lerobot-train --peft.*``: ``wrap_with_peft``, the
adapter checkpoint, ``make_policy``'s adapter loading): the GridS sampler is trained in full and saved with
the adapter."""

import dataclasses
import json

import pytest
import torch
from conftest import DATASET_REPO_ID, make_batch, make_config
from lerobot.configs.default import PeftConfig
from lerobot.configs.policies import PreTrainedConfig
from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
from lerobot.policies.factory import make_policy
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from safetensors.torch import load_file
from test_lerobot_train import _tiny_args, lerobot_train

from lerobot_grids.grids import spread_points
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy

peft = pytest.importorskip("peft")
GRIDS = "model.vlm_with_expert.grids."


def _lora(policy, **overrides):
    """``wrap_with_peft`` as lerobot-train calls it with ``--peft.method_type=LORA`` (and ``overrides``)."""
    return policy.wrap_with_peft(
        peft_cli_overrides=dataclasses.asdict(PeftConfig(method_type="LORA", **overrides))
    )


def _load(folder, dataset_root):
    """A checkpoint folder as LeRobot's tools load it (lerobot-eval, lerobot-record): config, then
    make_policy."""
    config = PreTrainedConfig.from_pretrained(folder)
    config.pretrained_path = folder
    return make_policy(config, ds_meta=LeRobotDatasetMetadata(DATASET_REPO_ID, root=dataset_root))


def _grids_weights(policy) -> dict[str, torch.Tensor]:
    return {
        name.split(GRIDS, 1)[1]: value.detach().clone()
        for name, value in policy.state_dict().items()
        if GRIDS in name and "original_module" not in name
    }


@pytest.mark.parametrize("full_training_modules", [None, ["state_proj"]])
def test_lora_trains_the_sampler_in_full_and_the_adapter_reloads_to_the_same_actions(
    checkpoint, dataset_root, tmp_path, full_training_modules
):
    """From a smolvla_grids checkpoint (--policy.path): after wrap_with_peft every GridS parameter trains (a
    --peft.full_training_modules list that lacks the sampler gets it added), a few steps change it, the
    adapter holds it, and the adapter loaded through make_policy gives the same action chunk as the policy
    that was trained."""
    policy = _lora(_load(checkpoint, dataset_root), full_training_modules=full_training_modules)
    assert isinstance(policy, peft.PeftModel)
    trainable = {name for name, parameter in policy.named_parameters() if parameter.requires_grad}
    sampler = {name for name in trainable if GRIDS in name}
    grids_parameters = [name for name, _ in policy.base_model.model.grids.original_module.named_parameters()]
    assert len(sampler) == len(grids_parameters) > 0 and all(".modules_to_save." in name for name in sampler)
    assert len(trainable) < sum(1 for _ in policy.parameters())  # LoRA: the rest stays frozen

    before = _grids_weights(policy)
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    batch = make_batch(policy.config, dataset_root)
    for _ in range(3):
        loss, _ = policy.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = _grids_weights(policy)
    assert any(not torch.equal(before[name], after[name]) for name in before)

    folder = tmp_path / "adapter"  # what LeRobot's save_checkpoint writes for a PEFT policy
    policy.save_pretrained(folder)
    policy.config.save_pretrained(folder)
    assert not (folder / "model.safetensors").exists()
    adapter = load_file(folder / "adapter_model.safetensors")
    assert sum(GRIDS in name for name in adapter) == len(grids_parameters)
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        checkpoint
    )

    reloaded = _load(folder, dataset_root)
    assert isinstance(reloaded, peft.PeftModel)
    assert all(torch.equal(after[name], value) for name, value in _grids_weights(reloaded).items())
    policy.eval()
    reloaded.eval()
    noise = torch.randn(
        2, policy.config.chunk_size, policy.config.max_action_dim, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        expected = policy.predict_action_chunk(batch, noise=noise)
        actual = reloaded.predict_action_chunk(batch, noise=noise)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_in_tower_sampling_trains_the_late_tower_layers_with_lora(dataset_root):
    base = SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, grids={"split_layer": 1}))
    base.config.pretrained_path = "user/pretrained"  # LeRobot refuses LoRA from scratch
    policy = _lora(base)
    trainable = {name for name, parameter in policy.named_parameters() if parameter.requires_grad}
    assert any("encoder.layers.1." in name and "modules_to_save" in name for name in trainable)
    assert any("post_layernorm" in name and "modules_to_save" in name for name in trainable)
    assert not any("encoder.layers.0." in name for name in trainable)


def test_lerobot_train_with_lora_from_dense_weights_and_acting_from_the_adapter(dataset_root, tmp_path):
    """``--policy.init_from=<dense smolvla> --peft.method_type=LORA``: dense weights count as the pretrained
    start (LeRobot would refuse "training from scratch"), the adapter names them as its base, and make_policy
    rebuilds the policy from them and loads the trained sampler from the adapter."""
    torch.manual_seed(3)
    SmolVLAPolicy(make_config("smolvla", dataset_root=dataset_root)).save_pretrained(tmp_path / "dense")
    run = tmp_path / "run"
    lerobot_train(
        "--policy.type=smolvla_grids",
        f"--policy.init_from={tmp_path / 'dense'}",
        "--peft.method_type=LORA",
        "--policy.grids.num_tokens=4",
        *_tiny_args(dataset_root, run, 2),
    )
    folder = run / "checkpoints" / "000002" / "pretrained_model"
    assert json.loads((folder / "config.json").read_text())["use_peft"] is True
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tmp_path / "dense"
    )
    adapter = load_file(folder / "adapter_model.safetensors")
    bias = next(value for name, value in adapter.items() if name.endswith("grids.point_predictor.2.bias"))
    assert not torch.allclose(bias, torch.logit(spread_points(4)).flatten().float())  # trained from its start

    policy = _load(folder, dataset_root)
    assert isinstance(policy, peft.PeftModel)
    dense = load_file(tmp_path / "dense" / "model.safetensors")
    name = "model.vlm_with_expert.vlm.model.text_model.layers.0.mlp.up_proj.weight"
    assert torch.equal(policy.base_model.model.state_dict()[name], dense[name])
    policy.eval()
    with torch.no_grad():
        actions = policy.predict_action_chunk(make_batch(policy.config, dataset_root))
    assert actions.shape == (2, 4, 6) and torch.isfinite(actions).all()
