"""Dense SmolVLA against GridS on a task suite, offline, with LeRobot's tools (behind ``lerobot-grids-demo``).

:func:`run_demo`: one run, offline on a CPU, into a new folder (never an earlier run's), on a suite of
:mod:`lerobot_grids.evidence.benchmarks` (our tabletop task by default, or Meta-World):

1. records the suite's scripted experts into a LeRobotDataset (``lerobot-grids-tabletop-dataset``,
   ``lerobot-grids-metaworld-dataset``);
2. trains, with ``lerobot-train`` and the suite's recipe (the shipped config ``smolvla_grids_tabletop``, ...),
   each policy named in :func:`model_overrides` (by default the dense baseline,
   ``--policy.grids.sampler=dense`` with all 64 tokens per camera, and GridS with K = 16, 4 and 1 tokens per
   camera: paper Tab. 1 and 3), the same steps for each, once per training seed, each starting
   (``--policy.init_from``) from the pretrained base policy that ships with the package
   (:mod:`lerobot_grids.evidence.tabletop_pretrain`: a grounded tiny SmolVLM and an action expert pretrained
   to reach, never to pick), as the paper's policies start from a pretrained SmolVLA;
3. evaluates every policy with LeRobot's evaluation loop (``lerobot-eval``'s ``eval_main``) on each task, in
   distribution and on each shifted variant (Fig. 5, App. E), and the dense policy with the images blanked:
   the floor of a policy that ignores them;
4. on the tabletop, measures where the sampler looks (:mod:`lerobot_grids.evidence.pointing`);
5. writes ``report.md`` (tables with 95% intervals over seeds and episodes, the checks below, the
   equivalent ``lerobot-eval`` commands), ``results.json`` and ``success.png``, ``loss.png``, ``points.png``.

Each (policy, seed) is a unit stored in ``units/`` as it finishes, so an interrupted run continues where
it stopped (``resume=True``, the same plan) and a partial run can be rendered (:func:`render`).

The checks: the task is learned (dense far above the blanked-image floor), GridS K=16 (K=4) is within a
margin (twice the margin) of dense in distribution, points land on the named block at least 3x as often
as random points and significantly so, and at K=16 GridS beats top-k, which beats random (paper Tab. 10).
``QUICK`` (``--quick``) is the same pipeline at CI scale.
"""

import json
import logging
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
from lerobot.envs.configs import EnvConfig
from tqdm import tqdm

from lerobot_grids.backbones import TINY_SMOLVLM
from lerobot_grids.configs import resolve_config
from lerobot_grids.evidence.benchmarks import BENCHMARKS, TABLETOP, Benchmark
from lerobot_grids.evidence.pointing import pointing
from lerobot_grids.evidence.statistics import seeds_and_episodes_interval, sign_flip_p_value
from lerobot_grids.evidence.viz import load_policy
from lerobot_grids.output_folder import check_new
from lerobot_grids.policies.act_grids.modeling_act_grids import ACTGridsPolicy

EVAL_SEED = 1000  # lerobot-eval's default; the dataset's scenes are seeds 0 .. episodes - 1
POINTING_RATIO = 3.0  # points on the named block at least this many times as often as random points
SIGNIFICANCE = 0.05
# Training and evaluation run on the GPU where there is one (the pointing measurement stays on the CPU).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class DemoScale:
    episodes: int  # expert episodes in the training dataset, per task
    steps: int  # lerobot-train steps per policy
    batch_size: int
    ks: tuple[int, ...]  # GridS tokens per camera of the default policies
    eval_episodes: int  # per policy, task and variant
    pointing_scenes: int  # unseen scenes whose front frames are scored for where the points fall
    margin: float  # percentage points GridS K=16 may trail dense in distribution (K=4: twice this)


