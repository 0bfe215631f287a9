"""Bad ``--policy.*`` values of a GridS policy type, refused so that the message is the last thing the user
reads.

draccus (LeRobot's command-line parser) builds each config dataclass and turns a ``ValueError`` raised there
into "Couldn't instantiate class ... using the given arguments", with the real message only in the chained
traceback fifty lines up; an error of its own ``ParsingError`` type it passes on with the message as it is. On
LeRobot 0.6.1 ``lerobot-train`` then prints ``error: ... <message>`` and exits; on 0.4.4 the traceback ends in
the message.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from draccus.utils import ParsingError

from lerobot_grids.grids import GridSConfig


class PolicyOptionError(ParsingError):
    """A ``--policy.*`` value (or a combination of them) that a GridS policy type refuses."""


@contextmanager
def refused_as_option_error() -> Iterator[None]:
    """Raise a ``ValueError`` of the block (a config's own checks, LeRobot's included) as
    :class:`PolicyOptionError`."""
    try:
        yield
    except ValueError as error:
        raise PolicyOptionError(str(error)) from None


@dataclass
class GridSOptions(GridSConfig):
    """:class:`~lerobot_grids.grids.GridSConfig` as the policy configs hold it (``--policy.grids.*``): the
    same settings and checks, a bad value refused as :class:`PolicyOptionError`."""

    def __post_init__(self):
        with refused_as_option_error():
            super().__post_init__()
