"""Meta-World through LeRobot: ``--env.type=meta_world_cpu`` (LeRobot's env, rendered for a CPU), its expert
dataset, ``lerobot-eval`` on it, and the GridS-against-dense comparison at a tiny scale."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import draccus
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from lerobot.configs.policies import PreTrainedConfig
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.envs.configs import EnvConfig
from lerobot.envs.factory import make_env
from lerobot.envs.metaworld import TASK_DESCRIPTIONS, MetaworldEnv
from lerobot.utils.constants import OBS_IMAGE
from safetensors.torch import load_file

from lerobot_grids.envs import MetaWorldCPUEnv
from lerobot_grids.envs.configuration_metaworld import EnvOptionError
from lerobot_grids.envs.metaworld import MetaWorldCPU
from lerobot_grids.envs.metaworld_dataset import record_metaworld_experts
from lerobot_grids.evidence import benchmarks
from lerobot_grids.evidence.demo import DemoScale, label, run_demo
from lerobot_grids.evidence.points_under_shift import layout_moved_in_training, points_under_shift
from lerobot_grids.evidence.viz import load_policy
from lerobot_grids.grids import spread_points
from lerobot_grids.policies import live_view
from lerobot_grids.policies.points_picture import POINT_RGB
from lerobot_grids.policies.smolvla_grids import SmolVLAGridsPolicy
from lerobot_grids.scripts.lerobot_grids_metaworld_points import main as points_main
from lerobot_grids.scripts.lerobot_grids_metaworld_rendering import main as rendering_check_main

TASK = "reach-v3"  # its expert succeeds in about 45 steps
SMALL = {"image_size": 64, "episode_length": 60}


def test_lerobots_env_factory_makes_lerobots_metaworld_env_rendered_small_without_shadows():
    envs = make_env(MetaWorldCPUEnv(task=TASK, **SMALL), n_envs=2, use_async_envs=False)
    (vector,) = envs["meta_world_cpu"].values()
    observation, _ = vector.reset(seed=[3, 4])
    assert observation["pixels"].shape == (2, 64, 64, 3) and observation["agent_pos"].shape == (2, 4)
    env = vector.envs[0]
    assert isinstance(
        env, MetaworldEnv
    )  # LeRobot's own class: its task set-up, camera and observation format
    assert vector.call("task_description")[0] == TASK_DESCRIPTIONS[TASK] == "Reach a goal position"
    quality = env._env.model.vis.quality
    assert (quality.shadowsize, quality.offsamples) == (0, 0) and vector.call("_max_episode_steps")[0] == 60
    vector.close()


def test_the_reset_seed_places_the_objects_and_the_variants_change_only_the_image():
    frames = {}
    for variant in ("default", "camera", "lighting", "blank"):
        env = MetaWorldCPU(TASK, variant=variant, **SMALL)
        placed = []  # the object and goal positions Meta-World drew for each reset
        for seed in (7, 8, 7):
            frames.setdefault(variant, env.reset(seed=seed)[0])
            placed.append(env._env._last_rand_vec.copy())
        assert np.array_equal(placed[0], placed[2]) and not np.allclose(placed[0], placed[1])
        env.close()
    for variant in ("camera", "lighting"):
        assert np.abs(frames[variant]["pixels"].astype(int) - frames["default"]["pixels"]).mean() > 5, variant
        np.testing.assert_array_equal(frames[variant]["agent_pos"], frames["default"]["agent_pos"])
    assert not frames["blank"]["pixels"].any()


def test_the_rendered_frame_shows_the_points_of_the_chunk_made_on_this_envs_observation():
    """``show_points``: LeRobot's rendered frame is the observation's camera; after a step, the points the
    policy published for this env's row (found by its observation, however normalised) are drawn on it, and
    nothing else changes."""
    env = MetaWorldCPU(TASK, show_points=True, **SMALL)
    observation, _ = env.reset(seed=3)
    plain = env.render()
    np.testing.assert_array_equal(plain, observation["pixels"])  # the frame the policy reads
    other = np.random.default_rng(0).random((1, 3, 64, 64))
    image = observation["pixels"].transpose(2, 0, 1)[None] / 255 * 2 - 1  # normalised as SmolVLA's input
    pixels = np.array([[[60.0, 5.0], [5.0, 60.0]], [[10.5, 20.5], [40.2, 50.9]]])  # row 1: this env's
    live_view.publish_chunk({OBS_IMAGE: np.concatenate([other, image])}, {OBS_IMAGE: pixels})
    env.step(np.zeros(4, dtype=np.float32))
    drawn, lerobots = env.render(), MetaworldEnv.render(env)
    assert tuple(drawn[20, 10]) == POINT_RGB and tuple(drawn[50, 40]) == POINT_RGB
    ys, xs = np.nonzero((drawn != lerobots).any(-1))
    assert (np.minimum(np.hypot(xs - 10, ys - 20), np.hypot(xs - 40, ys - 50)) <= 4).all()
    assert live_view.chunks_wanted()
    env.close()  # the policy stops publishing its chunks (a policy made later in this process maps no points)
    assert not live_view.chunks_wanted()


@pytest.mark.parametrize("variant", ["default", "camera", "blank"])
def test_the_rendered_frame_is_lerobots_frame_of_the_state_without_drawing_it_again(variant):
    """What ``lerobot-eval`` records as video: LeRobot's own frame of the current state, pixel for pixel
    (after a reset, after steps, after a reset to another scene), taken from the last observation's
    rendering without rendering again; ``blank`` shows the scene."""
    env = MetaWorldCPU(TASK, variant=variant, **SMALL)
    for seed in (3, 4):
        env.reset(seed=seed)
        for step in range(3):
            if step:
                env.step(np.array([0.5, -0.5, 0.2, 1.0], dtype=np.float32))
            draws, draw = [], env._env.render
            env._env.render = lambda draw=draw, draws=draws: draws.append(1) or draw()
            frame = env.render()
            assert draws == []
            np.testing.assert_array_equal(frame, MetaworldEnv.render(env))
            assert draws == [1] and frame.any()
            del env._env.render
    env.close()


def test_an_episode_ends_at_the_episode_length_and_the_expert_succeeds_within_it():
    env = MetaWorldCPU(TASK, **SMALL)
    env.reset(seed=0)
    for step in range(1, 61):
        *_, terminated, truncated, info = env.step(np.zeros(4, np.float32))
        assert not terminated and truncated == (step == 60)
    env.reset(seed=0)
    for _ in range(60):
        *_, terminated, _, info = env.step(env.expert_action())
        if terminated:
            break
    assert info["is_success"]
    env.close()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--env.task=easy",
            r"'easy' is not one Meta-World v3 task.*groups such as easy are for --env.type=metaworld",
        ),
        ("--env.task=push-v2", r"'push-v2' is not one Meta-World v3 task"),
        ("--env.variant=fog", r"'fog' is not a variant: choose one of default, camera, lighting, blank"),
        ("--env.image_size=0", r"--env.image_size must be at least 1"),
    ],
)
def test_bad_env_options_are_refused_with_what_to_do(option, message):
    @dataclasses.dataclass
    class CommandLine:  # what lerobot-eval parses its --env.* options into
        env: EnvConfig

    with pytest.raises(EnvOptionError, match=message):
        draccus.parse(CommandLine, args=["--env.type=meta_world_cpu", option])


def test_expert_dataset_has_the_schema_of_lerobots_metaworld_datasets(tmp_path):
    dataset, skipped = record_metaworld_experts(tmp_path / "data", [TASK], 2, **SMALL, progress=False)
    assert skipped == {TASK: 0}
    loaded = LeRobotDataset("local/grids_metaworld", root=tmp_path / "data", video_backend="pyav")
    assert loaded.meta.fps == 80 and loaded.meta.total_episodes == 2
    assert set(loaded.meta.features) >= {"observation.image", "observation.state", "action"}
    frame = loaded[0]
    assert frame["observation.image"].shape == (3, 64, 64) and frame["task"] == "Reach a goal position"
    assert frame["observation.state"].shape == (4,) and frame["action"].abs().max() <= 1
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        record_metaworld_experts(tmp_path / "data", [TASK], 1, **SMALL, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The Meta-World comparison with one task, the dense policy only, a few steps and episodes."""
    tiny = dataclasses.replace(benchmarks.METAWORLD, tasks=(TASK,), **SMALL)
    scale = DemoScale(
        episodes=2, steps=2, batch_size=2, ks=(4,), eval_episodes=1, pointing_scenes=0, margin=10.0
    )
    output_dir = tmp_path_factory.mktemp("metaworld") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(benchmarks.BENCHMARKS, "metaworld", tiny)
        results = run_demo(output_dir, scale, seeds=[1000], models=["dense"], benchmark=tiny)
    return output_dir, results


