"""Shared fixtures: a tiny SO-100 dataset, tiny smolvla_grids configs and batches, an intercepted Hub."""

import base64
import json
import os
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses
import torch
from safetensors.torch import load_file, save_file

os.environ["HF_HUB_OFFLINE"] = "1"

from lerobot.configs.policies import PreTrainedConfig  # noqa: E402
from lerobot.configs.types import FeatureType  # noqa: E402
from lerobot.datasets.factory import resolve_delta_timestamps  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402
from lerobot.policies.factory import get_policy_class, make_pre_post_processors  # noqa: E402

import lerobot_grids.policies  # noqa: E402, F401  (registers the policy types)
from lerobot_grids.backbones import TINY_PALIGEMMA_TOKENIZER, TINY_SMOLVLM  # noqa: E402
from lerobot_grids.compat import dataset_to_policy_features  # noqa: E402
from lerobot_grids.demo_dataset import make_so100_demo_dataset  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tools"))
from run_installed import build_wheel  # noqa: E402  (the repository's tools/, not a package)

DATASET_REPO_ID = "local/so100_grids_test"
# The unnormalisation statistics LeRobot saves with a policy's postprocessor.
POSTPROCESSOR_STATS = "policy_postprocessor_step_0_unnormalizer_processor.safetensors"
# A 128x128 input gives the tiny backbone 8x8 patches and, after its 2x pixel shuffle, a 4x4 grid.
TINY_POLICY_OPTIONS = {
    "vlm_model_name": str(TINY_SMOLVLM),
    "load_vlm_weights": False,
    "resize_imgs_with_padding": (128, 128),
    "chunk_size": 4,
    "n_action_steps": 4,
    "device": "cpu",
    "push_to_hub": False,
}

TINY_PI0_OPTIONS = {
    "paligemma_variant": "gemma_tiny",
    "action_expert_variant": "gemma_tiny_expert",
    "vision_variant": "siglip_tiny",
    "tokenizer_name": str(TINY_PALIGEMMA_TOKENIZER),
    "vocab_size": 512,
    "image_resolution": (112, 112),
    "tokenizer_max_length": 16,
    "num_inference_steps": 3,
    "chunk_size": 4,
    "n_action_steps": 4,
    "device": "cpu",
    "push_to_hub": False,
}

# ACT at toy width, without ImageNet weights (offline); the test cameras' 48x64 images give ResNet-18 a 2x2
# feature map.
TINY_ACT_OPTIONS = {
    "pretrained_backbone_weights": None,
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 2,
    "n_decoder_layers": 1,
    "latent_dim": 8,
    "chunk_size": 4,
    "n_action_steps": 4,
    "device": "cpu",
    "push_to_hub": False,
}
TINY_OPTIONS = {"pi0": TINY_PI0_OPTIONS, "pi05": TINY_PI0_OPTIONS, "act": TINY_ACT_OPTIONS}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from this checkout: what ``pip install lerobot_policy_grids`` installs."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "so100"
    make_so100_demo_dataset(root, DATASET_REPO_ID, num_episodes=2, episode_length=8, image_hw=(48, 64))
    return root


def make_config(
    policy_type: str = "smolvla_grids", dataset_root: Path | None = None, **options
) -> PreTrainedConfig:
    """A tiny policy config whose features are those of the test dataset."""
    tiny = TINY_OPTIONS.get(policy_type.removesuffix("_grids"), TINY_POLICY_OPTIONS)
    grids = options.get("grids", {})
    # The test cameras (4:3) cover 3x4 of the tiny SmolVLM's 4x4 grid, and give ACT's ResNet a 2x2 feature
    # map.
    if policy_type in ("smolvla_grids", "act_grids") and grids.get("sampler") != "dense":
        options["grids"] = {"num_tokens": 4, **grids}
    config = PreTrainedConfig.get_choice_class(policy_type)(**{**tiny, **options})
    if dataset_root is not None:
        features = dataset_to_policy_features(
            LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta.features
        )
        config.output_features = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
        config.input_features = {k: f for k, f in features.items() if k not in config.output_features}
    return config


def save_checkpoint(policy_type: str, dataset_root: Path, folder: Path, **options) -> Path:
    """A saved policy of ``policy_type`` for the SO-100 features (joints, cameras front and wrist), with
    LeRobot's processors, as lerobot-train saves one."""
    config = make_config(policy_type, dataset_root=dataset_root, **options)
    get_policy_class(policy_type)(config).save_pretrained(folder)
    stats = LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta.stats
    for processor in make_pre_post_processors(config, dataset_stats=stats):
        processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(dataset_root, tmp_path_factory) -> Path:
    """A saved smolvla_grids policy (:func:`save_checkpoint`)."""
    folder = tmp_path_factory.mktemp("ckpt") / "smolvla_grids"
    return save_checkpoint("smolvla_grids", dataset_root, folder, grids={"num_tokens": 4})


# The module whose bias is the last thing each type adds to its action output.
ACTION_OUTPUT = {"smolvla_grids": "action_out_proj", "act_grids": "action_head"}


