"""``lerobot-grids-demo``: the pipeline end to end at a tiny scale, and the numbers its report is built from."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lerobot_grids.evidence.demo import (
    OOD_VARIANTS,
    DemoScale,
    _hits,
    checks,
    label,
    run_demo,
    wilson_interval,
    write_report,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = DemoScale(episodes=6, steps=10, batch_size=4, ks=(4,), eval_episodes=4, pointing_scenes=2, margin=10.0)


def _cell(rate: float) -> str:
    """A success-table cell: the rate and its 95% Wilson interval over the tiny run's episodes."""
    low, high = wilson_interval(rate, TINY.eval_episodes)
    return f"{rate:.0f} [{low:.0f}, {high:.0f}]"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("demo") / "run"
    results = run_demo(output_dir, TINY, recipe=REPO_ROOT / "policies" / "smolvla_grids_tabletop.json")
    return output_dir, results


def test_demo_trains_evaluates_and_reports_every_policy_on_every_variant(demo):
    output_dir, results = demo
    assert set(results["success"]) == {"dense", "grids_k4"}
    report = (output_dir / "report.md").read_text()
    for name, by_variant in results["success"].items():
        expected = {"default", *OOD_VARIANTS} | ({"blank"} if name == "dense" else set())
        assert set(by_variant) == expected
        rates = {}
        for variant in expected:  # recomputed from the episodes LeRobot's evaluation wrote, one by one
            info = json.loads((output_dir / "eval" / name / variant / "eval_info.json").read_text())
            successes = [success for task in info["per_task"] for success in task["metrics"]["successes"]]
            assert len(successes) == TINY.eval_episodes
            rates[variant] = 100 * sum(successes) / len(successes)
        assert by_variant == rates
        row = f"| {label(name)} | {results['tokens_per_camera'][name]} | "
        assert row + " | ".join(_cell(rates[v]) for v in ["default", *OOD_VARIANTS]) + " |" in report
    assert f"| dense, images blanked (`blank` variant) | 0 | {_cell(results['success']['dense']['blank'])} |" in report
    for name, run in results["training"].items():
        steps = [step for step, _ in run["losses"]]
        assert steps == sorted(steps) and steps[-1] == TINY.steps, name
        config = json.loads((Path(results["checkpoints"][name]) / "config.json").read_text())
        assert config["type"] == "smolvla_grids"
        assert config["grids"]["sampler"] == ("dense" if name == "dense" else "grids")
    assert results["tokens_per_camera"] == {"dense": 64, "grids_k4": 4}
    rates = results["pointing"]["grids_k4"]
    assert rates["points"] == TINY.pointing_scenes * 20 * 4  # scenes x frames x K
    assert 0 <= rates["random_on_target"] < 3  # the named block covers under 1% of the front view
    assert rates["random_on_target"] <= rates["random_near_target"] <= 100
    assert rates["start_on_target"] <= rates["start_near_target"] <= 100
    assert "starting layout on it" in report
    assert "lerobot-eval --policy.path=" in report and "--env.type=grids_tabletop" in report
    for picture in ("success.png", "loss.png", "points.png"):
        assert (output_dir / picture).stat().st_size > 1000
    assert json.loads((output_dir / "results.json").read_text())["checks"] == results["checks"]


def test_demo_refuses_an_existing_folder_before_writing_anything(demo):
    output_dir, _ = demo
    before = sorted(path.relative_to(output_dir) for path in output_dir.rglob("*"))
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        run_demo(output_dir, TINY, recipe=REPO_ROOT / "policies" / "smolvla_grids_tabletop.json")
    assert sorted(path.relative_to(output_dir) for path in output_dir.rglob("*")) == before
    with pytest.raises(FileNotFoundError, match="--recipe"):
        run_demo(output_dir.with_name("other"), TINY, recipe=Path("no/such/recipe.json"))
    assert not output_dir.with_name("other").exists()


def test_lerobot_eval_command_evaluates_a_demo_checkpoint(demo, tmp_path):
    _, results = demo
    command = [sys.executable, "-m", "lerobot.scripts.lerobot_eval", f"--policy.path={results['checkpoints']['grids_k4']}",
               "--env.type=grids_tabletop", "--env.variant=camera", "--eval.n_episodes=2", "--eval.batch_size=2",
               "--policy.device=cpu", f"--output_dir={tmp_path / 'eval'}"]
    finished = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    overall = json.loads((tmp_path / "eval" / "eval_info.json").read_text())["overall"]
    assert overall["n_episodes"] == 2 and 0 <= overall["pc_success"] <= 100


