"""What every GridS policy type adds to its LeRobot policy class, whatever the backbone.

A GridS policy's backbone has a ``grids`` :class:`GridSampler`, a ``dense_image_tokens(image)`` giving
the dense tokens and their grid, and a ``sampled_points`` list that its ``embed_image`` appends one
``[B, K, 2]`` tensor to per camera; the policy has ``model_images(batch)``, the camera images as the
backbone receives them; its config has ``grids`` and ``init_from`` fields.
"""

import json
import logging
import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.constants import CONFIG_NAME, SAFETENSORS_SINGLE_FILE
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
from huggingface_hub.repocard import ModelCard
from huggingface_hub.utils import validate_repo_id
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import NormalizationMode
from lerobot.processor import PolicyProcessorPipeline, UnnormalizerProcessorStep
from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
from lerobot.utils.constants import (
    ACTION,
    OBS_IMAGES,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    OBS_STATE,
)
from safetensors.torch import load_file
from torch import Tensor, nn

from lerobot_grids import compat
from lerobot_grids.grids import GridSampler, GridSConfig, Region, mean_pairwise_distance
from lerobot_grids.policies import live_view
from lerobot_grids.policies.points_picture import CARD_PICTURE, where_it_looks

# Below this mean pairwise distance (in units of the image side) the K points count as collapsed.
COLLAPSE_THRESHOLD = 0.02
HUB_KWARGS = (
    "force_download",
    "resume_download",
    "proxies",
    "token",
    "cache_dir",
    "local_files_only",
    "revision",
)


def split_revision(source: str) -> tuple[str, str | None]:
    """``(repo id or folder, revision)`` of an ``init_from`` value: ``lerobot/pi0_base@v0.4`` names the Hub
    revision (branch, tag or commit) after ``@``; a local folder is taken as it is."""
    if os.path.isdir(source) or "@" not in source:
        return source, None
    repo_id, revision = source.rsplit("@", 1)
    return repo_id, revision or None


def checkpoint_file(source: str, filename: str, revision: str | None = None, **hub_kwargs) -> str:
    """``filename`` of a checkpoint given as a local folder or a Hub repo id (at ``revision``).

    A ``source`` that is neither an existing folder nor a valid Hub repo id (``/data/ckpt``, ``./ckpt``,
    ``a/b/c``) is a folder that does not exist: that is said, instead of asking the Hub for it."""
    source = str(source)
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, filename)):
            raise FileNotFoundError(f"{filename} not found in the folder {source}.")
        return os.path.join(source, filename)
    try:
        validate_repo_id(source)
    except HFValidationError:
        raise FileNotFoundError(
            f"Folder not found: {os.path.abspath(source)} (given as {source!r}; not a Hub repo id either). "
            "Check the path, or give a Hub repo id as <user>/<name>."
        ) from None
    return hf_hub_download(source, filename, revision=revision, **hub_kwargs)


PROCESSOR_CONFIGS = ("policy_preprocessor.json", "policy_postprocessor.json")


def check_processor_statistics(source: str, **hub_kwargs) -> list[str]:
    """Refuse a checkpoint whose processors' saved state (normalisation statistics) holds NaN or infinity,
    naming the file and keys: LeRobot's normalisation would turn them into NaN or saturated goals for the
    motors. Returns the processor configs the checkpoint has; one without processors is left to LeRobot (it
    refuses to act without them)."""
    found = []
    for config_name in PROCESSOR_CONFIGS:
        try:
            steps = json.loads(Path(checkpoint_file(source, config_name, **hub_kwargs)).read_text())["steps"]
        except (FileNotFoundError, EntryNotFoundError):
            continue
        found.append(config_name)
        for state_file in (step["state_file"] for step in steps if step.get("state_file")):
            tensors = load_file(checkpoint_file(source, state_file, **hub_kwargs))
            bad = sorted(
                key
                for key, value in tensors.items()
                if value.is_floating_point() and not value.isfinite().all()
            )
            if bad:
                raise ValueError(
                    f"The checkpoint {source} has non-finite (NaN or infinite) normalisation statistics in "
                    f"{state_file}: {bad}. A policy normalised with them would send NaN or saturated goals "
                    "to the motors. Recompute the dataset's statistics (LeRobot's compute_stats) and "
                    "retrain, or fix the file."
                )
    return found


def load_action_unnormaliser(source: str, **hub_kwargs) -> PolicyProcessorPipeline:
    """The unnormalisation steps of a checkpoint's saved postprocessor, as LeRobot loads them where a policy
    acts (lerobot-record, lerobot-rollout, the async server, lerobot-eval)."""
    postprocessor = PolicyProcessorPipeline.from_pretrained(
        source,
        config_filename=PROCESSOR_CONFIGS[1],
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
        **hub_kwargs,
    )
    steps = [step for step in postprocessor.steps if isinstance(step, UnnormalizerProcessorStep)]
    return PolicyProcessorPipeline(
        steps=steps, to_transition=policy_action_to_transition, to_output=transition_to_policy_action
    )


def check_same_grids(saved: PreTrainedConfig, requested: PreTrainedConfig, source: str | Path) -> None:
    """Refuse to load a GridS checkpoint with other GridS settings than it was trained with."""
    differences = [
        f"grids.{name}: checkpoint {getattr(saved.grids, name)!r}, requested "
        f"{getattr(requested.grids, name)!r}"
        for name in GridSConfig.__dataclass_fields__
        if getattr(saved.grids, name) != getattr(requested.grids, name)
    ]
    if differences:
        raise ValueError(
            f"The {saved.type} checkpoint {source} was trained with other GridS settings than requested "
            f"({'; '.join(differences)}). Drop the --policy.grids.* overrides to use the checkpoint as "
            "trained, or train a new policy with the settings you want."
        )


