"""Every difference between the LeRobot versions this package supports, and every place it patches or
overrides LeRobot, in one place.

LeRobot 0.4.4 is the last release for Python 3.10/3.11; 0.5/0.6 (Python >= 3.12) is what users run now.
The rest of the package asks this module, never ``lerobot.__version__``:

- ``PI_ON_STOCK_TRANSFORMERS``: since 0.5 LeRobot's pi0/pi05 run on stock transformers 5
  (``lerobot.policies.pi_gemma``: gated RMS norms, a ``DynamicCache`` for the prefix), so our
  PaliGemma backbone uses LeRobot's own modules and ``forward``. On 0.4.4 pi0 needs openpi's patched
  transformers fork, and our backbone implements pi0's ``forward`` on stock transformers itself; pi05's
  adaptive RMS norm is not part of that, so ``pi05_grids`` needs 0.5+.
- ``PROCESSORS_BY_CONVENTION``: since 0.6.1 the factory finds ``make_<type>_pre_post_processors`` next
  to a config subclass; 0.4.4 hands every ``PI0Config`` subclass pi0's own processors, which
  :func:`route_family_processors` routes to ours.
- ``POLICY_ON_ROBOT_COMMAND``: the LeRobot command that runs a policy on a robot and records its episodes:
  ``lerobot-record --policy.path=...`` up to 0.5, ``lerobot-rollout`` since 0.6.0 (whose ``lerobot-record``
  records teleoperation only).
- ``REALSENSE_NAME_LOOKUP_FIXED``: LeRobot's RealSense camera finds a camera by name since 0.6.0
  (huggingface/lerobot#2493).
- ``DENSE_BASE_HUB_REVISION``: the Hub's ``lerobot/pi0_base``, ``lerobot/pi05_base`` and
  ``lerobot/smolvla_base`` were re-uploaded for the transformers-5 code; the weights for 0.4.4 are kept
  under revision ``v0.4``.
- :func:`import_realsense_config`: 0.6 imports ``pyrealsense2`` when its RealSense package is imported,
  which fails where librealsense's ``libusb-1.0`` is missing; the config class is read without it.
- ``dataset_to_policy_features``: in ``lerobot.datasets.utils`` up to 0.5.0, ``lerobot.utils.feature_utils``
  since 0.6.0.
- ``predict_action`` (the record loop's one step of a policy: observation to action through the processors):
  in ``lerobot.utils.control_utils`` up to 0.5, ``lerobot.common.control_utils`` since 0.6.0.
- ``SMOLVLA_PREFIX_PASS``: the keyword arguments of ``SmolVLMWithExpertModel.forward`` for a self-attention
  pass over the prefix: ``fill_kv_cache=True`` up to 0.6.0; since 0.6.1 a cache is filled whenever
  ``use_cache`` is set and none is given.
- :func:`smolvlm_checkpoint_for_transformers5`: transformers 5 (LeRobot 0.5+) computes SmolVLM's vision
  position ids exactly (patch ``i`` of ``n`` reads position row ``i``); transformers 4 (LeRobot 0.4.4)
  shifted them (rows ``0, 0, 1, ..., n-2``), so a SmolVLA checkpoint trained under one reads other position
  embeddings under the other. ``SMOLVLM_EXACT_PATCH_POSITIONS`` says which this environment does.
- :func:`extend_free_model_card`: the model card is ``PreTrainedPolicy.generate_model_card`` on 0.4.4
  and 0.6.1, and a free function ``lerobot.common.train_utils.generate_model_card(model_cfg, ...)`` on
  LeRobot's main branch.

Where the package patches or overrides LeRobot, on every version (nothing else of LeRobot's is changed):

- patched in LeRobot's modules, for our types only: :func:`route_family_processors` (pi0's processor factory,
  before 0.6.1), :func:`extend_free_model_card` (the free model card, where there is one), and
  ``lerobot_grids.scripts.lerobot_grids_policy_server.allow_grids_policies`` (the async server's
  ``SUPPORTED_POLICIES`` and ``PolicyServer``, in that command's process only);
- patched while a call runs: ``processor_pi0_grids.tokenizer_named`` (the ``TokenizerProcessorStep`` of
  LeRobot's pi0 / pi0.5 processor factories, for the configured tokenizer);
  :func:`card_validated_where_online` (huggingface_hub's ``RepoCard.validate``, which LeRobot's
  ``generate_model_card`` calls, kept from failing with the Hub offline);
- a LeRobot object's class swapped: ``SmolVLMWithExpertGridSModel.add_grids`` (SmolVLA's backbone, for its
  ``embed_image``); ``ACTGridSEncoder.add_grids`` and ``ACTGridSDecoder.add_grids`` (ACT's encoder and
  decoder, for their ``forward``: relies on ``ACT.forward`` passing the encoder its tokens and ``pos_embed``,
  the decoder ``encoder_pos_embed``);
- LeRobot methods overridden in our subclasses: ``GridSPolicyMixin`` (``from_pretrained``, the strict
  ``_load_as_safetensor``, ``push_model_to_hub`` (the card's picture uploaded first), ``generate_model_card``,
  ``_get_default_peft_targets``, ``_validate_peft_config``),
  ``SmolVLAGridsPolicy`` (``_get_action_chunk``, ``prepare_images``, ``forward``),
  ``PaliGemmaGridSPolicyMixin`` (``__init__``, ``predict_action_chunk``, ``_preprocess_images``, ``forward``),
  ``ACTGridsPolicy`` (``predict_action_chunk``, ``forward``), both backbones' ``embed_image``,
  ``GridSPolicyServer.SendPolicyInstructions``, ``RealSenseByNameCamera`` (``_find_serial_number_from_name``,
  ``connect``) and ``MetaWorldCPU`` (``reset``, ``_format_raw_obs``, ``render``); on LeRobot 0.6, where env
  configs make their envs, ``create_envs`` of ``GridSTabletopEnv`` and ``MetaWorldCPUEnv`` (LeRobot's, after a
  check);
- private LeRobot code called: ``PI0Policy._fix_pytorch_state_dict_keys`` (dense pi0 weights, ``init_from``).

``LEROBOT_OVERRIDES`` and ``LEROBOT_PATCHED_NAMES`` below hold the same as data; ``tests/test_compat.py``
checks each against the LeRobot installed.
"""