def test_the_comparison_trains_and_evaluates_every_task_and_variant_and_reports_per_task(tiny_run):
    output_dir, results = tiny_run
    unit = results["runs"]["dense"]["1000"]
    assert set(unit["success_by_task"]) == {"default", "camera", "blank"}
    assert all(set(by_task) == {TASK} for by_task in unit["success_by_task"].values())
    info = json.loads(
        (output_dir / "eval" / "dense" / "seed1000" / "camera" / TASK / "eval_info.json").read_text()
    )
    assert info["overall"]["n_episodes"] == 1
    report = (output_dir / "report.md").read_text()
    assert "# GridS vs dense on Meta-World" in report and f"| policy | {TASK} |" in report
    assert f"--env.type=meta_world_cpu --env.task={TASK} --env.variant=default" in report


def test_lerobot_eval_evaluates_a_checkpoint_on_meta_world_cpu(tiny_run, tmp_path):
    _, results = tiny_run
    command = [
        sys.executable,
        "-m",
        "lerobot.scripts.lerobot_eval",
        f"--policy.path={results['runs']['dense']['1000']['checkpoint']}",
        "--env.type=meta_world_cpu",
        f"--env.task={TASK}",
        "--env.variant=lighting",
        "--env.image_size=64",
        "--env.episode_length=20",
        "--eval.n_episodes=1",
        "--eval.batch_size=1",
        "--policy.device=cpu",
        f"--output_dir={tmp_path / 'eval'}",
    ]
    finished = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "eval_info.json").read_text())["overall"]["n_episodes"] == 1


