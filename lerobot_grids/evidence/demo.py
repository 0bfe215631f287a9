"""Dense SmolVLA against GridS on the offline tabletop task, with LeRobot's tools (behind ``lerobot-grids-demo``).

:func:`run_demo`: one run, offline on a CPU, into a new folder (never an earlier run's):

1. records the scripted expert on the ``default`` variant of ``grids_tabletop`` into a LeRobotDataset
   (``lerobot-grids-tabletop-dataset``);
2. trains, with ``lerobot-train`` and the recipe ``policies/smolvla_grids_tabletop.json``, the dense
   baseline (``--policy.grids.sampler=dense``, all 64 tokens per camera) and GridS with K = 16, 4 (and
   1) tokens per camera, the same steps and seed for each (paper Tab. 1 and 3), each starting
   (``--policy.init_from``) from the pretrained base policy that ships with the package
   (:mod:`lerobot_grids.envs.tabletop_pretrain`: a grounded tiny SmolVLM and an action expert pretrained to
   reach, never to pick), as the paper's policies start from a pretrained SmolVLA;
3. evaluates every policy with LeRobot's evaluation loop (``lerobot-eval``'s ``eval_main``) in
   distribution and on each out-of-distribution variant (Fig. 5, App. E), and the dense policy with the
   images blanked: the floor of a policy that ignores them;
4. measures where the sampler looks: how often a sampled point of the front camera lies on the named
   block along the expert's path, against uniformly random points and the layout the sampler starts from;
5. writes ``report.md`` (tables, the checks below, the equivalent ``lerobot-eval`` commands),
   ``results.json`` and ``success.png``, ``loss.png``, ``points.png``.

The checks: the task is learned (dense far above the blanked-image floor), GridS K=16 is within a
small margin of dense in distribution, and GridS's points land on the target more often than random
points. ``QUICK`` (``--quick``) is the same pipeline at CI scale.
"""

import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import torch
from lerobot.configs.default import EvalConfig
from lerobot.configs.eval import EvalPipelineConfig
from lerobot.configs.policies import PreTrainedConfig
from lerobot.envs.utils import preprocess_observation
from lerobot.utils.constants import OBS_IMAGES
from tqdm import tqdm

from lerobot_grids.backbones import TINY_SMOLVLM
from lerobot_grids.envs import GridSTabletopEnv
from lerobot_grids.envs.tabletop import VARIANTS, GridSTabletop
from lerobot_grids.envs.tabletop_dataset import REPO_ID, record_expert_episodes
from lerobot_grids.envs.tabletop_pretrain import PRETRAINED_TABLETOP_SMOLVLA
from lerobot_grids.evidence.viz import draw_points, load_policy, to_rgb
from lerobot_grids.grids import spread_points

RECIPE = Path("policies/smolvla_grids_tabletop.json")
OOD_VARIANTS = [variant for variant in VARIANTS if variant not in ("default", "blank")]
EVAL_SEED = 1000  # lerobot-eval's default; the dataset's scenes are seeds 0 .. episodes - 1
FRONT = f"{OBS_IMAGES}.front"
# The base policy of runs stored before results.json named it (all made under LeRobot 0.4.4, transformers 4).
STORED_RUNS_BASE_POLICY = "lerobot_grids/assets/grids_tabletop_smolvla"
POINT_SOURCES = ("", "random_", "start_")  # the sampler's points, uniformly random ones, its starting layout


@dataclass(frozen=True)
class DemoScale:
    episodes: int  # expert episodes in the training dataset
    steps: int  # lerobot-train steps per policy
    batch_size: int
    ks: tuple[int, ...]  # GridS tokens per camera
    eval_episodes: int  # per policy and variant
    pointing_scenes: int  # expert episodes whose front frames are scored for where the points fall
    margin: float  # percentage points GridS K=16 may trail dense in distribution


FULL = DemoScale(episodes=200, steps=800, batch_size=32, ks=(16, 4, 1), eval_episodes=200, pointing_scenes=20,
                 margin=10.0)
QUICK = DemoScale(episodes=60, steps=200, batch_size=16, ks=(16, 4), eval_episodes=20, pointing_scenes=5,
                  margin=15.0)


