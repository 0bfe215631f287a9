"""The LeRobot version differences (lerobot_grids.compat) and the features that depend on them."""

import importlib
import importlib.util
import inspect
import json
import sys
import types
from pathlib import Path

import pytest
from conftest import make_config
from huggingface_hub import ModelCard
from lerobot.policies.pi0 import modeling_pi0
from simulated_hardware import SimulatedRealSense

from lerobot_grids import compat
from lerobot_grids.policies import GRIDS_CONFIGS, grids_policy
from lerobot_grids.policies.grids_policy import grids_card_section, split_revision


def test_the_switches_agree_with_this_lerobots_source():
    """Each switch names an upstream change; here it is checked against the LeRobot installed."""
    assert (
        importlib.util.find_spec("lerobot.policies.pi_gemma") is not None
    ) == compat.PI_ON_STOCK_TRANSFORMERS
    source = Path(modeling_pi0.__file__).read_text()
    assert ("incorrect transformer version" not in source) == compat.PI_ON_STOCK_TRANSFORMERS
    assert (None if compat.PI_ON_STOCK_TRANSFORMERS else "v0.4") == compat.DENSE_BASE_HUB_REVISION


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("lerobot/pi0_base@v0.4", ("lerobot/pi0_base", "v0.4")),
        ("lerobot/pi0_base", ("lerobot/pi0_base", None)),
        ("user/model@0123abc", ("user/model", "0123abc")),
    ],
)
def test_init_from_names_a_hub_revision_after_the_at_sign(source, expected):
    assert split_revision(source) == expected


def test_a_local_folder_with_an_at_sign_is_a_folder(tmp_path):
    folder = tmp_path / "run@2"
    folder.mkdir()
    assert split_revision(str(folder)) == (str(folder), None)


def test_init_from_downloads_the_named_revision(monkeypatch, tmp_path, dataset_root):
    """The Hub client is asked for the revision; the download itself is the Hub client's (not run offline)."""
    asked = []
    (tmp_path / "config.json").write_text(json.dumps({"type": "pi0"}))

    def download(repo_id, filename, revision=None):
        asked.append((repo_id, filename, revision))
        return str(tmp_path / filename)

    monkeypatch.setattr(grids_policy, "hf_hub_download", download)
    with pytest.raises(FileNotFoundError):  # the stand-in serves config.json only
        from lerobot_grids.policies.pi0_grids.modeling_pi0_grids import PI0GridsPolicy

        PI0GridsPolicy(make_config("pi0_grids", dataset_root=dataset_root, init_from="lerobot/pi0_base@v0.4"))
    assert asked == [
        ("lerobot/pi0_base", "config.json", "v0.4"),
        ("lerobot/pi0_base", "model.safetensors", "v0.4"),
    ]


def test_model_card_section_on_lerobot_main_branch_free_function_form(monkeypatch):
    """LeRobot's main branch renders the card with ``lerobot.common.train_utils.generate_model_card(model_cfg,
    cfg=None, dataset_meta=None)``; a module of that form gets the GridS section for our configs only."""
    rendered = []

    def generate_model_card(model_cfg, cfg=None, dataset_meta=None):  # main's signature
        rendered.append(model_cfg.type)
        return ModelCard(f"---\nlicense: apache-2.0\n---\n# {model_cfg.type}\n")

    train_utils = types.ModuleType("lerobot.common.train_utils")  # as on LeRobot's main branch
    train_utils.generate_model_card = generate_model_card
    package = sys.modules.get("lerobot.common") or types.ModuleType("lerobot.common")
    monkeypatch.setitem(sys.modules, "lerobot.common", package)
    monkeypatch.setitem(sys.modules, "lerobot.common.train_utils", train_utils)
    monkeypatch.setattr(package, "train_utils", train_utils, raising=False)
    assert compat.extend_free_model_card(grids_card_section, GRIDS_CONFIGS)
    assert compat.extend_free_model_card(grids_card_section, GRIDS_CONFIGS)  # wrapped once only
    ours = train_utils.generate_model_card(make_config("smolvla_grids", grids={"num_tokens": 4}))
    assert "## GridS token pruning" in ours.text and "| `num_tokens` | `4` |" in ours.text
    assert ours.text.count("## GridS token pruning") == 1
    other = train_utils.generate_model_card(types.SimpleNamespace(type="act"))
    assert "GridS" not in other.text and rendered == ["smolvla_grids", "act"]


def _lerobot_definition(our_class: type, method: str):
    """The first class after ours in ``our_class``'s method resolution order that is not this package's and
    defines ``method``: the LeRobot method we override."""
    for base in our_class.__mro__[1:]:
        if not base.__module__.startswith("lerobot_grids") and method in vars(base):
            return base, vars(base)[method]
    return None, None


def _parameters(function) -> tuple[set[str], bool]:
    function = getattr(function, "__func__", function)
    parameters = inspect.signature(function).parameters.values()
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)
    named = {
        parameter.name for parameter in parameters if parameter.kind is not inspect.Parameter.VAR_KEYWORD
    }
    return named - {"args"}, takes_any


@pytest.mark.parametrize("our_class_path", sorted(compat.LEROBOT_OVERRIDES))
def test_every_lerobot_method_we_override_is_still_lerobots_with_parameters_we_accept(
    our_class_path, monkeypatch
):
    """compat.LEROBOT_OVERRIDES against the LeRobot installed: a renamed or removed method, or a parameter our
    override would not accept, fails here instead of silently bypassing our override."""
    module_name, class_name = our_class_path.split(":")
    # LeRobot 0.6's RealSense camera imports librealsense (needs libusb): a simulated one
    monkeypatch.setitem(
        sys.modules, "pyrealsense2", sys.modules.get("pyrealsense2") or SimulatedRealSense({})
    )
    our_class = getattr(importlib.import_module(module_name), class_name)
    for method in compat.LEROBOT_OVERRIDES[our_class_path]:
        lerobot_class, lerobot_method = _lerobot_definition(our_class, method)
        assert lerobot_class is not None, f"{class_name}.{method}: no LeRobot base class defines it any more"
        ours, ours_takes_any = _parameters(getattr(our_class, method))
        theirs, _ = _parameters(lerobot_method)
        missing = set() if ours_takes_any else theirs - ours
        assert not missing, (
            f"{class_name}.{method}: LeRobot's {lerobot_class.__name__}.{method} takes {missing}"
        )


@pytest.mark.parametrize("name", compat.LEROBOT_PATCHED_NAMES)
def test_every_name_we_patch_still_exists_where_we_patch_it(name, monkeypatch):
    module_name, attribute_path = name.split(":")
    monkeypatch.setitem(
        sys.modules, "pyrealsense2", sys.modules.get("pyrealsense2") or SimulatedRealSense({})
    )
    target = importlib.import_module(module_name)
    for attribute in attribute_path.split("."):
        assert hasattr(target, attribute), (
            f"{name}: gone from LeRobot; the patch that replaces it would do nothing"
        )
        target = getattr(target, attribute)