def test_the_rendering_check_evaluates_one_policy_at_both_renderings_on_the_same_scenes(tiny_run, tmp_path):
    _, results = tiny_run
    output = tmp_path / "rendering.json"
    rendering_check_main(
        [
            "--checkpoint",
            results["runs"]["dense"]["1000"]["checkpoint"],
            "--output",
            str(output),
            "--tasks",
            TASK,
            "--episodes",
            "1",
            "--episode-length",
            "5",
        ]
    )
    result = json.loads(output.read_text())
    assert result["renderings"]["lerobot"] == {"image_size": 480, "shadow_size": 4096, "multisamples": 4}
    assert set(result["success"]) == {"meta_world_cpu", "lerobot"}
    assert all(set(by_task) == {TASK} for by_task in result["success"].values())
    with pytest.raises(SystemExit):  # an existing file is never overwritten
        rendering_check_main(
            ["--checkpoint", results["runs"]["dense"]["1000"]["checkpoint"], "--output", str(output)]
        )


@pytest.fixture(scope="module")
def tiny_grids_checkpoint(tiny_run, tmp_path_factory):
    """The tiny run's dense policy with a GridS K=4 sampler (the paper's predictor, new) put in, saved with
    its processors: a GridS checkpoint without another training."""
    _, results = tiny_run
    dense = Path(results["runs"]["dense"]["1000"]["checkpoint"])
    folder = tmp_path_factory.mktemp("grids") / "grids_k4"
    shutil.copytree(dense, folder)
    config = PreTrainedConfig.from_pretrained(dense)
    config.grids = dataclasses.replace(config.grids, sampler="grids", num_tokens=4)
    torch.manual_seed(0)
    policy = SmolVLAGridsPolicy(config)
    missing, unexpected = policy.load_state_dict(load_file(dense / "model.safetensors"), strict=False)
    assert missing and all(key.startswith(policy.grids_prefix) for key in missing) and not unexpected
    policy.save_pretrained(folder)
    return folder


