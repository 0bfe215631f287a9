"""``smolvla_grids`` through LeRobot's real command-line tools, installed as a plugin (no extra flags)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATASET_REPO_ID, TINY_PI0_OPTIONS, make_config
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from safetensors.torch import load_file

from lerobot_grids import compat
from lerobot_grids.backbones import TINY_SMOLVLM
from lerobot_grids.configs import config_path

LEROBOT_TRAIN = Path(sys.executable).with_name("lerobot-train")


def lerobot_train(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(LEROBOT_TRAIN), *args], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    if check and result.returncode != 0:
        raise AssertionError(f"lerobot-train failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def _tiny_args(dataset_root: Path, output_dir: Path, steps: int) -> list[str]:
    return [
        f"--policy.vlm_model_name={TINY_SMOLVLM}",
        "--policy.load_vlm_weights=false",
        "--policy.resize_imgs_with_padding=[128,128]",
        "--policy.chunk_size=4",
        "--policy.n_action_steps=4",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        f"--dataset.repo_id={DATASET_REPO_ID}",
        f"--dataset.root={dataset_root}",
        f"--output_dir={output_dir}",
        f"--steps={steps}",
        "--batch_size=2",
        "--save_freq=2",
        "--log_freq=1",
        "--num_workers=0",
        "--wandb.enable=false",
    ]


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "pretrained_model" / "model.safetensors")


def test_train_resume_and_continue_from_a_checkpoint(dataset_root, tmp_path):
    run = tmp_path / "run"
    lerobot_train(
        "--policy.type=smolvla_grids", "--policy.grids.num_tokens=4", *_tiny_args(dataset_root, run, 2)
    )
    first = run / "checkpoints" / "000002"
    config = json.loads((first / "pretrained_model" / "config.json").read_text())
    assert config["type"] == "smolvla_grids" and config["grids"]["num_tokens"] == 4
    initial = _weights(first)
    assert any(name.startswith("model.vlm_with_expert.grids.") for name in initial)

    # Resume: LeRobot reloads policy, optimizer, scheduler and step from the checkpoint and goes on to step 4:
    # this process trains steps 3 and 4 only, and Adam's and the scheduler's counts go on from 2. (Its weights
    # are not an uninterrupted 4-step run's, measured on both versions: LeRobot scales the learning-rate
    # schedule to the steps of the run that made it, 2 here; with the schedule fixed, 0.4.4 reshuffles the
    # data on resume, and on 0.6.1, which resumes the data order, the loss of step 3 still differs.)
    result = lerobot_train(
        f"--config_path={first / 'pretrained_model' / 'train_config.json'}", "--resume=true", "--steps=4"
    )
    assert [int(step) for step in re.findall(r" step:(\d+) ", result.stdout + result.stderr)] == [3, 4]
    for checkpoint, step in ((first, 2), (run / "checkpoints" / "000004", 4)):
        state = checkpoint / "training_state"
        assert json.loads((state / "training_step.json").read_text())["step"] == step
        assert json.loads((state / "scheduler_state.json").read_text())["last_epoch"] == step
        adam = load_file(state / "optimizer_state.safetensors")
        assert {value.item() for name, value in adam.items() if name.endswith("/step")} == {step}
    resumed = _weights(run / "checkpoints" / "000004")
    predictor = "model.vlm_with_expert.grids.point_predictor.0.weight"
    assert not torch.equal(initial[predictor], resumed[predictor])  # the sampler kept training

    # A new run from the checkpoint with --policy.path, as any LeRobot policy.
    finetune = tmp_path / "finetune"
    args = [a for a in _tiny_args(dataset_root, finetune, 2) if not a.startswith("--policy.")]
    lerobot_train(
        f"--policy.path={run / 'checkpoints' / 'last' / 'pretrained_model'}",
        "--policy.push_to_hub=false",
        *args,
    )
    assert (
        json.loads((finetune / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())[
            "grids"
        ]["num_tokens"]
        == 4
    )

    # The same checkpoint with other GridS settings is refused, naming both values, before any training.
    refused = tmp_path / "refused"
    args = [a for a in _tiny_args(dataset_root, refused, 2) if not a.startswith("--policy.")]
    result = lerobot_train(
        f"--policy.path={run / 'checkpoints' / 'last' / 'pretrained_model'}",
        "--policy.grids.num_tokens=8",
        "--policy.push_to_hub=false",
        *args,
        check=False,
    )
    assert result.returncode != 0
    assert "grids.num_tokens: checkpoint 4, requested 8" in result.stderr
    assert not (refused / "checkpoints").exists()


def test_train_from_a_dense_smolvla_checkpoint_with_init_from(dataset_root, tmp_path):
    """Also with LeRobot's documented plugin flags, which walk the named package (not needed: the plugin is
    found by its distribution name, but a user following LeRobot's docs passes them)."""
    torch.manual_seed(3)
    SmolVLAPolicy(make_config("smolvla", dataset_root=dataset_root)).save_pretrained(tmp_path / "dense")
    run = tmp_path / "run"
    lerobot_train(
        "--policy.type=smolvla_grids",
        f"--policy.init_from={tmp_path / 'dense'}",
        "--policy.discover_packages_path=lerobot_policy_grids",
        "--env.discover_packages_path=lerobot_policy_grids",
        "--policy.train_expert_only=true",
        "--policy.grids.num_tokens=4",
        *_tiny_args(dataset_root, run, 2),
    )
    dense = load_file(tmp_path / "dense" / "model.safetensors")
    trained = _weights(run / "checkpoints" / "000002")
    # The frozen VLM is exactly the dense checkpoint's; the GridS parameters are new and trained.
    vlm = [name for name in dense if name.startswith("model.vlm_with_expert.vlm.")]
    assert vlm and all(torch.equal(dense[name], trained[name]) for name in vlm)
    assert set(trained) - set(dense) == {
        name for name in trained if name.startswith("model.vlm_with_expert.grids.")
    }


