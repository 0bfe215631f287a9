"""Both GridS types trained by ``lerobot-train`` under ``accelerate launch``: LeRobot's own multi-process path
(DDP; two CPU processes talking over gloo here, GPUs with NCCL for users), offline."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATASET_REPO_ID, make_config, make_processors
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.factory import get_policy_class
from safetensors.torch import load_file
from test_lerobot_train import _acts, _tiny_args

ACCELERATE = Path(sys.executable).with_name("accelerate")
LEROBOT_TRAIN = Path(sys.executable).with_name("lerobot-train")

# The instruction-conditioned predictors, whose gradient reaches them through the instruction's embedding too.
CASES = {
    "smolvla_grids": {"num_tokens": 4, "predictor": "attention", "instruction": True},
    "pi0_grids": {"num_tokens": 4, "predictor": "mlp", "instruction": True},
}
SAMPLER_OPTIONS = [
    {},
    {"instruction": True},
    {"predictor": "attention"},
    {"predictor": "attention", "instruction": True},
    {"pooling": "max"},
    {"interpolation": "nearest"},
    {"interpolation": "nearest", "coord_injection": False},
    {"coord_injection": False},
    {"sampler": "topk"},
    {"sampler": "random"},
]


def _start(policy_type: str, dataset_root: Path, folder: Path) -> Path:
    """A new policy with its processors, as ``lerobot-grids-init`` writes one, for ``--policy.path``."""
    torch.manual_seed(0)
    config = make_config(policy_type, dataset_root=dataset_root, grids=CASES[policy_type])
    get_policy_class(policy_type)(config).save_pretrained(folder)
    for processor in make_processors(
        config, dataset_stats=LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta.stats
    ):
        processor.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("policy_type", list(CASES))
def test_two_process_ddp_training_with_accelerate_launch(dataset_root, tmp_path, policy_type):
    run = tmp_path / "run"
    command = [
        str(ACCELERATE),
        "launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        str(LEROBOT_TRAIN),
        f"--policy.path={_start(policy_type, dataset_root, tmp_path / 'start')}",
        *[
            arg
            for arg in _tiny_args(dataset_root, run, 2)
            if not arg.startswith(("--policy.", "--save_freq"))
        ],
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--save_freq=1",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    # Two processes, each with its own batch of 2, gradients averaged over them (LeRobot's log line).
    assert re.search(r"Effective batch size: 2 x 2 = 4", log), log[-3000:]

    weights = [
        load_file(run / "checkpoints" / step / "pretrained_model" / "model.safetensors")
        for step in ("000001", "000002")
    ]
    moved = {name for name in weights[0] if not torch.equal(weights[0][name], weights[1][name])}
    grids = {name for name in weights[0] if ".grids." in name}
    assert grids and grids <= moved and moved - grids  # every sampler weight trains, with the policy
    _acts(run / "checkpoints" / "000002" / "pretrained_model", dataset_root)


@pytest.mark.parametrize(
    "options",
    SAMPLER_OPTIONS,
    ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items()) or "paper",
)
def test_every_sampler_parameter_gets_a_gradient(dataset_root, options):
    """DDP needs every trainable parameter in the backward graph (LeRobot turns on ``find_unused_parameters``,
    which costs a graph traversal per step, and without it an unused one is an error): each sampler option's
    parameters all get a gradient, the nearest-token ablation's predictor a zero one (grid_sample's nearest
    mode)."""
    from conftest import make_batch

    config = make_config(dataset_root=dataset_root, grids={"num_tokens": 4, **options})
    policy = get_policy_class("smolvla_grids")(config)
    loss, _ = policy.forward(make_batch(config, dataset_root))
    loss.backward()
    sampler = dict(policy.grids.named_parameters())
    assert sampler or options.get("coord_injection") is False
    assert [name for name, parameter in sampler.items() if parameter.grad is None] == []
