"""Command-line entry points: one thin module per ``lerobot-grids-*`` console script (``setup.cfg``), named
like LeRobot's own ``lerobot/scripts/lerobot_*.py``. The library code they run lives in the other packages."""

import argparse


def at_least(minimum: int):
    """An argparse ``type`` for whole numbers of at least ``minimum``: anything else is refused by the parser,
    with the usage, before any work starts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a whole number is needed, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"at_least_{minimum}"
    return parse
