"""``lerobot-grids-bench`` at toy size: FLOP accounting against a hand count, the report files."""

import gc
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lerobot_grids.evidence import bench
from lerobot_grids.policies import live_view
from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import TINY_GEMMA_VARIANTS
from lerobot_grids.scripts import lerobot_grids_bench

REPO_ROOT = Path(__file__).resolve().parents[1]


def hand_count_prefix_flops(tokens: int) -> int:
    """FLOPs of the prefix pass of ``gemma_tiny`` over ``tokens`` tokens: per layer, the q/k/v/o
    projections, the gated MLP (gate, up, down) and the attention products QK^T and AV; once, the rotary
    embedding's outer product of inverse frequencies and positions (2 FLOPs per multiply-add; norms,
    softmax and the rotation itself are elementwise, not matrix products)."""
    spec = TINY_GEMMA_VARIANTS["gemma_tiny"]
    width, heads, kv_heads, head_dim, mlp = (
        spec[k] for k in ("width", "num_heads", "num_kv_heads", "head_dim", "mlp_dim")
    )
    projections = 2 * tokens * width * head_dim * (2 * heads + 2 * kv_heads)
    mlp_flops = 3 * 2 * tokens * width * mlp
    attention = 2 * 2 * heads * tokens * tokens * head_dim
    rotary = 2 * (head_dim // 2) * tokens
    return spec["depth"] * (projections + mlp_flops + attention) + rotary


def hand_count_other_flops(passes: int) -> int:
    """FLOPs outside the counted phases (vision, sampler, transformer passes, backward) of ``pi0_tiny``:
    per pass over the suffix (one a denoising step, one a training step), the state projection of one token
    and, per action token, the action input projection, the action-time MLP (2w -> w, w -> w) and the
    action output projection, w the expert's width."""
    config = bench.ARCHITECTURES["pi0_tiny"]()
    width = TINY_GEMMA_VARIANTS["gemma_tiny_expert"]["width"]
    state, action, chunk = config.max_state_dim, config.max_action_dim, config.chunk_size
    return (
        passes
        * 2
        * (state * width + chunk * (action * width + 2 * width * width + width * width + width * action))
    )


@pytest.fixture(scope="module")
def pi0_tiny_results():
    return bench.benchmark(
        "pi0_tiny",
        ks=[4],
        batch_sizes=[1, 2],
        train_batch_size=2,
        repeats=1,
        warmup=0,
        device="cpu",
        fake_flops=True,
    )


def test_prefix_flops_match_a_hand_count(pi0_tiny_results):
    variants = pi0_tiny_results["variants"]
    # Two 112x112 cameras: 8x8 = 64 SigLIP tokens each when dense, 4 each with K=4; 48 language tokens.
    assert variants["dense"]["prefix_tokens"] == 2 * 64 + 48
    assert variants["K=4"]["prefix_tokens"] == 2 * 4 + 48
    assert variants["no image tokens"]["prefix_tokens"] == 48
    for variant in variants.values():
        counted = variant["flops_inference"]["language model prefix"]
        assert counted == hand_count_prefix_flops(variant["prefix_tokens"])


def test_phases_add_up_to_a_hand_count_and_vision_does_not_depend_on_the_sampler(pi0_tiny_results):
    variants = pi0_tiny_results["variants"]
    for variant in variants.values():
        for kind in ("flops_inference", "flops_training_step"):
            flops = variant[kind]
            assert flops["total"] == sum(value for phase, value in flops.items() if phase != "total")
        # "other" is the total less the phases: a phase counted twice or missed would show here.
        steps = bench.ARCHITECTURES["pi0_tiny"]().num_inference_steps
        assert variant["flops_inference"]["other"] == hand_count_other_flops(steps)
        assert variant["flops_training_step"]["other"] == hand_count_other_flops(1)
        assert variant["flops_inference"]["vision"] == variants["dense"]["flops_inference"]["vision"] > 0
        assert variant["flops_training_step"]["backward"] > 0
    # Fewer tokens, fewer FLOPs; dense is the reference of every ratio.
    totals = [variants[name]["flops_inference"]["total"] for name in ("dense", "K=4", "no image tokens")]
    assert totals[0] > totals[1] > totals[2]
    assert variants["dense"]["speedup_inference_b1"] == 1.0
    assert all(v["seconds_training_step_b2"] > 0 for v in variants.values())


def hand_count_tiny_smolvlm_vision(patches_per_layer: list[int], tokens: int) -> int:
    """FLOPs of ``tiny_smolvlm``'s vision tower on one 128x128 camera (8x8 patches of 16 pixels): the patch
    embedding of all 64 patches, per layer (over the patches it sees) the q/k/v/o projections, the MLP and the
    attention products QK^T and AV (SDPA, whose CPU kernel the counter does not know: counted through the math
    backend), then the connector's projection of ``tokens`` 2x2 pixel-shuffled windows to the language model's
    width."""
    width, mlp, patch, text_width = 32, 64, 16, 64
    layers = sum(
        4 * 2 * n * width * width + 2 * 2 * n * width * mlp + 2 * 2 * n * n * width for n in patches_per_layer
    )
    return 2 * 64 * (3 * patch * patch) * width + layers + 2 * tokens * (4 * width) * text_width


def test_smolvla_vision_flops_match_a_hand_count_with_attention():
    policy = bench.build_policy("smolvla_tiny", "cpu")
    policy.config.num_steps = (
        1  # one denoising step: the vision tower runs once per call whatever their number
    )
    inputs = bench.make_inputs(policy, 1, "cpu")
    vision = {}
    for name, sampler in bench.make_samplers(policy, [4, 16], split_layers=[1]).items():
        policy.grids_backbone.use_sampler(sampler)
        vision[name] = bench.count_flops(policy, inputs, training=False)["vision"]
    # SmolVLA's inference call embeds each of the two cameras once; GridS after the tower leaves it whole.
    assert vision["dense"] == vision["K=4"] == 2 * hand_count_tiny_smolvlm_vision([64, 64], tokens=16)
    # Inside the tower after layer 1: its second layer sees the K windows' 4 patches each; with a point on
    # every window (K=16 of the 4x4 token grid) that is every patch again.
    assert vision["K=4 in-tower L=1"] == 2 * hand_count_tiny_smolvlm_vision([64, 16], tokens=4)
    assert vision["K=16 in-tower L=1"] == vision["dense"]


def test_fake_and_real_tensors_count_the_same_flops():
    fake, real = (
        bench.benchmark(
            "pi0_tiny",
            ks=[2],
            batch_sizes=[1],
            train_batch_size=0,
            repeats=1,
            warmup=0,
            device="cpu",
            fake_flops=fake_flops,
            latency=False,
        )
        for fake_flops in (True, False)
    )
    assert fake["variants"] == real["variants"]


def test_command_writes_json_markdown_and_plot_and_never_overwrites(tmp_path):
    """The installed ``lerobot-grids-bench``, as a user runs it."""
    output = tmp_path / "bench"
    args = [
        "--models",
        "smolvla_tiny",
        "--ks",
        "2",
        "--batch-sizes",
        "1",
        "2",
        "--train-batch-size",
        "0",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--output-dir",
        str(output),
    ]
    command = subprocess.run(
        [str(Path(sys.executable).with_name("lerobot-grids-bench")), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert command.returncode == 0, command.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    variants = results["results"][0]["variants"]
    assert set(variants) == {"dense", "K=2", "no image tokens"}
    # SmolVLA tiny at 128x128: a 4x4 grid per camera, 48 language tokens and 1 state token.
    assert [variants[v]["prefix_tokens"] for v in ("dense", "K=2", "no image tokens")] == [81, 53, 49]
    report = (output / "report.md").read_text()
    assert "lerobot-grids-bench --models smolvla_tiny" in report and "| K=2 | 53 |" in report
    # The share of the time the bound saves, from the stored times of every round.
    labels = [
        "inference_b1",
        "inference_b2",
        "record_loop_chunk",
        "record_loop_display_pair",
        "async_server_chunk",
    ]
    assert "| share of the time no image tokens saves | " + " | ".join(labels) + " |" in report
    shares = [
        bench.share_of_time_saved(variants["K=2"], variants["dense"], variants["no image tokens"], label)
        for label in labels
    ]
    assert (
        "| K=2 | "
        + " | ".join(
            f"{100 * median:.0f}% [{100 * first:.0f}, {100 * third:.0f}]" for first, median, third in shares
        )
        + " |"
        in report
    )
    # On the console, a line as each measurement starts and ends: a long run on a CPU is not silent until it
    # ends.
    starts = re.findall(r"smolvla_tiny (\w+) \((\d)/5\): 2 rounds of 3 variants", command.stderr)
    ends = re.findall(
        r"smolvla_tiny (\w+) done in \d+ s: K=2 [\d.]+x \[[\d.]+, [\d.]+\], no image tokens ", command.stderr
    )
    assert starts == [(label, str(i)) for i, label in enumerate(labels, start=1)] and ends == labels
    # What LeRobot's display costs the loop's chunk-making step: off and on back to back, every timed round.
    rounds = variants["K=2"][bench.DISPLAY_ROUNDS]
    assert len(rounds) == 2 and all(off > 0 and on > 0 for off, on in rounds)
    low, ratio, high = bench.quartiles([on / off for off, on in rounds])
    assert f"| K=2 | {1000 * statistics.median(off for off, _ in rounds):.1f} | " in report
    assert f"{ratio:.3f}x [{low:.3f}, {high:.3f}] |" in report and low <= ratio <= high
    assert (output / "speedup.png").read_bytes()[:4] == b"\x89PNG"
    refused = subprocess.run(
        [str(Path(sys.executable).with_name("lerobot-grids-bench")), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].endswith(
        "(nothing is overwritten)."
    )


def test_compile_mode_times_policies_compiled_as_lerobot_compiles_them(monkeypatch):
    """``--compile-mode``: the timed policy is built with ``compile_model`` and the mode (LeRobot's
    ``torch.compile`` of ``sample_actions`` and ``forward``), the FLOPs counted on an eager one; the run
    records the mode."""
    modes = []
    monkeypatch.setattr(torch, "compile", lambda function, *, mode=None, **_: modes.append(mode) or function)
    results = bench.benchmark(
        "pi0_tiny",
        ks=[2],
        batch_sizes=[1],
        train_batch_size=0,
        repeats=1,
        warmup=0,
        device="cpu",
        fake_flops=True,
        deployment=False,
        compile_mode="max-autotune",
    )
    assert modes == ["max-autotune", "max-autotune"]
    assert results["environment"]["compile"] == "max-autotune"
    assert all("speedup_inference_b1" in variant for variant in results["variants"].values())


def test_bfloat16_and_gradient_checkpointing_are_the_policy_types_own_options():
    pi0 = bench.build_policy("pi0_tiny", "cpu", dtype="bfloat16", gradient_checkpointing=True)
    backbone = pi0.grids_backbone
    assert backbone.paligemma.model.language_model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert backbone.paligemma.model.language_model.gradient_checkpointing and pi0.config.dtype == "bfloat16"
    smolvla = bench.build_policy("smolvla_tiny", "cpu", dtype="bfloat16")
    assert {p.dtype for p in smolvla.grids_backbone.vlm.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in smolvla.grids_backbone.lm_expert.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="no gradient checkpointing"):
        bench.build_policy("smolvla_tiny", "cpu", gradient_checkpointing=True)


def test_command_creates_its_folder_before_building_a_model_and_a_failed_run_leaves_none(
    tmp_path, monkeypatch
):
    output = tmp_path / "new" / "bench"

    def no_model(*args, **kwargs):
        assert output.is_dir()  # made before the long work: a folder that cannot be made fails at once
        raise RuntimeError("the models are built here")

    monkeypatch.setattr(lerobot_grids_bench, "benchmark", no_model)
    with pytest.raises(RuntimeError, match="the models are built here"):
        lerobot_grids_bench.run(["--models", "smolvla_tiny", "--output-dir", str(output)])
    assert not (tmp_path / "new").exists()  # nothing left behind to block the next run


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--repeats", "0", "argument --repeats: must be at least 1, got 0"),
        ("--batch-sizes", "0", "argument --batch-sizes: must be at least 1, got 0"),
        ("--warmup", "-1", "argument --warmup: must be at least 0, got -1"),
        ("--ks", "two", "argument --ks: a whole number is needed, got 'two'"),
    ],
)
def test_bad_numbers_are_refused_before_any_work(tmp_path, monkeypatch, capsys, option, value, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lerobot_grids_bench, "benchmark", lambda *args, **kwargs: pytest.fail("work started"))
    with pytest.raises(SystemExit) as exit_info:
        lerobot_grids_bench.run(["--models", "smolvla_tiny", option, value])
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip().endswith(message)
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder


@pytest.mark.parametrize(
    "run",
    [
        "cpu-2core",
        "cpu-2core-20rounds",
        "cpu-2core-bound",
        "cpu-2core-in-tower",
        "cpu-2core-in-tower-training",
        "h100",
        "act-flops",
        "act-cpu-2core",
        "smolvla-display-cpu-2core",
    ],
)
def test_stored_reports_are_rendered_from_their_results_and_the_readme_quotes_them(tmp_path, run):
    """``--render`` writes each stored run's report from its results.json alone; the stored report's tables
    are the ones its results give; the benchmark tables
    of docs/benchmarks.md are its rows, and its shares of the no-image-tokens bound where it stores them (the
    H100 table: speed-ups, and peak memory of a training step in GiB)."""
    stored = REPO_ROOT / "docs" / "benchmarks" / run
    (tmp_path / "results.json").write_bytes((stored / "results.json").read_bytes())
    lerobot_grids_bench.run(["--render", str(tmp_path / "results.json")])
    results = json.loads((stored / "results.json").read_text())["results"]
    # The stored report's tables are what the stored results give (numbers checked, not the report's bytes).
    stored_report = (stored / "report.md").read_text().splitlines()
    rendered = (tmp_path / "report.md").read_text().splitlines()
    for r in results:
        for table in (bench.markdown_table(r), bench.bound_table(r) or "", bench.display_table(r) or ""):
            assert all(row in stored_report and row in rendered for row in table.splitlines()[2:])
    analysis = (REPO_ROOT / "docs" / "benchmarks.md").read_text().splitlines()
    if "cpu-2core" in run or run == "act-flops":
        rows = [
            line
            for r in results
            for table in (bench.markdown_table(r), bench.bound_table(r) or "", bench.display_table(r) or "")
            for line in table.splitlines()[2:]
        ]
    else:
        names = {"smolvla": "SmolVLA", "pi0": "pi0"}
        speedups = ("speedup_inference_b1", "speedup_inference_b8", "speedup_training_step_b8")
        rows = [
            f"| {names[r['architecture']]} | {name} | "
            + " | ".join(f"{v[key]:.2f}x" for key in speedups)
            + f" | {v['peak_memory_mb_training_step_b8'] / 1024:.1f} |"
            for r in results
            for name, v in r["variants"].items()
        ]
    assert rows and all(row in analysis for row in rows)


def test_time_rounds_rotates_the_order_and_times_with_the_collector_off(monkeypatch):
    calls, collector = [], []

    def variant(name):
        def call():
            calls.append(name)
            collector.append(gc.isenabled())

        return call

    clock = iter(range(1000))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(clock)))
    times = bench.time_rounds({name: variant(name) for name in "abc"}, repeats=3, warmup=2, device="cpu")
    rounds = ["".join(calls[i : i + 3]) for i in range(0, len(calls), 3)]
    assert rounds == ["abc", "bca", "cab", "abc", "bca"]  # every variant starts a round in turn
    assert collector == [False] * 15 and gc.isenabled()
    assert {name: len(values) for name, values in times.items()} == {
        "a": 3,
        "b": 3,
        "c": 3,
    }  # warm-up dropped
    assert all(value == 1.0 for values in times.values() for value in values)  # one clock tick per call


