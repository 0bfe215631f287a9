"""Configuration of ``pi0_grids``: pi0 with GridS at the PaliGemma backbone's ``embed_image``; the options it
shares with ``pi05_grids``."""

from dataclasses import dataclass, field

from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.pi0.configuration_pi0 import PI0Config

from lerobot_grids.policies.options import GridSOptions, refused_as_option_error

# Gemma widths and depths beside pi0's own "gemma_2b" and "gemma_300m" (lerobot's get_gemma_config).
# pi0's joint attention needs the language model and the action expert to share depth, heads and
# head_dim; the tiny pair keeps pi0's 8 query heads and 1 key-value head.
TINY_GEMMA_VARIANTS = {
    "gemma_tiny": {
        "width": 64,
        "depth": 2,
        "mlp_dim": 128,
        "num_heads": 8,
        "num_kv_heads": 1,
        "head_dim": 16,
    },
    "gemma_tiny_expert": {
        "width": 32,
        "depth": 2,
        "mlp_dim": 64,
        "num_heads": 8,
        "num_kv_heads": 1,
        "head_dim": 16,
    },
}
GEMMA_VARIANTS = ("gemma_2b", "gemma_300m", *TINY_GEMMA_VARIANTS)
# SigLIP vision towers: pi0's So400m/14 and a toy one with the same 14-pixel patches (16x16 tokens at 224).
SIGLIP_VARIANTS = {
    "siglip_so400m": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
    },
    "siglip_tiny": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    },
}
PALIGEMMA_VOCAB_SIZE = 257152


@dataclass
class PaliGemmaGridSOptions:
    """The options ``pi0_grids`` and ``pi05_grids`` add to LeRobot's ``PI0Config`` / ``PI05Config``
    (put before it):

    Attributes:
        grids: the GridS sampler applied to each camera's tokens (``--policy.grids.num_tokens=16``, ...).
        init_from: Hub repo id (optionally ``@revision``, e.g. ``lerobot/pi0_base@v0.4``) or local folder of
            a dense checkpoint of the LeRobot policy (``pi0``, ``pi05``) whose weights initialise every dense
            parameter of a fresh policy; only the GridS parameters start new. Ignored when loading a GridS
            checkpoint (``--policy.path``).
        vision_variant: SigLIP tower, ``siglip_so400m`` (pi0's) or ``siglip_tiny``.
        tokenizer_name: PaliGemma tokenizer, a Hub repo id or a local folder.
        vocab_size: rows of the token embedding; must cover the tokenizer's ids.
    ``paligemma_variant`` and ``action_expert_variant`` also accept ``gemma_tiny`` and ``gemma_tiny_expert``.
    """

    grids: GridSOptions = field(default_factory=GridSOptions)
    init_from: str | None = None
    vision_variant: str = "siglip_so400m"
    tokenizer_name: str = "google/paligemma-3b-pt-224"
    vocab_size: int = PALIGEMMA_VOCAB_SIZE

    def __post_init__(self):
        with refused_as_option_error():
            self.check_options()

    def check_options(self) -> None:
        """LeRobot's ``PI0Config`` / ``PI05Config.__post_init__`` know only pi0's two Gemma variants: the
        options are checked here instead."""
        PreTrainedConfig.__post_init__(self)
        if isinstance(self.grids, dict):  # as from make_policy_config("pi0_grids", grids={...})
            self.grids = GridSOptions(**self.grids)
        if self.grids.split_layer is not None:
            raise ValueError(
                f"--policy.grids.split_layer={self.grids.split_layer} (sampling inside the vision tower) is "
                f"a smolvla_grids option; {self.type} samples SigLIP's output tokens. Drop it."
            )
        if self.n_action_steps > self.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) cannot be greater than chunk_size "
                f"({self.chunk_size})."
            )
        for name in ("paligemma_variant", "action_expert_variant"):
            if getattr(self, name) not in GEMMA_VARIANTS:
                raise ValueError(
                    f"Unknown Gemma variant {getattr(self, name)!r} for {name}: choose one of "
                    f"{', '.join(GEMMA_VARIANTS)} (--policy.{name}=...)."
                )
        if self.vision_variant not in SIGLIP_VARIANTS:
            raise ValueError(
                f"Unknown vision_variant {self.vision_variant!r}: choose one of {', '.join(SIGLIP_VARIANTS)}."
            )
        if self.dtype not in ("bfloat16", "float32"):
            raise ValueError(f"Unknown dtype {self.dtype!r}: choose bfloat16 or float32.")
        height, width = self.image_resolution
        if height != width:
            raise ValueError(
                f"PaliGemma needs square images, got image_resolution={list(self.image_resolution)}: set "
                f"--policy.image_resolution=[{max(height, width)},{max(height, width)}] (images are resized "
                "with padding, keeping their aspect ratio)."
            )


@PreTrainedConfig.register_subclass("pi0_grids")
@dataclass
class PI0GridsConfig(PaliGemmaGridSOptions, PI0Config):
    """Every ``pi0`` option, plus :class:`PaliGemmaGridSOptions`'."""