def changed_copy(
    checkpoint: Path, folder: Path, file: str | None = None, change=None, action_bias: float | None = None
) -> Path:
    """A copy of a saved GridS ``checkpoint`` (processors included) in ``folder``, whose safetensors ``file``
    is changed by ``change(tensors)``, and whose action output's bias is ``action_bias`` if given."""
    shutil.copytree(checkpoint, folder)
    if file is not None:
        tensors = load_file(folder / file)
        change(tensors)
        save_file(tensors, folder / file)
    if action_bias is not None:
        policy_type = json.loads((checkpoint / "config.json").read_text())["type"]
        policy = get_policy_class(policy_type).from_pretrained(checkpoint)
        with torch.no_grad():
            getattr(policy.model, ACTION_OUTPUT[policy_type]).bias.fill_(action_bias)
        policy.save_pretrained(folder)
    return folder


def make_batch(config: PreTrainedConfig, dataset_root: Path, size: int = 2) -> dict:
    """A preprocessed training batch (action chunks included) from the test dataset."""
    meta = LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta
    dataset = LeRobotDataset(
        DATASET_REPO_ID, root=dataset_root, delta_timestamps=resolve_delta_timestamps(config, meta)
    )
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=size, shuffle=False)))
    preprocessor, _ = make_processors(config, dataset_stats=meta.stats)
    return preprocessor(batch)


def make_processors(config: PreTrainedConfig, dataset_stats=None):
    """The policy's processors as LeRobot's tools make them (LeRobot's factory)."""
    return make_pre_post_processors(config, dataset_stats=dataset_stats)


class FakeHub:
    """Answers the Hub's HTTP API as the real one would and keeps the files committed to each repo.

    huggingface_hub < 1.0 (LeRobot 0.4.4) talks through ``requests`` (intercepted with ``responses``), 1.x
    (LeRobot 0.6) through ``httpx`` (a ``MockTransport`` given to its client factory): both reach
    :meth:`answer`.
    """

    endpoint = "https://huggingface.co"

    def __init__(self):
        self.files: dict[str, dict[str, bytes]] = {}
        self.validated_cards: list[str] = []
        self.routes = [
            ("POST", re.compile(r"/api/repos/create$"), self._create_repo),
            ("POST", re.compile(r"/api/validate-yaml$"), self._validate_yaml),
            ("GET", re.compile(r"/api/models/(.+)/revision/main$"), self._repo_info),
            ("POST", re.compile(r"/api/models/(.+)/preupload/main$"), self._preupload),
            ("POST", re.compile(r"/api/models/(.+)/commit/main$"), self._commit),
        ]

    def answer(self, method: str, url: str, body: bytes | str | None) -> tuple[int, str]:
        path = url.removeprefix(self.endpoint).split("?")[0]
        body = body.decode() if isinstance(body, bytes) else (body or "")
        for route_method, pattern, handler in self.routes:
            match = pattern.search(path)
            if method == route_method and match:
                return 200, json.dumps(handler(match, body))
        return 404, json.dumps({"error": f"no fake Hub route for {method} {path}"})

    def _create_repo(self, match, body):
        request = json.loads(body)
        repo_id = (
            f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
        )
        self.files.setdefault(repo_id, {})
        return {"url": f"{self.endpoint}/{repo_id}", "repo_id": repo_id, "name": repo_id}

    def _validate_yaml(self, match, body):
        # ModelCard.validate sends a form; other clients of the endpoint send JSON.
        content = json.loads(body)["content"] if body.startswith("{") else parse_qs(body)["content"][0]
        self.validated_cards.append(content)
        return {}

    def _repo_info(self, match, body):
        return {"id": match.group(1), "sha": "0" * 40, "xetEnabled": False, "siblings": []}

    def _preupload(self, match, body):
        files = json.loads(body)["files"]
        return {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}

    def _commit(self, match, body):
        repo_id = match.group(1)
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                self.files[repo_id][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        return {
            "commitUrl": f"{self.endpoint}/{repo_id}/commit/0123456789abcdef",
            "commitOid": "0123456789abcdef",
        }


@pytest.fixture
def fake_hub(monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    hub = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    if hasattr(_http, "set_client_factory"):  # huggingface_hub 1.x: httpx
        import httpx

        def handle(request: httpx.Request) -> httpx.Response:
            status, body = hub.answer(request.method, str(request.url), request.read())
            return httpx.Response(status, content=body.encode(), headers={"content-type": "application/json"})

        _http.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(handle)))
        yield hub
        _http.set_client_factory(_http.default_client_factory)
    else:  # requests
        _http.reset_sessions()

        def callback(request):
            status, body = hub.answer(request.method, request.url, request.body)
            return status, {"content-type": "application/json"}, body

        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            for method in ("GET", "POST"):
                mock.add_callback(method, re.compile(rf"{hub.endpoint}/.*"), callback=callback)
            yield hub
        _http.reset_sessions()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
