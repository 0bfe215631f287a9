"""The recipes and configs that ship with the package, for LeRobot's ``--config_path``.

Three kinds, each a folder of this package (they are in the wheel, so an installed package has them):

- ``policies/``: ``lerobot-train`` recipes (``smolvla_grids_so100``, ``pi0_grids_libero``, ...);
- ``robots/``: ``lerobot-record`` / ``lerobot-teleoperate`` / ``lerobot-rollout`` / async-client configs of
  the SO-100 and SO-101 with the RealSense D435 (front) and D405 (wrist), and the arms' own blocks;
- ``datasets/``: ``lerobot-record`` recipes of the paper's SO-100 tasks.

Beside them, the package's ``assets/`` folders (the tiny offline backbones such as ``tiny_smolvlm``, the
tabletop task's base policy) are listed too, for flags that take a folder (``--policy.vlm_model_name``).

A config is named by its file name without the extension, an asset by its folder's name; names are unique.
``lerobot-grids-configs <name>`` prints its path, so ``--config_path=$(lerobot-grids-configs record)`` works
from any folder.
"""

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent
ASSETS_DIR = CONFIGS_DIR.parent / "assets"
KINDS = ("policies", "robots", "datasets")


def shipped_configs() -> dict[str, Path]:
    """Every shipped config by name, in kind order then by name, then the asset folders."""
    configs = {
        path.stem: path
        for kind in KINDS
        for path in sorted((CONFIGS_DIR / kind).glob("*.*"))
        if path.suffix in (".json", ".yaml")
    }
    return {**configs, **{path.name: path for path in sorted(ASSETS_DIR.iterdir()) if path.is_dir()}}


def config_path(name: str) -> Path:
    """The path of the shipped config ``name`` (``record``, ``smolvla_grids_so100``, ``so100_pick_place``,
    ...)."""
    configs = shipped_configs()
    if name not in configs:
        raise KeyError(f"No shipped config named {name!r}; the shipped configs are: {', '.join(configs)}.")
    return configs[name]


def resolve_config(name_or_path: str | Path) -> Path:
    """A shipped config file's path by its name, or ``name_or_path`` itself where it is a file."""
    files = {name: path for name, path in shipped_configs().items() if path.is_file()}
    path = files.get(str(name_or_path), Path(name_or_path))
    if not path.is_file():
        raise FileNotFoundError(
            f"{name_or_path} is neither a file nor a shipped config's name; the shipped configs "
            f"are: {', '.join(files)}."
        )
    return path
