"""The README's commands run as written: each LeRobot command decodes into the config class LeRobot's own
parser fills for it (placeholders filled in, shipped configs looked up as ``$(lerobot-grids-configs <name>)``
does), each shipped config or asset it names exists, and its Python import works."""

import re
import shlex
import sys
from pathlib import Path

import draccus
import pytest
import yaml
from conftest import REPO_ROOT
from lerobot.utils.import_utils import register_third_party_plugins
from simulated_hardware import SimulatedRealSense

from lerobot_grids import compat
from lerobot_grids.configs import config_path, shipped_configs

README = (REPO_ROOT / "README.md").read_text()
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"<[^<>]+>")


def commands(text: str) -> list[list[str]]:
    """The command lines of a page's ``bash`` blocks, continuation lines joined, comments dropped, shipped
    configs and placeholders filled in (:func:`filled`)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip()]
    return [shlex.split(filled(line)) for line in lines if not line.startswith("#")]


def filled(argument: str) -> str:
    """``argument`` with ``$(lerobot-grids-configs <name>)`` replaced by the path and placeholders filled
    in."""
    argument = re.sub(
        r"\$\(lerobot-grids-configs (\w+)\)", lambda match: str(config_path(match[1])), argument
    )
    return PLACEHOLDER.sub("placeholder", argument)


def as_config(arguments: list[str]) -> dict:
    """``--a.b=value`` arguments (and a ``--config_path`` file under them) as the nested dictionary that
    ``draccus.decode`` takes; values are read as YAML (``16`` an int, ``false`` a bool, ``[256,256]`` a
    list)."""
    config: dict = {}
    for argument in arguments:
        key, value = argument.removeprefix("--").split("=", 1)
        if key == "config_path":
            loaded = yaml.safe_load(Path(value).read_text())
            config = {**loaded, **config}
            continue
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value) if value else value
    return config


def lerobot_command_classes() -> dict[str, type]:
    from lerobot.configs.eval import EvalPipelineConfig
    from lerobot.configs.train import TrainPipelineConfig
    from lerobot.scripts.lerobot_calibrate import CalibrateConfig
    from lerobot.scripts.lerobot_record import RecordConfig
    from lerobot.scripts.lerobot_teleoperate import TeleoperateConfig

    classes = {
        "lerobot-train": TrainPipelineConfig,
        "lerobot-calibrate": CalibrateConfig,
        "lerobot-teleoperate": TeleoperateConfig,
        "lerobot-record": RecordConfig,
        "lerobot-eval": EvalPipelineConfig,
    }
    if compat.POLICY_ON_ROBOT_COMMAND == "lerobot-rollout":
        from lerobot.scripts.lerobot_rollout import RolloutConfig

        classes["lerobot-rollout"] = RolloutConfig
    return classes


def test_every_shipped_config_a_page_names_exists():
    named = {
        name for page in PAGES for name in re.findall(r"lerobot-grids-configs (\w+)\)", page.read_text())
    }
    assert named and named <= set(shipped_configs()), named - set(shipped_configs())


def test_the_readmes_lerobot_commands_decode_into_lerobots_config_classes(monkeypatch):
    # LeRobot 0.6's lerobot-record imports librealsense with its config: a simulated one (no device, no
    # libusb)
    monkeypatch.setitem(sys.modules, "pyrealsense2", SimulatedRealSense({}))
    register_third_party_plugins()
    classes = lerobot_command_classes()
    decoded = []
    for command, *arguments in commands(README):
        if command not in classes:
            continue
        if "--resume=true" in arguments:  # LeRobot resumes from the run's own config file, nothing else
            (config_file,) = [argument for argument in arguments if argument.startswith("--config_path=")]
            assert config_file.endswith("/checkpoints/last/pretrained_model/train_config.json")
            continue
        policy_path = [argument for argument in arguments if argument.startswith("--policy.path=")]
        if policy_path and command == "lerobot-record" and compat.POLICY_ON_ROBOT_COMMAND != "lerobot-record":
            continue  # the LeRobot 0.4.4 line: 0.6's lerobot-record records teleoperation only
        # LeRobot's parser reads --policy.path's config from the checkpoint: a smolvla_grids one stands in
        config = as_config(
            [argument for argument in arguments if argument not in policy_path]
            + ["--policy.type=smolvla_grids"] * bool(policy_path)
        )
        try:
            draccus.decode(classes[command], config)
        except Exception as error:  # which command failed, and why
            pytest.fail(f"{command} {' '.join(arguments)}: {error}")
        decoded.append(command)
    assert decoded.count("lerobot-train") == 5 and decoded.count("lerobot-record") >= 2
    assert {"lerobot-calibrate", "lerobot-teleoperate", "lerobot-eval"} <= set(decoded)


def test_the_readmes_own_commands_and_import_exist(monkeypatch):
    """Every command the README runs is installed here (``lerobot-rollout`` on LeRobot 0.6 only), ``hf``
    included (huggingface_hub's, for pushing a checkpoint later), and its Python import line works."""
    monkeypatch.setitem(sys.modules, "pyrealsense2", SimulatedRealSense({}))
    bin_dir = Path(sys.executable).parent
    named = {command for command, *_ in commands(README) if command.startswith("lerobot") or command == "hf"}
    assert {"hf", "lerobot-grids-model-card", "lerobot-grids-cameras"} <= named
    missing = {command for command in named if not (bin_dir / command).is_file()}
    assert missing <= ({"lerobot-rollout"} if compat.POLICY_ON_ROBOT_COMMAND != "lerobot-rollout" else set())
    (line,) = re.findall(r"`(from lerobot_grids\.policies\.\w+ import \w+)`", README)
    exec(line, {})  # the README's own import line


def test_the_layout_page_names_every_command_and_the_readme_links_it():
    """A reader finds every command of the package from the README's link to docs/layout.md."""
    import configparser

    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    commands_installed = [
        line.split("=")[0].strip()
        for line in setup["options.entry_points"]["console_scripts"].splitlines()
        if line.strip()
    ]
    layout = (REPO_ROOT / "docs" / "layout.md").read_text()
    unnamed = [
        command
        for command in commands_installed
        if f"`{command}`" not in layout and f"`-{command.removeprefix('lerobot-grids-')}`" not in layout
    ]
    assert len(commands_installed) >= 12 and not unnamed, unnamed
    assert "(docs/layout.md)" in README
