"""A demo run stored in the repository (``lerobot-grids-demo --store RUN_DIR --output-dir docs/demo/<name>``).

:func:`store_run` copies what a run folder's report is made of (``run.json``, ``units/``) into a new folder,
stores the first training seed's checkpoint of the chosen policies there (by default dense and every GridS
policy at K=16 and K=1), each a few MB, and writes the report, results and plots again from the copy, its
``lerobot-eval`` lines pointing at the stored checkpoints. A stored checkpoint names no path of the machine it
was trained on, so that ``lerobot-eval --policy.path=<stored checkpoint>`` runs from the repository root
anywhere: see :func:`store_checkpoint`.

A long run continues across machines this way: copy its stored folder, ``--resume`` the copy (the
demonstrations are recorded again), and store the copy again; units stored before keep their checkpoints,
which the copy holds.
"""

import json
import shutil
from pathlib import Path

from lerobot_grids.backbones import BACKBONES_DIR
from lerobot_grids.output_folder import output_folder

CHECKPOINTS = "checkpoints"
# What lerobot-train writes beside the weights that only the machine it ran on can use (the dataset's root,
# the run's output folder); the stored checkpoint is read without it.
TRAIN_CONFIG = "train_config.json"
# The package's assets, named from the repository root in a stored checkpoint.
ASSETS = f"{BACKBONES_DIR.parent.name}/{BACKBONES_DIR.name}"
# Samplers that are not GridS: stored only when named.
BASELINES = ("topk", "random")


def stored_by_default(names: list[str]) -> list[str]:
    """Dense and every GridS policy at K=16 and K=1 of a run's policies."""
    return [
        name
        for name in names
        if name == "dense"
        or (name.rpartition("_k")[0] not in BASELINES and name.rpartition("_k")[2] in ("16", "1"))
    ]


def portable(value, key: str = ""):
    """``value`` (a checkpoint's JSON) with every path into the package's assets written from the repository
    root (``lerobot_grids/assets/tiny_smolvlm``) and ``init_from`` cleared (the weights it named are in the
    checkpoint's own ``model.safetensors``); any other absolute path is refused."""
    if isinstance(value, dict):
        return {name: None if name == "init_from" else portable(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [portable(item, key) for item in value]
    if isinstance(value, str) and value.startswith("/"):
        marker = f"/{ASSETS}/"
        if marker not in value:
            raise ValueError(
                f"{key!r} names {value}, a path of this machine only: a stored checkpoint must not need it."
            )
        return ASSETS + "/" + value.split(marker, 1)[1]
    return value


def store_checkpoint(checkpoint: Path, destination: Path) -> None:
    """Copies a ``lerobot-train`` checkpoint (its ``pretrained_model`` folder) to ``destination``, a new
    folder: the weights and the processors' statistics as they are, each JSON file through :func:`portable`,
    without ``train_config.json``."""
    with output_folder(destination):
        for path in sorted(checkpoint.iterdir()):
            if path.name == TRAIN_CONFIG:
                continue
            if path.suffix == ".json":
                content = portable(json.loads(path.read_text()))
                (destination / path.name).write_text(json.dumps(content, indent=4) + "\n")
            else:
                shutil.copyfile(path, destination / path.name)


def from_here(path: Path) -> Path:
    """``path`` from the current folder (the repository root) where it lies below it."""
    path = Path(path).absolute()
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def store_run(run_dir: Path, output_dir: Path, names: list[str] | None = None) -> dict:
    """Stores the run in ``run_dir`` into ``output_dir`` (a new folder) with the first seed's checkpoints of
    ``names`` (default :func:`stored_by_default`); returns its results. A partial run is stored as it
    stands."""
    from lerobot_grids.evidence.demo import render, unit_path

    plan = json.loads((run_dir / "run.json").read_text())
    first = min(plan["seeds"])
    finished = [name for name in plan["models"] if unit_path(run_dir, name, first).is_file()]
    names = stored_by_default(finished) if names is None else names
    unknown = [name for name in names if name not in finished]
    if unknown:
        raise ValueError(
            f"{run_dir} has no finished seed-{first} unit of {', '.join(unknown)} (finished: "
            f"{', '.join(finished) or 'none'}); name policies whose first seed has finished."
        )
    checkpoints = {}
    for name in names:
        checkpoint = Path(json.loads(unit_path(run_dir, name, first).read_text())["checkpoint"])
        if not checkpoint.is_dir() and (run_dir / CHECKPOINTS / name).is_dir():
            checkpoint = run_dir / CHECKPOINTS / name  # a stored run continued in a copy: its own checkpoint
        if not checkpoint.is_dir():
            raise FileNotFoundError(
                f"{name}'s checkpoint {checkpoint} is not there: run --store from the folder the run was "
                "started in."
            )
        checkpoints[name] = checkpoint
    with output_folder(output_dir):
        shutil.copyfile(run_dir / "run.json", output_dir / "run.json")
        shutil.copytree(run_dir / "units", output_dir / "units")
        for name, checkpoint in checkpoints.items():
            store_checkpoint(checkpoint, output_dir / CHECKPOINTS / name)
        for path in (output_dir / "units").rglob("*.json"):  # each unit names its checkpoint from here
            unit = json.loads(path.read_text())
            name, seed = unit["name"], unit["seed"]
            stored = output_dir / CHECKPOINTS / name if seed == first and name in checkpoints else None
            unit["checkpoint"] = str(from_here(stored or Path(unit["checkpoint"])))
            path.write_text(json.dumps(unit, indent=2))
        return render(output_dir)
