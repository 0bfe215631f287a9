"""Shared fixtures: a tiny SO-100 dataset, tiny smolvla_grids configs and batches, an intercepted Hub."""

import base64
import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from lerobot.configs.policies import PreTrainedConfig  # noqa: E402
from lerobot.configs.types import FeatureType  # noqa: E402
from lerobot.datasets.factory import resolve_delta_timestamps  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402
from lerobot.datasets.utils import dataset_to_policy_features  # noqa: E402
from lerobot.policies.factory import make_pre_post_processors  # noqa: E402

import lerobot_grids.policies  # noqa: E402, F401  (registers the policy types)
from lerobot_grids.backbones import TINY_PALIGEMMA_TOKENIZER, TINY_SMOLVLM  # noqa: E402
from lerobot_grids.demo_dataset import make_so100_demo_dataset  # noqa: E402
from lerobot_grids.policies.pi0_grids.configuration_pi0_grids import PI0GridsConfig  # noqa: E402
from lerobot_grids.policies.pi0_grids.processor_pi0_grids import make_pi0_grids_pre_post_processors  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_REPO_ID = "local/so100_grids_test"
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


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "so100"
    make_so100_demo_dataset(root, DATASET_REPO_ID, num_episodes=2, episode_length=8, image_hw=(48, 64))
    return root


def make_config(policy_type: str = "smolvla_grids", dataset_root: Path | None = None, **options) -> PreTrainedConfig:
    """A tiny policy config whose features are those of the test dataset."""
    tiny = TINY_PI0_OPTIONS if policy_type.startswith("pi0") else TINY_POLICY_OPTIONS
    config = PreTrainedConfig.get_choice_class(policy_type)(**{**tiny, **options})
    if dataset_root is not None:
        features = dataset_to_policy_features(LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta.features)
        config.output_features = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
        config.input_features = {k: f for k, f in features.items() if k not in config.output_features}
    return config


def make_batch(config: PreTrainedConfig, dataset_root: Path, size: int = 2) -> dict:
    """A preprocessed training batch (action chunks included) from the test dataset."""
    meta = LeRobotDataset(DATASET_REPO_ID, root=dataset_root).meta
    dataset = LeRobotDataset(
        DATASET_REPO_ID, root=dataset_root, delta_timestamps=resolve_delta_timestamps(config, meta)
    )
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=size, shuffle=False)))
    if isinstance(config, PI0GridsConfig):  # LeRobot's factory would give pi0's processors (see README)
        preprocessor, _ = make_pi0_grids_pre_post_processors(config, dataset_stats=meta.stats)
    else:
        preprocessor, _ = make_pre_post_processors(config, dataset_stats=meta.stats)
    return preprocessor(batch)


class FakeHub:
    """Answers the Hub's HTTP API as the real one would and keeps the files committed to each repo."""

    endpoint = "https://huggingface.co"

    def __init__(self, mock):
        self.files: dict[str, dict[str, bytes]] = {}
        self.validated_cards: list[str] = []
        mock.add_callback("POST", f"{self.endpoint}/api/repos/create", callback=self._create_repo)
        mock.add_callback("POST", f"{self.endpoint}/api/validate-yaml", callback=self._validate_yaml)
        mock.add_callback("GET", re.compile(rf"{self.endpoint}/api/models/(.+)/revision/main"), callback=self._repo_info)
        mock.add_callback("POST", re.compile(rf"{self.endpoint}/api/models/(.+)/preupload/main"), callback=self._preupload)
        mock.add_callback("POST", re.compile(rf"{self.endpoint}/api/models/(.+)/commit/main"), callback=self._commit)

    def _create_repo(self, request):
        body = json.loads(request.body)
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        self.files.setdefault(repo_id, {})
        return 200, {}, json.dumps({"url": f"{self.endpoint}/{repo_id}"})

    def _validate_yaml(self, request):
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        # ModelCard.validate sends a form; other clients of the endpoint send JSON.
        content = json.loads(body)["content"] if body.startswith("{") else parse_qs(body)["content"][0]
        self.validated_cards.append(content)
        return 200, {}, json.dumps({})

    def _repo_info(self, request):
        repo_id = re.search(r"/api/models/(.+)/revision/main", request.url).group(1)
        return 200, {}, json.dumps({"id": repo_id, "sha": "0" * 40, "xetEnabled": False, "siblings": []})

    def _preupload(self, request):
        files = json.loads(request.body)["files"]
        answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
        return 200, {}, json.dumps({"files": answer})

    def _commit(self, request):
        repo_id = re.search(r"/api/models/(.+)/commit/main", request.url).group(1)
        for line in request.body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                self.files[repo_id][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        url = f"{self.endpoint}/{repo_id}/commit/0123456789abcdef"
        return 200, {}, json.dumps({"commitUrl": url, "commitOid": "0123456789abcdef"})


@pytest.fixture
def fake_hub(monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    _http.reset_sessions()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeHub(mock)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _http.reset_sessions()