import importlib.metadata
import importlib.util
import inspect
import logging
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from types import ModuleType

import torch
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.repocard import RepoCard
from lerobot.policies.pretrained import PreTrainedPolicy
from packaging.version import Version

# The list above as data, checked against the LeRobot installed by tests/test_compat.py: every LeRobot method
# one of our classes overrides (LeRobot must still define it, with parameters our override accepts), and every
# name of LeRobot's (or huggingface_hub's) we patch or swap (it must still exist where we replace it).
LEROBOT_OVERRIDES = {
    "lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids:SmolVLAGridsPolicy": (
        "from_pretrained",
        "_load_as_safetensor",
        "push_model_to_hub",
        "generate_model_card",
        "_get_default_peft_targets",
        "_validate_peft_config",
        "_get_action_chunk",
        "prepare_images",
        "forward",
    ),
    "lerobot_grids.policies.pi0_grids.modeling_pi0_grids:PI0GridsPolicy": (
        "from_pretrained",
        "_load_as_safetensor",
        "push_model_to_hub",
        "generate_model_card",
        "_get_default_peft_targets",
        "_validate_peft_config",
        "__init__",
        "predict_action_chunk",
        "_preprocess_images",
        "forward",
    ),
    "lerobot_grids.policies.act_grids.modeling_act_grids:ACTGridsPolicy": (
        "from_pretrained",
        "_load_as_safetensor",
        "push_model_to_hub",
        "generate_model_card",
        "_get_default_peft_targets",
        "_validate_peft_config",
        "predict_action_chunk",
        "forward",
    ),
    "lerobot_grids.policies.smolvla_grids.modeling_smolvla_grids:SmolVLMWithExpertGridSModel": (
        "embed_image",
    ),
    "lerobot_grids.policies.act_grids.modeling_act_grids:ACTGridSEncoder": ("forward",),
    "lerobot_grids.policies.act_grids.modeling_act_grids:ACTGridSDecoder": ("forward",),
    "lerobot_grids.policies.pi0_grids.paligemma_with_expert:PaliGemmaWithExpertGridSModel": ("embed_image",),
    "lerobot_grids.scripts.lerobot_grids_policy_server:GridSPolicyServer": ("SendPolicyInstructions",),
    "lerobot_grids.cameras.camera_realsense_by_name:RealSenseByNameCamera": (
        "_find_serial_number_from_name",
        "connect",
    ),
    "lerobot_grids.envs.metaworld:MetaWorldCPU": ("reset", "_format_raw_obs", "render"),
}
LEROBOT_PATCHED_NAMES = (
    # route_family_processors, before 0.6.1
    "lerobot.policies.pi0.processor_pi0:make_pi0_pre_post_processors",
    "lerobot.policies.pi0.processor_pi0:TokenizerProcessorStep",  # processor_pi0_grids.tokenizer_named
    "lerobot.policies.pi05.processor_pi05:TokenizerProcessorStep",  # the same, for pi05_grids
    "lerobot.async_inference.constants:SUPPORTED_POLICIES",  # allow_grids_policies
    "lerobot.async_inference.policy_server:PolicyServer",  # allow_grids_policies
    "huggingface_hub.repocard:RepoCard.validate",  # card_validated_where_online
    # private LeRobot code called, not replaced: pi0's key fixes, applied to dense weights only (init_from)
    "lerobot.policies.pi0.modeling_pi0:PI0Policy._fix_pytorch_state_dict_keys",
)