def model_names(scale: DemoScale) -> dict[str, list[str]]:
    """``{name: lerobot-train overrides}`` of the policies the demo trains."""
    models = {"dense": ["--policy.grids.sampler=dense"]}
    models.update({f"grids_k{k}": ["--policy.grids.sampler=grids", f"--policy.grids.num_tokens={k}"] for k in scale.ks})
    return models


def label(name: str) -> str:
    return "dense" if name == "dense" else f"GridS K={name.removeprefix('grids_k')}"


def train(name: str, overrides: list[str], dataset_root: Path, output_dir: Path, scale: DemoScale, recipe: Path,
          seed: int) -> dict:
    """One ``lerobot-train`` run; returns its logged losses and wall time (the log is kept beside it)."""
    log_freq = max(1, min(50, scale.steps // 20))
    command = [
        sys.executable, "-m", "lerobot.scripts.lerobot_train", f"--config_path={recipe}",
        f"--policy.vlm_model_name={TINY_SMOLVLM}", f"--policy.init_from={PRETRAINED_TABLETOP_SMOLVLA}",
        f"--dataset.repo_id={REPO_ID}", f"--dataset.root={dataset_root}",
        f"--output_dir={output_dir}", f"--steps={scale.steps}", f"--save_freq={scale.steps}",
        f"--batch_size={scale.batch_size}", f"--policy.scheduler_decay_steps={scale.steps}",
        f"--log_freq={log_freq}", f"--seed={seed}", *overrides,
    ]
    log_path = output_dir.with_name(f"{output_dir.name}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    losses, started = [], time.monotonic()
    with open(log_path, "w") as log, tqdm(total=scale.steps, desc=f"lerobot-train {label(name)}", unit="step") as bar:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
        for line in process.stdout:
            log.write(line)
            match = re.search(r" step:\S+ .* loss:(\S+)", line)
            if match:  # lerobot-train logs every log_freq steps (the step itself is rounded, "1K")
                losses.append(((len(losses) + 1) * log_freq, float(match.group(1))))
                bar.update(log_freq)
        if process.wait() != 0:
            raise RuntimeError(f"lerobot-train for {label(name)} failed (exit {process.returncode}); see {log_path}")
    return {"losses": losses, "seconds": time.monotonic() - started, "command": command[3:]}


def evaluate(checkpoint: Path, variant: str, episodes: int, output_dir: Path) -> dict:
    """LeRobot's evaluation (``lerobot-eval``'s ``eval_main``, in this process) on one variant."""
    from lerobot.scripts.lerobot_eval import eval_main

    policy = PreTrainedConfig.from_pretrained(checkpoint)
    # EvalPipelineConfig looks for --policy.path in sys.argv and warns "built from scratch" when it is not
    # there; the path is given here instead (make_policy loads the weights from ``pretrained_path``).
    config_logger = logging.getLogger("lerobot.configs.eval")
    level = config_logger.level
    config_logger.setLevel(logging.ERROR)
    try:
        config = EvalPipelineConfig(
            env=GridSTabletopEnv(variant=variant),
            # In-process environments: LeRobot 0.6 defaults to one worker process per environment, each
            # importing LeRobot again (seconds per evaluation for an environment that steps in microseconds).
            eval=EvalConfig(n_episodes=episodes, batch_size=min(episodes, 25), use_async_envs=False),
            policy=policy,
            output_dir=output_dir,
            job_name=f"grids_tabletop_{variant}",
            seed=EVAL_SEED,
        )
    finally:
        config_logger.setLevel(level)
    config.policy.pretrained_path = checkpoint
    eval_main(config)
    overall = json.loads((output_dir / "eval_info.json").read_text())["overall"]
    return {"success": overall["pc_success"], "episodes": overall["n_episodes"]}


def eval_command(checkpoint: Path, variant: str, episodes: int) -> str:
    return (f"lerobot-eval --policy.path={checkpoint} --env.type=grids_tabletop --env.variant={variant} "
            f"--eval.n_episodes={episodes} --eval.batch_size={min(episodes, 25)} --policy.device=cpu")


@torch.no_grad()
def pointing(checkpoint: Path, scenes: int, pictures: int = 4) -> tuple[dict, list[np.ndarray]]:
    """How often the front camera's sampled points lie on the named block (and within one token of it),
    along the expert's path in unseen ``default`` scenes, against uniformly random points and against the
    layout the sampler starts from (:func:`spread_points`, before any training); and the first frames of
    ``pictures`` scenes with the points drawn."""
    policy, preprocessor = load_policy(str(checkpoint), "cpu")
    camera = list(policy.config.image_features).index(FRONT)
    backbone = policy.grids_backbone
    env, generator = GridSTabletop(), torch.Generator().manual_seed(0)
    counts = {f"{name}{where}_target": 0 for where in ("on", "near") for name in POINT_SOURCES}
    counts["points"] = 0
    drawn = []
    for scene in range(scenes):
        observation, _ = env.reset(seed=EVAL_SEED + scene)
        frames, masks = [], []
        for _ in range(env.episode_length):
            frames.append(observation)
            masks.append(env.target_mask_front())
            observation, *_ = env.step(env.expert_action())
        batch = preprocess_observation({
            "pixels": {key: np.stack([frame["pixels"][key] for frame in frames]) for key in ("front", "wrist")},
            "agent_pos": np.stack([frame["agent_pos"] for frame in frames]),
        })
        batch = preprocessor({**batch, "task": [env.task_description] * len(frames)})
        image = policy.model_images(batch)[camera]
        dense, grid_hw = backbone.dense_image_tokens(image)
        points = backbone.grids(dense, grid_hw, context=backbone.grids_context)[1].float()  # context: set by model_images
        start = spread_points(points.shape[1]).to(points).expand_as(points)
        uniform = torch.rand(points.shape, generator=generator)
        target_masks = np.stack(masks)
        for name, sampled in zip(POINT_SOURCES, (points, uniform, start), strict=True):
            on, near = _hits(sampled, target_masks, grid_hw)
            counts[f"{name}on_target"] += on
            counts[f"{name}near_target"] += near
        counts["points"] += points.shape[0] * points.shape[1]
        if scene < pictures:
            drawn.append(draw_points(to_rgb(image[0]), points[0], grid_hw))
    rates = {key: 100 * value / counts["points"] for key, value in counts.items() if key != "points"}
    return {**rates, "points": counts["points"]}, drawn


def _hits(points: torch.Tensor, masks: np.ndarray, grid_hw: tuple[int, int]) -> tuple[int, int]:
    """Points (``[B, K, 2]``, ``(0, 0)`` top-left token centre) that fall on the mask, and within one
    token pitch of it, on ``[B, H, W]`` masks of the camera frame."""
    rows, cols = grid_hw
    height, width = masks.shape[1:]
    u = ((points[..., 0] * (cols - 1) + 0.5) * width / cols).long().clamp(0, width - 1).numpy()
    v = ((points[..., 1] * (rows - 1) + 0.5) * height / rows).long().clamp(0, height - 1).numpy()
    on = near = 0
    for mask, us, vs in zip(masks, u, v, strict=True):
        distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
        on += int(mask[vs, us].sum())
        near += int((distance[vs, us] <= width / cols).sum())
    return on, near


def tokens_per_camera(checkpoint: Path) -> int:
    """Image tokens per camera that reach the language model: K, or the whole connector grid for dense."""
    config = PreTrainedConfig.from_pretrained(checkpoint)
    if config.grids.sampler != "dense":
        return config.grids.num_tokens
    policy, _ = load_policy(str(checkpoint), "cpu")
    rows, cols = policy.grids_backbone.grid_hw(tuple(config.resize_imgs_with_padding))
    return rows * cols


def wilson_interval(percent: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate, in percent."""
    p = percent / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(centre - half, 0.0), 100 * min(centre + half, 1.0)


def checks(results: dict, scale: DemoScale) -> list[dict]:
    """The claims the report may make, each with whether this run's numbers support it."""
    success = results["success"]
    dense, floor = success["dense"]["default"], success["dense"]["blank"]
    learned = dense >= floor + 30
    listed = [{
        "claim": "The task is learned: dense succeeds far above a policy that ignores the images "
                 "(the dense policy with the images blanked).",
        "holds": learned,
        "numbers": f"dense {dense:.0f}% vs blanked images {floor:.0f}% (needs 30 points more)",
    }]
    if "grids_k16" in success:
        grids = success["grids_k16"]["default"]
        listed.append({
            "claim": f"GridS K=16 reaches the dense baseline's in-distribution success within {scale.margin:.0f} "
                     "points (shown only where the task is learned: two failures are no match).",
            "holds": learned and grids >= dense - scale.margin,
            "numbers": f"GridS K=16 {grids:.0f}% vs dense {dense:.0f}%",
        })
    for name, rates in results["pointing"].items():
        listed.append({
            "claim": f"{label(name)}'s front-camera points lie on the named block more often than random points.",
            "holds": rates["on_target"] > rates["random_on_target"],
            "numbers": f"{rates['on_target']:.1f}% vs {rates['random_on_target']:.1f}% of points "
                       f"({rates['on_target'] / max(rates['random_on_target'], 1e-9):.1f}x)",
        })
    return listed


def plot(results: dict, output_dir: Path, pictures: dict[str, list[np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, variants = list(results["success"]), ["default", *OOD_VARIANTS]
    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        values = [results["success"][name][variant] for variant in variants]
        axis.bar(np.arange(len(variants)) + index * width, values, width, label=label(name))
    axis.axhline(results["success"]["dense"]["blank"], color="black", linestyle="--", label="dense, images blanked")
    axis.set(xticks=np.arange(len(variants)) + width * (len(names) - 1) / 2, xticklabels=variants,
             ylabel="success rate (%)", ylim=(0, 100), title="lerobot-eval success on grids_tabletop")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output_dir / "success.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, run in results["training"].items():
        steps, losses = zip(*run["losses"], strict=True) if run["losses"] else ((), ())
        axis.plot(steps, losses, label=label(name))
    axis.set(xlabel="step", ylabel="flow-matching loss", yscale="log", title="lerobot-train loss")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output_dir / "loss.png", dpi=110)
    plt.close(figure)

    rows = [np.concatenate(drawn, axis=1) for drawn in pictures.values()]
    if rows:
        cv2.imwrite(str(output_dir / "points.png"), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def write_report(results: dict, output_dir: Path) -> str:
    scale, names = results["scale"], list(results["success"])
    variants = ["default", *OOD_VARIANTS]
    n = scale["eval_episodes"]
    lines = [
        f"# GridS vs dense on `grids_tabletop` ({results['mode']} run, {results['date']})",
        "",
        f"Command: `{results['command']}`; {results['machine']}; total {results['seconds'] / 60:.1f} min.",
        f"Dataset: {scale['episodes']} expert episodes of the `default` variant (scenes 0-{scale['episodes'] - 1}). "
        f"Training: `lerobot-train`, recipe `{results['recipe']}`, {scale['steps']} steps, batch {scale['batch_size']}, "
        f"the same seed for every policy, each starting from the pretrained base policy (grounding, then reach; "
        f"never trained to pick) "
        f"(`--policy.init_from={results.get('base_policy', STORED_RUNS_BASE_POLICY)}`). "
        "Evaluation: LeRobot's `lerobot-eval` loop, "
        f"{n} unseen scenes per variant (seeds {EVAL_SEED}-{EVAL_SEED + n - 1}).",
        "",
        "## Success rate (%)",
        "",
        "| policy | tokens per camera | " + " | ".join(variants) + " | training time |",
        "|---|---|" + "---|" * len(variants) + "---|",
    ]
    for name in names:
        cells = []
        for variant in variants:
            low, high = wilson_interval(results["success"][name][variant], n)
            cells.append(f"{results['success'][name][variant]:.0f} [{low:.0f}, {high:.0f}]")
        tokens = results["tokens_per_camera"][name]
        lines.append(f"| {label(name)} | {tokens} | " + " | ".join(cells)
                     + f" | {results['training'][name]['seconds'] / 60:.1f} min |")
    floor = results["success"]["dense"]["blank"]
    low, high = wilson_interval(floor, n)
    lines += [
        f"| dense, images blanked (`blank` variant) | 0 | {floor:.0f} [{low:.0f}, {high:.0f}] |" + " |" * len(variants),
        "",
        "Brackets: 95% Wilson intervals. The OOD columns change only what the cameras see (unseen distractors, "
        "table texture and background, lighting, a moved front camera); no OOD scene is in the training data.",
        "",
        "## Where the sampler looks (front camera, along the expert's path)",
        "",
        "| policy | points on the named block | random points on it | starting layout on it "
        "| within one token of it | random within one token | starting layout within one token |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rates in results["pointing"].items():
        lines.append(f"| {label(name)} | " + " | ".join(
            f"{rates[f'{source}{where}_target']:.1f}%" for where in ("on", "near") for source in POINT_SOURCES) + " |")
    lines += ["", "## Checks", ""]
    lines += [f"- [{'x' if check['holds'] else ' '}] {check['claim']} ({check['numbers']})" for check in results["checks"]]
    lines += [
        "",
        "![success](success.png)",
        "",
        "![loss](loss.png)",
        "",
        "Sampled points of the front camera on the first frame of unseen scenes (rows: "
        + ", ".join(label(name) for name in results["pointing"]) + "):",
        "",
        "![points](points.png)",
        "",
        "## The same evaluations from the command line",
        "",
        "```bash",
        *[eval_command(Path(results["checkpoints"][name]), variant, n) for name in names for variant in variants[:1]],
        "```",
        "",
        "(`--env.variant=` any of " + ", ".join(VARIANTS) + ".)",
    ]
    report = "\n".join(lines) + "\n"
    (output_dir / "report.md").write_text(report)
    return report


def run_demo(output_dir: Path, scale: DemoScale, recipe: Path = RECIPE, command: str = "lerobot-grids-demo",
             seed: int = 1000) -> dict:
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; choose a new --output-dir (nothing is overwritten).")
    if not recipe.is_file():
        raise FileNotFoundError(f"No training recipe at {recipe}: run from the repository root, or pass --recipe.")
    started = time.monotonic()
    output_dir.mkdir(parents=True)
    dataset_root = output_dir / "dataset"
    record_expert_episodes(dataset_root, scale.episodes)

    models = model_names(scale)
    training, checkpoints = {}, {}
    for name, overrides in models.items():
        run_dir = output_dir / "train" / name
        training[name] = train(name, overrides, dataset_root, run_dir, scale, recipe, seed)
        checkpoints[name] = run_dir / "checkpoints" / "last" / "pretrained_model"

    jobs = [(name, variant) for name in models for variant in ["default", *OOD_VARIANTS]] + [("dense", "blank")]
    success: dict[str, dict[str, float]] = {name: {} for name in models}
    for name, variant in tqdm(jobs, desc="lerobot-eval (policy x variant)"):
        evaluated = evaluate(checkpoints[name], variant, scale.eval_episodes, output_dir / "eval" / name / variant)
        success[name][variant] = evaluated["success"]

    pointing_rates, pictures = {}, {}
    for name in tqdm([name for name in models if name != "dense"], desc="Where the sampler looks"):
        pointing_rates[name], pictures[name] = pointing(checkpoints[name], scale.pointing_scenes)

    results = {
        "mode": {QUICK: "quick", FULL: "full"}.get(scale, "custom-scale"),
        "date": datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads, no GPU used",
        "recipe": str(recipe),
        "base_policy": str(PRETRAINED_TABLETOP_SMOLVLA.relative_to(PRETRAINED_TABLETOP_SMOLVLA.parents[2])),
        "scale": asdict(scale),
        "tokens_per_camera": {name: tokens_per_camera(path) for name, path in checkpoints.items()},
        "checkpoints": {name: str(path) for name, path in checkpoints.items()},
        "training": training,
        "success": success,
        "pointing": pointing_rates,
    }
    results["checks"] = checks(results, scale)
    results["seconds"] = time.monotonic() - started
    plot(results, output_dir, pictures)
    write_report(results, output_dir)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results
