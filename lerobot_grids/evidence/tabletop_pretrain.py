"""The base policy the demo fine-tunes, pretrained on tabletop scenes (behind
``lerobot-grids-tabletop-pretrain``).

The paper fine-tunes VLAs that were pretrained first: a VLM on web-scale image-text data, then the
whole policy on robot data (SmolVLA's base on community SO-100 datasets), so a named object is already
found, and reached, when fine-tuning starts. The demo's tiny SmolVLM (``assets/tiny_smolvlm``) has no
such weights and the demo may not download any; trained from scratch on 200 expert episodes it
memorises the scenes instead of learning where the named block is. :func:`pretrain` stands in for both
pretraining stages, on fresh scenes of the ``default`` variant (seeds from ``PRETRAIN_SEED``, never a
training or evaluation scene of the demo), through SmolVLA's own prefix (both cameras, the instruction)
and LeRobot's own SmolVLA processors:

1. **Grounding** (the VLM). Three tasks read by linear heads from the hidden states entering the VLM's
   last text layer, the instruction worded as the demo's (``Pick up the red block.``) or as the reach
   task's (``Touch the red block.``):

   - colour: which block colours each image token covers (per token, both cameras);
   - referring: whether each image token covers the block the instruction names;
   - position: the named block's table position, from every image token and from the prefix's last token.

   Why there, and on every token: SmolVLA's action expert attends, layer by layer, to keys and values made
   from each VLM layer's *input*, so what the VLM works out in its last layer never reaches the expert,
   and the input of the last layer is the deepest it reads. A position carried by every image token is
   read by any attention pattern; one carried by a single token must first be found. The state is not
   given (zero), so the position comes from the images.
2. **Reach** (the action expert, VLM frozen as in SmolVLA's default fine-tuning). SmolVLA's own flow
   matching loss on another task than the demo's: ``Touch the <colour> block.``, the scripted expert's
   path to the named block with the gripper kept open. The demo's task (``Pick up``: close the gripper
   on the block, hold it) is never trained here; this policy never closes its gripper.

The heads are dropped afterwards (like a detection head of a pretrained backbone). The result is a
dense ``smolvla`` checkpoint in float32 with its processors, for ``--policy.init_from``
(``lerobot_grids/assets/grids_tabletop_smolvla`` is the one ``make demo`` uses; ``make pretrain``
writes it anew into a new folder). Its normalisation statistics are those of the demo's task (the
``Pick up`` expert on pretraining scenes), so the expert sees the actions on the scale it will be
fine-tuned on.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from huggingface_hub.constants import SAFETENSORS_SINGLE_FILE
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.compute_stats import get_feature_stats
from lerobot.envs.utils import preprocess_observation
from lerobot.policies.factory import make_pre_post_processors
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy, make_att_2d_masks
from lerobot.processor import PolicyProcessorPipeline
from lerobot.utils.constants import (
    ACTION,
    OBS_IMAGES,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    OBS_STATE,
)
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from lerobot_grids import compat
from lerobot_grids.backbones import BACKBONES_DIR, TINY_SMOLVLM
from lerobot_grids.envs.tabletop import COLOURS, INSTRUCTION, GridSTabletop
from lerobot_grids.output_folder import new_output_dir

# What ``make pretrain`` wrote, shipped with the package: every policy of ``make demo`` starts from it.
# The shipped base policy, pretrained under transformers 4 (LeRobot 0.4.4), and the same weights for
# transformers 5 (LeRobot 0.5+), whose SmolVLM reads other vision position embeddings (lerobot_grids.compat);
# the demo uses the one that fits the installed transformers.
TRANSFORMERS4_TABLETOP_SMOLVLA = BACKBONES_DIR / "grids_tabletop_smolvla"
TRANSFORMERS5_TABLETOP_SMOLVLA = BACKBONES_DIR / "grids_tabletop_smolvla_transformers5"
PRETRAINED_TABLETOP_SMOLVLA = (
    TRANSFORMERS5_TABLETOP_SMOLVLA if compat.SMOLVLM_EXACT_PATCH_POSITIONS else TRANSFORMERS4_TABLETOP_SMOLVLA
)
PRETRAIN_SEED = 10_000_000  # scenes from here on: the demo records seeds 0.. and evaluates from 1000
TOUCH_INSTRUCTION = "Touch the {} block."  # the reach stage's task
CAMERAS = ("front", "wrist")
BLOCK_COLOUR_DISTANCE = 40  # a pixel this close (RGB) to a block colour belongs to that block
HEADS_FILE = "grounding_heads.safetensors"
METRICS_FILE = "pretraining.json"
VLM_PREFIX = "model.vlm_with_expert.vlm."  # state-dict prefix of the VLM's parameters


def tabletop_smolvla_config(image_size: int = 128, **options) -> SmolVLAConfig:
    """A dense ``smolvla`` with the architecture of the demo's recipe (the shipped config
    ``smolvla_grids_tabletop``) for the tabletop features."""
    camera = PolicyFeature(type=FeatureType.VISUAL, shape=(3, image_size, image_size))
    vector = PolicyFeature(type=FeatureType.STATE, shape=(3,))
    defaults = {
        "vlm_model_name": str(TINY_SMOLVLM),
        "load_vlm_weights": False,
        "resize_imgs_with_padding": (256, 256),
        "tokenizer_max_length": 16,
        "chunk_size": 10,
        "n_action_steps": 5,
        "device": "cpu",
        "push_to_hub": False,
    }
    return SmolVLAConfig(
        input_features={f"{OBS_IMAGES}.{camera_name}": camera for camera_name in CAMERAS}
        | {OBS_STATE: vector},
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(3,))},
        **(defaults | options),
    )


def record_scenes(
    first_seed: int,
    scenes: int,
    frames_per_scene: int | None,
    rng: np.random.Generator,
    instructions: tuple[str, ...] = (INSTRUCTION, TOUCH_INSTRUCTION),
    touch: bool = False,
    chunk_size: int = 10,
) -> dict:
    """Frames of ``scenes`` fresh ``default`` scenes, ``frames_per_scene`` of each (``None``: all) taken at
    random along the scripted expert's path, so the wrist camera sees the table near the start and the blocks
    near the end.

    Each scene's instruction is one of ``instructions`` at random, naming the target block's colour. The
    expert picks the named block up (the demo's task), or with ``touch`` goes to it and keeps the gripper open
    (the reach task). ``action`` holds, per frame, the expert's next ``chunk_size`` actions, the last one
    repeated past the episode's end, as LeRobot's dataset gives an action chunk.
    """
    env = GridSTabletop()
    frames = {
        key: [] for key in ("front", "wrist", "named_colour", "target_xy", "instruction", "state", "action")
    }
    for scene in range(scenes):
        observation, _ = env.reset(seed=first_seed + scene)
        colour = list(COLOURS.values()).index(env.blocks[env.target].rgb)
        instruction = instructions[rng.integers(len(instructions))].format(list(COLOURS)[colour])
        observations, actions = [], []
        for _ in range(env.episode_length):
            action = env.expert_action()
            if touch:
                action[2] = 1.0
            observations.append(observation)
            actions.append(action)
            observation, *_ = env.step(action)
        keep = (
            range(env.episode_length)
            if frames_per_scene is None
            else sorted(rng.choice(env.episode_length, frames_per_scene, replace=False).tolist())
        )
        for step in keep:
            for camera in CAMERAS:
                frames[camera].append(observations[step]["pixels"][camera])
            frames["state"].append(observations[step]["agent_pos"])
            frames["action"].append(
                np.stack([actions[min(step + i, len(actions) - 1)] for i in range(chunk_size)])
            )
            frames["named_colour"].append(colour)
            frames["target_xy"].append(env.blocks[env.target].xy)
            frames["instruction"].append(instruction)
    return {
        "images": {camera: np.stack(frames[camera]) for camera in CAMERAS},
        "named_colour": np.array(frames["named_colour"]),
        "target_xy": np.stack(frames["target_xy"]).astype(np.float32),
        "instruction": frames["instruction"],
        "state": np.stack(frames["state"]).astype(np.float32),
        "action": np.stack(frames["action"]).astype(np.float32),
    }


def task_stats(scenes: dict) -> dict[str, dict[str, np.ndarray]]:
    """Normalisation statistics of the state and action of :func:`record_scenes` frames, by LeRobot's own
    feature statistics (as a LeRobotDataset of the same episodes would have them)."""
    return {
        OBS_STATE: get_feature_stats(scenes["state"], axis=0, keepdims=False),
        ACTION: get_feature_stats(scenes["action"][:, 0], axis=0, keepdims=False),
    }


def policy_batch(scenes: dict, index: np.ndarray, preprocessor: PolicyProcessorPipeline) -> dict:
    """Frames ``index`` of :func:`record_scenes` as lerobot-train feeds them to the policy: a dataset batch
    (images in [0, 1], the task) through the policy's preprocessor (tokenised, normalised)."""
    batch = preprocess_observation(
        {  # lerobot-eval's conversion of env observations
            "pixels": {camera: scenes["images"][camera][index] for camera in CAMERAS},
            "agent_pos": scenes["state"][index],
        }
    )
    batch[ACTION] = torch.from_numpy(scenes["action"][index])
    batch["task"] = [scenes["instruction"][i] for i in index]
    return preprocessor(batch)


def colour_cover(images: np.ndarray, grid_hw: tuple[int, int]) -> Tensor:
    """``[B, H*W, C]``: the fraction of each image token's pixels (``grid_hw`` tokens over ``images [B, h, w,
    3]``) that show each block colour of ``COLOURS``."""
    pixels = torch.from_numpy(images).float()
    palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
    distance = torch.cdist(pixels.flatten(0, 2), palette).view(*pixels.shape[:3], len(palette))
    is_colour = (distance < BLOCK_COLOUR_DISTANCE).float().permute(0, 3, 1, 2)
    return F.adaptive_avg_pool2d(is_colour, grid_hw).flatten(2).transpose(1, 2)


class GroundingHeads(nn.Module):
    """Linear read-outs of the hidden states entering the VLM's last layer, one per grounding task (module
    docstring)."""

    def __init__(self, dim: int, num_colours: int = len(COLOURS)):
        super().__init__()
        self.colour = nn.Linear(dim, num_colours)
        self.referring = nn.Linear(dim, 1)
        self.position = nn.Linear(dim, 2)


class TabletopGrounding(nn.Module):
    """A dense SmolVLA policy's VLM and the grounding heads; ``forward`` gives the losses and the
    position error of one batch of :func:`record_scenes` frames."""

    def __init__(self, policy: SmolVLAPolicy, preprocessor: PolicyProcessorPipeline):
        super().__init__()
        self.policy, self.preprocessor = policy, preprocessor
        backbone = policy.model.vlm_with_expert
        self.heads = GroundingHeads(backbone.config.text_config.hidden_size)
        self.read_layer = len(backbone.get_vlm_model().text_model.layers) - 1
        image_size = policy.config.resize_imgs_with_padding
        stride = backbone.config.vision_config.patch_size * backbone.config.scale_factor
        self.grid_hw = (image_size[1] // stride, image_size[0] // stride)

    def trained_parameters(self) -> list[nn.Parameter]:
        """The VLM's vision encoder, connector, token embeddings and text layers below ``read_layer``, and the
        heads."""
        vlm = self.policy.model.vlm_with_expert.get_vlm_model()
        above = tuple(f"text_model.layers.{i}." for i in range(self.read_layer, len(vlm.text_model.layers)))
        return [
            p for name, p in vlm.named_parameters() if not name.startswith((*above, "text_model.norm."))
        ] + list(self.heads.parameters())

    def forward(self, scenes: dict, index: np.ndarray) -> tuple[Tensor, dict[str, float]]:
        """``referring_hits`` is the fraction of frames whose front-camera token most likely to be the named
        block does cover it; ``position_error`` the mean distance of the read-out position (table units)."""
        policy, model = self.policy, self.policy.model
        batch = policy_batch(scenes, index, self.preprocessor)
        images, image_masks = policy.prepare_images(batch)
        state = torch.zeros(
            len(index), policy.config.max_state_dim
        )  # no state: positions come from the images
        embeddings, pad_masks, att_masks = model.embed_prefix(
            images, image_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], state=state
        )
        captured = []  # the hidden states entering the last layer (module docstring)
        read_layer = model.vlm_with_expert.get_vlm_model().text_model.layers[self.read_layer]
        hook = read_layer.input_layernorm.register_forward_pre_hook(
            lambda module, args: captured.append(args[0])
        )
        try:
            model.vlm_with_expert.forward(
                attention_mask=make_att_2d_masks(pad_masks, att_masks),
                position_ids=torch.cumsum(pad_masks, 1) - 1,
                past_key_values=None,
                inputs_embeds=[embeddings, None],
                **compat.SMOLVLA_PREFIX_PASS,
            )
        finally:
            hook.remove()
        (hidden,) = captured

        tokens_per_camera = self.grid_hw[0] * self.grid_hw[1]
        image_hidden = hidden[
            :, : len(CAMERAS) * tokens_per_camera
        ]  # the prefix starts with each camera's tokens
        cover = torch.cat(
            [colour_cover(scenes["images"][camera][index], self.grid_hw) for camera in CAMERAS], dim=1
        )
        named = cover[torch.arange(len(index)), :, torch.from_numpy(scenes["named_colour"][index])]
        colour_loss = F.binary_cross_entropy_with_logits(self.heads.colour(image_hidden), (cover > 0).float())
        # A block covers a few tokens of the 2 x 64: weigh them up so "nowhere" is not the easy answer.
        referring = self.heads.referring(image_hidden).squeeze(-1)
        referring_loss = F.binary_cross_entropy_with_logits(
            referring, (named > 0).float(), pos_weight=torch.tensor(10.0)
        )
        front_best = referring[:, :tokens_per_camera].argmax(
            dim=1
        )  # the front camera always sees the named block
        referring_hits = (named[torch.arange(len(index)), front_best] > 0).float().mean()
        target_xy = torch.from_numpy(scenes["target_xy"][index])
        position = self.heads.position(
            torch.cat([image_hidden, hidden[:, -1:]], dim=1)
        )  # [B, image tokens + 1, 2]
        position_loss = F.mse_loss(position, target_xy[:, None].expand_as(position))
        position = position.mean(dim=1)  # what an expert attending evenly to them reads
        loss = colour_loss + referring_loss + position_loss
        position_error = (position - target_xy).norm(dim=-1).mean()
        return loss, {
            "loss": loss.item(),
            "colour": colour_loss.item(),
            "referring": referring_loss.item(),
            "position": position_loss.item(),
            "referring_hits": referring_hits.item(),
            "position_error": position_error.item(),
        }


def expert_parameters(policy: SmolVLAPolicy) -> list[nn.Parameter]:
    """What the reach stage trains: everything but the VLM (SmolVLA's ``train_expert_only``)."""
    return [parameter for name, parameter in policy.named_parameters() if not name.startswith(VLM_PREFIX)]


@torch.no_grad()
def goal_error(
    policy: SmolVLAPolicy,
    preprocessor: PolicyProcessorPipeline,
    postprocessor: PolicyProcessorPipeline,
    scenes: dict,
) -> float:
    """Mean distance (table units) from the named block to the first goal of the action chunk the policy
    predicts."""
    was_training = policy.training
    batch = policy_batch(scenes, np.arange(len(scenes["instruction"])), preprocessor)
    batch.pop(ACTION)
    goals = postprocessor(policy.predict_action_chunk(batch))[:, 0, :2]
    policy.reset()
    policy.train(was_training)
    return float((goals - torch.from_numpy(scenes["target_xy"])).norm(dim=-1).mean())


@dataclass
class FreshScenes:
    """The pretraining's scenes: fresh ones each time (each scene seed is used once, from ``PRETRAIN_SEED``
    on), drawn with the run's one random generator."""

    rng: np.random.Generator
    next_seed: int = PRETRAIN_SEED

    def take(self, count: int, frames: int | None, **options) -> dict:
        self.next_seed += count
        return record_scenes(self.next_seed - count, count, frames, self.rng, **options)

    @property
    def seen(self) -> int:
        return self.next_seed - PRETRAIN_SEED


@dataclass(frozen=True)
class StageOptions:
    """How a stage draws its batches: every ``refresh_every`` steps ``scenes_per_refresh`` fresh scenes of
    ``frames_per_scene`` frames replace the pool that batches of ``batch_size`` are drawn from."""

    batch_size: int
    scenes_per_refresh: int
    frames_per_scene: int
    refresh_every: int
    progress: bool


def train_stage(
    policy: SmolVLAPolicy,
    parameters: list[nn.Parameter],
    loss_of,
    steps: int,
    lr: float,
    metrics_of,
    desc: str,
    scenes: FreshScenes,
    options: StageOptions,
    **scene_options,
) -> list[dict]:
    """``steps`` of AdamW with a one-cycle schedule (5% warm-up) on ``parameters`` only (the rest of the
    policy frozen), on fresh scenes; returns the metrics (training and ``metrics_of()``) at 20 points of the
    stage."""
    if steps == 0:
        return []
    for parameter in policy.parameters():
        parameter.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=max(0.05, 2 / steps)
    )
    history = []
    policy.train()
    for step in tqdm(range(steps), desc=desc, unit="step", disable=not options.progress):
        if step % options.refresh_every == 0:
            pool = scenes.take(options.scenes_per_refresh, options.frames_per_scene, **scene_options)
        loss, metrics = loss_of(pool, scenes.rng.integers(0, len(pool["instruction"]), options.batch_size))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        if (step + 1) % max(1, steps // 20) == 0 or step + 1 == steps:
            history.append({"step": step + 1, "train": metrics, "validation": metrics_of()})
    return history


def pretrain(
    output_dir: Path,
    steps: int = 1500,
    reach_steps: int = 2500,
    batch_size: int = 32,
    lr: float = 3e-3,
    reach_lr: float = 1e-3,
    scenes_per_refresh: int = 64,
    frames_per_scene: int = 4,
    refresh_every: int = 25,
    validation_scenes: int = 50,
    stats_scenes: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Pretrain and save a dense ``smolvla`` checkpoint (with its processors, the heads and the metrics) into
    a new ``output_dir``: ``steps`` of grounding, then ``reach_steps`` of reach (module docstring).

    Every ``refresh_every`` steps, ``scenes_per_refresh`` fresh scenes replace the pool batches are drawn
    from; the validation scenes are other fresh scenes, one frame each.
    """
    if steps < 1 or reach_steps < 0 or batch_size < 1:
        raise ValueError(
            f"steps and batch_size must be positive and reach_steps not negative, got steps={steps}, "
            f"reach_steps={reach_steps}, batch_size={batch_size}."
        )
    output_dir = new_output_dir(output_dir)
    torch.manual_seed(seed)
    scenes = FreshScenes(np.random.default_rng(seed))
    options = StageOptions(batch_size, scenes_per_refresh, frames_per_scene, refresh_every, progress)
    started = time.monotonic()
    policy = SmolVLAPolicy(tabletop_smolvla_config())
    stats = task_stats(scenes.take(stats_scenes, None, instructions=(INSTRUCTION,)))
    preprocessor, postprocessor = make_pre_post_processors(policy.config, dataset_stats=stats)
    grounding = TabletopGrounding(policy, preprocessor)
    validation = scenes.take(validation_scenes, 1)
    reach_validation = scenes.take(validation_scenes, 1, instructions=(TOUCH_INSTRUCTION,), touch=True)
    grounding_history = train_stage(
        policy,
        grounding.trained_parameters(),
        grounding,
        steps,
        lr,
        lambda: validate(grounding, validation),
        "Pretraining 1/2: grounding the tiny SmolVLM",
        scenes,
        options,
    )
    reach_history = train_stage(
        policy,
        expert_parameters(policy),
        lambda pool, index: policy.forward(policy_batch(pool, index, preprocessor)),
        reach_steps,
        reach_lr,
        lambda: {"goal_error": goal_error(policy, preprocessor, postprocessor, reach_validation)},
        "Pretraining 2/2: reach, action expert",
        scenes,
        options,
        instructions=(TOUCH_INSTRUCTION,),
        touch=True,
    )

    for saved in (policy, preprocessor, postprocessor):
        saved.save_pretrained(output_dir)
    save_file(grounding.heads.state_dict(), output_dir / HEADS_FILE)
    results = {
        "steps": steps,
        "reach_steps": reach_steps,
        "batch_size": batch_size,
        "lr": lr,
        "reach_lr": reach_lr,
        "seed": seed,
        "scenes_seen": scenes.seen,
        "first_scene_seed": PRETRAIN_SEED,
        "seconds": round(time.monotonic() - started),
        "history": grounding_history,
        "reach_history": reach_history,
        "before": {
            "position_error_of_mean_guess": mean_guess_error(validation),
            "goal_error_of_mean_guess": mean_guess_error(reach_validation),
        },
    }
    (output_dir / METRICS_FILE).write_text(json.dumps(results, indent=2))
    return results


@torch.no_grad()
def validate(grounding: TabletopGrounding, scenes: dict) -> dict[str, float]:
    was_training = grounding.training
    grounding.eval()
    _, metrics = grounding(scenes, np.arange(len(scenes["instruction"])))
    grounding.train(was_training)
    return metrics


def mean_guess_error(scenes: dict) -> float:
    """Position error of always answering the mean position: what a VLM that has not grounded anything
    scores."""
    target = scenes["target_xy"]
    return float(np.linalg.norm(target - target.mean(0), axis=1).mean())


def write_transformers5_checkpoint(source: Path, output_dir: Path) -> Path:
    """A copy of the transformers-4 checkpoint ``source`` whose weights compute the same under transformers 5
    (:func:`lerobot_grids.compat.smolvlm_checkpoint_for_transformers5`); every other file as it is."""
    output_dir = new_output_dir(output_dir)
    for file in sorted(Path(source).iterdir()):
        (output_dir / file.name).write_bytes(file.read_bytes())
    weights = output_dir / SAFETENSORS_SINGLE_FILE
    save_file(compat.smolvlm_checkpoint_for_transformers5(load_file(weights)), weights)
    return output_dir


def load_pretrained(checkpoint: str | Path) -> tuple[TabletopGrounding, PolicyProcessorPipeline]:
    """A pretrained checkpoint folder with its heads and processors, to measure how well it grounds and
    reaches."""
    config = PreTrainedConfig.from_pretrained(checkpoint)
    config.vlm_model_name = str(
        TINY_SMOLVLM
    )  # the backbone's architecture and tokenizer ship with the package
    policy = SmolVLAPolicy.from_pretrained(checkpoint, config=config)
    preprocessor, postprocessor = make_pre_post_processors(
        config,
        pretrained_path=str(checkpoint),
        preprocessor_overrides={"tokenizer_processor": {"tokenizer_name": str(TINY_SMOLVLM)}},
    )
    grounding = TabletopGrounding(policy, preprocessor)
    grounding.heads.load_state_dict(load_file(Path(checkpoint) / HEADS_FILE))
    return grounding.eval(), postprocessor