LEROBOT_VERSION = Version(importlib.metadata.version("lerobot"))
PI_ON_STOCK_TRANSFORMERS = Version("0.5.0") <= LEROBOT_VERSION
PROCESSORS_BY_CONVENTION = Version("0.6.1") <= LEROBOT_VERSION
REALSENSE_NAME_LOOKUP_FIXED = Version("0.6.0") <= LEROBOT_VERSION
POLICY_ON_ROBOT_COMMAND = "lerobot-rollout" if Version("0.6.0") <= LEROBOT_VERSION else "lerobot-record"
SMOLVLA_PREFIX_PASS = (
    {"use_cache": True}
    if Version("0.6.1") <= LEROBOT_VERSION
    else {"use_cache": False, "fill_kv_cache": True}
)
# Hub revision of LeRobot's dense base checkpoints (lerobot/pi0_base, ...) that fits this LeRobot.
DENSE_BASE_HUB_REVISION = None if PI_ON_STOCK_TRANSFORMERS else "v0.4"

# Re-exported from where this LeRobot keeps them (see the list above).
if Version("0.6.0") <= LEROBOT_VERSION:
    from lerobot.common.control_utils import predict_action  # noqa: F401
    from lerobot.utils.feature_utils import dataset_to_policy_features  # noqa: F401
else:
    from lerobot.datasets.utils import dataset_to_policy_features  # noqa: F401
    from lerobot.utils.control_utils import predict_action  # noqa: F401

TRANSFORMERS_VERSION = Version(importlib.metadata.version("transformers"))
SMOLVLM_EXACT_PATCH_POSITIONS = Version("5") <= TRANSFORMERS_VERSION
POSITION_EMBEDDING_KEY = "vision_model.embeddings.position_embedding.weight"

REALSENSE_CONFIG_MODULE = "lerobot.cameras.realsense.configuration_realsense"


