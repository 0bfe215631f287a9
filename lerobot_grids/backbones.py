"""Offline backbone folders for ``--policy.vlm_model_name`` and ``--policy.tokenizer_name`` (no weights,
nothing downloaded).

SmolVLA reads the backbone's config and processor (tokenizer) from ``vlm_model_name`` even with
``--policy.load_vlm_weights=false``; pi0 reads its tokenizer from ``tokenizer_name``. Folders made by this
module ship with the package:

- ``tiny_smolvlm``: the SmolVLM architecture at toy width and depth, with a small byte-level BPE
  tokenizer trained here, for tests and the CPU demo. A 256x256 input (``--policy.
  resize_imgs_with_padding=[256,256]``) gives 16x16 patches and, after the 2x pixel shuffle, the same
  8x8 grid of 64 tokens per camera as the real SmolVLA.
- ``smolvlm2_500m``: the architecture of ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct`` (the default
  backbone of SmolVLA) for benchmarks with random weights, with the same tokenizer files as the tiny
  folder (the benchmark never reads text, only token counts).
- ``tiny_paligemma_tokenizer``: a small tokenizer with PaliGemma's special tokens, for ``pi0_grids``
  offline (``--policy.tokenizer_name``; pi0's own is ``google/paligemma-3b-pt-224`` on the Hub).

Regenerate them with ``python -m lerobot_grids.backbones`` (it writes into new or empty folders only:
remove the shipped ones first, or pass ``--root``).
"""

import argparse
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

from lerobot_grids.output_folder import new_output_dir

BACKBONES_DIR = Path(__file__).parent / "assets"
TINY_SMOLVLM = BACKBONES_DIR / "tiny_smolvlm"
SMOLVLM2_500M = BACKBONES_DIR / "smolvlm2_500m"
TINY_PALIGEMMA_TOKENIZER = BACKBONES_DIR / "tiny_paligemma_tokenizer"

# Special tokens of SmolVLM's tokenizer that SmolVLA and SmolVLMProcessor look up by attribute.
IMAGE_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
PAD_TOKEN = "<|endoftext|>"

# A few sentences of robot-task language: the tiny tokenizer learns its merges from them.
_TOKENIZER_CORPUS = [
    "Pick up the green cube and place it into the green bowl.",
    "Transfer the pen into the container.",
    "Stack the green cube onto the blue cube.",
    "Pick the red block, put the yellow block on the left, push the purple object to the right side.",
    "Move the arm to the front, grasp the object and release it in the box.",
    "0123456789",
]


def train_tokenizer(
    special_tokens: list[str], vocab_size: int = 512, prepend_bos: bool = False, **special_token_kwargs
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes, no unknown token) learnt on a few task sentences,
    with ``special_tokens`` first; with ``prepend_bos``, every text starts with the ``bos_token``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TOKENIZER_CORPUS, trainer=trainer)
    if prepend_bos:
        bos_token = special_token_kwargs["bos_token"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A $B",
            special_tokens=[(bos_token, tokenizer.token_to_id(bos_token))],
        )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=8192, **special_token_kwargs)


def tiny_smolvlm_tokenizer() -> PreTrainedTokenizerFast:
    """SmolVLM's special tokens, with the image tokens SmolVLA and SmolVLMProcessor look up by attribute."""
    return train_tokenizer(
        [PAD_TOKEN, "<|im_start|>", *IMAGE_TOKENS.values(), "<video>"],
        bos_token="<|im_start|>",
        pad_token=PAD_TOKEN,
        eos_token=PAD_TOKEN,
        extra_special_tokens=IMAGE_TOKENS,
    )


def tiny_paligemma_tokenizer() -> PreTrainedTokenizerFast:
    """PaliGemma's special tokens at Gemma's ids (``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3) and
    its ``<bos>`` before every prompt; ids stay below 512 (``--policy.vocab_size=512``)."""
    return train_tokenizer(
        ["<pad>", "<eos>", "<bos>", "<unk>"],
        prepend_bos=True,
        bos_token="<bos>",
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
    )


def tiny_smolvlm_config(vocab_size: int) -> SmolVLMConfig:
    """SmolVLM at toy size: 2-layer SigLIP-style tower of width 32, 4-layer Llama of width 64."""
    return SmolVLMConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 256,
            "patch_size": 16,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 2048,
            "rope_theta": 100000.0,
            "pad_token_id": 0,
        },
        scale_factor=2,
        vocab_size=vocab_size,
        pad_token_id=0,
    )


def smolvlm2_500m_config(vocab_size: int = 49280) -> SmolVLMConfig:
    """The architecture of ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``: 12-layer SigLIP tower at 512x512,
    pixel shuffle by 4 (8x8 = 64 tokens per image), 32-layer Llama of width 960."""
    return SmolVLMConfig(
        vision_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 512,
            "patch_size": 16,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": 960,
            "intermediate_size": 2560,
            "num_hidden_layers": 32,
            "num_attention_heads": 15,
            "num_key_value_heads": 5,
            "head_dim": 64,
            "max_position_embeddings": 8192,
            "rope_theta": 100000.0,
            "rms_norm_eps": 1e-5,
            "pad_token_id": 2,
        },
        scale_factor=4,
        vocab_size=vocab_size,
        pad_token_id=2,
    )


def write_backbone(folder: Path, config: SmolVLMConfig, tokenizer: PreTrainedTokenizerFast) -> Path:
    """Write ``config.json`` and the processor (tokenizer, image and video processors) into ``folder``."""
    config.save_pretrained(folder)
    image_size = config.vision_config.image_size
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(
            size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}
        ),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(),
        image_seq_len=(image_size // config.vision_config.patch_size // config.scale_factor) ** 2,
    )
    processor.save_pretrained(folder)
    return folder


def write_shipped_backbones(root: Path = BACKBONES_DIR) -> None:
    """Write the three folders under ``root``; each must be new or empty (remove a shipped one to regenerate
    it)."""
    for backbone in (TINY_SMOLVLM, SMOLVLM2_500M, TINY_PALIGEMMA_TOKENIZER):
        new_output_dir(Path(root) / backbone.name, "--root")
    tokenizer = tiny_smolvlm_tokenizer()
    write_backbone(Path(root) / TINY_SMOLVLM.name, tiny_smolvlm_config(len(tokenizer)), tokenizer)
    write_backbone(Path(root) / SMOLVLM2_500M.name, smolvlm2_500m_config(), tokenizer)
    tiny_paligemma_tokenizer().save_pretrained(Path(root) / TINY_PALIGEMMA_TOKENIZER.name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=BACKBONES_DIR, help="where to write the backbone folders"
    )
    write_shipped_backbones(parser.parse_args().root)


if __name__ == "__main__":
    main()
