"""What a GridS policy refuses before it acts or trains: checkpoints that are not what was trained (missing or
extra weights, non-finite statistics), actions that are not finite as they would reach the motors, tokenizers
that do not fit the model, and training batches with NaN."""

import json
import logging
import math

import pytest
import torch
from conftest import POSTPROCESSOR_STATS, changed_copy, make_batch, make_config, make_processors
from lerobot.policies.factory import get_policy_class

from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy

CHANGED = "changed"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_statistics_are_refused_on_load_naming_file_and_key(checkpoint, tmp_path, value):
    folder = changed_copy(
        checkpoint, tmp_path / CHANGED, POSTPROCESSOR_STATS, lambda t: t["action.std"].__setitem__(5, value)
    )
    with pytest.raises(ValueError, match=rf"non-finite .* in {POSTPROCESSOR_STATS}: \['action.std'\]"):
        SmolVLAGridsPolicy.from_pretrained(folder)


def test_an_action_that_unnormalises_to_infinity_is_not_handed_out(checkpoint, tmp_path, dataset_root):
    """Finite statistics can still give the motors an infinite goal (float32 overflow): the check runs on the
    action as the checkpoint's postprocessor unnormalises it, not only on the policy's normalised output."""
    folder = changed_copy(
        checkpoint, tmp_path / CHANGED, POSTPROCESSOR_STATS, lambda t: t["action.std"].fill_(3e38)
    )
    policy = SmolVLAGridsPolicy.from_pretrained(folder)
    batch = make_batch(policy.config, dataset_root)
    with torch.no_grad():
        policy.model.action_out_proj.bias.fill_(10.0)  # normalised action ~10: finite; 10 * 3e38 overflows
        unnormaliser, policy.action_unnormaliser = policy.action_unnormaliser, None
        assert torch.isfinite(policy.predict_action_chunk(batch)).all()  # what the policy itself outputs
        policy.action_unnormaliser = unnormaliser
        policy.reset()
        for act in (
            policy.select_action,
            policy.predict_action_chunk,
        ):  # LeRobot's record loop and eval; async
            with pytest.raises(RuntimeError, match=r"non-finite action \(after unnormalisation: \[-?inf"):
                act(batch)


def test_a_non_finite_policy_output_is_not_handed_out(checkpoint, dataset_root):
    """NaN weights (the deployment command's refusal of a non-finite action is tested in
    test_motor_boundary)."""
    policy = SmolVLAGridsPolicy.from_pretrained(checkpoint)
    with torch.no_grad():
        policy.model.action_out_proj.bias.fill_(float("nan"))
    with pytest.raises(RuntimeError, match=r"non-finite action \(policy output: \[nan"):
        policy.select_action(make_batch(policy.config, dataset_root))


def test_the_same_checkpoint_with_finite_statistics_acts(checkpoint, dataset_root):
    policy = SmolVLAGridsPolicy.from_pretrained(checkpoint)
    action = policy.select_action(make_batch(policy.config, dataset_root))
    assert action.shape == (2, 6) and torch.isfinite(action).all()
    assert policy.action_unnormaliser is not None


def test_a_checkpoint_without_the_grids_parameters_is_refused_naming_them(checkpoint, tmp_path):
    def drop_grids(tensors):
        for key in [key for key in tensors if ".grids." in key]:
            del tensors[key]

    folder = changed_copy(checkpoint, tmp_path / CHANGED, "model.safetensors", drop_grids)
    with pytest.raises(ValueError, match=r"Missing key\(s\).*model\.vlm_with_expert\.grids\.point_predictor"):
        SmolVLAGridsPolicy.from_pretrained(folder)


