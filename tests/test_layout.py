"""The package's rooms (docs/layout.md): core <- policies <- envs <- evidence <- scripts. A module imports
only from its own room and the rooms below it, and the GridS module itself imports nothing of LeRobot."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lerobot_grids"
ROOMS = {"policies": 1, "envs": 2, "evidence": 3, "scripts": 4}  # anything else: the core, room 0
GRIDS_MODULE = ("grids.py", "point_predictors.py", "window_sampling.py")


def room(module: str) -> int:
    parts = module.split(".")
    return ROOMS.get(parts[1], 0) if len(parts) > 1 else 0


def imported(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
    return modules


def test_no_module_imports_from_a_higher_room():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        upward += [
            f"{module} -> {name}"
            for name in imported(path)
            if name.startswith("lerobot_grids.") and room(name) > room(module)
        ]
    assert upward == []


def test_the_grids_module_imports_nothing_of_lerobot():
    for name in GRIDS_MODULE:
        assert not [module for module in imported(PACKAGE / name) if module.split(".")[0] == "lerobot"], name