def test_paired_speedup_is_the_median_and_range_of_per_round_ratios():
    dense = [2.0, 2.0, 4.0, 2.0, 2.0]
    variant = [1.0, 1.0, 2.0, 2.0, 1.0]  # round 3 is slow for both: paired, it does not move the ratio
    first, median, third = bench.paired_speedup(dense, variant)
    assert median == 2.0 and first == 2.0 and third == 2.0
    assert bench.paired_speedup([1.0, 1.0, 1.0, 1.0], [1.0, 0.5, 2.0, 1.0]) == (0.875, 1.0, 1.25)
    assert bench.quartiles([3.0]) == (3.0, 3.0, 3.0)


def test_share_of_time_saved_is_negative_for_a_variant_slower_than_dense(pi0_tiny_results):
    dense = {"seconds_rounds_inference_b1": [4.0, 4.0, 4.0, 4.0, 4.0]}
    bound = {"seconds_rounds_inference_b1": [2.0, 2.0, 2.0, 2.0, 2.0]}  # saves 2 s every round
    # saves 1, 2, 0, 2 s and loses 2 s: shares 0.5, 1, 0, 1, -1
    variant = {"seconds_rounds_inference_b1": [3.0, 2.0, 4.0, 2.0, 6.0]}
    assert bench.share_of_time_saved(variant, dense, bound, "inference_b1") == (0.0, 0.5, 1.0)
    # Slower than dense every round: a negative share, where the bound's time over the variant's would read
    # 50%.
    slower = {"seconds_rounds_inference_b1": [6.0] * 5}
    assert bench.share_of_time_saved(slower, dense, bound, "inference_b1") == (-1.0, -1.0, -1.0)
    # rounds stored as null (the first stored runs kept medians only)
    assert (
        bench.share_of_time_saved({"seconds_rounds_inference_b1": None}, dense, bound, "inference_b1") is None
    )
    # Every round's times are stored, and the reported median is theirs.
    for variant in pi0_tiny_results["variants"].values():
        for label in ("inference_b1", "inference_b2", "training_step_b2"):
            rounds = variant[f"seconds_rounds_{label}"]
            assert (
                len(rounds) == pi0_tiny_results["repeats"]
                and statistics.median(rounds) == variant[f"seconds_{label}"]
            )