def test_a_checkpoint_with_unexpected_weights_is_refused_naming_them(checkpoint, tmp_path):
    folder = changed_copy(
        checkpoint,
        tmp_path / CHANGED,
        "model.safetensors",
        lambda t: t.__setitem__("model.extra_head.weight", torch.zeros(2)),
    )
    with pytest.raises(ValueError, match=r"Unexpected key\(s\).*model\.extra_head\.weight"):
        SmolVLAGridsPolicy.from_pretrained(folder)


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "pi0_grids"])
def test_token_ids_beyond_the_vocabulary_are_refused_before_the_model_runs(dataset_root, policy_type):
    policy = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root))
    batch = make_batch(policy.config, dataset_root)
    batch["observation.language.tokens"][0, 1] = policy.language_vocab_size  # one past the last embedding
    with pytest.raises(
        ValueError, match=f"beyond the language model's vocabulary of {policy.language_vocab_size}"
    ):
        policy.forward(batch)


@pytest.mark.parametrize("key", ["observation.state", "action"])
def test_nan_in_a_training_batch_is_refused_naming_the_key_and_frame(dataset_root, key):
    policy = SmolVLAGridsPolicy(make_config(dataset_root=dataset_root))
    batch = make_batch(policy.config, dataset_root)
    batch[key][1, 0] = float("nan")
    frame = int(batch["index"][1])
    with pytest.raises(
        ValueError, match=rf"non-finite values .* in '{key}', dataset frame index \[{frame}\]"
    ):
        policy.forward(batch)


def test_nan_points_are_reported_not_hidden_by_the_collapse_indicator(dataset_root):
    policy = SmolVLAGridsPolicy(make_config(dataset_root=dataset_root))
    with torch.no_grad():
        policy.grids.point_predictor[-1].bias.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="not finite \\(NaN\\): training has diverged"):
        policy.forward(make_batch(policy.config, dataset_root))


@pytest.mark.parametrize("source", ["/no_such_folder/ckpt", "./no_such_ckpt", "outputs/a/b/no_such_ckpt"])
def test_init_from_a_folder_that_does_not_exist_says_so(dataset_root, source):
    with pytest.raises(FileNotFoundError, match="Folder not found: .*no_such.*Check the path"):
        SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, init_from=source))


def test_init_from_a_relative_folder_that_does_not_exist_names_folder_and_hub(
    dataset_root, tmp_path, monkeypatch
):
    """``outputs/ckpt`` is a valid Hub repo id too: both are named."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no folder .*outputs/ckpt.* and not on the Hub"):
        SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, init_from="outputs/ckpt"))


def test_spread_is_finite_for_a_healthy_policy(dataset_root):
    policy = SmolVLAGridsPolicy(make_config(dataset_root=dataset_root))
    _, output = policy.forward(make_batch(policy.config, dataset_root))
    assert all(math.isfinite(value) and value > 0.02 for key, value in output.items() if "spread" in key)


def test_a_checkpoint_without_its_grids_section_is_refused(checkpoint, tmp_path):
    """Loaded with default GridS settings it would run another sampler than the one trained (num_tokens 4
    here)."""
    folder = changed_copy(checkpoint, tmp_path / CHANGED)
    written = json.loads((folder / "config.json").read_text())
    del written["grids"]
    (folder / "config.json").write_text(json.dumps(written))
    with pytest.raises(ValueError, match="has no 'grids' section in its config.json"):
        SmolVLAGridsPolicy.from_pretrained(folder)


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "pi0_grids"])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: b["observation.state"].view(-1).__setitem__(2, float("nan")),
            r"observation 'observation.state' has non-finite values .* no action was made",
        ),
        (
            lambda b: b["observation.images.wrist"].mul_(255),
            r"camera image 'observation.images.wrist' has values in \[[\d.]+, [\d.]+\]; "
            r".*divide 0-255 images by 255",
        ),
        (
            lambda b: b["observation.images.front"].view(-1).__setitem__(0, float("inf")),
            r"observation 'observation.images.front' has non-finite values",
        ),
    ],
)
def test_observations_a_policy_cannot_act_on_are_refused_naming_the_key(
    dataset_root, policy_type, change, message
):
    """Before the model runs, on every path that acts (select_action: record, rollout, eval;
    predict_action_chunk: the async server), not blamed on the checkpoint's weights as the output check
    would."""
    policy = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root))
    for act in (policy.select_action, policy.predict_action_chunk):
        batch = make_batch(policy.config, dataset_root)
        change(batch)
        policy.reset()
        with pytest.raises(ValueError, match=message):
            act(batch)


def test_an_instruction_conditioned_policy_refuses_to_train_on_an_empty_task(dataset_root):
    policy = SmolVLAGridsPolicy(make_config(dataset_root=dataset_root, grids={"instruction": True}))
    batch = make_batch(policy.config, dataset_root)
    policy.forward(batch)  # the dataset's task
    batch["task"] = ["\n", "\n"]  # SmolVLA's processor ends the task with a new line
    with pytest.raises(ValueError, match=r"task is empty, .*grids.instruction=true"):
        policy.forward(batch)


@pytest.mark.parametrize("policy_type", ["smolvla_grids", "pi0_grids"])
def test_acting_on_an_empty_task_is_refused_naming_the_flags(dataset_root, policy_type):
    """The acting commands' default when --task / --dataset.single_task is left out; training on the dataset's
    tasks is LeRobot's as it is."""
    policy = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root))
    batch = make_batch(policy.config, dataset_root)
    batch["task"] = ["", ""]
    policy.forward(batch)
    for act in (policy.select_action, policy.predict_action_chunk):
        policy.reset()
        with pytest.raises(
            ValueError, match=r"task is empty: .*--dataset.single_task=.*lerobot-rollout --task="
        ):
            act(batch)


