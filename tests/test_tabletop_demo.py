"""``lerobot-grids-demo``: the pipeline end to end at a tiny scale over two seeds, the statistics its report
is built from, and the stored runs it renders."""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lerobot_grids.envs.tabletop import GridSTabletop
from lerobot_grids.evidence import demo as demo_module
from lerobot_grids.evidence.benchmarks import TABLETOP
from lerobot_grids.evidence.demo import (
    DemoScale,
    checks,
    label,
    model_overrides,
    render,
    run_demo,
    success_interval,
    train,
    unit_path,
)
from lerobot_grids.evidence.pointing import distances_to_mask, layout_change
from lerobot_grids.evidence.statistics import seeds_and_episodes_interval, sign_flip_p_value, wilson_interval
from lerobot_grids.scripts.lerobot_grids_demo import main

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = "smolvla_grids_tabletop"
TINY = DemoScale(episodes=6, steps=10, batch_size=4, ks=(4,), eval_episodes=2, pointing_scenes=2, margin=10.0)
SEEDS, MODELS = [1000, 1001], ["dense", "instructed_k4"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A two-seed run killed while training its last unit (what that training wrote is left behind), then
    resumed; returns the folder, the results, the finished units' files before resuming and the partial
    report rendered between."""
    output_dir = tmp_path_factory.mktemp("demo") / "run"
    trainings = []

    def killed_in_the_last_training(name, overrides, dataset_root, run_dir, *args):
        trainings.append(name)
        if len(trainings) == len(SEEDS) * len(MODELS):
            (run_dir / "checkpoints").mkdir(parents=True)
            raise KeyboardInterrupt
        return train(name, overrides, dataset_root, run_dir, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo_module, "train", killed_in_the_last_training)
        with pytest.raises(KeyboardInterrupt):
            run_demo(output_dir, TINY, recipe=RECIPE, seeds=SEEDS, models=MODELS)
    finished = {path: path.read_text() for path in (output_dir / "units").rglob("*.json")}
    partial = render(output_dir)
    partial["report"] = (output_dir / "report.md").read_text()
    results = run_demo(output_dir, TINY, recipe=RECIPE, seeds=SEEDS, models=MODELS, resume=True)
    return output_dir, results, finished, partial


def _metric(eval_info: Path, metric: str) -> list:
    """One of the per-episode metrics of LeRobot's ``eval_info.json``, over its tasks."""
    tasks = json.loads(eval_info.read_text())["per_task"]
    return [value for task in tasks for value in task["metrics"][metric]]


def _successes(output_dir: Path, name: str, seed: int, variant: str) -> list[bool]:
    """The episodes LeRobot's evaluation wrote for one policy, seed and variant, one by one."""
    return _metric(output_dir / "eval" / name / f"seed{seed}" / variant / "eval_info.json", "successes")


def test_demo_trains_evaluates_and_reports_every_policy_seed_and_variant(demo):
    output_dir, results, *_ = demo
    assert list(results["success"]) == MODELS and results["missing"] == []
    report = (output_dir / "report.md").read_text()
    for name in MODELS:
        expected = set(TABLETOP.variants) | ({"blank"} if name == "dense" else set())
        by_seed = {}
        for seed in SEEDS:
            unit = results["runs"][name][str(seed)]
            assert set(unit["success"]) == expected
            for variant in expected:
                successes = _successes(output_dir, name, seed, variant)
                assert len(successes) == TINY.eval_episodes
                assert unit["success"][variant] == 100 * sum(successes) / len(successes)
            by_seed[seed] = unit["success"]
            config = json.loads((Path(unit["checkpoint"]) / "config.json").read_text())
            assert config["type"] == "smolvla_grids"
            train_config = json.loads((Path(unit["checkpoint"]) / "train_config.json").read_text())
            assert train_config["seed"] == seed
            steps = [step for step, _ in unit["training"]["losses"]]
            assert steps == sorted(steps) and steps[-1] == TINY.steps
        for variant in expected:  # the mean over seeds, and its interval over seeds and episodes in the table
            assert results["success"][name][variant] == pytest.approx(
                np.mean([by_seed[s][variant] for s in SEEDS])
            )
        low, high = seeds_and_episodes_interval([by_seed[s]["default"] for s in SEEDS], TINY.eval_episodes)
        assert f"| {label(name)} | " in report
        assert f"{results['success'][name]['default']:.0f} [{low:.0f}, {high:.0f}]" in report
    instructed = json.loads(
        (Path(results["runs"]["instructed_k4"]["1000"]["checkpoint"]) / "config.json").read_text()
    )
    assert instructed["grids"] == {
        **instructed["grids"],
        "sampler": "grids",
        "predictor": "attention",
        "instruction": True,
        "num_tokens": 4,
    }
    assert results["runs"]["dense"]["1000"]["tokens_per_camera"] == 64
    pointing = results["runs"]["instructed_k4"]["1001"]["pointing"]
    assert len(pointing["scene_on_target"]) == len(pointing["random_scene_on_target"]) == TINY.pointing_scenes
    assert pointing["on_target"] == pytest.approx(np.mean(pointing["scene_on_target"]))
    assert pointing["points"] == TINY.pointing_scenes * 20 * 4  # scenes x frames x K
    assert 0 <= pointing["random_on_target"] < 3  # the named block covers under 1% of the front view
    assert pointing["random_on_target"] <= pointing["random_near_target"] <= 100
    assert pointing["layout_change"] >= 0 and pointing["nearest_named"] >= 0
    assert "| GridS attention+instruction K=4 | " in report and "2 training seeds (1000, 1001)" in report
    assert "lerobot-eval --policy.path=" in report and "--env.type=grids_tabletop" in report
    for picture in ("success.png", "loss.png", "points.png"):
        assert (output_dir / picture).stat().st_size > 1000
    stored = json.loads((output_dir / "results.json").read_text())
    assert stored["checks"] == results["checks"] == checks(results, TINY)


def test_demo_refuses_an_existing_folder_or_another_plan_before_writing_anything(demo):
    output_dir, *_ = demo
    before = sorted(path.relative_to(output_dir) for path in output_dir.rglob("*"))
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        run_demo(output_dir, TINY, recipe=RECIPE, seeds=SEEDS, models=MODELS)
    with pytest.raises(ValueError, match="another seeds"):
        run_demo(output_dir, TINY, recipe=RECIPE, seeds=[1000], models=MODELS, resume=True)
    with pytest.raises(ValueError, match="Unknown demo policy 'grid_k4'"):
        run_demo(output_dir.with_name("other"), TINY, recipe=RECIPE, models=["dense", "grid_k4"])
    with pytest.raises(ValueError, match="include dense"):
        run_demo(output_dir.with_name("other"), TINY, recipe=RECIPE, models=["grids_k4"])
    assert sorted(path.relative_to(output_dir) for path in output_dir.rglob("*")) == before
    with pytest.raises(
        FileNotFoundError, match="--recipe: no/such/recipe.json is neither a file nor a shipped"
    ):
        run_demo(output_dir.with_name("other"), TINY, recipe=Path("no/such/recipe.json"))
    assert not output_dir.with_name("other").exists()


def test_a_resumed_run_may_add_policies_and_runs_only_theirs(demo, tmp_path, monkeypatch):
    """--resume with more --models: the finished units stay, only the new policy's run (in the order given),
    and the plan and command become the new ones (the command, run anew, makes the whole run); dropping one is
    refused."""
    output_dir = tmp_path / "run"
    shutil.copytree(demo[0], output_dir)
    ran = []
    monkeypatch.setattr(demo_module, "run_unit", lambda name, seed, *_: ran.append((name, seed)))
    with pytest.raises(ValueError, match="another models"):
        run_demo(output_dir, TINY, recipe=RECIPE, seeds=SEEDS, models=MODELS[:1], resume=True)
    models = ["dense", "intower_k4", "instructed_k4"]
    results = run_demo(
        output_dir,
        TINY,
        recipe=RECIPE,
        command="lerobot-grids-demo --models ...",
        seeds=SEEDS,
        models=models,
        resume=True,
    )
    assert ran == [("intower_k4", 1000), ("intower_k4", 1001)]
    plan = json.loads((output_dir / "run.json").read_text())
    assert plan["models"] == models and plan["command"] == "lerobot-grids-demo --models ..."
    assert results["missing"] == ["intower_k4 seed 1000", "intower_k4 seed 1001"]


def test_an_interrupted_run_resumes_where_it_stopped_and_keeps_what_it_left(demo):
    """The finished units are kept as they were, the killed training's folder is set aside (not deleted),
    and the report of the partial run says what is missing."""
    output_dir, results, finished, partial = demo
    assert partial["missing"] == ["instructed_k4 seed 1001"] and results["missing"] == []
    assert (
        "Partial run" in partial["report"]
        and "| GridS attention+instruction K=4 (1 of 2 seeds) |" in partial["report"]
    )
    assert len(finished) == 3 and all(path.read_text() == text for path, text in finished.items())
    assert unit_path(output_dir, "instructed_k4", 1001).is_file()
    set_aside = [
        path for path in (output_dir / "train" / "instructed_k4").iterdir() if ".interrupted-" in path.name
    ]
    assert len(set_aside) == 1 and (set_aside[0] / "checkpoints").is_dir()


def test_demo_policies_and_their_lerobot_train_options():
    assert model_overrides("dense") == ["--policy.grids.sampler=dense"]
    assert model_overrides("topk_k16") == ["--policy.grids.sampler=topk", "--policy.grids.num_tokens=16"]
    assert "--policy.grids.instruction=true" in model_overrides("instructed_k1")
    for name, layer in (("intower_l0_k16", 0), ("intower_k16", 1), ("intower_l2_k16", 2)):
        assert f"--policy.grids.split_layer={layer}" in model_overrides(name)
        assert label(name) == f"GridS in-tower L={layer} attention+instruction K=16"
    assert label("attention_k4") == "GridS attention K=4" and label("grids_k16") == "GridS K=16"
    for bad in ("grids", "grids_k0", "mlp_k16"):
        with pytest.raises(ValueError, match="Unknown demo policy"):
            model_overrides(bad)


def test_a_stored_run_has_portable_checkpoints_that_lerobot_eval_evaluates_as_the_run_did(demo, tmp_path):
    """``--store``: the run's report with its first seed's checkpoints, which name no path of the machine they
    were trained on; ``lerobot-eval`` of a stored checkpoint, from the repository root, measures on the same
    scenes what the run measured."""
    output_dir, results, *_ = demo
    stored = tmp_path / "stored"
    with pytest.raises(SystemExit):  # a policy without a finished first seed: refused, nothing written
        main(["--store", str(output_dir), "--output-dir", str(stored), "--models", "grids_k16"])
    assert not stored.exists()
    main(["--store", str(output_dir), "--output-dir", str(stored), "--models", "dense", "instructed_k4"])
    checkpoint = stored / "checkpoints" / "instructed_k4"
    assert "train_config.json" not in {path.name for path in checkpoint.iterdir()}
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["vlm_model_name"] == "lerobot_grids/assets/tiny_smolvlm" and config["init_from"] is None
    for path in checkpoint.glob("*.json"):
        assert str(REPO_ROOT) not in path.read_text() and str(output_dir) not in path.read_text(), path.name
    report = (stored / "report.md").read_text()
    assert f"--policy.path={checkpoint} --env.type=grids_tabletop" in report and "/train/" not in report
    assert json.loads((stored / "results.json").read_text())["success"] == results["success"]
    with pytest.raises(SystemExit):  # the folder exists now: never overwritten
        main(["--store", str(output_dir), "--output-dir", str(stored)])
    command = [
        sys.executable,
        "-m",
        "lerobot.scripts.lerobot_eval",
        f"--policy.path={checkpoint}",
        "--env.type=grids_tabletop",
        "--env.variant=camera",
        f"--eval.n_episodes={TINY.eval_episodes}",
        f"--eval.batch_size={TINY.eval_episodes}",
        "--policy.device=cpu",
        f"--output_dir={tmp_path / 'eval'}",
    ]
    finished = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    run_eval = output_dir / "eval" / "instructed_k4" / "seed1000" / "camera" / "eval_info.json"
    stored_eval = tmp_path / "eval" / "eval_info.json"
    for metric in ("successes", "sum_rewards"):
        assert _metric(stored_eval, metric) == pytest.approx(_metric(run_eval, metric))


def test_a_stored_run_continues_in_a_copy_and_is_stored_again(demo, tmp_path, monkeypatch):
    """A long run goes on elsewhere: a copy of its stored folder resumes (its demonstrations, which a stored
    run does not keep, recorded again byte for byte), and the copy is stored again once the first stored
    folder is gone, with the checkpoints the copy holds."""
    output_dir, results, *_ = demo
    stored, continued, restored = tmp_path / "stored", tmp_path / "continued", tmp_path / "restored"
    main(["--store", str(output_dir), "--output-dir", str(stored), "--models", "dense", "instructed_k4"])
    shutil.copytree(stored, continued)
    shutil.rmtree(stored)
    (continued / "dataset.recording").mkdir()  # a recording interrupted before: set aside, recorded anew
    ran = []
    monkeypatch.setattr(demo_module, "run_unit", lambda name, seed, *_: ran.append((name, seed)))
    run_demo(continued, TINY, recipe=RECIPE, seeds=SEEDS, models=[*MODELS, "grids_k4"], resume=True)
    assert ran == [("grids_k4", 1000), ("grids_k4", 1001)]
    recorded = [
        sorted(path.relative_to(run) for path in (run / "dataset").rglob("*") if path.is_file())
        for run in (output_dir, continued)
    ]
    assert recorded[0] and recorded[0] == recorded[1]
    assert len(list(continued.glob("dataset.recording.interrupted-*"))) == 1
    for path in recorded[0]:
        assert (continued / path).read_bytes() == (output_dir / path).read_bytes(), path
    main(["--store", str(continued), "--output-dir", str(restored), "--models", "dense", "instructed_k4"])
    for name in ("dense", "instructed_k4"):
        trained = Path(results["runs"][name]["1000"]["checkpoint"]) / "model.safetensors"
        assert (restored / "checkpoints" / name / "model.safetensors").read_bytes() == trained.read_bytes()
    assert json.loads((restored / "results.json").read_text())["success"] == results["success"]


def test_distances_to_mask_in_token_pitches():
    masks = np.zeros((1, 80, 80), bool)
    masks[0, 35:45, 35:45] = True  # a 10 x 10 block in the middle
    # an 8 x 8 token grid (10 px pitch): (0, 0) is the top-left token centre (5, 5), (1, 1) is (75, 75)
    points = torch.tensor([[[0.5, 0.5], [0.0, 0.0], [3.9 / 7, 3.9 / 7], [2.5 / 7, 4 / 7], [1.0, 0.0]]])
    distances = distances_to_mask(points, masks, (8, 8))[0]
    assert (distances == 0).sum() == 2  # pixels (40, 40) and (44, 44)
    assert distances[3] == pytest.approx(
        0.5, abs=0.05
    )  # pixel (30, 45): 5 px (half a pitch) left of the block
    assert distances[1] == pytest.approx(np.hypot(30, 30) / 10, rel=0.05)  # (5, 5) to the corner (35, 35)
    uniform = torch.rand(1, 20000, 2, generator=torch.Generator().manual_seed(0))
    # token centres span pixels 5 .. 75: the block is 100 of 70 x 70 = 4900 pixels of that span
    assert (distances_to_mask(uniform, masks, (8, 8)) == 0).mean() == pytest.approx(100 / 4900, abs=0.004)


def test_layout_change_is_zero_for_a_fixed_layout_and_counts_token_pitches():
    fixed = torch.rand(1, 5, 2).expand(7, -1, -1)
    assert layout_change(fixed, (9, 9)) == pytest.approx(0, abs=1e-9)
    moved = torch.zeros(2, 2, 2)
    moved[1, 0, 0] = 2 / 8  # point 0 moves two pitches of a 9 x 9 grid between the scenes, point 1 stays
    assert layout_change(moved, (9, 9)) == pytest.approx(0.5)  # point 0: 1 pitch from its mean in both scenes


def test_block_masks_of_the_front_camera():
    env = GridSTabletop()
    env.reset(seed=3)
    masks = [env.block_mask_front(index) for index in range(env.num_blocks)]
    assert np.array_equal(env.target_mask_front(), masks[env.target])
    assert all(mask.any() for mask in masks) and not np.any(masks[0] & masks[1])


def test_seeds_and_episodes_interval():
    assert seeds_and_episodes_interval([50.0], 100) == wilson_interval(50.0, 100)
    low, high = wilson_interval(50.0, 100)
    assert low == pytest.approx(40.38, abs=0.01) and high == pytest.approx(59.62, abs=0.01)
    assert wilson_interval(0.0, 20)[0] == 0.0 and wilson_interval(100.0, 20)[1] == 100.0
    # seeds that agree: only the 600 episodes' noise, as wide as one binomial interval over them
    same = seeds_and_episodes_interval([50.0, 50.0, 50.0], 200)
    assert same == pytest.approx(wilson_interval(50.0, 600), abs=0.6)
    # seeds that disagree: the spread between trainings dominates
    spread = seeds_and_episodes_interval([20.0, 50.0, 80.0], 200)
    assert spread[0] < 30 and spread[1] > 70


def test_sign_flip_p_value():
    assert sign_flip_p_value(np.ones(10)) == pytest.approx(2**-10, abs=0.001)  # only the observed signs
    assert 0.3 < sign_flip_p_value(np.r_[np.ones(20), -np.ones(20)]) < 0.7
    assert sign_flip_p_value(-np.ones(10)) == 1.0


def _results(success: dict, pointing: dict) -> dict:
    """Results of a one-seed run with the given success rates (``default``, ``blank``) and pointing."""
    return {
        "success": success,
        "seeds": [1000],
        "scale": {},
        "missing": [],
        "runs": {
            name: {"1000": {"success": rates, **({"pointing": pointing[name]} if name in pointing else {})}}
            for name, rates in success.items()
        },
    }


def test_checks():
    scenes = {"scene_on_target": [3.0] * 10, "random_scene_on_target": [0.5] * 10}
    pointing = {"grids_k16": {"on_target": 3.0, "random_on_target": 0.5, **scenes}}
    success = {
        "dense": {"default": 80.0, "blank": 10.0},
        "grids_k16": {"default": 74.0},
        "topk_k16": {"default": 60.0},
        "random_k16": {"default": 50.0},
        "instructed_k4": {"default": 59.0},
    }
    listed = checks(_results(success, pointing), TINY)
    assert [check["holds"] for check in listed] == [True, True, False, False, False, True, True]
    assert f"p = {sign_flip_p_value(np.full(10, 2.5)):.4f}" in listed[5]["numbers"]  # 10 scenes, all positive
    pointing["grids_k16"].update(scene_on_target=[3.0] * 30, random_scene_on_target=[0.5] * 30)
    assert (
        "p < 0.0001" in checks(_results(success, pointing), TINY)[5]["numbers"]
    )  # 1 flip in 2^30: below resolution
    success["grids_k16"]["default"] = 55.0  # below top-k: Tab. 10's order does not hold
    pointing["grids_k16"]["on_target"] = 1.0  # 2x random only
    assert [check["holds"] for check in checks(_results(success, pointing), TINY)][-2:] == [False, False]
    success = {"dense": {"default": 4.0, "blank": 0.0}, "grids_k16": {"default": 0.0}}
    assert [check["holds"] for check in checks(_results(success, {}), TINY)] == [
        False,
        False,
    ]  # nothing learned


def test_viz_reads_a_demo_checkpoint_video_dataset_with_the_run_backend(demo, tmp_path):
    from lerobot_grids.evidence.viz import visualise

    _, results, *_ = demo
    summary = visualise(
        results["runs"]["instructed_k4"]["1000"]["checkpoint"], tmp_path / "viz", max_frames=4
    )
    assert summary["dataset"] == "local/grids_tabletop" and len(summary["frames"]) == 4
    assert (tmp_path / "viz" / "points_front.png").is_file()


STORED_RUNS = sorted(path.parent.name for path in (REPO_ROOT / "docs" / "demo").glob("*/report.md"))


@pytest.mark.parametrize("run", STORED_RUNS)
def test_stored_reports_are_rendered_from_what_each_run_stored_and_the_readme_quotes_them(
    tmp_path, capsys, run
):
    """``lerobot-grids-demo --render`` renders each stored run from what it stored (its units, or for the run
    stored before units, its results.json) to the same results; every success cell of the stored report is the
    mean and interval its results give (numbers, not the report's bytes: a table's layout may change); the
    analysis (docs/tabletop.md, docs/metaworld.md) has every row of its tables."""
    stored = REPO_ROOT / "docs" / "demo" / run
    shutil.copytree(stored, tmp_path / "run")
    main(["--render", str(tmp_path / "run")])
    assert "| policy |" in capsys.readouterr().out
    results = json.loads((stored / "results.json").read_text())
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == results
    report = (stored / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(report) if line.startswith("| policy | tokens per camera |"))
    success_table = list(itertools.takewhile(lambda line: line.startswith("|"), report[start:]))
    columns = [cell.strip() for cell in success_table[0].strip("|").split("|")]
    cells_checked = 0
    for name in results["runs"]:
        # a partial run labels a policy with the seeds it has: "dense (1 of 3 seeds)"
        row_start = rf"\| {re.escape(label(name))}( \(.*\))? \|"
        row = next(line for line in success_table if re.match(row_start, line))
        cells = dict(zip(columns, (cell.strip() for cell in row.strip("|").split("|")), strict=True))
        for variant in [variant for variant in results["success"][name] if variant in cells]:  # blank: below
            expected = "{:.0f} [{:.0f}, {:.0f}]".format(*success_interval(results, name, variant))
            assert cells[variant] == expected, (name, variant)
            cells_checked += 1
    assert cells_checked >= 2 * len(results["runs"])
    table_rows = [line for line in report if line.startswith("| ")]
    analysis = (REPO_ROOT / "docs" / f"{results.get('benchmark', 'tabletop')}.md").read_text()
    assert all(row in analysis.splitlines() for row in table_rows)
    assert f"{results['seconds'] / 60:.1f} min" in analysis


def test_the_analysis_states_the_scale_of_the_stored_single_seed_run():
    results = json.loads((REPO_ROOT / "docs" / "demo" / "cpu-2core" / "results.json").read_text())
    scale, analysis = results["scale"], (REPO_ROOT / "docs" / "tabletop.md").read_text()
    assert (
        f"{scale['episodes']} expert episodes, {scale['steps']} `lerobot-train`\nsteps at batch "
        f"{scale['batch_size']} "
        f"per policy, each from the pretrained base policy, {scale['eval_episodes']} unseen scenes per "
        "variant"
    ) in analysis


def test_every_figure_of_the_readmes_summary_is_in_a_stored_report():
    """The README's "Results" quote stored runs only: each percentage with its interval (a success
    rate, or a share of the no-image-tokens bound) is a cell of a stored demo or benchmark report, each
    pointing ratio (one decimal) a cell of a demo report, and each speed or FLOP ratio (two decimals, with its
    interval where it has one) is in a stored benchmark report."""
    readme = (REPO_ROOT / "README.md").read_text()
    summary = readme.split("## Results")[1].split("\n## ")[0]
    demo_cells = {
        cell.strip()
        for path in (REPO_ROOT / "docs" / "demo").glob("*/report.md")
        for line in path.read_text().splitlines()
        for cell in line.split("|")
    }
    bench_reports = "".join(
        path.read_text() for path in (REPO_ROOT / "docs" / "benchmarks").glob("*/report.md")
    )
    bench_cells = {cell.strip() for line in bench_reports.splitlines() for cell in line.split("|")}
    rates = re.findall(r"(\d+)%\s+(\[\d+, \d+\])", summary)
    ratios = re.findall(r"(\d+\.\d\dx(?: \[\d\.\d\d, \d\.\d\d\])?)", summary)
    pointing = re.findall(r"(\d+\.\dx)\b", summary)
    assert len(rates) >= 8 and len(ratios) >= 8 and pointing
    assert [
        f"{rate}% {interval}"
        for rate, interval in rates
        if f"{rate}% {interval}" not in demo_cells | bench_cells and f"{rate} {interval}" not in demo_cells
    ] == []
    assert [ratio for ratio in pointing if ratio not in demo_cells] == []
    assert [ratio for ratio in ratios if ratio not in bench_reports] == []


def test_act_policies_train_from_their_own_recipe_and_compare_with_dense_act(tmp_path):
    """``act`` and ``act_k4`` in a run beside SmolVLA's dense: trained from scratch with the benchmark's ACT
    recipe (no SmolVLA base policy), evaluated on every variant, their tokens per camera those of ACT's 4x4
    feature map at 128x128, and GridS on ACT compared with dense ACT."""
    results = run_demo(tmp_path / "run", TINY, recipe=RECIPE, seeds=[1000], models=["dense", "act", "act_k4"])
    units = {name: results["runs"][name]["1000"] for name in ("act", "act_k4")}
    assert {name: unit["tokens_per_camera"] for name, unit in units.items()} == {"act": 16, "act_k4": 4}
    for name, unit in units.items():
        command = " ".join(unit["training"]["command"])
        assert "act_grids_tabletop.json" in command and "vlm_model_name" not in command, name
        assert set(unit["success"]) == set(TABLETOP.variants) and "pointing" not in unit, name
    (claim,) = [check for check in results["checks"] if check["claim"].startswith("ACT GridS K=4")]
    assert "reaches dense ACT's in-distribution success within 20 points" in claim["claim"]
    assert claim["numbers"].endswith(f"vs ACT dense {results['success']['act']['default']:.0f}%")
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| ACT dense |" in report and "| ACT GridS K=4 |" in report
    assert label("act_k16") == "ACT GridS K=16" and model_overrides("act") == ["--policy.grids.sampler=dense"]