def _tiny_pi_args(policy_type: str) -> list[str]:
    return [
        f"--policy.type={policy_type}",
        "--policy.paligemma_variant=gemma_tiny",
        "--policy.vision_variant=siglip_tiny",
        "--policy.action_expert_variant=gemma_tiny_expert",
        "--policy.vocab_size=512",
        "--policy.grids.num_tokens=4",
        f"--policy.tokenizer_name={TINY_PI0_OPTIONS['tokenizer_name']}",
        "--policy.image_resolution=[112,112]",
        "--policy.tokenizer_max_length=16",
        "--policy.chunk_size=4",
        "--policy.n_action_steps=4",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
    ]


def test_fine_tuning_on_fewer_cameras_renamed_onto_the_checkpoints_trains(dataset_root, tmp_path):
    """LeRobot's visual-validation contract: a checkpoint with cameras camera1-3, fine-tuned with
    --policy.path on a dataset with two cameras renamed onto two of them (--rename_map), trains as LeRobot's
    smolvla does; acting with the result still refuses the missing camera."""
    from conftest import make_batch, make_processors
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy

    config = make_config(dataset_root=dataset_root, grids={"num_tokens": 4})
    cameras = [f"observation.images.camera{i}" for i in (1, 2, 3)]
    config.input_features = {
        "observation.state": config.input_features["observation.state"],
        **{key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 48, 64)) for key in cameras},
    }
    base = tmp_path / "three_cameras"
    SmolVLAGridsPolicy(config).save_pretrained(base)
    for processor in make_processors(config, LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta.stats):
        processor.save_pretrained(base)
    run = tmp_path / "run"
    rename = {"observation.images.front": cameras[0], "observation.images.wrist": cameras[1]}
    lerobot_train(
        f"--policy.path={base}",
        "--policy.push_to_hub=false",
        f"--rename_map={json.dumps(rename)}",
        *[a for a in _tiny_args(dataset_root, run, 2) if not a.startswith("--policy.")],
    )
    trained = run / "checkpoints" / "000002" / "pretrained_model"
    assert not torch.equal(
        _weights(run / "checkpoints" / "000002")["model.vlm_with_expert.grids.point_predictor.0.weight"],
        load_file(base / "model.safetensors")["model.vlm_with_expert.grids.point_predictor.0.weight"],
    )
    policy = SmolVLAGridsPolicy.from_pretrained(trained)
    batch = make_batch(make_config(dataset_root=dataset_root), dataset_root)
    batch = {rename.get(key, key): value for key, value in batch.items()}
    with pytest.raises(
        ValueError, match=r"observation has no image for camera\(s\) \['observation.images.camera3'\]"
    ):
        policy.select_action(batch)