def test_an_instruction_cut_at_the_tokenizer_limit_is_warned_once(dataset_root, caplog):
    config = make_config(dataset_root=dataset_root, tokenizer_max_length=6)
    policy = SmolVLAGridsPolicy(config)
    preprocessor, _ = make_processors(config)
    short = make_batch(make_config(dataset_root=dataset_root), dataset_root)
    assert (
        short["observation.language.attention_mask"].shape[-1] > 6
    )  # the dataset's task is longer than 6 tokens
    batch = make_batch(config, dataset_root)
    assert batch["observation.language.attention_mask"].shape[-1] == 6
    with caplog.at_level(logging.WARNING):
        policy.select_action(batch)
        policy.reset()
        policy.select_action(batch)
    warnings = [r.message for r in caplog.records if "fills all 6 tokens the tokenizer keeps" in r.message]
    assert len(warnings) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        SmolVLAGridsPolicy(make_config(dataset_root=dataset_root)).select_action(short)
    assert not [r for r in caplog.records if "tokens the tokenizer keeps" in r.message]


@pytest.mark.parametrize(
    ("policy_type", "missing", "kept"), [("smolvla_grids", "wrist", "front"), ("pi0_grids", "front", "wrist")]
)
def test_a_batch_missing_a_camera_trains_as_lerobot_does_and_is_refused_when_acting(
    dataset_root, policy_type, missing, kept
):
    """Fine-tuning on a rig with fewer cameras trains (the missing camera's points are absent, not a padded
    blank's); acting refuses (select_action: record, rollout, eval; predict_action_chunk: the async
    server)."""
    policy = get_policy_class(policy_type)(make_config(policy_type, dataset_root=dataset_root))
    batch = make_batch(policy.config, dataset_root)
    del batch[f"observation.images.{missing}"]
    loss, output = policy.forward(batch)
    assert torch.isfinite(loss) and list(policy.sampled_points()) == [f"observation.images.{kept}"]
    assert f"grids_point_spread/{kept}" in output and f"grids_point_spread/{missing}" not in output
    for act in (policy.select_action, policy.predict_action_chunk):
        policy.reset()
        with pytest.raises(ValueError, match=rf"no image for camera\(s\) \['observation.images.{missing}'\]"):
            act(batch)