FULL = DemoScale(
    episodes=200, steps=800, batch_size=32, ks=(16, 4, 1), eval_episodes=200, pointing_scenes=200, margin=5.0
)
QUICK = DemoScale(
    episodes=60, steps=200, batch_size=16, ks=(16, 4), eval_episodes=20, pointing_scenes=5, margin=15.0
)
# Meta-World: four tasks in one dataset; each evaluation renders every step (about 40 steps/s at 224x224 on a
# core)
METAWORLD_FULL = DemoScale(
    episodes=50, steps=1600, batch_size=32, ks=(16, 4, 1), eval_episodes=20, pointing_scenes=0, margin=5.0
)
METAWORLD_QUICK = DemoScale(
    episodes=10, steps=200, batch_size=16, ks=(16, 4), eval_episodes=5, pointing_scenes=0, margin=15.0
)
SCALES = {
    ("tabletop", False): FULL,
    ("tabletop", True): QUICK,
    ("metaworld", False): METAWORLD_FULL,
    ("metaworld", True): METAWORLD_QUICK,
}  # (benchmark, --quick)
# Samplers and predictors a run can compare (paper Tab. 10 and the point predictors of GridSConfig); a
# policy's name is one of these followed by ``_k<K>``, or ``dense``.
ATTENTION_INSTRUCTION = [
    "--policy.grids.sampler=grids",
    "--policy.grids.predictor=attention",
    "--policy.grids.instruction=true",
]
KINDS = {
    "grids": ("GridS", ["--policy.grids.sampler=grids"]),
    "attention": ("GridS attention", ["--policy.grids.sampler=grids", "--policy.grids.predictor=attention"]),
    "instructed": ("GridS attention+instruction", ATTENTION_INSTRUCTION),
    # the same with each point's prior as wide as its share of the grid (issue 28: explain K)
    "instructed_share": (
        "GridS attention+instruction, share prior",
        [*ATTENTION_INSTRUCTION, "--policy.grids.attention_prior=share"],
    ),
    # GridS inside the vision tower after its first layer (of the tiny tower's two), attention+instruction
    # predictor; intower_l0 and intower_l2 split before the first layer and after the last (the trade-off over
    # L, issue 18)
    **{
        name: (
            f"GridS in-tower L={layer} attention+instruction",
            [*ATTENTION_INSTRUCTION, f"--policy.grids.split_layer={layer}"],
        )
        for name, layer in (("intower", 1), ("intower_l0", 0), ("intower_l2", 2))
    },
    "topk": ("top-k", ["--policy.grids.sampler=topk"]),
    "random": ("random", ["--policy.grids.sampler=random"]),
}


# ACT (``act_grids``, trained from scratch with the benchmark's ``act_recipe``): ``act`` is dense ACT,
# ``act_k<K>`` the paper's predictor on ACT's feature map.
ACT = "act"


def default_models(scale: DemoScale) -> list[str]:
    return ["dense", *(f"grids_k{k}" for k in scale.ks)]


def _parse(name: str) -> tuple[str, int]:
    """``(kind, K)`` of a demo policy's name; K is 0 for the dense ones (``dense``, ``act``)."""
    if name in ("dense", ACT):
        return name, 0
    kind, _, k = name.rpartition("_k")
    if kind not in (*KINDS, ACT) or not k.isdigit() or int(k) < 1:
        raise ValueError(
            f"Unknown demo policy {name!r}: use dense, act or <kind>_k<K> with kind one of "
            f"{', '.join((*KINDS, ACT))} (e.g. grids_k16, instructed_k4, topk_k16, act_k16)."
        )
    return kind, int(k)


def is_act(name: str) -> bool:
    return _parse(name)[0] == ACT


def model_overrides(name: str) -> list[str]:
    """``lerobot-train`` overrides of the demo policy ``name`` (``dense``, ``grids_k16``, ``instructed_k4``,
    ``act``, ``act_k16``, ...)."""
    kind, k = _parse(name)
    if k == 0:
        return ["--policy.grids.sampler=dense"]
    options = ["--policy.grids.sampler=grids"] if kind == ACT else KINDS[kind][1]
    return [*options, f"--policy.grids.num_tokens={k}"]


def label(name: str) -> str:
    kind, k = _parse(name)
    if kind == ACT:
        return f"ACT GridS K={k}" if k else "ACT dense"
    return "dense" if kind == "dense" else f"{KINDS[kind][0]} K={k}"


