"""Command-line entry points: one thin module per ``lerobot-grids-*`` console script (``setup.cfg``), named like
LeRobot's own ``lerobot/scripts/lerobot_*.py``. The library code they run lives in the other packages."""
