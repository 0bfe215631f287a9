"""Make an installed LeRobot >= 0.5 importable on Python 3.11, for testing this package against it.

LeRobot 0.5+ declares Python >= 3.12. These machines (and CI) have Python 3.11, so ``make test-lerobot06``
installs LeRobot 0.6 with ``pip install --ignore-requires-python`` and then runs this script, which rewrites
the few declarations in LeRobot's source that use Python 3.12's type-parameter syntax (PEP 695) into their
Python 3.11 equivalents, with the same meaning at run time:

- ``type Name = ...``                  -> ``Name = ...``
- ``class Name[T, U](Base):``          -> ``class Name(Base, Generic[T, U]):`` (``T = TypeVar("T")`` if
  missing)
- ``def name[T: Bound](...)``          -> ``def name(...)`` with ``T = TypeVar("T", bound=Bound)`` before it

Nothing else is changed, and nothing is done on Python 3.12+ or when there is nothing to rewrite. Every
rewritten file is checked by compiling the whole installed package afterwards; a construct this script does
not know makes it fail with the file and line.

    python tools/lerobot_py311.py            # the LeRobot of the running interpreter
"""

import compileall
import importlib.util
import re
import sys
from pathlib import Path

TYPE_ALIAS = re.compile(r"^(\s*)type (\w+) = ", re.M)
GENERIC_CLASS = re.compile(r"^(\s*)class (\w+)\[([\w, ]+)\](?:\((.*)\))?:", re.M)
GENERIC_FUNCTION = re.compile(r"^(\s*)def (\w+)\[(\w+): ([\w.]+)\]\(", re.M)
TYPING_IMPORT = "from typing import Generic, TypeVar  # added by lerobot_grids' tools/lerobot_py311.py\n"


def rewrite(source: str) -> str:
    """``source`` with its PEP 695 declarations in Python 3.11 form (unchanged if it has none)."""
    new = TYPE_ALIAS.sub(r"\1\2 = ", source)

    def generic_class(match: re.Match) -> str:
        indent, name, params, bases = match.groups()
        missing = [
            p.strip() for p in params.split(",") if not re.search(rf"^{p.strip()} = TypeVar\(", source, re.M)
        ]
        typevars = "".join(f'{indent}{p} = TypeVar("{p}")\n' for p in missing)
        bases = f"{bases}, " if bases else ""
        return f"{typevars}{indent}class {name}({bases}Generic[{params}]):"

    def generic_function(match: re.Match) -> str:
        indent, name, param, bound = match.groups()
        return f'{indent}{param} = TypeVar("{param}", bound={bound})\n\n\n{indent}def {name}('

    new = GENERIC_CLASS.sub(generic_class, new)
    new = GENERIC_FUNCTION.sub(generic_function, new)
    if new == source:
        return source
    first_import = re.search(r"^(import |from (?!__future__))", new, re.M)
    return new[: first_import.start()] + TYPING_IMPORT + new[first_import.start() :]


def main() -> int:
    if sys.version_info >= (3, 12):
        print("Python >= 3.12: LeRobot runs as it is, nothing to rewrite.")
        return 0
    spec = importlib.util.find_spec("lerobot")
    if spec is None or not spec.submodule_search_locations:
        print("LeRobot is not installed in this environment.", file=sys.stderr)
        return 1
    package = Path(next(iter(spec.submodule_search_locations)))
    changed = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        new = rewrite(source)
        if new != source:
            path.write_text(new, encoding="utf-8")
            changed.append(path.relative_to(package.parent))
    print(f"Rewrote {len(changed)} file(s) for Python 3.11: {', '.join(map(str, changed)) or 'none'}")
    if not compileall.compile_dir(package, quiet=1, force=True):
        print(
            f"{package} still has syntax Python {sys.version.split()[0]} cannot read (see above).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
