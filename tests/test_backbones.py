"""The offline SmolVLM backbone folders shipped with the package."""

import pytest
import torch
import transformers
from packaging.version import Version
from transformers import AutoConfig, AutoTokenizer, SmolVLMForConditionalGeneration

from lerobot_grids.backbones import (
    SMOLVLM2_500M,
    TINY_PALIGEMMA_TOKENIZER,
    TINY_SMOLVLM,
    write_shipped_backbones,
)


@pytest.mark.skipif(
    Version(transformers.__version__) >= Version("5"),
    reason="the shipped folders are written with transformers 4 (LeRobot 0.4.4's); transformers 5 writes "
    "processors in another layout. Both load them: every smolvla_grids and pi0_grids test reads them.",
)
def test_the_shipped_backbones_are_what_our_code_makes(tmp_path):
    write_shipped_backbones(tmp_path)
    for shipped in (TINY_SMOLVLM, SMOLVLM2_500M, TINY_PALIGEMMA_TOKENIZER):
        files = sorted(path.name for path in shipped.iterdir())
        assert files == sorted(path.name for path in (tmp_path / shipped.name).iterdir())
        for name in files:
            assert (tmp_path / shipped.name / name).read_bytes() == (shipped / name).read_bytes(), name


def test_the_writer_refuses_a_non_empty_folder_before_writing(tmp_path):
    (tmp_path / SMOLVLM2_500M.name).mkdir()
    (tmp_path / SMOLVLM2_500M.name / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="smolvlm2_500m already exists and is not empty.*--root"):
        write_shipped_backbones(tmp_path)
    assert not any((tmp_path / TINY_SMOLVLM.name).iterdir())
    assert (tmp_path / SMOLVLM2_500M.name / "config.json").read_text() == "{}"


def test_tokenizer_has_smolvla_image_tokens_and_encodes_any_text():
    tokenizer = AutoTokenizer.from_pretrained(TINY_SMOLVLM)
    for attribute in ("fake_image_token_id", "global_image_token_id", "image_token_id"):
        assert isinstance(getattr(tokenizer, attribute), int)
    text = "Stack the green cube onto the blue cube.\nÜnïcödé 42"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_full_size_architecture_is_smolvlm2_500m():
    """507M parameters as published for SmolVLM2-500M; 512x512 input gives 8x8 = 64 tokens per image."""
    config = AutoConfig.from_pretrained(SMOLVLM2_500M)
    with torch.device("meta"):
        model = SmolVLMForConditionalGeneration(config)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == 507
    vision = config.vision_config
    assert vision.image_size // vision.patch_size // config.scale_factor == 8


def test_paligemma_tokenizer_has_gemma_special_ids_and_starts_with_bos():
    tokenizer = AutoTokenizer.from_pretrained(TINY_PALIGEMMA_TOKENIZER)
    assert (
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        tokenizer.bos_token_id,
        tokenizer.unk_token_id,
    ) == (0, 1, 2, 3)
    ids = tokenizer("Transfer the pen into the container.\n")["input_ids"]
    assert ids[0] == 2 and max(ids) < 512 and len(tokenizer) <= 512