def test_the_points_command_measures_the_layout_and_its_move_with_the_camera(tiny_grids_checkpoint, tmp_path):
    output = tmp_path / "points"
    points_main(
        [
            "--checkpoints",
            str(tiny_grids_checkpoint),
            "--output-dir",
            str(output),
            "--tasks",
            TASK,
            "--scenes",
            "2",
            "--image-size",
            str(SMALL["image_size"]),
        ]
    )
    result = json.loads((output / "points.json").read_text())
    summary = result["policies"]["grids_k4"]
    assert summary["tokens_per_camera"] == 4 and set(summary["move"]) == {"camera"}
    # the predictor reads the image: its points differ between scenes and when the camera moves
    assert summary["layout_change_within_task"] > 1e-3 and summary["move"]["camera"] > 1e-3
    assert summary["layout_change_over_tasks"] == pytest.approx(
        summary["layout_change_within_task"]
    )  # one task
    picture = iio.imread(output / "points_grids_k4.png")
    assert picture.shape[0] == 2 * picture.shape[1]  # in distribution above, the camera moved below
    assert (picture == POINT_RGB).all(-1).any()


def test_a_fixed_layout_has_no_layout_change_and_does_not_move_with_the_camera(tiny_grids_checkpoint):
    policy, preprocessor = load_policy(str(tiny_grids_checkpoint), "cpu")
    with torch.no_grad():  # the paper's predictor with no weight on the image: its starting layout, always
        policy.grids.point_predictor[-1].weight.zero_()
    summary, _ = points_under_shift(policy, preprocessor, [TASK], ["camera"], 2, 1000, SMALL["image_size"])
    assert summary["layout_change_within_task"] == pytest.approx(0, abs=1e-6)
    assert summary["move"]["camera"] == pytest.approx(0, abs=1e-6)
    assert summary["layout_moved_in_training"] == pytest.approx(0, abs=1e-6)  # a new predictor's bias
    grid_hw = tuple(summary["token_grid"])
    start = spread_points(4)
    moved = start + torch.sign(0.5 - start) * 0.5 / (grid_hw[1] - 1) * torch.tensor(
        [1.0, 0.0]
    )  # half a pitch
    with torch.no_grad():
        policy.grids.point_predictor[-1].bias.copy_(torch.logit(moved).flatten())
    assert layout_moved_in_training(policy.grids, grid_hw) == pytest.approx(0.5, abs=1e-5)


def test_the_points_command_refuses_a_dense_policy_and_an_existing_folder(
    tiny_run, tiny_grids_checkpoint, tmp_path, capsys
):
    _, results = tiny_run
    for checkpoints, output, message in (
        (
            [results["runs"]["dense"]["1000"]["checkpoint"]],
            tmp_path / "new",
            "sample no points (a dense sampler",
        ),
        ([str(tiny_grids_checkpoint)], tiny_grids_checkpoint.parent, "already exists and is not empty"),
        ([str(tiny_grids_checkpoint)] * 2, tmp_path / "new", "must differ"),
        (
            [str(tiny_grids_checkpoint), "--tasks", "push-v2"],
            tmp_path / "new",
            "--tasks='push-v2' is not one",
        ),
    ):
        with pytest.raises(SystemExit):
            points_main(["--checkpoints", *checkpoints, "--output-dir", str(output)])
        assert message in capsys.readouterr().err
        assert not (tmp_path / "new").exists()


def test_the_stored_points_table_is_what_the_stored_measurement_wrote():
    """docs/metaworld.md's "Where the points go" rows are the stored points.json's numbers, with the command
    that wrote them and a picture for each policy."""
    stored = REPO_ROOT / "docs" / "demo" / "metaworld-points"
    results = json.loads((stored / "points.json").read_text())
    analysis = (REPO_ROOT / "docs" / "metaworld.md").read_text().splitlines()
    assert results["command"].startswith("lerobot-grids-metaworld-points --checkpoints")
    assert len(results["policies"]) >= 4
    for name, summary in results["policies"].items():
        measures = (
            summary["layout_change_within_task"],
            summary["layout_change_over_tasks"],
            summary["move"]["camera"],
            summary["layout_moved_in_training"],
        )
        row = (
            f"| {label(name)} | {summary['tokens_per_camera']} | "
            + " | ".join(f"{m:.2f}" for m in measures)
            + " |"
        )
        assert row in analysis, row
        assert (stored / f"points_{name}.png").is_file()