class GridSPolicyMixin:
    """Methods shared by every GridS policy type (put before the LeRobot policy class)."""

    grids_prefix: str  # state-dict prefix of the GridS parameters
    dense_type: str  # the LeRobot policy type whose checkpoints ``init_from`` accepts
    reads_instruction = True  # the family acts on the task's words (ACT does not)

    @property
    def grids_backbone(self) -> nn.Module:
        """The backbone module holding ``grids`` and ``sampled_points``."""
        raise NotImplementedError

    @property
    def language_vocab_size(self) -> int:
        """Number of token embeddings of the language model."""
        raise NotImplementedError

    @property
    def grids(self) -> GridSampler:
        return self.grids_backbone.grids

    @classmethod
    def from_pretrained(
        cls, pretrained_name_or_path: str | Path, *, config: PreTrainedConfig | None = None, **kwargs
    ):
        """Load a GridS checkpoint as LeRobot loads a policy, strictly: a requested ``config`` must keep the
        checkpoint's GridS settings, every weight must be in the checkpoint (none left freshly initialised)
        and nothing else, and its normalisation statistics must be finite. The checkpoint's unnormalisation
        is kept, so that every action handed out is checked as it will reach the motors."""
        source = str(pretrained_name_or_path)
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        if (
            config is not None
            and config.use_peft
            and cls.checkpoint_type(source, hub_kwargs) == cls.dense_type
        ):
            policy = cls.from_dense_base(source, config, hub_kwargs, **kwargs)
        else:
            config = cls.load_grids_config(source, config, hub_kwargs)
            policy = cls.load_pretrained_weights(source, config=config, **kwargs)
        # A LoRA adapter's own folder holds the processors of the run that trained it (LeRobot loads them from
        # there).
        processors_source = (
            str(config.pretrained_path) if config.use_peft and config.pretrained_path else source
        )
        processors_kwargs = {} if processors_source != source else hub_kwargs
        if PROCESSOR_CONFIGS[1] in check_processor_statistics(processors_source, **processors_kwargs):
            policy.action_unnormaliser = load_action_unnormaliser(processors_source, **processors_kwargs)
        return policy

    @classmethod
    def checkpoint_type(cls, source: str, hub_kwargs: dict) -> str | None:
        """The policy type a checkpoint's config.json names."""
        return json.loads(Path(checkpoint_file(source, CONFIG_NAME, **hub_kwargs)).read_text()).get("type")

    @classmethod
    def from_dense_base(cls, source: str, config: PreTrainedConfig, hub_kwargs: dict, **kwargs):
        """The base model of a LoRA adapter trained from dense weights (``--policy.init_from=<dense>
        --peft.*``, whose adapter names the dense checkpoint as its base): the policy started from those
        weights again, as the training run started it; LeRobot's ``PeftModel.from_pretrained`` then loads the
        adapter, the trained sampler with it."""
        revision = hub_kwargs.get("revision")
        config.init_from = f"{source}@{revision}" if revision and not os.path.isdir(source) else source
        return cls(config, **{key: kwargs[key] for key in ("dataset_meta", "dataset_stats") if key in kwargs})

    @classmethod
    def load_pretrained_weights(cls, pretrained_name_or_path: str, *, config: PreTrainedConfig, **kwargs):
        """The LeRobot ``from_pretrained`` that builds the policy and loads its weights."""
        return super().from_pretrained(pretrained_name_or_path, config=config, **kwargs)

    @classmethod
    def _load_as_safetensor(cls, model, model_file: str, map_location: str, strict: bool):
        """LeRobot's loader, strict (LeRobot's default is not: a checkpoint without the GridS parameters
        would leave a freshly initialised sampler in place silently)."""
        try:
            return super()._load_as_safetensor(model, model_file, map_location, True)
        except RuntimeError as error:
            raise ValueError(
                f"{model_file} does not hold this {cls.name} policy's weights: {error}. Load it with the "
                "architecture and GridS settings it was trained with (its config.json), or start a new "
                "policy from dense weights with --policy.init_from."
            ) from None

    @classmethod
    def load_grids_config(cls, pretrained_name_or_path, config: PreTrainedConfig | None, hub_kwargs: dict):
        """The config to build a checkpoint's policy with: the saved one, or ``config`` if its GridS
        settings are the checkpoint's. Its ``init_from`` is cleared: the checkpoint's weights are used."""
        saved = PreTrainedConfig.from_pretrained(pretrained_name_or_path, **hub_kwargs)
        written = json.loads(
            Path(checkpoint_file(pretrained_name_or_path, CONFIG_NAME, **hub_kwargs)).read_text()
        )
        if isinstance(saved, cls.config_class) and "grids" not in written:
            raise ValueError(
                f"The {cls.name} checkpoint {pretrained_name_or_path} has no 'grids' section in its "
                "config.json: it would load with the default GridS settings, which need not be those it was "
                "trained with (a sampler trained with pooling='max' would run with 'mean'). Add the section "
                "with the settings it was trained with (the run's train_config.json has them under "
                "policy.grids)."
            )
        if not isinstance(saved, cls.config_class):
            raise ValueError(
                f"{pretrained_name_or_path} is a {saved.type!r} checkpoint, not a {cls.name} one. To start "
                f"{cls.name} from dense {cls.dense_type} weights, use --policy.type={cls.name} "
                f"--policy.init_from={pretrained_name_or_path}."
            )
        if config is None:
            config = saved
        check_same_grids(saved, config, pretrained_name_or_path)
        # LeRobot's make_policy sets a loaded policy's output features to the env's or robot's (lerobot-eval,
        # lerobot-record): another action size than the checkpoint's is an env or robot the policy cannot
        # drive.
        differences = [
            f"{key}: policy {tuple(feature.shape)}, env/robot "
            f"{tuple(config.output_features[key].shape) if key in config.output_features else None}"
            for key, feature in saved.output_features.items()
            if key not in config.output_features
            or tuple(config.output_features[key].shape) != tuple(feature.shape)
        ]
        if differences:
            raise ValueError(
                f"The {saved.type} policy {pretrained_name_or_path} does not fit the environment or robot it "
                f"was given: {'; '.join(differences)}. Use a policy trained with this robot's (or env's) "
                "actions."
            )
        config.init_from = None
        return config

    def load_dense_weights(self, source: str | Path) -> None:
        """Load every dense weight of a checkpoint of ``dense_type`` (Hub repo id, ``repo_id@revision``, or
        local folder).

        Only the GridS parameters may be absent from it; any other missing, unexpected or differently
        shaped key is an error that names the keys.
        """
        source, revision = split_revision(str(source))
        named = f"{source}@{revision}" if revision else source
        try:
            dense_config = checkpoint_file(source, CONFIG_NAME, revision)
        except (HfHubHTTPError, EntryNotFoundError) as error:  # offline, or not on the Hub
            raise FileNotFoundError(
                f"--policy.init_from={named}: no folder {os.path.abspath(source)} and not on the Hub "
                f"({error}). Give an existing folder of a dense checkpoint, or its Hub repo id."
            ) from None
        dense_type = json.loads(Path(dense_config).read_text()).get("type")
        if dense_type != self.dense_type:
            raise ValueError(
                f"--policy.init_from={named} is a {dense_type!r} checkpoint, not a dense {self.dense_type!r} "
                f"one. To continue training a {self.name} checkpoint, use --policy.path instead."
            )
        state_dict = self.dense_state_dict(
            load_file(checkpoint_file(source, SAFETENSORS_SINGLE_FILE, revision))
        )
        own = self.state_dict(keep_vars=True)
        reshaped = sorted(
            f"{key} (checkpoint {tuple(value.shape)}, policy {tuple(own[key].shape)})"
            for key, value in state_dict.items()
            if key in own and value.shape != own[key].shape
        )
        if reshaped:
            raise ValueError(
                f"The {self.dense_type} checkpoint {named} does not match this policy's architecture: other "
                f"shapes for {reshaped}. Set the architecture options to the checkpoint's "
                f"values{compat_revision_hint(self.dense_type)}."
            )
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        # A tied parameter (saved once under another name) is loaded through its twin.
        loaded = {own[key].data_ptr() for key in state_dict if key in own}
        missing = [key for key in missing if own[key].data_ptr() not in loaded]
        not_grids = sorted(key for key in missing if not key.startswith(self.grids_prefix))
        if not_grids or unexpected:
            raise ValueError(
                f"The {self.dense_type} checkpoint {named} does not match this policy's architecture. "
                f"Missing from the checkpoint: {not_grids or 'none'}. Not in this policy: "
                f"{sorted(unexpected) or 'none'}. Set the architecture options to the checkpoint's values"
                f"{compat_revision_hint(self.dense_type)}."
            )
        logging.info("Initialised %s from %s; new GridS parameters: %d", self.name, named, len(missing))

    def check_and_initialise(self, dataset_meta=None) -> None:
        """Once the family's sampler is in place: refuse cameras whose grid is smaller than K, and data the
        policy cannot fit (``dataset_meta``, given by LeRobot's ``make_policy``); then load the dense weights
        of ``init_from``."""
        self.check_camera_grids()
        if dataset_meta is not None:
            self.check_robot_features(dataset_meta)
        if self.config.init_from:
            self.load_dense_weights(self.config.init_from)

    def check_robot_features(self, dataset_meta) -> None:
        """Refuse data (a training dataset, or the robot's features that lerobot-record passes as a dataset)
        whose state or action differ from the policy's, or with more cameras than it has, before anything
        runs. Fewer cameras are LeRobot's rule for fine-tuning on a rig with fewer cameras, renamed onto some
        of the policy's with ``--rename_map`` (its ``smolvla`` trains without the missing ones): they train,
        and every path that acts refuses a missing camera on its first observation
        (:meth:`check_acting_inputs`). Camera names are checked on the first batch: LeRobot may rename
        them."""
        self.refuse_mismatches(
            self.feature_mismatches(dataset_meta.features, dataset_meta.camera_keys, fewer_cameras=True)
        )

    def feature_mismatches(
        self,
        features: dict,
        camera_keys: list[str],
        check_camera_names: bool = False,
        fewer_cameras: bool = False,
    ) -> list[str]:
        """How LeRobot ``features`` (``{key: {"shape": ...}}``) with cameras ``camera_keys`` differ from the
        policy's: state and action shape (where given), camera count (with ``fewer_cameras``, only more
        cameras than the policy's, or none), and with ``check_camera_names`` the cameras the policy was
        trained with that are not among ``camera_keys``."""
        mismatches = []
        for key, kind in ((OBS_STATE, "state"), (ACTION, "action")):
            if key == ACTION and key not in features:  # the robot's observation features only (async client)
                continue
            ours = self.config.input_features.get(key) or self.config.output_features.get(key)
            theirs = tuple(features[key]["shape"]) if key in features else None
            if ours is not None and tuple(ours.shape) != theirs:
                mismatches.append(f"{kind} {key}: policy {tuple(ours.shape)}, robot/dataset {theirs}")
        cameras = [
            key for key in self.config.image_features if not key.startswith(f"{OBS_IMAGES}.empty_camera_")
        ]
        if len(cameras) != len(camera_keys) and not (fewer_cameras and 0 < len(camera_keys) < len(cameras)):
            mismatches.append(f"cameras: policy {cameras}, robot/dataset {list(camera_keys)}")
        elif check_camera_names and set(cameras) != set(camera_keys):
            mismatches.append(
                f"camera names: policy {cameras}, robot {list(camera_keys)} (rename with --rename_map)"
            )
        return mismatches

    def refuse_mismatches(self, mismatches: list[str]) -> None:
        if mismatches:
            raise ValueError(
                f"This {self.name} policy does not fit the robot or dataset it was given: "
                f"{'; '.join(mismatches)}. Use a policy trained with this robot's joints and cameras."
            )

    action_unnormaliser: PolicyProcessorPipeline | None = None  # set by from_pretrained

    def fully_trained_modules(self) -> list[str]:
        """Names of the modules a GridS policy trains in full whatever else is frozen: the sampler (new in
        every GridS policy, so there are no pretrained weights to adapt)."""
        return [self.grids_prefix.removesuffix(".")]

    def _get_default_peft_targets(self) -> dict | None:
        """LeRobot's LoRA targets of the policy family, with :meth:`fully_trained_modules` trained in full and
        saved with the adapter (PEFT's ``modules_to_save``)."""
        targets = super()._get_default_peft_targets()
        if targets is None:
            return None
        return {
            **targets,
            "modules_to_save": [*(targets.get("modules_to_save") or []), *self.fully_trained_modules()],
        }

    def _validate_peft_config(self, peft_config) -> None:
        """LeRobot's check, with two GridS rules: :meth:`fully_trained_modules` are always among
        ``modules_to_save`` (added to a ``--peft.full_training_modules`` list that lacks them: a frozen new
        sampler would stay at its initial points), and dense weights given by ``init_from`` count as the
        pretrained start LeRobot asks for; the adapter then names them as its base model
        (:meth:`from_dense_base` loads it)."""
        saved = list(peft_config.modules_to_save or [])
        missing = [name for name in self.fully_trained_modules() if name not in saved]
        if missing:
            logging.info(
                "%s: training %s in full with the LoRA adapter (PEFT modules_to_save)", self.name, missing
            )
            peft_config.modules_to_save = saved + missing
        if self.config.pretrained_path or not self.config.init_from:
            super()._validate_peft_config(peft_config)
            return
        self.name_or_path = str(self.config.init_from)  # the adapter's base_model_name_or_path

    def check_finite(self, actions: Tensor) -> Tensor:
        """Refuse to hand out an action chunk that is not finite, or that the checkpoint's unnormalisation
        (the postprocessor that every acting path applies next) makes non-finite: it would reach the motors.
        Each policy type calls it where its chunk is made, which ``select_action`` (lerobot-record,
        lerobot-rollout, lerobot-eval) and ``predict_action_chunk`` (the async server) both pass through: once
        per chunk, before any of its actions is handed out."""
        unnormalised = self.action_unnormaliser(actions) if self.action_unnormaliser is not None else actions
        for values, stage in ((actions, "policy output"), (unnormalised, "after unnormalisation")):
            if not torch.isfinite(values).all():
                raise RuntimeError(
                    f"The {self.name} policy produced a non-finite action ({stage}: "
                    f"{values.flatten().tolist()[:8]}...); it was not sent. Check the checkpoint (NaN "
                    "weights?) and its normalisation statistics (policy_postprocessor_*.safetensors)."
                )
        return actions

    def finish_chunk(self, actions: Tensor) -> Tensor:
        """What every acting path does with a new action chunk, before any of its actions is handed out:
        refuse it if it is not finite (:meth:`check_finite`); where LeRobot's live display is on
        (``--display_data=true``), show where the chunk's sampler read on each camera's image
        (:mod:`lerobot_grids.policies.live_view`). With the display off, one look-up."""
        actions = self.check_finite(actions)
        sampler = getattr(self.grids, "config", None)  # the sampler in use (the benchmark swaps them)
        if sampler is None or sampler.sampler == "dense":
            return actions
        recording, channels = live_view.active_recording(), live_view.active_foxglove_channels()
        if recording is not None or channels is not None:
            live_view.show_first_item(self.camera_points(), self.camera_image_hw, recording, channels)
        if live_view.chunks_wanted():
            images = {key: image.float().cpu().numpy() for key, image in self.acting_images.items()}
            live_view.publish_chunk(images, self.camera_points())
        return actions

    def camera_points(self) -> dict[str, np.ndarray]:
        """``{camera key: [B, K, 2]}`` the last chunk's points, ``(x, y)`` in the pixels of that camera's
        image (:meth:`points_in_camera`)."""
        return {
            camera: self.points_in_camera(points, self.camera_image_hw[camera]).numpy()
            for camera, points in self.sampled_points().items()
            if camera in self.camera_image_hw
        }

    def check_training_batch(self, batch: dict) -> None:
        """Refuse a training batch with NaN or infinity in any input, naming the key and the dataset frames
        (LeRobot would train on it: the loss and every weight become NaN)."""
        floats = {
            key: value for key, value in batch.items() if torch.is_tensor(value) and value.is_floating_point()
        }
        if not floats:
            return
        finite = torch.stack([value.isfinite().all() for value in floats.values()])
        if bool(finite.all()):
            return
        key = list(floats)[int((~finite).nonzero()[0])]
        rows = (~floats[key].isfinite()).flatten(1).any(1).nonzero().flatten()
        frames = (
            batch["index"][rows].flatten().tolist() if torch.is_tensor(batch.get("index")) else rows.tolist()
        )
        where = "dataset frame index" if torch.is_tensor(batch.get("index")) else "batch rows"
        raise ValueError(
            f"The training batch has non-finite values (NaN or infinity) in {key!r}, {where} {frames[:8]}. "
            "Check those frames of the dataset and its statistics (meta/stats.json): normalised with a NaN "
            "statistic every value is NaN."
        )

    def dense_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """A dense checkpoint's state dict in this policy's key names."""
        return state_dict

    def check_acting_inputs(self, batch: dict) -> None:
        """Refuse to act on an observation that lacks a camera the policy was trained with (LeRobot's policies
        would pad it with a blank image, or drop it, silently), or with an empty task (the acting commands'
        default when the flag that sets it is left out: the policy would act on no instruction). Every acting
        path calls it before its chunk is made. Keys are named as the policy receives them, after any
        ``--rename_map``."""
        if self.reads_instruction and any(not str(task).strip() for task in batch.get("task") or []):
            raise ValueError(
                f"The task is empty: this {self.name} policy acts on an instruction. Give the task it was "
                'trained on: lerobot-record --dataset.single_task="...", lerobot-rollout --task="...", the '
                'async robot client\'s --task="..." (lerobot-eval takes it from the env).'
            )
        empty_cameras = f"{OBS_IMAGES}.empty_camera_"
        missing = [
            key
            for key in self.config.image_features
            if key not in batch and not key.startswith(empty_cameras)
        ]
        if missing:
            present = [key for key in batch if key.startswith(OBS_IMAGES)]
            raise ValueError(
                f"The observation has no image for camera(s) {missing}: this policy was trained with "
                f"{list(self.config.image_features)} and got {present}. Give every camera the policy was "
                "trained with, under the same key (rename keys with --rename_map)."
            )

    def start_images(self, batch: dict) -> None:
        """Before a batch's images are embedded: refuse a batch whose state has another size than the policy
        was trained with (LeRobot would pad it silently), or observations it cannot act on
        (:meth:`check_observations`), and start a new record of sampled points, one per camera in the batch (a
        training batch may lack some, see :meth:`check_robot_features`). Every path that acts (lerobot-record,
        lerobot-rollout, the async server, lerobot-eval) passes here before the first action."""
        self.check_observations(batch)
        state = self.config.input_features.get(OBS_STATE)
        if state is not None and OBS_STATE in batch and batch[OBS_STATE].shape[-1] != state.shape[-1]:
            self.refuse_mismatches(
                [
                    f"state {OBS_STATE}: policy {tuple(state.shape)}, robot/dataset "
                    f"({batch[OBS_STATE].shape[-1]},)"
                ]
            )
        # In the order the backbone embeds them: the cameras present, then the blanks it pads for the missing
        # ones (a camera the batch lacks has no points: None).
        empty_cameras = f"{OBS_IMAGES}.empty_camera_"
        self.grids_backbone.sampled_cameras = [key for key in self.config.image_features if key in batch] + [
            key if key.startswith(empty_cameras) else None
            for key in self.config.image_features
            if key not in batch
        ]
        self.camera_image_hw = {
            key: tuple(batch[key].shape[-2:]) for key in self.grids_backbone.sampled_cameras if key in batch
        }
        if live_view.chunks_wanted():  # the images the chunk is made from, published with it
            self.acting_images = {key: batch[key] for key in self.camera_image_hw}
        self.grids_backbone.image_regions = [
            self.image_region(self.camera_image_hw[key]) if key in batch else None
            for key in self.grids_backbone.sampled_cameras
        ]
        tokens = batch.get(OBS_LANGUAGE_TOKENS)
        if tokens is not None and tokens.numel() and int(tokens.max()) >= self.language_vocab_size:
            raise ValueError(
                f"The instruction's token ids reach {int(tokens.max())}, beyond the language model's "
                f"vocabulary of {self.language_vocab_size} embeddings: the tokenizer does not fit the model. "
                "Set --policy.vocab_size (pi0/pi0.5) to at least the tokenizer's size, or use the tokenizer "
                "the model was made for."
            )
        self.grids_backbone.sampled_points.clear()
        if self.config.grids.instruction:
            self.grids_backbone.grids_context = self.instruction_context(batch)

    def image_cover(self, image_hw: tuple[int, int]) -> Tensor:
        """``[H, W]`` boolean: the pixels of the backbone's input that a camera image of ``image_hw`` covers
        once the family's own preprocessing (LeRobot's resize with padding: SmolVLA pads the top or the left,
        pi0 both sides; ACT none) has made it that input. Found by that preprocessing of a white image (it
        stays 1, the padding is -1 or below), once per image size."""
        covers = self.__dict__.setdefault("_image_covers", {})
        if image_hw not in covers:
            parameter = next(self.parameters())
            white = {
                next(iter(self.config.image_features)): torch.ones(1, 3, *image_hw, device=parameter.device)
            }
            with torch.no_grad():
                covers[image_hw] = (self.family_model_images(white)[0][0].float().mean(dim=0) > 0).cpu()
        return covers[image_hw]

    def image_region(self, image_hw: tuple[int, int]) -> Region | None:
        """The token rows and columns a camera image of ``image_hw`` covers of the backbone's token grid
        (:meth:`image_cover`); ``None`` where it covers every token. The sampler reads inside it only."""
        if self.config.grids.sampler == "dense":
            return None
        regions = self.__dict__.setdefault("_image_regions", {})
        if image_hw not in regions:
            covered = self.image_cover(image_hw)
            rows, cols = self.token_grid(tuple(covered.shape))
            row_size, col_size = covered.shape[0] // rows, covered.shape[1] // cols
            by_token = covered[: rows * row_size, : cols * col_size].reshape(rows, row_size, cols, col_size)
            token_rows = by_token.any(dim=(1, 2, 3)).nonzero().flatten().tolist()
            token_cols = by_token.any(dim=(0, 1, 3)).nonzero().flatten().tolist()
            region = (token_rows[0], token_rows[-1], token_cols[0], token_cols[-1])
            regions[image_hw] = None if region == (0, rows - 1, 0, cols - 1) else region
        return regions[image_hw]

    def token_grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """``(rows, columns)`` of the token grid the sampler reads for a backbone input of ``input_hw``."""
        return self.grids_backbone.grid_hw(input_hw)

    def points_in_camera(self, points: Tensor, image_hw: tuple[int, int]) -> Tensor:
        """``[..., 2]`` sampled points (``(0, 0)`` the top-left token centre of the backbone's grid,
        ``(1, 1)`` the bottom-right one) as ``(x, y)`` in the pixels of the camera image of ``image_hw`` they
        were read from (``(0, 0)`` its top-left corner): through the token grid to the backbone's input, then
        back through the resize with padding (:meth:`image_cover`)."""
        covered = self.image_cover(image_hw)
        input_hw = tuple(covered.shape)
        rows, cols = self.token_grid(input_hw)
        placed_rows = covered.any(dim=1).nonzero().flatten()
        placed_cols = covered.any(dim=0).nonzero().flatten()
        top, left = int(placed_rows[0]), int(placed_cols[0])
        height, width = len(placed_rows), len(placed_cols)
        points = points.detach().float().cpu()
        x_input = (points[..., 0] * (cols - 1) + 0.5) * input_hw[1] / cols
        y_input = (points[..., 1] * (rows - 1) + 0.5) * input_hw[0] / rows
        return torch.stack(
            [(x_input - left) * image_hw[1] / width, (y_input - top) * image_hw[0] / height], dim=-1
        )

    def check_camera_grids(self) -> None:
        """Refuse, when the policy is made, more tokens per camera than a camera's image covers of the
        backbone's token grid (the rest of the grid is the padding that made the image square)."""
        for key, feature in self.config.image_features.items():
            region = self.image_region(tuple(feature.shape[-2:]))
            if region is None:
                rows, cols = self.grids_backbone.grid_hw(
                    tuple(
                        self.family_model_images(
                            {key: torch.zeros(1, *feature.shape, device=next(self.parameters()).device)}
                        )[0].shape[-2:]
                    )
                )
                self.grids.check_grid((rows, cols), f" ({key})")
            else:
                top, bottom, left, right = region
                self.grids.check_grid(
                    (bottom - top + 1, right - left + 1),
                    f", the part of the backbone's token grid that {key}'s "
                    f"{feature.shape[-1]}x{feature.shape[-2]} image covers (the rest is padding)",
                )

    def use_sampler(self, sampler: nn.Module) -> None:
        """Sample with ``sampler`` from now on (the benchmark swaps variants this way)."""
        self.grids_backbone.use_sampler(sampler)

    def dense_image_tokens(self, image: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``([B, H*W, C] tokens, (H, W))``: one camera's dense image tokens, where the sampler reads them
        (``image`` as :meth:`model_images` gives it)."""
        return self.grids_backbone.dense_image_tokens(image)

    def sample_image(self, image: Tensor, region: Region | None) -> tuple[Tensor, Tensor]:
        """``([B, K, C] tokens, [B, K, 2] points)``: what the sampler reads of one camera's image."""
        return self.grids_backbone.sample_image(image, region)

    def family_model_images(self, batch: dict) -> list[Tensor]:
        """Each camera's image as LeRobot's policy of the family prepares it for the backbone (no GridS
        checks)."""
        raise NotImplementedError

    def check_observations(self, batch: dict) -> None:
        """Refuse, naming the key, an observation with NaN or infinity (a NaN joint reading would make every
        action of the chunk NaN) and camera images outside [0, 1] (LeRobot's cameras and datasets give [0, 1]
        floats; an image in 0-255 would be read as a white one); refuse an empty task where the sampler reads
        the instruction; warn once where the instruction fills the tokenizer's limit (LeRobot's tokenizer step
        cuts the rest without a word). Once per batch, that is once per action chunk where the policy acts, in
        one device sync."""
        observations = {
            key: value
            for key, value in batch.items()
            if key.startswith("observation.") and torch.is_tensor(value) and value.is_floating_point()
        }
        # Images reach the model in [0, 1] where the family leaves them unnormalised (SmolVLA, pi0); ACT's
        # preprocessor normalises them with the dataset's mean and standard deviation.
        unnormalised = self.config.normalization_mapping.get("VISUAL") == NormalizationMode.IDENTITY
        images = [key for key in self.config.image_features if key in observations] if unnormalised else []
        if observations:
            bad = torch.stack(
                [~value.isfinite().all() for value in observations.values()]
                + [(observations[key].amin() < 0) | (observations[key].amax() > 1) for key in images]
            )
            if bool(bad.any()):
                flags = bad.tolist()
                non_finite = [key for key, flag in zip(observations, flags, strict=False) if flag]
                if non_finite:
                    raise ValueError(
                        f"The observation {non_finite[0]!r} has non-finite values (NaN or infinity); no "
                        "action was made from it. Check that sensor (a motor that did not answer, a camera "
                        "frame that failed), or the dataset's frames if this is training."
                    )
                key = next(key for key, flag in zip(images, flags[len(observations) :], strict=True) if flag)
                raise ValueError(
                    f"The camera image {key!r} has values in [{float(observations[key].amin()):.3g}, "
                    f"{float(observations[key].amax()):.3g}]; the policy reads images in [0, 1], as "
                    "LeRobot's cameras and datasets give them (divide 0-255 images by 255). No action was "
                    "made from it."
                )
        if self.config.grids.instruction and any(not str(task).strip() for task in batch.get("task") or []):
            raise ValueError(
                f"The task is empty, and this {self.name} policy's GridS sampler chooses where to look from "
                "it (grids.instruction=true). Give the task: lerobot-record --dataset.single_task=..., "
                "lerobot-rollout --task=..., the async robot client's --task=..., or the dataset's task of "
                "each episode."
            )
        mask = batch.get(OBS_LANGUAGE_ATTENTION_MASK)
        limit = getattr(self.config, "tokenizer_max_length", None)
        if (
            mask is not None
            and mask.shape[-1] == limit
            and not getattr(self, "_instruction_limit_reported", False)
            and bool(mask.bool().all(dim=-1).any())
        ):
            self._instruction_limit_reported = True
            logging.warning(
                "The instruction fills all %d tokens the tokenizer keeps (--policy.tokenizer_max_length): "
                "anything longer is cut there, and the policy never sees the rest. Train with a larger "
                "--policy.tokenizer_max_length if your tasks are longer.",
                limit,
            )

    def instruction_context(self, batch: dict) -> Tensor:
        """``[B, C]`` the instruction as the language model embeds it (the backbone's
        ``embed_language_tokens``), averaged over the prompt's tokens (its attention mask): what an
        instruction-conditioned sampler sees."""
        if OBS_LANGUAGE_TOKENS not in batch:
            raise ValueError(
                f"This {self.name} policy's GridS sampler is instruction-conditioned and the batch has no "
                f"{OBS_LANGUAGE_TOKENS!r}: run the policy's preprocessor (it tokenises the task)."
            )
        embedded = self.grids_backbone.embed_language_tokens(batch[OBS_LANGUAGE_TOKENS])
        mask = batch[OBS_LANGUAGE_ATTENTION_MASK].to(embedded.dtype).unsqueeze(-1)
        return (embedded * mask).sum(1) / mask.sum(1).clamp(min=1)

    def sampled_points(self) -> dict[str, Tensor]:
        """``{camera key: [B, K, 2] points}`` of the last forward or action chunk, ``(x, y)`` in ``[0, 1]``; a
        camera a training batch lacked has none (the blank image LeRobot's policies may pad in its place is
        not it)."""
        cameras = getattr(self.grids_backbone, "sampled_cameras", None) or list(self.config.image_features)
        points = self.grids_backbone.sampled_points
        if len(points) > len(cameras):
            raise RuntimeError(f"{len(points)} sampled point sets for the {len(cameras)} cameras {cameras}.")
        return {camera: value for camera, value in zip(cameras, points, strict=False) if camera is not None}

    def report_point_spread(self, loss_dict: dict) -> dict:
        """Add ``grids_point_spread/<camera>`` to the output dict lerobot-train logs: the mean pairwise
        distance of the K sampled points, which falls to 0 when they collapse into one spot."""
        if self.config.grids.sampler != "grids" or self.config.grids.num_tokens < 2:
            return loss_dict
        for key, points in self.sampled_points().items():
            spread = mean_pairwise_distance(points).item()
            if not math.isfinite(spread):
                raise RuntimeError(
                    f"GridS points of {key} are not finite (NaN): training has diverged. Resume from an "
                    "earlier checkpoint with a lower learning rate, and check the data (NaN frames or "
                    "statistics)."
                )
            loss_dict[f"grids_point_spread/{key.removeprefix(OBS_IMAGES + '.')}"] = spread
            if spread < COLLAPSE_THRESHOLD and not getattr(self, "_collapse_reported", False):
                self._collapse_reported = True
                logging.warning(
                    "GridS points of %s have collapsed into one spot (mean pairwise distance %.4f): the K "
                    "tokens read the same features. Lower the learning rate or check the data.",
                    key,
                    spread,
                )
        return loss_dict

    def card_picture(self, repo_id: str, root: str | Path | None, preprocessor=None, video_backend=None):
        """Where the policy looks on the first episode of the dataset ``repo_id`` (``root``: its local folder)
        (:func:`~lerobot_grids.policies.points_picture.where_it_looks`), each frame through ``preprocessor``
        (default: the policy type's with the dataset's statistics, as lerobot-train makes it); ``None``, with
        a warning, where the dataset cannot be read: the card then goes without its picture."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        from lerobot.policies.factory import make_pre_post_processors

        try:
            dataset = LeRobotDataset(repo_id, root=root, episodes=[0], video_backend=video_backend)
        except Exception as error:  # noqa: BLE001  (the push goes on; the warning says why)
            logging.warning(
                "The model card shows no picture of where the policy looks: the dataset %s could not be "
                "read (%s: %s).",
                repo_id,
                type(error).__name__,
                error,
            )
            return None
        if preprocessor is None:
            preprocessor, _ = make_pre_post_processors(self.config, dataset_stats=dataset.meta.stats)
        return where_it_looks(self, preprocessor, dataset)

    def push_model_to_hub(self, cfg, *args, **kwargs):
        """LeRobot's push (``lerobot-train --policy.push_to_hub=true``), whose card shows where the policy
        looks on its training data (:meth:`card_picture`), uploaded first as ``grids_points.png``: LeRobot's
        push uploads only the safetensors, json, yaml and md files of its folder."""
        dataset = cfg.dataset
        picture = self.card_picture(dataset.repo_id, dataset.root, video_backend=dataset.video_backend)
        if picture is not None:
            api = HfApi()
            repo_id = api.create_repo(
                repo_id=self.config.repo_id, private=self.config.private, exist_ok=True
            ).repo_id
            api.upload_file(
                path_or_fileobj=png_bytes(picture),
                path_in_repo=CARD_PICTURE,
                repo_id=repo_id,
                commit_message="Upload where the GridS policy looks (the model card's picture)",
            )
        self.card_shows_picture = picture is not None
        try:
            return super().push_model_to_hub(cfg, *args, **kwargs)
        finally:
            self.card_shows_picture = False

    def generate_model_card(
        self, dataset_repo_id: str, model_type: str, license: str | None, tags: list[str] | None, **kwargs
    ) -> ModelCard:
        """LeRobot's card (0.4.4, 0.6.1), tagged ``grids``, with the GridS section
        (:func:`grids_card_section`; on LeRobot versions with a free ``generate_model_card`` the section is
        added there, see
        :func:`lerobot_grids.compat.extend_free_model_card`); written offline too, unvalidated
        (:func:`lerobot_grids.compat.card_validated_where_online`)."""
        with compat.card_validated_where_online():
            card = super().generate_model_card(
                dataset_repo_id, model_type, license, [*(tags or []), "grids"], **kwargs
            )
        picture = CARD_PICTURE if self.__dict__.get("card_shows_picture") else None
        card.text += grids_card_section(self.config, picture)
        return card


def compat_revision_hint(dense_type: str) -> str:
    """Where LeRobot's dense base checkpoints exist in several Hub revisions, say which fits this LeRobot."""
    if compat.DENSE_BASE_HUB_REVISION is None:
        return ""
    return (
        f" (LeRobot {compat.LEROBOT_VERSION}'s {dense_type} weights on the Hub are under revision "
        f"{compat.DENSE_BASE_HUB_REVISION!r}: "
        f"--policy.init_from=lerobot/{dense_type}_base@{compat.DENSE_BASE_HUB_REVISION})"
    )


def grids_card_section(config: PreTrainedConfig, picture: str | None = None) -> str:
    """The model card's GridS section: what the policy is, its GridS settings, and ``picture`` (a file beside
    the card) of where it looks."""
    settings = "\n".join(f"| `{name}` | `{value}` |" for name, value in vars(config.grids).items())
    dense_type = config.type.removesuffix("_grids")
    reader = "transformer" if dense_type == "act" else "language model"
    shown = (
        f"\n![Where this policy reads its images]({picture})\n\n"
        f"Where it reads: the {config.grids.num_tokens} points per camera (rows) on frames of the first "
        "episode of its training data (columns).\n"
        if picture
        else ""
    )
    return (
        "\n## GridS token pruning\n\n"
        f"This {dense_type} policy feeds each camera to its {reader} as K tokens read by the "
        'Differentiable Grid Sampler (GridS, "See What Matters", ICML 2026) at learned continuous '
        "points, instead of the dense image tokens. Load it with the `lerobot_policy_grids` package "
        "installed (`pip install lerobot_policy_grids`).\n"
        f"{shown}\n"
        f"| GridS setting | value |\n|---|---|\n{settings}\n"
    )


def png_bytes(picture: np.ndarray) -> bytes:
    """An ``H x W x 3`` RGB uint8 picture as a PNG file's bytes."""
    return cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))[1].tobytes()


