"""The folders the package's commands write into, by one rule: a folder that does not exist yet or is empty,
never another run's; gone again when the command fails (nothing half-written is left behind to block the next
run)."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_new(path: Path, option: str = "--output-dir") -> None:
    """Refuse an output folder that exists and is not empty (or is a file): nothing is overwritten."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(
            f"{path} already exists and is not empty; choose a new {option} (nothing is overwritten)."
        )


def new_dataset_root(path: Path, option: str = "--root") -> Path:
    """:func:`check_new` for a dataset LeRobot is about to create there (``LeRobotDataset.create`` makes the
    folder itself and refuses an existing one): an empty folder is removed first."""
    check_new(path, option)
    if Path(path).is_dir():
        Path(path).rmdir()
    return Path(path)


def new_output_dir(path: Path, option: str = "--output-dir") -> Path:
    """Create a command's output folder before its long work starts; an existing one must be empty."""
    check_new(path, option)
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


@contextmanager
def output_folder(path: Path, option: str = "--output-dir") -> Iterator[Path]:
    """:func:`new_output_dir` for the block; if the block fails, the folder is removed again with what the
    block wrote into it (and the parent folders it needed, where they are left empty): only a run that
    finished leaves a folder."""
    missing = [
        folder for folder in (Path(path).absolute(), *Path(path).absolute().parents) if not folder.exists()
    ]
    new_output_dir(path, option)
    try:
        yield Path(path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        for folder in missing[1:]:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