@pytest.mark.parametrize(
    ("policy_args", "message"),
    [
        (
            ["--policy.type=smolvla_grids", "--policy.grids.sampler=grid"],
            "Unknown GridS sampler 'grid': choose one of grids, dense, random, topk "
            "(--policy.grids.sampler=...).",
        ),
    ],
)
def test_a_bad_policy_option_is_the_last_line_lerobot_train_prints(
    dataset_root, tmp_path, policy_args, message
):
    """Not buried in a draccus traceback that ends in "Couldn't instantiate class": our message is the last
    line (LeRobot 0.6.1 prints it after "error:", 0.4.4 at the end of the traceback), and nothing is
    written."""
    result = lerobot_train(
        *policy_args,
        f"--dataset.repo_id={DATASET_REPO_ID}",
        f"--dataset.root={dataset_root}",
        f"--output_dir={tmp_path / 'run'}",
        check=False,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert message in last and "Couldn't instantiate" not in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "run").exists()


def _tokenizer_name(checkpoint: Path) -> str:
    steps = json.loads((checkpoint / "policy_preprocessor.json").read_text())["steps"]
    return next(
        step["config"]["tokenizer_name"] for step in steps if step["registry_name"] == "tokenizer_processor"
    )


def _acts(checkpoint: Path, dataset_root: Path) -> torch.Tensor:
    """The checkpoint's action chunk on a dataset batch, loaded as LeRobot's tools load it."""
    from conftest import make_batch
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class

    config = PreTrainedConfig.from_pretrained(checkpoint)
    policy = get_policy_class(config.type).from_pretrained(checkpoint)
    actions = policy.predict_action_chunk(make_batch(policy.config, dataset_root))
    assert actions.shape == (2, 4, 6) and torch.isfinite(actions).all()
    return actions


def test_pi0_grids_trains_and_resumes_with_lerobot_train(dataset_root, tmp_path):
    """A fresh pi0_grids policy from lerobot-grids-init (its processors carry the configured offline
    tokenizer, which LeRobot 0.4.4's factory would replace, see README), trained and resumed by
    lerobot-train."""
    start = tmp_path / "start"
    policy_args = _tiny_pi_args("pi0_grids")
    data_args = [f"--dataset.repo_id={DATASET_REPO_ID}", f"--dataset.root={dataset_root}"]
    command = [
        str(LEROBOT_TRAIN.with_name("lerobot-grids-init")),
        *policy_args,
        *data_args,
        f"--output_dir={start}",
    ]
    offline = {**os.environ, "HF_HUB_OFFLINE": "1"}
    written = subprocess.run(command, check=True, capture_output=True, text=True, env=offline)
    assert f"Wrote a new pi0_grids policy to {start}" in written.stderr  # LeRobot's console logging shows it
    from lerobot.configs.default import DatasetConfig

    from lerobot_grids.scripts.lerobot_grids_init import InitPolicyConfig, init_policy

    with pytest.raises(
        FileExistsError, match="nothing is overwritten"
    ):  # the same command again, in this process
        init_policy(
            InitPolicyConfig(
                make_config("pi0_grids"), DatasetConfig(DATASET_REPO_ID, root=dataset_root), start
            )
        )

    run = tmp_path / "run"
    lerobot_train(
        f"--policy.path={start}",
        *[a for a in _tiny_args(dataset_root, run, 2) if not a.startswith("--policy.")],
    )
    first = run / "checkpoints" / "000002" / "pretrained_model"
    assert json.loads((first / "config.json").read_text())["type"] == "pi0_grids"
    assert _tokenizer_name(first) == TINY_PI0_OPTIONS["tokenizer_name"]
    lerobot_train(f"--config_path={first / 'train_config.json'}", "--resume=true", "--steps=3")
    predictor = "model.paligemma_with_expert.grids.point_predictor.0.weight"
    assert not torch.equal(
        _weights(run / "checkpoints" / "000002")[predictor],
        _weights(run / "checkpoints" / "000003")[predictor],
    )
    _acts(run / "checkpoints" / "000003" / "pretrained_model", dataset_root)


