"""FLOPs, latency and memory of GridS against the dense policy, in one run (behind ``lerobot-grids-bench``).

What the paper reports in Tab. 1 (FLOPs), Tab. 4 (training step time) and Fig. 6 (speed-up against batch
size), for LeRobot's policies at full size with random weights (nothing is downloaded):

- ``smolvla``: SmolVLA on the SmolVLM2-500M architecture, two 512x512 cameras (8x8 = 64 tokens each);
- ``pi0``: pi0 with ``gemma_2b`` + ``gemma_300m`` and So400m, two 224x224 cameras (16x16 = 256 each);
- ``smolvla_tiny`` / ``pi0_tiny``: the toy architectures, for tests.

All variants share one model and its weights; only the sampler changes: ``dense`` (every token), GridS
with K tokens per camera, and ``no image tokens`` (the images still go through the vision tower but no
token reaches the language model: the Amdahl bound of any pruning after the vision tower). FLOPs come
from ``torch.utils.flop_counter.FlopCounterMode`` at batch 1 (they scale linearly with the batch), split
by phase; pi0 is counted on fake tensors (shapes without data, so no memory), SmolVLA, whose vision
embeddings read tensor values, on real ones; the report gives the FLOP ratio against dense with the vision
tower counted and without it (the paper's measure). Times (:func:`time_rounds`): after warm-up rounds, every
variant once per round, the order rotated from round to round, garbage collection off around each timed
call; a variant's speed-up is the median over rounds of dense's time in that round over its own, with the
interquartile range of those ratios; the times of every round are stored, so a variant's share of the time the
"no image tokens" bound saves (:func:`share_of_time_saved`) has its range too. Each run records the torch and
CUDA versions, device, dtype and TF32 settings (:func:`environment`). What an SO-100 user waits for is timed
too (:func:`deployment_calls`): one action chunk from a robot observation to the actions for the motors, as
LeRobot's record loop and its async policy server make it.
"""

import copy
import gc
import logging
import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.utils import prepare_observation_for_inference
from lerobot.utils.constants import OBS_IMAGES
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lerobot_grids.backbones import SMOLVLM2_500M, TINY_PALIGEMMA_TOKENIZER, TINY_SMOLVLM
from lerobot_grids.compat import predict_action
from lerobot_grids.evidence import bench_act
from lerobot_grids.grids import GridSampler, GridSConfig
from lerobot_grids.policies.act_grids.modeling_act_grids import ACTGridsPolicy
from lerobot_grids.policies.act_grids.processor_act_grids import make_act_grids_pre_post_processors
from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PI0GridsConfig
from lerobot_grids.policies.pi0_grids.modeling_pi0_grids import PI0GridsPolicy
from lerobot_grids.policies.pi0_grids.processor_pi0_grids import make_pi0_grids_pre_post_processors
from lerobot_grids.policies.smolvla_grids.configuration_smolvla_grids import SmolVLAGridsConfig
from lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids import SmolVLAGridsPolicy
from lerobot_grids.policies.smolvla_grids.processor_smolvla_grids import (
    make_smolvla_grids_pre_post_processors,
)

logger = logging.getLogger(__name__)

CAMERAS = ("observation.images.front", "observation.images.wrist")
LANGUAGE_TOKENS = 48  # both policies' default tokenizer_max_length
DENSE, NO_IMAGE_TOKENS = "dense", "no image tokens"
DISPLAY_ROUNDS = "display_off_on_seconds_by_round"  # (display off, display on) of the same call, per round
ROBOT_CAMERA_HW = (480, 640)  # the RealSense mode of the shipped SO-100 configs
ROBOT_TYPE, TASK = "so100_follower", "Pick up the cube and put it in the box."
DEPLOYMENT = ("record_loop_chunk", "record_loop_display_pair", "async_server_chunk")
ARCHITECTURES: dict[str, Callable[[], PreTrainedConfig]] = {
    "smolvla": lambda: SmolVLAGridsConfig(vlm_model_name=str(SMOLVLM2_500M), load_vlm_weights=False),
    "pi0": lambda: PI0GridsConfig(),
    "smolvla_tiny": lambda: SmolVLAGridsConfig(
        vlm_model_name=str(TINY_SMOLVLM), load_vlm_weights=False, resize_imgs_with_padding=(128, 128)
    ),
    "pi0_tiny": lambda: PI0GridsConfig(
        paligemma_variant="gemma_tiny",
        action_expert_variant="gemma_tiny_expert",
        vision_variant="siglip_tiny",
        vocab_size=512,
        image_resolution=(112, 112),
    ),
    **bench_act.ACT_ARCHITECTURES,
}