def test_report_shows_the_speed_up_range_and_the_flops_without_the_vision_tower(pi0_tiny_results):
    table = bench.markdown_table(pi0_tiny_results)
    variants = pi0_tiny_results["variants"]
    k4 = variants["K=4"]
    dense_lm = variants["dense"]["flops_inference"]["total"] - variants["dense"]["flops_inference"]["vision"]
    k4_lm = k4["flops_inference"]["total"] - k4["flops_inference"]["vision"]
    low, high = k4["speedup_iqr_inference_b1"]
    row = next(line for line in table.splitlines() if line.startswith("| K=4 |"))
    assert (
        f"| {dense_lm / k4_lm:.2f}x |" in row
        and f"{k4['speedup_inference_b1']:.2f}x [{low:.2f}, {high:.2f}]" in row
    )
    assert dense_lm / k4_lm > variants["dense"]["flops_inference"]["total"] / k4["flops_inference"]["total"]
    assert pi0_tiny_results["environment"]["dtype"] == "float32" and pi0_tiny_results["repeats"] == 1


@pytest.mark.parametrize("architecture", ["smolvla_tiny", "pi0_tiny", "act_tiny"])
def test_deployment_calls_make_the_chunk_the_record_loop_and_the_async_server_act_on(
    architecture, monkeypatch
):
    """From one robot observation both paths make the same chunk (same noise): the record loop's action is the
    async server's first, both as they reach the motors (after the postprocessor)."""
    policy = bench.build_policy(architecture, "cpu")
    calls = bench.deployment_calls(policy, "cpu")
    torch.manual_seed(0)
    action = calls["record_loop_chunk"]()
    torch.manual_seed(0)
    chunk = calls["async_server_chunk"]()
    assert action.shape == (1, 6) and chunk.shape == (1, policy.config.chunk_size, 6)
    torch.testing.assert_close(action, chunk[:, 0])
    torch.manual_seed(0)
    assert torch.equal(
        calls["record_loop_chunk"](), action
    )  # the queue was emptied: a new chunk, not the next action
    # The step with the display off, then on, GridS at K=2: the on step acts as the loop does (the action of
    # a second step), its points logged once into a recording that leaves no trace active, both times kept.
    policy.use_sampler(bench.make_samplers(policy, [2])["K=2"])
    torch.manual_seed(0)
    calls["record_loop_chunk"]()
    second = calls["record_loop_chunk"]()
    torch.manual_seed(0)
    points_logged = []
    with monkeypatch.context() as patch:
        patch.setattr(live_view, "log_points", lambda *args: points_logged.append(args))
        assert torch.equal(calls["record_loop_display_pair"](), second)
    assert len(points_logged) == 1 and live_view.active_recording() is None
    assert len(calls["record_loop_display_pair"].pairs[policy.grids]) == 1