def test_hits_counts_points_on_and_within_one_token_of_the_mask():
    masks = np.zeros((1, 80, 80), bool)
    masks[0, 35:45, 35:45] = True  # a 10 x 10 block in the middle
    # an 8 x 8 token grid (10 px pitch): (0, 0) is the top-left token centre (5, 5), (1, 1) is (75, 75)
    points = torch.tensor([[[0.5, 0.5], [0.0, 0.0], [3.9 / 7, 3.9 / 7], [2.5 / 7, 4 / 7], [1.0, 0.0]]])
    on, near = _hits(points, masks, (8, 8))
    assert on == 2  # pixels (40, 40) and (44, 44)
    assert near == 3  # and (30, 45), 5 px from the block's corner; (5, 5) and (75, 5) are far
    uniform = torch.rand(1, 20000, 2, generator=torch.Generator().manual_seed(0))
    on, _ = _hits(uniform, masks, (8, 8))
    # token centres span pixels 5 .. 75: the block is 100 of 70 x 70 = 4900 pixels of that span
    assert on / 20000 == pytest.approx(100 / 4900, abs=0.004)


def test_wilson_interval_and_checks():
    low, high = wilson_interval(50.0, 100)
    assert low == pytest.approx(40.38, abs=0.01) and high == pytest.approx(59.62, abs=0.01)
    assert wilson_interval(0.0, 20)[0] == 0.0 and wilson_interval(100.0, 20)[1] == 100.0
    results = {"success": {"dense": {"default": 80.0, "blank": 10.0}, "grids_k16": {"default": 74.0}},
               "pointing": {"grids_k16": {"on_target": 3.0, "random_on_target": 0.5}}}
    assert [check["holds"] for check in checks(results, TINY)] == [True, True, True]
    results["success"]["grids_k16"]["default"] = 69.0  # 11 points behind dense: outside a 10-point margin
    results["pointing"]["grids_k16"]["on_target"] = 0.4
    assert [check["holds"] for check in checks(results, TINY)] == [True, False, False]
    results["success"] = {"dense": {"default": 4.0, "blank": 0.0}, "grids_k16": {"default": 0.0}}
    assert [check["holds"] for check in checks(results, TINY)][:2] == [False, False]  # nothing learned, no match


def test_viz_reads_a_demo_checkpoint_video_dataset_with_the_run_backend(demo, tmp_path):
    from lerobot_grids.evidence.viz import visualise

    _, results = demo
    summary = visualise(results["checkpoints"]["grids_k4"], tmp_path / "viz", max_frames=4)
    assert summary["dataset"] == "local/grids_tabletop" and len(summary["frames"]) == 4
    assert (tmp_path / "viz" / "points_front.png").is_file()


def test_readme_and_stored_report_show_the_stored_full_run(tmp_path):
    """The stored report is what the report writer renders from the stored results.json, whose checks are
    what its own numbers give; the README's two demo tables are that report's rows, and its run time and
    scale (episodes, steps, batch, evaluation scenes) are the stored run's. The README's prose quotes these
    tables; its figures are not parsed one by one."""
    stored = REPO_ROOT / "docs" / "demo" / "cpu-2core"
    results = json.loads((stored / "results.json").read_text())
    scale = DemoScale(**{**results["scale"], "ks": tuple(results["scale"]["ks"])})
    assert checks(results, scale) == results["checks"]
    rendered = write_report(results, tmp_path)
    assert rendered == (stored / "report.md").read_text()
    table_rows = [line for line in rendered.splitlines() if line.startswith("| ")]
    assert len(table_rows) == 1 + len(results["success"]) + 1 + 1 + len(results["pointing"])  # headers and rows
    readme = (REPO_ROOT / "README.md").read_text()
    assert all(row in readme.splitlines() for row in table_rows)
    assert f"total {results['seconds'] / 60:.1f} min" in rendered and f"{results['seconds'] / 60:.1f} min" in readme
    assert (f"{scale.episodes} expert episodes, {scale.steps} `lerobot-train`\nsteps at batch {scale.batch_size} per "
            f"policy, each from the pretrained base policy, {scale.eval_episodes} unseen scenes per variant") in readme