def train(
    name: str,
    overrides: list[str],
    dataset_root: Path,
    output_dir: Path,
    scale: DemoScale,
    recipe: Path,
    seed: int,
    benchmark: Benchmark = TABLETOP,
) -> dict:
    """One ``lerobot-train`` run; returns its logged losses and wall time (the log is kept beside it). SmolVLA
    starts from the benchmark's pretrained base policy, ACT from scratch (``recipe`` is ACT's then)."""
    log_freq = max(1, min(50, scale.steps // 20))
    smolvla = [
        f"--policy.vlm_model_name={TINY_SMOLVLM}",
        f"--policy.init_from={benchmark.base_policy()}",
        f"--policy.scheduler_decay_steps={scale.steps}",
    ]
    command = [
        sys.executable,
        "-m",
        "lerobot.scripts.lerobot_train",
        f"--config_path={recipe}",
        *([] if is_act(name) else smolvla),
        f"--dataset.repo_id={benchmark.repo_id}",
        f"--dataset.root={dataset_root}",
        f"--output_dir={output_dir}",
        f"--steps={scale.steps}",
        f"--save_freq={scale.steps}",
        f"--batch_size={scale.batch_size}",
        f"--log_freq={log_freq}",
        f"--seed={seed}",
        f"--policy.device={DEVICE}",
        *overrides,
    ]
    log_path = output_dir.with_name(f"{output_dir.name}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    losses, started = [], time.monotonic()
    with (
        open(log_path, "w") as log,
        tqdm(total=scale.steps, desc=f"lerobot-train {label(name)} seed {seed}", unit="step") as bar,
    ):
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        for line in process.stdout:
            log.write(line)
            match = re.search(r" step:\S+ .* loss:(\S+)", line)
            if match:  # lerobot-train logs every log_freq steps (the step itself is rounded, "1K")
                losses.append(((len(losses) + 1) * log_freq, float(match.group(1))))
                bar.update(log_freq)
        if process.wait() != 0:
            raise RuntimeError(
                f"lerobot-train for {label(name)} failed (exit {process.returncode}); see {log_path}"
            )
    return {"losses": losses, "seconds": time.monotonic() - started, "command": command[3:]}


def evaluate(checkpoint: Path, env: EnvConfig, episodes: int, output_dir: Path) -> dict:
    """LeRobot's evaluation (``lerobot-eval``'s ``eval_main``, in this process) on one env (task and
    variant)."""
    from lerobot.scripts.lerobot_eval import eval_main

    policy = PreTrainedConfig.from_pretrained(checkpoint)
    policy.device = DEVICE
    # EvalPipelineConfig looks for --policy.path in sys.argv and warns "built from scratch" when it is not
    # there; the path is given here instead (make_policy loads the weights from ``pretrained_path``).
    config_logger = logging.getLogger("lerobot.configs.eval")
    level = config_logger.level
    config_logger.setLevel(logging.ERROR)
    try:
        config = EvalPipelineConfig(
            env=env,
            # In-process environments: LeRobot 0.6 defaults to one worker process per environment, each
            # importing LeRobot again (seconds per evaluation for an environment that steps in microseconds).
            eval=EvalConfig(n_episodes=episodes, batch_size=min(episodes, 25), use_async_envs=False),
            policy=policy,
            output_dir=output_dir,
            job_name=f"{env.type}_{output_dir.name}",
            seed=EVAL_SEED,
        )
    finally:
        config_logger.setLevel(level)
    config.policy.pretrained_path = checkpoint
    eval_main(config)
    overall = json.loads((output_dir / "eval_info.json").read_text())["overall"]
    return {"success": overall["pc_success"], "episodes": overall["n_episodes"]}


def eval_command(
    checkpoint: Path, benchmark: Benchmark, task: str | None, variant: str, episodes: int
) -> str:
    return (
        f"lerobot-eval --policy.path={checkpoint} {benchmark.env_options(task, variant)} "
        f"--eval.n_episodes={episodes} --eval.batch_size={min(episodes, 25)} --policy.device=cpu"
    )


def tokens_per_camera(checkpoint: Path) -> int:
    """Image tokens per camera that reach the language model (ACT: its transformer): K, or for dense the
    whole connector grid (ACT: feature map)."""
    config = PreTrainedConfig.from_pretrained(checkpoint)
    if config.grids.sampler != "dense":
        return config.grids.num_tokens
    policy, _ = load_policy(str(checkpoint), "cpu")
    if isinstance(policy, ACTGridsPolicy):
        rows, cols = policy.feature_grid(tuple(next(iter(config.image_features.values())).shape[-2:]))
    else:
        rows, cols = policy.grids_backbone.grid_hw(tuple(config.resize_imgs_with_padding))
    return rows * cols


def _set_aside(path: Path) -> None:
    """What an interrupted unit left is kept under a new name (nothing is deleted or overwritten)."""
    if path.exists():
        path.rename(path.with_name(f"{path.name}.interrupted-{datetime.now():%Y%m%d-%H%M%S}"))


def unit_path(output_dir: Path, name: str, seed: int) -> Path:
    return output_dir / "units" / name / f"seed{seed}.json"


def run_unit(
    name: str,
    seed: int,
    output_dir: Path,
    dataset_root: Path,
    scale: DemoScale,
    recipe: Path,
    benchmark: Benchmark = TABLETOP,
) -> dict:
    """Trains, evaluates and measures one policy with one training seed; stores it in ``units/``. Its success
    per variant is the mean over the suite's tasks (each evaluated on ``scale.eval_episodes`` scenes), per
    task in ``success_by_task``."""
    run_dir, eval_dir = (
        output_dir / "train" / name / f"seed{seed}",
        output_dir / "eval" / name / f"seed{seed}",
    )
    for path in (run_dir, run_dir.with_name(f"{run_dir.name}.log"), eval_dir):
        _set_aside(path)
    started = time.monotonic()
    recipe = resolve_config(benchmark.act_recipe) if is_act(name) else recipe
    training = train(name, model_overrides(name), dataset_root, run_dir, scale, recipe, seed, benchmark)
    checkpoint = run_dir / "checkpoints" / "last" / "pretrained_model"
    variants = benchmark.variants + (["blank"] if name == "dense" else [])
    tasks = benchmark.tasks or (None,)
    by_task = {
        variant: {
            task: evaluate(
                checkpoint,
                benchmark.env(task, variant),
                scale.eval_episodes,
                eval_dir / variant / (task or ""),
            )["success"]
            for task in tasks
        }
        for variant in variants
    }
    unit = {
        "name": name,
        "seed": seed,
        "checkpoint": str(checkpoint),
        "tokens_per_camera": tokens_per_camera(checkpoint),
        "training": training,
        "success": {
            variant: float(np.mean(list(percents.values()))) for variant, percents in by_task.items()
        },
    }
    if benchmark.tasks:
        unit["success_by_task"] = by_task
    path = unit_path(output_dir, name, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if benchmark.measures_pointing and name != "dense" and not is_act(name):
        unit["pointing"], drawn = pointing(checkpoint, scale.pointing_scenes, EVAL_SEED)
        cv2.imwrite(
            str(path.with_suffix(".png")), cv2.cvtColor(np.concatenate(drawn, axis=1), cv2.COLOR_RGB2BGR)
        )
    unit["seconds"] = time.monotonic() - started
    path.write_text(json.dumps(unit, indent=2))
    return unit


def collect(output_dir: Path) -> dict:
    """The results of a run folder so far: its plan (``run.json``) and the units that finished."""
    plan = json.loads((output_dir / "run.json").read_text())
    runs, missing = {}, []
    for name in plan["models"]:
        for seed in plan["seeds"]:
            path = unit_path(output_dir, name, seed)
            if path.is_file():
                runs.setdefault(name, {})[str(seed)] = json.loads(path.read_text())
            else:
                missing.append(f"{name} seed {seed}")
    return {
        **plan,
        "runs": runs,
        "missing": missing,
        "success": {
            name: {
                variant: float(np.mean([unit["success"][variant] for unit in units.values()]))
                for variant in next(iter(units.values()))["success"]
            }
            for name, units in runs.items()
        },
        "seconds": plan["dataset_seconds"]
        + sum(unit["seconds"] for units in runs.values() for unit in units.values()),
    }


def success_interval(results: dict, name: str, variant: str) -> tuple[float, float, float]:
    """Mean success over the policy's seeds and its 95% interval over seeds and episodes."""
    percents = [unit["success"][variant] for unit in results["runs"][name].values()]
    episodes = results["scale"]["eval_episodes"] * max(1, len(benchmark_of(results).tasks))  # over the tasks
    return (float(np.mean(percents)), *seeds_and_episodes_interval(percents, episodes))


def pooled_pointing(units: list[dict]) -> dict:
    """Pointing measures averaged over seeds; the p-value of the sampler's points beating random points on the
    named block, paired per (seed, scene). ``None`` for runs stored without per-scene counts."""
    measured = [unit["pointing"] for unit in units]
    pooled = {
        key: float(np.mean([m[key] for m in measured]))
        for key, value in measured[0].items()
        if isinstance(value, float)
    }
    pooled["p_value"] = None
    if all("scene_on_target" in m for m in measured):
        differences = np.concatenate(
            [np.subtract(m["scene_on_target"], m["random_scene_on_target"]) for m in measured]
        )
        pooled["p_value"] = sign_flip_p_value(differences)
    return pooled


def format_p(p_value: float | None) -> str:
    """A p-value as the report writes it; below 1e-4 only its bound (the test resolves 1 / 20001)."""
    return "n/a" if p_value is None else "< 0.0001" if p_value < 1e-4 else f"{p_value:.4f}"


def checks(results: dict, scale: DemoScale) -> list[dict]:
    """The claims the report may make, each with whether this run's numbers support it (means over seeds)."""
    learned = _learned_claim(results["success"])
    return [
        learned,
        *_match_claims(results["success"], scale),
        *_pointing_claims(results["runs"]),
        *_ordering_claims(results["success"]),
    ]


def _learned_claim(success: dict) -> dict:
    dense, floor = success["dense"]["default"], success["dense"]["blank"]
    return {
        "claim": "The task is learned: dense succeeds far above a policy that ignores the images "
        "(the dense policy with the images blanked).",
        "holds": dense >= floor + 30,
        "numbers": f"dense {dense:.0f}% vs blanked images {floor:.0f}% (needs 30 points more)",
    }


def _match_claims(success: dict, scale: DemoScale) -> list[dict]:
    """Every GridS policy at K = 16 (K = 4) within the scale's margin (twice it) of its family's dense policy
    (SmolVLA's ``dense``, ACT's ``act``), in distribution, where that one learned the task (30 points above
    the images-blanked floor)."""
    floor = success["dense"]["blank"]
    listed = []
    for name in success:
        kind, k = _parse(name)
        reference = ACT if kind == ACT else "dense"
        if k not in (16, 4) or reference not in success:
            continue
        margin = scale.margin * (1 if k == 16 else 2)
        dense = success[reference]["default"]
        baseline = "dense ACT" if kind == ACT else "the dense baseline"
        listed.append(
            {
                "claim": f"{label(name)} reaches {baseline}'s in-distribution success within "
                f"{margin:.0f} points (shown only where the task is learned: two failures are no match).",
                "holds": dense >= floor + 30 and success[name]["default"] >= dense - margin,
                "numbers": f"{label(name)} {success[name]['default']:.0f}% vs {label(reference)} "
                f"{dense:.0f}%",
            }
        )
    return listed


def _pointing_claims(runs: dict) -> list[dict]:
    """Every measured policy's front-camera points on the named block, against random points."""
    listed = []
    for name, units in runs.items():
        if "pointing" not in next(iter(units.values())):
            continue
        rates = pooled_pointing(list(units.values()))
        ratio = rates["on_target"] / max(rates["random_on_target"], 1e-9)
        p_value = rates["p_value"]
        if p_value is None:
            p_text = "p not available: this run stored no per-scene counts"
        else:
            p_text = f"p {format_p(p_value)}" if p_value < 1e-4 else f"p = {format_p(p_value)}"
        listed.append(
            {
                "claim": f"{label(name)}'s front-camera points lie on the named block at least "
                f"{POINTING_RATIO:.0f}x as often as random points, significantly (one-sided p < "
                f"{SIGNIFICANCE} over scenes).",
                "holds": ratio >= POINTING_RATIO and p_value is not None and p_value < SIGNIFICANCE,
                "numbers": f"{rates['on_target']:.1f}% vs {rates['random_on_target']:.1f}% of points "
                f"({ratio:.1f}x), {p_text}",
            }
        )
    return listed


def _ordering_claims(success: dict) -> list[dict]:
    """GridS > top-k > random at K = 16, where the run trained all three (paper Tab. 10)."""
    grids_k16 = [
        name
        for name in success
        if _parse(name) in {(kind, 16) for kind in ("grids", "attention", "instructed")}
    ]
    if not grids_k16 or not {"topk_k16", "random_k16"} <= set(success):
        return []
    best = max(grids_k16, key=lambda name: success[name]["default"])
    topk, random = success["topk_k16"]["default"], success["random_k16"]["default"]
    return [
        {
            "claim": "At K=16 GridS beats top-k, which beats random tokens, in distribution (paper Tab. 10).",
            "holds": success[best]["default"] > topk > random,
            "numbers": f"{label(best)} {success[best]['default']:.0f}%, top-k {topk:.0f}%, "
            f"random {random:.0f}%",
        }
    ]


def benchmark_of(results: dict) -> Benchmark:
    """The suite a run was made on."""
    return BENCHMARKS[results["benchmark"]]


def plot(results: dict, output_dir: Path, pictures: dict[str, np.ndarray]) -> None:
    """``success.png`` (success per variant with intervals), ``loss.png`` (training loss, mean over seeds) and
    ``points.png`` (each measured policy's pictures, one row each)."""
    plt = _pyplot()
    for name, draw in (("success.png", _plot_success), ("loss.png", _plot_loss)):
        figure = draw(results)
        figure.tight_layout()
        figure.savefig(output_dir / name, dpi=110)
        plt.close(figure)
    if pictures:
        rows = list(pictures.values())
        width = max(row.shape[1] for row in rows)
        rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
        cv2.imwrite(
            str(output_dir / "points.png"), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR)
        )


def _pyplot():
    """Matplotlib's pyplot on the file backend (imported only where a run plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_success(results: dict):
    benchmark = benchmark_of(results)
    names, variants = list(results["success"]), benchmark.variants
    figure, axis = _pyplot().subplots(figsize=(max(9, 1.3 * len(names) + 3), 4))
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        means, lows, highs = zip(
            *(success_interval(results, name, variant) for variant in variants), strict=True
        )
        errors = [np.subtract(means, lows), np.subtract(highs, means)]
        axis.bar(
            np.arange(len(variants)) + index * width, means, width, yerr=errors, capsize=2, label=label(name)
        )
    axis.axhline(
        results["success"]["dense"]["blank"], color="black", linestyle="--", label="dense, images blanked"
    )
    axis.set(
        xticks=np.arange(len(variants)) + width * (len(names) - 1) / 2,
        xticklabels=variants,
        ylabel="success rate (%)",
        ylim=(0, 100),
        title=f"lerobot-eval success on {benchmark.env_type} (95% intervals)",
    )
    axis.legend(fontsize=7, ncol=2)
    return figure


def _plot_loss(results: dict):
    figure, axis = _pyplot().subplots(figsize=(6, 4))
    for name, units in results["runs"].items():
        curves = [unit["training"]["losses"] for unit in units.values() if unit["training"]["losses"]]
        if curves:
            steps = [step for step, _ in curves[0]]
            axis.plot(
                steps, np.mean([[loss for _, loss in curve] for curve in curves], axis=0), label=label(name)
            )
    axis.set(
        xlabel="step", ylabel="flow-matching loss (mean over seeds)", yscale="log", title="lerobot-train loss"
    )
    axis.legend(fontsize=7)
    return figure


def _seeds_text(seeds: list[int]) -> str:
    return (
        f"one training seed ({seeds[0]}): a single-seed result"
        if len(seeds) == 1
        else f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}), means over seeds"
    )


def write_report(results: dict, output_dir: Path) -> str:
    """``report.md`` of a run's results with their ``checks``: what was run, the success table, the per-task
    table, where the sampler looks (the tabletop), the checks, the plots and the same evaluations as
    commands."""
    benchmark = benchmark_of(results)
    lines = [
        *_header_section(results, benchmark),
        *_success_section(results, benchmark),
        *(_per_task_section(results, benchmark) if benchmark.tasks else []),
        *(_pointing_section(results, results["scale"]) if benchmark.measures_pointing else []),
        *_checks_and_plots_section(results),
        *_commands_section(results, benchmark, output_dir),
    ]
    report = "\n".join(lines) + "\n"
    (output_dir / "report.md").write_text(report)
    return report


def _header_section(results: dict, benchmark: Benchmark) -> list[str]:
    """The title and what was run: command, dataset, training, evaluation; a partial run says so."""
    scale, tasks, n = results["scale"], benchmark.tasks, results["scale"]["eval_episodes"]
    lines = [
        f"# GridS vs dense on {benchmark.title} ({results['mode']} run, {results['date']})",
        "",
        f"Command: `{results['command']}`; {results['machine']}; total {results['seconds'] / 60:.1f} min.",
        "Dataset: "
        + benchmark.dataset_text.format(
            episodes=scale["episodes"], last=scale["episodes"] - 1, tasks=", ".join(tasks)
        )
        + ". "
        f"Training: `lerobot-train`, recipe `{results['recipe']}`, {scale['steps']} steps, batch "
        f"{scale['batch_size']}, {_seeds_text(results['seeds'])}, the same seeds for every policy, each "
        f"starting from the pretrained base policy ({benchmark.base_text}) "
        f"(`--policy.init_from={results['base_policy']}`). Evaluation: LeRobot's `lerobot-eval` loop, {n} "
        f"unseen scenes per variant{' and task' if tasks else ''} (seeds {EVAL_SEED}-{EVAL_SEED + n - 1})"
        + (f"; success is the mean over the {len(tasks)} tasks." if tasks else "."),
    ]
    if results["missing"]:
        lines += [
            "",
            f"**Partial run**: not finished yet: {', '.join(results['missing'])}. Rows with fewer seeds "
            "say how many they have.",
        ]
    return lines


def _success_cells(results: dict, name: str, variants: list[str]) -> str:
    return " | ".join(
        "{:.0f} [{:.0f}, {:.0f}]".format(*success_interval(results, name, variant)) for variant in variants
    )


def _success_section(results: dict, benchmark: Benchmark) -> list[str]:
    """Success per policy and variant with its interval, training time, the blank-image floor."""
    variants, seeds = benchmark.variants, results["seeds"]
    interval = (
        "95% Wilson intervals over the evaluation episodes"
        if len(seeds) == 1
        else "95% intervals over seeds and episodes (two-level bootstrap: seeds, then each seed's episodes, "
        "resampled)"
    )
    lines = [
        "",
        "## Success rate (%)",
        "",
        "| policy | tokens per camera | " + " | ".join(variants) + " | training time |",
        "|---|---|" + "---|" * len(variants) + "---|",
    ]
    for name in results["success"]:
        units = list(results["runs"][name].values())
        seeds_done = "" if len(units) == len(seeds) else f" ({len(units)} of {len(seeds)} seeds)"
        minutes = np.mean([unit["training"]["seconds"] for unit in units]) / 60
        lines.append(
            f"| {label(name)}{seeds_done} | {units[0]['tokens_per_camera']} | "
            f"{_success_cells(results, name, variants)} | {minutes:.1f} min |"
        )
    return [
        *lines,
        f"| dense, images blanked (`blank` variant) | 0 | {_success_cells(results, 'dense', ['blank'])} |"
        + " |" * len(variants),
        "",
        f"Brackets: {interval}. {benchmark.shift_text}",
    ]


def _per_task_section(results: dict, benchmark: Benchmark) -> list[str]:
    """In-distribution success per task, mean over seeds (a suite of several tasks)."""
    tasks = benchmark.tasks
    return [
        "",
        "## Success rate per task, in distribution (%, mean over seeds)",
        "",
        "| policy | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
        *[
            f"| {label(name)} | "
            + " | ".join(f"{_task_success(results, name, task):.0f}" for task in tasks)
            + " |"
            for name in results["success"]
        ],
    ]


def _task_success(results: dict, name: str, task: str) -> float:
    """A policy's in-distribution success on one task, mean over seeds."""
    return float(
        np.mean([unit["success_by_task"]["default"][task] for unit in results["runs"][name].values()])
    )


def _checks_and_plots_section(results: dict) -> list[str]:
    lines = ["", "## Checks", ""]
    lines += [
        f"- [{'x' if check['holds'] else ' '}] {check['claim']} ({check['numbers']})"
        for check in results["checks"]
    ]
    pointed = [
        label(name) for name, units in results["runs"].items() if "pointing" in next(iter(units.values()))
    ]
    lines += ["", "![success](success.png)", "", "![loss](loss.png)", ""]
    if pointed:
        lines += [
            "Sampled points of the front camera on the first frame of unseen scenes, first seed (rows: "
            + ", ".join(pointed)
            + "):",
            "",
            "![points](points.png)",
            "",
        ]
    return lines


def _commands_section(results: dict, benchmark: Benchmark, output_dir: Path) -> list[str]:
    """``lerobot-eval`` lines that evaluate, as the run did, each policy's first-seed checkpoint that is kept
    with the run (in its folder: all of them in a run's own folder, those ``--store`` stored in a stored
    copy)."""
    first = {name: units[min(units, key=int)]["checkpoint"] for name, units in results["runs"].items()}
    kept = {name: Path(path) for name, path in first.items() if _inside(Path(path), output_dir)}
    if not kept:
        return ["## The same evaluations from the command line", "", "No checkpoint is kept with this run."]
    left_out = [label(name) for name in results["success"] if name not in kept]
    return [
        "## The same evaluations from the command line",
        "",
        "```bash",
        *[
            eval_command(kept[name], benchmark, task, "default", results["scale"]["eval_episodes"])
            for name in results["success"]
            if name in kept
            for task in benchmark.tasks or (None,)
        ],
        "```",
        "",
        "(`--env.variant=` any of " + ", ".join([*benchmark.variants, "blank"]) + ".)",
        *(["", "Not stored with the run: " + ", ".join(left_out) + "."] if left_out else []),
    ]


def _inside(path: Path, folder: Path) -> bool:
    return path.absolute().is_relative_to(folder.absolute())


def _pointing_section(results: dict, scale: dict) -> list[str]:
    lines = [
        "",
        "## Where the sampler looks (front camera, along the expert's path)",
        "",
        f"{scale['pointing_scenes']} unseen `default` scenes (seeds "
        f"{EVAL_SEED}-{EVAL_SEED + scale['pointing_scenes'] - 1}), every frame; random: as many uniformly "
        "random points per frame. p: one-sided paired sign-flip test that the policy's points are on the "
        "named block more often than random points, over scenes (and seeds). Nearest point: mean over frames "
        "of the distance from the nearest point to the named block / to the nearest other block, in token "
        "pitches. Layout change: each point's mean distance from its mean position over the scenes' first "
        "frames, in token pitches (0: one fixed layout).",
        "",
        "| policy | points on the named block | random points on it | ratio | p | within one token of it | "
        "random within one token | nearest point: named / other block | random: named / other | layout "
        "change |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, units in results["runs"].items():
        if "pointing" not in next(iter(units.values())):
            continue
        rates = pooled_pointing(list(units.values()))
        measured = "nearest_named" in rates

        def pair(prefix: str, rates: dict = rates, measured: bool = measured) -> str:
            return (
                f"{rates[f'{prefix}nearest_named']:.2f} / {rates[f'{prefix}nearest_other']:.2f}"
                if measured
                else "n/a"
            )

        lines.append(
            f"| {label(name)} | {rates['on_target']:.1f}% | {rates['random_on_target']:.1f}% | "
            f"{rates['on_target'] / max(rates['random_on_target'], 1e-9):.1f}x | "
            f"{format_p(rates['p_value'])} | {rates['near_target']:.1f}% | "
            f"{rates['random_near_target']:.1f}% | {pair('')} | {pair('random_')} | "
            f"{format(rates['layout_change'], '.2f') if 'layout_change' in rates else 'n/a'} |"
        )
    return lines


def _pictures(output_dir: Path, results: dict) -> dict[str, np.ndarray]:
    """Each measured policy's pictures of its first seed with pictures stored in ``units/``."""
    pictures = {}
    for name, units in results["runs"].items():
        for seed in sorted(units, key=int):
            path = unit_path(output_dir, name, int(seed)).with_suffix(".png")
            if path.is_file():
                pictures[name] = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
                break
    return pictures


def _scale(results: dict) -> DemoScale:
    return DemoScale(**{**results["scale"], "ks": tuple(results["scale"]["ks"])})


def render(output_dir: Path) -> dict:
    """Writes ``report.md``, ``results.json`` and the plots of a run folder again from what it stored: its
    units (a run made with units, finished or not) or, for a run stored before units, its ``results.json``."""
    if (output_dir / "run.json").is_file():
        results = collect(output_dir)
        if "dense" not in results["runs"]:
            raise ValueError(
                f"{output_dir}: the dense baseline has not finished yet; the report compares with it."
            )
    elif (output_dir / "results.json").is_file():  # a run stored before units: its results only
        results = json.loads((output_dir / "results.json").read_text())
    else:
        raise FileNotFoundError(
            f"{output_dir} holds no lerobot-grids-demo run (no run.json or results.json)."
        )
    results["checks"] = checks(results, _scale(results))
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    plot(results, output_dir, _pictures(output_dir, results))
    write_report(results, output_dir)
    return results


def _plan(benchmark: Benchmark, scale: DemoScale, recipe: str, seeds: list[int], models: list[str]) -> dict:
    base_policy = benchmark.base_policy()
    return {
        "benchmark": benchmark.name,
        "recipe": str(recipe),
        "scale": asdict(scale),
        "seeds": seeds,
        "models": models,
        "base_policy": str(base_policy.relative_to(base_policy.parents[2])),
    }


def run_demo(
    output_dir: Path,
    scale: DemoScale,
    recipe: str | Path | None = None,
    command: str = "lerobot-grids-demo",
    seeds: list[int] = (1000,),
    models: list[str] | None = None,
    resume: bool = False,
    benchmark: Benchmark = TABLETOP,
) -> dict:
    """The run (see the module's docstring) into ``output_dir``, a new folder; with ``resume``, a folder an
    earlier run with the same plan (scale, recipe, seeds, policies) left unfinished: its finished units are
    kept, the others run, in the order of ``models``. ``models`` may add policies to a resumed run (never drop
    any): its plan and command become this call's. A copy of a stored run (``--store``) resumes too: its
    demonstrations, which it does not keep, are recorded again from the same scenes."""
    models, seeds = list(models or default_models(scale)), list(seeds)
    _check_models_and_seeds(models, seeds)
    recipe = str(recipe or benchmark.recipe)
    plan = json.loads(json.dumps(_plan(benchmark, scale, recipe, seeds, models)))  # as run.json stores it
    if resume:
        _check_resumable(output_dir, plan, command)
    else:
        try:
            check_new(output_dir)
        except FileExistsError as error:
            raise FileExistsError(
                f"{error} Or --resume to finish a run that was interrupted there."
            ) from None
    try:
        recipe_path = resolve_config(recipe)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--recipe: {error}") from None
    dataset_root = output_dir / "dataset"
    if not resume:
        _start(output_dir, plan, benchmark, scale, command)
    elif not dataset_root.is_dir():  # a stored run (docs/demo/<name>) continued in a copy keeps no dataset
        _record_again(dataset_root, benchmark, scale)
    # Seed by seed: after the first seed the run compares every policy already (a single-seed result).
    units = [
        (name, seed) for seed in seeds for name in models if not unit_path(output_dir, name, seed).is_file()
    ]
    for name, seed in tqdm(units, desc="policies x seeds"):
        run_unit(name, seed, output_dir, dataset_root, scale, recipe_path, benchmark)
    return render(output_dir)


def _record_again(dataset_root: Path, benchmark: Benchmark, scale: DemoScale) -> None:
    """The run's demonstrations recorded again (the same scenes give the same episodes), into a folder that
    takes the dataset's name once it is complete; what an interrupted recording left is set aside."""
    recording = dataset_root.with_name(f"{dataset_root.name}.recording")
    _set_aside(recording)
    benchmark.record(recording, scale.episodes)
    recording.rename(dataset_root)


def _check_models_and_seeds(models: list[str], seeds: list[int]) -> None:
    for name in models:
        _parse(name)
    if "dense" not in models:
        raise ValueError("The demo compares with the dense baseline: include dense in --models.")
    if len(set(models)) != len(models) or len(set(seeds)) != len(seeds):
        raise ValueError(f"Repeated policy or seed in --models {models} / --seeds {seeds}.")


def _check_resumable(output_dir: Path, plan: dict, command: str) -> None:
    """Refuses to resume a run made with another plan; a resumed run that adds policies stores its new
    plan."""
    if not (output_dir / "run.json").is_file():
        raise FileNotFoundError(f"{output_dir} holds no lerobot-grids-demo run to resume (no run.json).")
    stored = json.loads((output_dir / "run.json").read_text())
    differing = [key for key in plan if key != "models" and stored.get(key) != plan[key]]
    dropped = [name for name in stored["models"] if name not in plan["models"]]
    if differing or dropped:
        differing += ["models"] if dropped else []
        raise ValueError(
            f"{output_dir} was started with another {', '.join(differing)} "
            f"({', '.join(f'{key}={stored.get(key)}' for key in differing)}); resume it with the "
            "same options (--models may add policies to it), or start a new run in a new "
            "--output-dir."
        )
    if plan["models"] != stored["models"]:  # policies added: the run is now the one this command would make
        (output_dir / "run.json").write_text(
            json.dumps({**stored, "models": plan["models"], "command": command}, indent=2)
        )


def _start(output_dir: Path, plan: dict, benchmark: Benchmark, scale: DemoScale, command: str) -> None:
    """Records the demonstrations into ``output_dir/dataset`` and writes ``run.json``: the plan, the command
    and the machine."""
    started = time.monotonic()
    output_dir.mkdir(parents=True, exist_ok=True)
    benchmark.record(output_dir / "dataset", scale.episodes)
    modes = {shipped: "quick" if quick else "full" for (_, quick), shipped in SCALES.items()}
    mode = modes.get(scale, "custom-scale")
    machine = (
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        + (f"GPU {torch.cuda.get_device_name()}" if DEVICE == "cuda" else "no GPU used")
    )
    run = {
        **plan,
        "mode": mode,
        "date": datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        "dataset_seconds": time.monotonic() - started,
    }
    (output_dir / "run.json").write_text(json.dumps(run, indent=2))