class NoImageTokens(nn.Module):
    """A sampler that keeps no token: the images reach the vision tower and stop there. It has a sampler's
    interface (``config``: the backbone reads ``split_layer`` from it; none, the tower runs whole)."""

    def __init__(self):
        super().__init__()
        self.config = GridSConfig(sampler="dense")

    def forward(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        context: Tensor | None = None,
        region: tuple[int, int, int, int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        return tokens[:, :0], tokens.new_zeros(tokens.shape[0], 0, 2)


def build_policy(
    architecture: str,
    device: str,
    compile_mode: str | None = None,
    dtype: str = "float32",
    gradient_checkpointing: bool = False,
) -> SmolVLAGridsPolicy | PI0GridsPolicy:
    """The architecture with random weights, two cameras and SO-100's 6 joints, on ``device``; with
    ``compile_mode``, compiled as ``--policy.compile_model=true --policy.compile_mode=<mode>`` compiles it
    (LeRobot's ``torch.compile`` of ``sample_actions`` and ``forward``). ``dtype="bfloat16"``: pi0's
    ``--policy.dtype=bfloat16``; SmolVLA's VLM in bfloat16, as ``load_vlm_weights`` loads the pretrained one
    (the action expert stays float32). ``gradient_checkpointing``: pi0's
    ``--policy.gradient_checkpointing=true`` (SmolVLA has none)."""
    if architecture in bench_act.ACT_ARCHITECTURES:
        if compile_mode is not None or gradient_checkpointing or dtype != "float32":
            raise ValueError(
                "ACT is timed eager in float32 (LeRobot's ACT has no compile, dtype or gradient "
                "checkpointing option): drop --compile-mode, --dtype and --gradient-checkpointing for "
                "--models act."
            )
        return bench_act.build_act_policy(architecture, device, CAMERAS)
    config = ARCHITECTURES[architecture]()
    config.device = device
    if compile_mode is not None:
        config.compile_model, config.compile_mode = True, compile_mode
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"Unknown dtype {dtype!r}: choose float32 or bfloat16.")
    if isinstance(config, PI0GridsConfig):
        config.dtype, config.gradient_checkpointing = dtype, gradient_checkpointing
    elif gradient_checkpointing:
        raise ValueError(
            "SmolVLA has no gradient checkpointing option in LeRobot: drop --gradient-checkpointing."
        )
    image_size = image_resolution(config)
    config.input_features = {
        camera: PolicyFeature(FeatureType.VISUAL, (3, image_size, image_size)) for camera in CAMERAS
    }
    config.input_features["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
    config.output_features = {"action": PolicyFeature(FeatureType.ACTION, (6,))}
    policy_class = PI0GridsPolicy if isinstance(config, PI0GridsConfig) else SmolVLAGridsPolicy
    with torch.device(device):
        config.grids = GridSConfig(sampler=DENSE)
        policy = policy_class(config).to(device)
    if isinstance(policy, SmolVLAGridsPolicy) and dtype == "bfloat16":
        policy.grids_backbone.vlm.to(torch.bfloat16)
    return policy


def on_fake_tensors(module: nn.Module) -> nn.Module:
    """Replace a meta-device module's parameters and buffers by CPU fake tensors of the same shapes (call
    inside a ``FakeTensorMode``); the meta device alone cannot run everything (autocast, for one)."""
    for submodule in module.modules():
        for name, parameter in submodule.named_parameters(recurse=False):
            fake = torch.empty(parameter.shape, dtype=parameter.dtype, device="cpu")
            submodule._parameters[name] = nn.Parameter(fake, requires_grad=parameter.requires_grad)
        for name, buffer in submodule.named_buffers(recurse=False):
            submodule._buffers[name] = torch.zeros(buffer.shape, dtype=buffer.dtype, device="cpu")
    return module


def image_resolution(config) -> int:
    return (
        config.image_resolution[0]
        if isinstance(config, PI0GridsConfig)
        else config.resize_imgs_with_padding[0]
    )


def make_samplers(policy, ks: list[int], split_layers: list[int] = ()) -> dict[str, nn.Module]:
    """``dense``, ``K=k`` for each k, ``K=k in-tower L=l`` for each k and split layer l (SmolVLA: GridS inside
    the vision tower after its l-th layer), and ``no image tokens``, on the policy's device."""
    if isinstance(policy, ACTGridsPolicy):
        return bench_act.act_samplers(policy, ks, DENSE, NO_IMAGE_TOKENS)
    backbone = policy.grids_backbone
    device = next(policy.parameters()).device
    samplers = {DENSE: backbone.grids}
    for k in ks:
        samplers[f"K={k}"] = GridSampler(backbone.grids.dim, GridSConfig(num_tokens=k)).to(device)
    for split_layer in split_layers:
        for k in ks:
            sampler = backbone.make_sampler(GridSConfig(num_tokens=k, split_layer=split_layer))
            samplers[f"K={k} in-tower L={split_layer}"] = sampler.to(device)
    samplers[NO_IMAGE_TOKENS] = NoImageTokens()
    return samplers


def make_inputs(policy, batch_size: int, device: str) -> dict[str, Tensor | list[Tensor]]:
    """Random model inputs of one batch: images in [-1, 1], a full-length instruction, state and actions."""
    if isinstance(policy, ACTGridsPolicy):
        return bench_act.act_inputs(policy, batch_size, device)
    config = policy.config
    size = image_resolution(config)
    with torch.device(device):
        return {
            "images": [torch.rand(batch_size, 3, size, size) * 2 - 1 for _ in CAMERAS],
            "img_masks": [torch.ones(batch_size, dtype=torch.bool) for _ in CAMERAS],
            "lang_tokens": torch.randint(0, 200, (batch_size, LANGUAGE_TOKENS)),
            "lang_masks": torch.ones(batch_size, LANGUAGE_TOKENS, dtype=torch.bool),
            "state": torch.randn(batch_size, config.max_state_dim),
            "actions": torch.randn(batch_size, config.chunk_size, config.max_action_dim),
            "noise": torch.randn(batch_size, config.chunk_size, config.max_action_dim),
            "time": torch.rand(batch_size) * 0.9 + 0.05,
        }


def inference_call(policy, inputs: dict) -> Tensor:
    """One action chunk: vision, prefix, and every denoising step."""
    if isinstance(policy, ACTGridsPolicy):
        return bench_act.act_inference(policy, inputs)
    with torch.no_grad():
        return policy.model.sample_actions(
            inputs["images"],
            inputs["img_masks"],
            inputs["lang_tokens"],
            inputs["lang_masks"],
            inputs["state"],
            noise=inputs["noise"],
        )


def training_loss(policy, inputs: dict) -> Tensor:
    if isinstance(policy, ACTGridsPolicy):
        return bench_act.act_training_loss(policy, inputs)
    losses = policy.model.forward(
        inputs["images"],
        inputs["img_masks"],
        inputs["lang_tokens"],
        inputs["lang_masks"],
        inputs["state"],
        inputs["actions"],
        noise=inputs["noise"],
        time=inputs["time"],
    )
    return losses.mean()


def deployment_calls(policy, device: str) -> dict[str, Callable[[], object]]:
    """One action chunk as a policy on an SO-100 makes it, from the robot's observation (two 640x480 RGB
    frames and 6 joint positions, as LeRobot's robot returns them) to the actions for the motors, through
    LeRobot's processors of the policy type (unit normalisation statistics; the task tokenised with a
    shipped tokenizer, as the full-size ones are not shipped: tokenising one prompt takes well under a
    millisecond):

    - ``record_loop_chunk``: LeRobot's ``predict_action``, what ``lerobot-record`` / ``lerobot-rollout`` call
      every step, with the policy's action queue emptied first, so that the call makes a chunk, as every
      ``n_action_steps``-th step of the loop does;
    - ``record_loop_display_pair``: that step with LeRobot's display off, then on (``--display_data=true``: a
      rerun recording active, streamed to a file sink that discards it as a viewer's stream leaves the loop
      in the background, LeRobot's ``log_rerun_data`` of the step's observation and action as the loop calls
      it, and the GridS points of the chunk, :mod:`lerobot_grids.policies.live_view`), back to back, the two
      times of every call kept in the call's ``pairs`` by the sampler in use: what the display costs, paired
      within a round (:func:`display_table`);
    - ``async_server_chunk``: the observation through the preprocessor, ``predict_action_chunk`` (what
      LeRobot's policy server calls for each observation it gets) and the postprocessor over the chunk.
    """
    config = copy.copy(policy.config)
    if isinstance(policy, ACTGridsPolicy):
        make_processors = make_act_grids_pre_post_processors
    elif isinstance(config, PI0GridsConfig):
        config.tokenizer_name, make_processors = (
            str(TINY_PALIGEMMA_TOKENIZER),
            make_pi0_grids_pre_post_processors,
        )
    else:
        config.vlm_model_name, make_processors = str(TINY_SMOLVLM), make_smolvla_grids_pre_post_processors
    unit = {
        "mean": torch.zeros(6),
        "std": torch.ones(6),
        "min": -torch.ones(6),
        "max": torch.ones(6),
        "q01": -torch.ones(6),
        "q99": torch.ones(6),
    }
    config.device = device
    # Unit statistics for the images too, where the family normalises them (ACT).
    image_unit = {name: value[:3].view(3, 1, 1) for name, value in unit.items()}
    preprocessor, postprocessor = make_processors(
        config,
        dataset_stats={"observation.state": unit, "action": unit, **dict.fromkeys(CAMERAS, image_unit)},
    )
    generator = np.random.default_rng(0)
    observation = {
        camera: generator.integers(0, 256, (*ROBOT_CAMERA_HW, 3), dtype=np.uint8) for camera in CAMERAS
    }
    observation["observation.state"] = generator.normal(size=6).astype(np.float32)
    torch_device = torch.device(device)

    def record_loop_chunk():
        policy.reset()
        return predict_action(
            observation,
            policy,
            torch_device,
            preprocessor,
            postprocessor,
            use_amp=False,
            task=TASK,
            robot_type=ROBOT_TYPE,
        )

    import rerun as rr
    from lerobot.utils.visualization_utils import log_rerun_data

    display = rr.RecordingStream("lerobot_grids_bench")
    display.save(os.devnull)
    # What the robot returns, under its own names (LeRobot logs them as observation.<name>).
    robot_observation = {
        **{camera.removeprefix(f"{OBS_IMAGES}."): observation[camera] for camera in CAMERAS},
        **{f"joint_{i}.pos": float(value) for i, value in enumerate(observation["observation.state"])},
    }

    pairs: dict[nn.Module, list[list[float]]] = defaultdict(list)

    def record_loop_display_pair():
        start = time.perf_counter()
        record_loop_chunk()
        synchronize(device)
        middle = time.perf_counter()
        with display:
            action = record_loop_chunk()
            values = action.flatten().tolist()
            log_rerun_data(
                observation=robot_observation,
                action={f"joint_{i}.pos": value for i, value in enumerate(values)},
            )
        synchronize(device)
        pairs[policy.grids].append([middle - start, time.perf_counter() - middle])
        return action

    record_loop_display_pair.pairs = pairs

    def async_server_chunk():
        with torch.inference_mode():
            batch = preprocessor(
                prepare_observation_for_inference(dict(observation), torch_device, TASK, ROBOT_TYPE)
            )
            return postprocessor(policy.predict_action_chunk(batch))

    return {
        "record_loop_chunk": record_loop_chunk,
        "record_loop_display_pair": record_loop_display_pair,
        "async_server_chunk": async_server_chunk,
    }


def vision_modules(policy) -> list[nn.Module]:
    """The modules whose FLOPs are the ``vision`` phase. SmolVLA's tower piece by piece: sampling inside it
    calls its embeddings, layers and post-layernorm one by one."""
    backbone = policy.grids_backbone
    if isinstance(policy, PI0GridsPolicy):
        return [backbone.paligemma.model.vision_tower, backbone.paligemma.model.multi_modal_projector]
    vision = backbone.get_vlm_model().vision_model
    return [
        vision.embeddings,
        *vision.encoder.layers,
        vision.post_layernorm,
        backbone.get_vlm_model().connector,
    ]


def count_flops(policy, inputs: dict, training: bool) -> dict[str, int]:
    """FLOPs of one inference call or training step (forward and backward), split by phase.

    Phases: ``vision`` (tower and projection), ``grids`` (the sampler; inside SmolVLA's tower its point
    predictor and window reads, a few MFLOPs, count as ``other``), the transformer passes by which
    streams they carry (``language model prefix``, ``action expert``, or ``joint`` in training), the
    ``backward`` pass, and ``other`` (embeddings, projections, loss).

    Attention through ``scaled_dot_product_attention`` runs its math backend here, whose matrix products
    the counter sees on every device (it has no formula for the CPU flash kernel, so SigLIP's attention
    would go uncounted on CPU).
    """
    phases: dict[str, int] = defaultdict(int)
    counter = FlopCounterMode(display=False)
    starts: list[int] = []

    def start(*_):
        starts.append(counter.get_total_flops())

    def stop(phase: str):
        def hook(*_):
            phases[phase] += counter.get_total_flops() - starts.pop()

        return hook

    handles = []
    if isinstance(policy, ACTGridsPolicy):
        phase_modules = bench_act.act_phase_modules(policy)
    else:
        phase_modules = {"vision": vision_modules(policy), "grids": [policy.grids_backbone.grids]}
    for phase, modules in phase_modules.items():
        for module in modules:
            handles += [module.register_forward_pre_hook(start), module.register_forward_hook(stop(phase))]
    if isinstance(policy, ACTGridsPolicy):  # its transformer passes are hooked modules
        return _counted(policy, inputs, training, counter, phases, handles)
    backbone_forward = policy.grids_backbone.forward

    def tracked_forward(
        *args, inputs_embeds, **kwargs
    ):  # pi0 and SmolVLA call it directly, not through hooks
        prefix, suffix = inputs_embeds
        phase = (
            "joint"
            if prefix is not None and suffix is not None
            else "language model prefix"
            if suffix is None
            else "action expert"
        )
        before = counter.get_total_flops()
        output = backbone_forward(*args, inputs_embeds=inputs_embeds, **kwargs)
        phases[phase] += counter.get_total_flops() - before
        return output

    policy.grids_backbone.forward = tracked_forward
    try:
        return _counted(policy, inputs, training, counter, phases, handles)
    finally:
        del policy.grids_backbone.forward


def _counted(
    policy, inputs: dict, training: bool, counter: FlopCounterMode, phases: dict, handles: list
) -> dict:
    """Runs the call under ``counter`` (phases recorded by the hooks of ``handles``, removed after) and
    returns the FLOPs by phase."""
    try:
        with counter, sdpa_kernel(SDPBackend.MATH):
            if training:
                loss = training_loss(policy, inputs)
                before = counter.get_total_flops()
                loss.backward()
                phases["backward"] += counter.get_total_flops() - before
            else:
                inference_call(policy, inputs)
    finally:
        for handle in handles:
            handle.remove()
    total = counter.get_total_flops()
    return {"total": total, **phases, "other": total - sum(phases.values())}


def prefix_tokens(policy, inputs: dict) -> int:
    """Tokens entering the language model per sample: image tokens of every camera, then the language (ACT:
    entering its transformer encoder)."""
    if isinstance(policy, ACTGridsPolicy):
        return bench_act.act_encoder_tokens(policy, inputs)
    with torch.no_grad():
        images = [image[:1] for image in inputs["images"]]
        embeddings, _, _ = policy.model.embed_prefix(
            images,
            [mask[:1] for mask in inputs["img_masks"]],
            inputs["lang_tokens"][:1],
            inputs["lang_masks"][:1],
            **({"state": inputs["state"][:1]} if isinstance(policy, SmolVLAGridsPolicy) else {}),
        )
    return embeddings.shape[1]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(call: Callable[[], object], device: str) -> float:
    """Seconds of one call, with the device synchronised around it and the garbage collector off."""
    synchronize(device)
    collecting = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        call()
        synchronize(device)
        return time.perf_counter() - start
    finally:
        if collecting:
            gc.enable()


def time_rounds(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int, device: str
) -> dict[str, list[float]]:
    """``repeats`` timed rounds after ``warmup`` untimed ones; each round calls every variant once, starting
    one variant later than the round before (so no variant always runs first, or always after the same one),
    with a collection before the round rather than inside a timed call. ``{variant: [seconds per round]}``."""
    names, times = list(calls), defaultdict(list)
    for round_index in range(warmup + repeats):
        gc.collect()
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds = timed(calls[name], device)
            if round_index >= warmup:
                times[name].append(seconds)
    return dict(times)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile (the median three times for fewer than two values)."""
    if len(values) < 2:
        return (statistics.median(values),) * 3
    first, median, third = statistics.quantiles(values, n=4, method="inclusive")
    return first, median, third


def paired_speedup(dense: list[float], variant: list[float]) -> tuple[float, float, float]:
    """Quartiles over rounds of dense's time over the variant's, in the same round."""
    return quartiles([d / v for d, v in zip(dense, variant, strict=True)])


def environment(device: str, dtype: torch.dtype, compile_mode: str | None = None) -> dict:
    """What the times depend on besides the model: versions, device, dtype, TF32, threads, compile mode."""
    cuda = device.startswith("cuda")
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()})",
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32 if cuda else None,
        "compile": compile_mode,
    }


def benchmark(
    architecture: str,
    ks: list[int],
    batch_sizes: list[int],
    train_batch_size: int | None,
    repeats: int,
    warmup: int,
    device: str,
    fake_flops: bool,
    latency: bool = True,
    deployment: bool = True,
    compile_mode: str | None = None,
    split_layers: list[int] = (),
    dtype: str = "float32",
    gradient_checkpointing: bool = False,
) -> dict:
    """FLOPs (batch 1), prefix tokens and, with ``latency``, times and peak memory of every variant (with
    ``deployment``, also of one action chunk as LeRobot's record loop and async server make it). With
    ``compile_mode`` every variant is timed compiled (dense included: compiled against compiled; the warm-up
    rounds compile each variant), FLOPs are counted eagerly. ``split_layers`` (SmolVLA): also GridS inside the
    vision tower after each of these layers, at every K. ``dtype``, ``gradient_checkpointing``: see
    :func:`build_policy`."""
    results: dict = {
        "architecture": architecture,
        "device": device,
        "repeats": repeats,
        "warmup": warmup,
        "environment": None,  # what the times were taken on: recorded when anything is timed
        "variants": {},
    }
    # Fake tensors carry shapes and devices but no data: a model of any size is counted in no memory.
    options = {"dtype": dtype, "gradient_checkpointing": gradient_checkpointing}
    policy = build_policy(architecture, "meta" if fake_flops else device, **options)
    samplers = make_samplers(policy, ks, split_layers)
    results["variants"] = count_variants(policy, samplers, fake_flops, device)
    if not latency:
        return results
    if fake_flops or compile_mode is not None:  # timed on real tensors, compiled where asked
        policy = build_policy(architecture, device, compile_mode, **options)
        samplers = make_samplers(policy, ks, split_layers)
    results["environment"] = environment(device, getattr(torch, dtype), compile_mode)
    results["environment"]["gradient_checkpointing"] = gradient_checkpointing
    measurements = _measurements(batch_sizes, train_batch_size, deployment)
    deployment_chunks = deployment_calls(policy, device) if deployment else {}
    # Every parameter: a frozen one has no gradient and is skipped; the tower's layers after an in-tower split
    # train.
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    for index, (label, batch_size, kind) in enumerate(measurements, start=1):
        logger.info(
            "%s %s (%d/%d): %d rounds of %d variants",
            architecture,
            label,
            index,
            len(measurements),
            warmup + repeats,
            len(samplers),
        )
        if kind in DEPLOYMENT:
            call = deployment_chunks[kind]
        else:  # the inputs of this measurement only (peak memory is measured per measurement)
            inputs = make_inputs(policy, batch_size, device)
            call = (
                partial(_training_step, policy, inputs, optimizer)
                if kind == "training"
                else partial(_inference, policy, inputs)
            )
        started = time.monotonic()
        for name, measured in time_variants(policy, samplers, call, label, repeats, warmup, device).items():
            results["variants"][name].update(measured)
            if kind == "record_loop_display_pair":  # the timed rounds' (off, on) seconds, after the warm-up
                results["variants"][name][DISPLAY_ROUNDS] = call.pairs[samplers[name]][warmup:]
        _log_speedups(architecture, label, time.monotonic() - started, results["variants"])
    return results


def _measurements(
    batch_sizes: list[int], train_batch_size: int | None, deployment: bool
) -> list[tuple[str, int, str]]:
    """What is timed, in order, as (label, batch size, kind): inference at each batch size, a training step,
    and one action chunk as LeRobot's record loop and async server make it."""
    measurements = [(f"inference_b{b}", b, "inference") for b in batch_sizes]
    if train_batch_size:
        measurements.append((f"training_step_b{train_batch_size}", train_batch_size, "training"))
    if deployment:
        measurements += [(label, 1, label) for label in DEPLOYMENT]
    return measurements


def _log_speedups(architecture: str, label: str, seconds: float, variants: dict) -> None:
    speedups = [
        f"{name} {_speedup_cell(v, f'speedup_{label}')}" for name, v in variants.items() if name != DENSE
    ]
    logger.info("%s %s done in %.0f s: %s", architecture, label, seconds, ", ".join(speedups))


def count_variants(policy: nn.Module, samplers: dict[str, nn.Module], fake_flops: bool, device: str) -> dict:
    """Each variant's prefix tokens and FLOPs of an inference call and a training step at batch 1 (on fake
    tensors where ``fake_flops``: no data, no memory, any model size)."""
    counted = {}
    with FakeTensorMode(allow_non_fake_inputs=True) if fake_flops else nullcontext():
        if fake_flops:
            on_fake_tensors(policy)
            samplers = {name: on_fake_tensors(sampler) for name, sampler in samplers.items()}
        one = make_inputs(policy, 1, "cpu" if fake_flops else device)
        for name, sampler in samplers.items():
            policy.use_sampler(sampler)
            counted[name] = {
                "prefix_tokens": prefix_tokens(policy, one),
                "flops_inference": count_flops(policy, one, training=False),
                "flops_training_step": count_flops(policy, one, training=True),
            }
            policy.zero_grad(set_to_none=True)
    return counted


def _inference(policy: nn.Module, inputs: dict) -> None:
    inference_call(policy, inputs)


def _training_step(policy: nn.Module, inputs: dict, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)
    training_loss(policy, inputs).backward()
    optimizer.step()


def _call_with_sampler(
    policy: nn.Module, sampler: nn.Module, call: Callable[[], None], device: str, peaks: dict, name: str
) -> None:
    policy.use_sampler(sampler)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    call()
    if device.startswith("cuda"):
        peaks[name] = torch.cuda.max_memory_allocated() / 2**20


def time_variants(
    policy: nn.Module,
    samplers: dict[str, nn.Module],
    call: Callable[[], None],
    label: str,
    repeats: int,
    warmup: int,
    device: str,
) -> dict[str, dict]:
    """``call`` timed with every variant's sampler in rotated rounds: per variant the median seconds with
    their interquartile range and every round's, the speed-up against dense paired by round with its range,
    and on CUDA the peak memory."""
    peaks: dict[str, float] = {}
    rounds = {
        name: partial(_call_with_sampler, policy, sampler, call, device, peaks, name)
        for name, sampler in samplers.items()
    }
    times = time_rounds(rounds, repeats, warmup, device)
    measured = {}
    for name, values in times.items():
        first, median, third = quartiles(values)
        low, speedup, high = paired_speedup(times[DENSE], values)
        measured[name] = {
            f"seconds_{label}": median,
            f"seconds_iqr_{label}": [first, third],
            f"seconds_rounds_{label}": values,
            f"speedup_{label}": speedup,
            f"speedup_iqr_{label}": [low, high],
            **({f"peak_memory_mb_{label}": peaks[name]} if device.startswith("cuda") else {}),
        }
    return measured


def share_of_time_saved(
    variant: dict, dense: dict, bound: dict, label: str
) -> tuple[float, float, float] | None:
    """Quartiles over rounds of the share of the time that "no image tokens" saves which a variant saves too:
    per round, ``(t_dense - t_variant) / (t_dense - t_bound)`` (1.0: all of it; 0: none; negative: the variant
    was slower than dense in that round). ``None`` where the times of every round are not stored (``null``:
    the first stored runs kept medians only)."""
    key = f"seconds_rounds_{label}"
    if any(times[key] is None for times in (variant, dense, bound)):
        return None
    return quartiles(
        [(d - v) / (d - b) for d, v, b in zip(dense[key], variant[key], bound[key], strict=True)]
    )


def _speedup_cell(variant: dict, key: str) -> str:
    """``1.23x [1.20, 1.25]``: the median speed-up and its interquartile range over rounds (the median alone
    where the range is ``null``: the first stored runs)."""
    quartile_range = variant[key.replace("speedup_", "speedup_iqr_", 1)]
    return f"{variant[key]:.2f}x" + (
        f" [{quartile_range[0]:.2f}, {quartile_range[1]:.2f}]" if quartile_range is not None else ""
    )


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown_table(results: dict) -> str:
    variants = results["variants"]
    timing = sorted(
        {
            key
            for v in variants.values()
            for key in v
            if key.startswith("speedup_") and not key.startswith("speedup_iqr_")
        }
    )
    memory = sorted({key for v in variants.values() for key in v if key.startswith("peak_memory_mb_")})
    dense = variants[DENSE]
    if results["architecture"] in bench_act.ACT_ARCHITECTURES:
        phases, split_header, tokens = bench_act.PHASES, "vision / encoder / decoder", "encoder tokens"
    else:
        phases, split_header = (
            ("vision", "language model prefix", "action expert"),
            "vision / LM prefix / expert",
        )
        tokens = "prefix tokens"
    header = [
        "variant",
        tokens,
        f"inference GFLOPs ({split_header})",
        "vs dense",
        "vs dense without the vision tower",
        "training-step GFLOPs",
        "vs dense",
        *[f"speed-up {k.removeprefix('speedup_')}" for k in timing],
        *[f"peak MB {k.removeprefix('peak_memory_mb_')}" for k in memory],
    ]

    def without_vision(flops: dict) -> int:
        return flops["total"] - flops.get("vision", 0)

    rows = []
    for name, v in variants.items():
        inference, training = v["flops_inference"], v["flops_training_step"]
        split = " / ".join(f"{inference.get(phase, 0) / 1e9:.4g}" for phase in phases)
        rows.append(
            [
                name,
                str(v["prefix_tokens"]),
                f"{inference['total'] / 1e9:.4g} ({split})",
                f"{dense['flops_inference']['total'] / inference['total']:.2f}x",
                f"{without_vision(dense['flops_inference']) / without_vision(inference):.2f}x",
                f"{training['total'] / 1e9:.4g}",
                f"{dense['flops_training_step']['total'] / training['total']:.2f}x",
                *[_speedup_cell(v, k) for k in timing],
                *[f"{v[k]:.0f}" for k in memory],
            ]
        )
    return _markdown(header, rows)


def bound_table(results: dict) -> str | None:
    """Each GridS variant's share of the time "no image tokens" saves (:func:`share_of_time_saved`) per timed
    measurement, as a percentage: median over rounds [interquartile range]; ``None`` for runs stored without
    the times of every round."""
    variants = results["variants"]
    dense, bound = variants[DENSE], variants[NO_IMAGE_TOKENS]
    labels = [
        key.removeprefix("seconds_rounds_")
        for key, rounds in bound.items()
        if key.startswith("seconds_rounds_") and rounds is not None
    ]
    if not labels:
        return None
    rows = [
        [
            name,
            *[
                f"{100 * median:.0f}% [{100 * first:.0f}, {100 * third:.0f}]"
                for first, median, third in (
                    share_of_time_saved(variant, dense, bound, label) for label in labels
                )
            ],
        ]
        for name, variant in variants.items()
        if name not in (DENSE, NO_IMAGE_TOKENS)
    ]
    return _markdown(["share of the time no image tokens saves", *labels], rows)


def display_table(results: dict) -> str | None:
    """What LeRobot's display (``--display_data=true``) costs the record loop's step that makes a chunk, per
    variant: the median milliseconds of the step with the display off and on, timed back to back in every
    round, and the ratio on / off paired by round (median [interquartile range]: 1.10x is a step 10% longer
    with the display); ``None`` where the display was not timed."""
    rows = []
    for name, variant in results["variants"].items():
        if DISPLAY_ROUNDS not in variant:
            continue
        rounds = variant[DISPLAY_ROUNDS]
        low, ratio, high = quartiles([on / off for off, on in rounds])
        rows.append(
            [
                name,
                f"{1000 * statistics.median(off for off, _ in rounds):.1f}",
                f"{1000 * statistics.median(on for _, on in rounds):.1f}",
                f"{ratio:.3f}x [{low:.3f}, {high:.3f}]",
            ]
        )
    if not rows:
        return None
    header = [
        "variant",
        "record loop chunk, display off (ms)",
        "display on (ms)",
        "on / off, paired by round",
    ]
    return _markdown(header, rows)


def plot_speedups(all_results: list[dict], path: Path) -> None:
    """Speed-up of each variant against dense, per inference batch size (paper Fig. 6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(all_results), figsize=(5 * len(all_results), 4), squeeze=False)
    for axis, results in zip(axes[0], all_results, strict=True):
        for name, v in results["variants"].items():
            sizes = sorted(
                int(k.removeprefix("speedup_inference_b")) for k in v if k.startswith("speedup_inference_b")
            )
            medians = [v[f"speedup_inference_b{b}"] for b in sizes]
            ranges = [
                v[f"speedup_iqr_inference_b{b}"] or [median, median]
                for b, median in zip(sizes, medians, strict=True)
            ]
            errors = [
                [median - low for median, (low, _) in zip(medians, ranges, strict=True)],
                [high - median for median, (_, high) in zip(medians, ranges, strict=True)],
            ]
            axis.errorbar(sizes, medians, yerr=errors, marker="o", capsize=3, label=name)
        axis.set(
            title=f"{results['architecture']} on {results['device']}",
            xlabel="batch size",
            ylabel="inference speed-up vs dense (median, IQR)",
        )
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