def test_benchmark_times_the_deployment_chunk_of_every_variant(pi0_tiny_results):
    for name, variant in pi0_tiny_results["variants"].items():
        for label in bench.DEPLOYMENT:
            assert variant[f"seconds_{label}"] > 0
            assert variant[f"speedup_{label}"] == 1.0 if name == "dense" else variant[f"speedup_{label}"] > 0


def _act_encoder_layer_flops(tokens: int, width: int, feedforward: int) -> int:
    """One ACT encoder layer's matrix-product FLOPs: the attention's input and output projections, scores and
    weighted sum, and the two feed-forward layers."""
    projections = 2 * tokens * width * (3 * width) + 2 * tokens * width * width
    attention = 2 * (2 * tokens * tokens * width)
    return projections + attention + 2 * (2 * tokens * width * feedforward)


def test_act_flops_match_a_hand_count_and_the_backbone_does_not_depend_on_the_sampler():
    """act_tiny, two 96x128 cameras: a 3x4 feature map each, so 2 + 24 encoder tokens dense, 2 + 2K with GridS
    and 2 with no image tokens; the encoder's FLOPs are the hand count at that length, the ResNet's the same
    in every variant, and a training step adds the VAE encoder and the backward pass."""
    results = bench.benchmark("act_tiny", [4, 1], [1], 0, 1, 0, "cpu", fake_flops=False, latency=False)
    variants = results["variants"]
    config = bench.ARCHITECTURES["act_tiny"]()
    tokens = {"dense": 26, "K=4": 10, "K=1": 4, "no image tokens": 2}
    assert {name: variant["prefix_tokens"] for name, variant in variants.items()} == tokens
    for name, variant in variants.items():
        inference = variant["flops_inference"]
        assert inference["transformer encoder"] == config.n_encoder_layers * _act_encoder_layer_flops(
            tokens[name], config.dim_model, config.dim_feedforward
        ), name
        assert inference["vision"] == variants["dense"]["flops_inference"]["vision"] > 0
        assert (
            variant["flops_training_step"]["vae encoder"] > 0
            and variant["flops_training_step"]["backward"] > 0
        )
    decoder = [variants[name]["flops_inference"]["transformer decoder"] for name in tokens]
    assert decoder == sorted(decoder, reverse=True) and decoder[0] > decoder[-1]  # cross-attention to fewer
    table = bench.markdown_table(results)
    assert "| variant | encoder tokens | inference GFLOPs (vision / encoder / decoder) |" in table


def test_act_refuses_options_lerobots_act_does_not_have(tmp_path, capsys):
    with pytest.raises(SystemExit):
        lerobot_grids_bench.run(
            ["--models", "act_tiny", "--dtype", "bfloat16", "--output-dir", str(tmp_path / "b")]
        )
    assert "LeRobot's ACT has no compile or dtype option" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "b").exists()
