"""``lerobot-grids-bench``: FLOPs, latency and memory of GridS against the dense policy, in one run.

Full-size ``smolvla``, ``pi0`` and ``act`` with random weights (nothing is downloaded), dense against GridS
with K tokens per camera and against no image tokens at all; writes ``results.json``, ``report.md`` and
``speedup.png`` into a new folder. What is measured, and how: :mod:`lerobot_grids.evidence.bench`.
``--render <results.json>`` writes the report and plot of a stored run again, from its results alone.
"""

import argparse
import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from lerobot.utils.utils import init_logging

from lerobot_grids.evidence.bench import (
    ARCHITECTURES,
    benchmark,
    bound_table,
    display_table,
    markdown_table,
    plot_speedups,
)
from lerobot_grids.evidence.bench_act import ACT_ARCHITECTURES
from lerobot_grids.output_folder import check_new, output_folder
from lerobot_grids.scripts import at_least


def write_report(output_dir: Path, command: str, all_results: list[dict]) -> str:
    """``report.md`` (and ``speedup.png`` where latency was measured) of a run's results, into
    ``output_dir``."""
    report = [f"Command: `{command}`", ""]
    for results in all_results:
        report += [
            f"### {results['architecture']} ({results['device']}, {results['benchmark_minutes']} min)",
            "",
        ]
        if results["environment"] is not None:  # null: nothing timed (or the first stored runs: not recorded)
            env = results["environment"]
            report += [
                f"torch {env['torch']}, CUDA {env['cuda'] or '-'}, Python {env['python']}, {env['device']}, "
                f"{env['dtype']}, TF32 matmul/cuDNN {env['tf32_matmul']}/{env['tf32_cudnn']}, "
                f"{env['threads']} threads, {'eager' if env['compile'] is None else env['compile']}"
                f"{', gradient checkpointing' if env['gradient_checkpointing'] else ''}; "
                f"{results['repeats']} timed rounds after {results['warmup']} warm-up rounds, speed-ups: "
                "median over rounds [interquartile range].",
                "",
            ]
        report += [markdown_table(results), ""]
        if (shares := bound_table(results)) is not None:
            report += [shares, ""]
        if (display := display_table(results)) is not None:
            report += [display, ""]
    (output_dir / "report.md").write_text("\n".join(report))
    timed = [
        r
        for r in all_results
        if any(k.startswith("speedup_inference") for v in r["variants"].values() for k in v)
    ]
    if timed:
        plot_speedups(timed, output_dir / "speedup.png")
    return "\n".join(report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["smolvla", "pi0"], choices=sorted(ARCHITECTURES))
    parser.add_argument(
        "--ks", nargs="+", type=at_least(1), default=[1, 4, 16, 32], help="GridS tokens per camera"
    )
    parser.add_argument(
        "--split-layers",
        nargs="*",
        type=at_least(0),
        default=[],
        help="SmolVLA: also GridS inside the vision tower after each of these layers (at every K)",
    )
    parser.add_argument(
        "--batch-sizes", nargs="+", type=at_least(1), default=[1, 8], help="inference batch sizes"
    )
    parser.add_argument(
        "--train-batch-size", type=at_least(0), default=8, help="0 to skip timing training steps"
    )
    parser.add_argument(
        "--repeats", type=at_least(1), default=20, help="timed rounds (every variant once per round)"
    )
    parser.add_argument("--warmup", type=at_least(0), default=3, help="untimed rounds first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="bfloat16: pi0's --policy.dtype=bfloat16, SmolVLA's VLM in bfloat16 as loaded pretrained",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="pi0's --policy.gradient_checkpointing=true (for the largest training batches)",
    )
    parser.add_argument(
        "--compile-mode",
        default=None,
        metavar="MODE",
        help="time every variant compiled as --policy.compile_model=true --policy.compile_mode=MODE "
        "does it (e.g. max-autotune: CUDA graphs); default eager",
    )
    parser.add_argument(
        "--no-latency",
        dest="latency_models",
        action="store_const",
        const=[],
        help="count FLOPs and tokens only",
    )
    parser.add_argument(
        "--latency-models",
        nargs="*",
        default=None,
        help="models to time (default: all; pi0 needs a GPU with ~40 GB)",
    )
    parser.add_argument(
        "--no-deployment",
        dest="deployment",
        action="store_false",
        help="do not time one action chunk as LeRobot's record loop and async server make it",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="new folder (default outputs/bench/<time>)"
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: write report.md and speedup.png again beside a stored results.json",
    )
    return parser


def run(argv: list[str]) -> Path:
    """The command on ``argv`` (its options), in this process; returns the folder it wrote."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.render is not None:
        stored = json.loads(args.render.read_text())
        print(write_report(args.render.parent, stored["command"], stored["results"]))
        return args.render.parent
    acts = [model for model in args.models if model in ACT_ARCHITECTURES]
    if acts and (args.compile_mode is not None or args.dtype != "float32"):
        parser.error(
            f"--models {' '.join(acts)}: LeRobot's ACT has no compile or dtype option; time it eager in "
            "float32 (leave out --compile-mode and --dtype), in a run of its own."
        )
    output_dir = args.output_dir or Path("outputs/bench") / datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        check_new(output_dir)
    except FileExistsError as error:
        parser.error(str(error))
    with output_folder(output_dir) as output_dir:
        latency_models = args.models if args.latency_models is None else args.latency_models
        all_results = []
        for model in args.models:
            logging.info("Benchmarking %s on %s", model, args.device)
            started = time.monotonic()
            all_results.append(
                benchmark(
                    model,
                    args.ks,
                    args.batch_sizes,
                    args.train_batch_size,
                    args.repeats,
                    args.warmup,
                    args.device,
                    # SmolVLM's vision embeddings read tensor values, so SmolVLA is counted on real tensors.
                    fake_flops=model.startswith("pi0"),
                    latency=model in latency_models,
                    deployment=args.deployment,
                    compile_mode=args.compile_mode,
                    split_layers=args.split_layers if model.startswith("smolvla") else [],
                    dtype=args.dtype,
                    gradient_checkpointing=args.gradient_checkpointing and model.startswith("pi0"),
                )
            )
            all_results[-1]["benchmark_minutes"] = round((time.monotonic() - started) / 60, 1)
        command = "lerobot-grids-bench " + " ".join(argv)
        (output_dir / "results.json").write_text(
            json.dumps({"command": command, "results": all_results}, indent=2)
        )
        print(write_report(output_dir, command, all_results))
    print(f"Wrote {output_dir}")
    return output_dir


def main() -> None:
    """``lerobot-grids-bench``: LeRobot's console logging (a line as each measurement starts and ends), then
    the run."""
    init_logging()
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