@pytest.mark.parametrize(
    "policy_type",
    [
        "pi0_grids",
        pytest.param(
            "pi05_grids", marks=pytest.mark.skipif(not compat.PI_ON_STOCK_TRANSFORMERS, reason="LeRobot 0.5+")
        ),
    ],
)
def test_pi_grids_train_with_a_plain_lerobot_train_and_act_from_the_checkpoint(
    dataset_root, tmp_path, policy_type
):
    """--policy.type alone, the configured tokenizer honoured (no lerobot-grids-init): LeRobot 0.6.1's factory
    finds our processors by convention; on 0.4.4 pi0's factory routes our config to them
    (compat.route_family_processors)."""
    run = tmp_path / "run"
    lerobot_train(
        *_tiny_pi_args(policy_type),
        *[a for a in _tiny_args(dataset_root, run, 2) if not a.startswith("--policy.")],
    )
    checkpoint = run / "checkpoints" / "000002" / "pretrained_model"
    assert json.loads((checkpoint / "config.json").read_text())["type"] == policy_type
    assert _tokenizer_name(checkpoint) == TINY_PI0_OPTIONS["tokenizer_name"]
    _acts(checkpoint, dataset_root)


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        # Paper Appendix B, Tab. 5: (batch, steps, chunk, lr, warm-up, decay steps, decay lr, grad clip).
        ("smolvla_grids_so100", (16, 50_000, 50, 1e-4, 1_000, 50_000, 2.5e-6, 10)),
        ("pi0_grids_libero", (32, 30_000, 10, 5e-5, 10_000, 30_000, 5e-5, 1.0)),
        ("pi0_grids_aloha", (32, 30_000, 10, 5e-5, 1_000, 15_000, 2.5e-6, 1.0)),
        ("pi05_grids_libero", (128, 30_000, 10, 5e-5, 10_000, 30_000, 5e-5, 1.0)),
    ],
)
def test_paper_training_recipes_parse_with_lerobot_config_parser(recipe, expected):
    import draccus
    from lerobot.configs.train import TrainPipelineConfig

    # Decoded as lerobot-train's parser decodes --config_path (draccus.parse also builds a parser for every
    # registered choice: seconds a file), with --dataset.repo_id=user/data.
    written = json.loads((config_path(recipe)).read_text())
    config = draccus.decode(TrainPipelineConfig, {**written, "dataset": {"repo_id": "user/data"}})
    policy = config.policy
    assert (
        config.batch_size,
        config.steps,
        policy.chunk_size,
        policy.optimizer_lr,
        policy.scheduler_warmup_steps,
        policy.scheduler_decay_steps,
        policy.scheduler_decay_lr,
        policy.optimizer_grad_clip_norm,
    ) == expected
    assert policy.optimizer_betas == (0.9, 0.95) and policy.optimizer_weight_decay == 1e-10
    assert policy.grids.num_tokens == 16 and policy.init_from is not None
    assert not policy.train_expert_only  # the language model adapts to the sampled tokens (paper App. J)


def test_demo_dataset_is_a_valid_so100_lerobot_dataset(dataset_root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_grids.demo_dataset import SO100_JOINTS, make_so100_demo_dataset

    dataset = LeRobotDataset(DATASET_REPO_ID, root=dataset_root)
    assert dataset.meta.robot_type == "so100_follower"
    assert dataset.meta.features["observation.state"]["names"] == SO100_JOINTS
    assert dataset.meta.camera_keys == ["observation.images.front", "observation.images.wrist"]
    frame = dataset[3]
    assert frame["observation.images.front"].shape == (3, 48, 64)
    assert frame["task"] == "Pick up the green cube and place it into the green bowl."
    assert dataset.meta.total_episodes == 2 and dataset.num_frames == 16
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        make_so100_demo_dataset(dataset_root)
    assert LeRobotDataset(DATASET_REPO_ID, root=dataset_root).num_frames == 16