def import_realsense_config():
    """LeRobot's ``RealSenseCameraConfig``, without importing ``pyrealsense2``.

    LeRobot 0.6's ``lerobot.cameras.realsense`` package imports its camera module, which imports
    ``pyrealsense2``; that fails on a machine without ``libusb-1.0`` (a training server). The
    configuration module itself needs neither, so it is loaded from the package folder on its own,
    under its own name: a later import of the package (on a machine with cameras) reuses it.
    """
    if REALSENSE_CONFIG_MODULE in sys.modules:
        return sys.modules[REALSENSE_CONFIG_MODULE].RealSenseCameraConfig
    package = importlib.util.find_spec("lerobot.cameras.realsense")
    spec = importlib.util.spec_from_file_location(
        REALSENSE_CONFIG_MODULE, f"{package.submodule_search_locations[0]}/configuration_realsense.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[REALSENSE_CONFIG_MODULE] = module
    spec.loader.exec_module(module)
    return module.RealSenseCameraConfig


MODEL_CARD_TAKES_TRAIN_CONFIG = "cfg" in inspect.signature(PreTrainedPolicy.generate_model_card).parameters


@contextmanager
def card_validated_where_online() -> Iterator[None]:
    """LeRobot's ``generate_model_card`` ends with ``card.validate()``, which posts the card to the Hub's
    ``validate-yaml`` endpoint: with the Hub offline (``HF_HUB_OFFLINE=1``) it raises and no card can be
    written. While the block runs, a card is validated where the Hub can be reached and kept unvalidated, with
    a warning, where it is offline (huggingface_hub's ``RepoCard.validate``; nothing else changes)."""
    validate = RepoCard.validate

    def validated_where_online(card, repo_type=None):
        try:
            return validate(card, repo_type)
        except OfflineModeIsEnabled:
            logging.warning(
                "The model card was not checked against the Hub's card rules: the Hub is offline."
            )

    RepoCard.validate = validated_where_online
    try:
        yield
    finally:
        RepoCard.validate = validate


def extend_free_model_card(section: Callable, config_classes: tuple[type, ...]) -> bool:
    """On LeRobot versions whose model card is the free function
    ``lerobot.common.train_utils.generate_model_card(model_cfg, ...)`` (LeRobot's main branch after 0.6.1),
    wrap it once so that the card of a config of ``config_classes`` ends with ``section(config)``
    (markdown); every other card stays LeRobot's. Returns whether it did (0.4.4 and 0.6.1 build the card
    in ``PreTrainedPolicy.generate_model_card``, which our policies extend instead)."""
    try:
        from lerobot.common import train_utils
    except ImportError:
        return False
    free_function = getattr(train_utils, "generate_model_card", None)
    if free_function is None or getattr(free_function, "extended_by_lerobot_grids", False):
        return free_function is not None

    @wraps(free_function)
    def generate_model_card(model_cfg, *args, **kwargs):
        if not isinstance(model_cfg, config_classes):
            return free_function(model_cfg, *args, **kwargs)
        with card_validated_where_online():
            card = free_function(model_cfg, *args, **kwargs)
        card.text += section(model_cfg)
        return card

    generate_model_card.extended_by_lerobot_grids = True
    train_utils.generate_model_card = generate_model_card
    return True


def route_family_processors(module: ModuleType, name: str, config_class: type, own_factory: Callable) -> bool:
    """Before 0.6.1 LeRobot's ``make_pre_post_processors`` hands every subclass of a family's config
    (``PI0Config``) that family's processor factory, looked up as ``module.name`` when it is called (pi0's
    always tokenises with ``google/paligemma-3b-pt-224``, so a plain ``lerobot-train --policy.type=pi0_grids``
    would ignore ``--policy.tokenizer_name``). Wrap it once so that a ``config_class`` config gets
    ``own_factory`` (the policy type's own processors) and every other config LeRobot's; ``own_factory``
    reaches LeRobot's through ``__wrapped__`` (:func:`inspect.unwrap`). Returns whether it did (0.6.1 finds
    ``make_<type>_pre_post_processors`` itself)."""
    family_factory = getattr(module, name)
    if PROCESSORS_BY_CONVENTION or getattr(family_factory, "routed_by_lerobot_grids", False):
        return not PROCESSORS_BY_CONVENTION

    @wraps(family_factory)
    def factory(config, *args, **kwargs):
        if isinstance(config, config_class):
            return own_factory(config, *args, **kwargs)
        return family_factory(config, *args, **kwargs)

    factory.routed_by_lerobot_grids = True
    setattr(module, name, factory)
    return True


def patch_position_rows(patches: int, exact: bool) -> torch.Tensor:
    """The position-embedding row SmolVLM's vision embeddings give each of ``patches`` patches along one side
    of an image that fills the grid (transformers 4: ``i / n * (1 - 1e-6)``, transformers 5: ``i / n``, both
    bucketed into ``n`` equal bins)."""
    index = torch.arange(patches, dtype=torch.float32)
    fraction = torch.clamp(index * (1.0 / patches), max=1 - 1e-6) if exact else index / patches * (1 - 1e-6)
    return torch.bucketize(fraction, torch.arange(1 / patches, 1.0, 1 / patches), right=True)


def smolvlm_checkpoint_for_transformers5(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A SmolVLA (or smolvla_grids) state dict trained under transformers 4, with the vision position
    embeddings re-indexed so that transformers 5 computes exactly the features transformers 4 did, for images
    that fill the vision tower's grid (``image_size`` of the backbone config). Other tensors are the same
    objects."""
    converted = dict(state_dict)
    for key, weight in state_dict.items():
        if key.endswith(POSITION_EMBEDDING_KEY):
            side = math.isqrt(weight.shape[0])
            old, new = patch_position_rows(side, exact=False), patch_position_rows(side, exact=True)
            rows = (old[:, None] * side + old[None, :]).flatten()
            targets = (new[:, None] * side + new[None, :]).flatten()
            remapped = weight.clone()
            remapped[targets] = weight[rows]
            converted[key] = remapped
    return converted