def write_model_card(checkpoint: Path) -> Path:
    """The model card LeRobot writes when it pushes a policy (LeRobot's card with the GridS section and its
    picture of where the policy looks), saved as ``README.md`` and ``grids_points.png`` in a GridS checkpoint
    folder (``.../pretrained_model``), so that the folder can be uploaded as it is later (``hf upload``);
    works offline. The training run's ``train_config.json`` there names the dataset, whose first episode the
    picture shows through the checkpoint's own preprocessor."""
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    checkpoint = Path(checkpoint)
    card_path, picture_path = checkpoint / "README.md", checkpoint / CARD_PICTURE
    for path in (card_path, picture_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists (nothing is overwritten).")
    if not (checkpoint / "train_config.json").is_file():
        raise FileNotFoundError(
            f"{checkpoint} has no train_config.json: give the pretrained_model folder of a lerobot-train "
            "checkpoint (outputs/train/<run>/checkpoints/<step>/pretrained_model)."
        )
    train_config = TrainPipelineConfig.from_pretrained(checkpoint)
    policy = get_policy_class(train_config.policy.type).from_pretrained(checkpoint)
    if not isinstance(policy, GridSPolicyMixin):
        raise ValueError(f"{checkpoint} holds a {policy.config.type} policy, not a GridS one.")
    config, dataset = policy.config, train_config.dataset
    preprocessor, _ = make_pre_post_processors(config, pretrained_path=str(checkpoint))
    picture = policy.card_picture(dataset.repo_id, dataset.root, preprocessor, dataset.video_backend)
    if picture is not None:
        picture_path.write_bytes(png_bytes(picture))
        policy.card_shows_picture = True
    extra = {"cfg": train_config} if compat.MODEL_CARD_TAKES_TRAIN_CONFIG else {}
    card = policy.generate_model_card(dataset.repo_id, config.type, config.license, config.tags, **extra)
    card.save(str(card_path))
    return card_path
