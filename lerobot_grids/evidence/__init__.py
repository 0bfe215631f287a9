"""The evidence tools: what GridS costs and where it looks.

- ``bench``: FLOPs, latency and memory of GridS against the dense policy (paper Tab. 1, 4, Fig. 6);
- ``viz``: where a GridS policy looks on a dataset episode, with ``retention`` (information retention,
  App. I eq. 5, and token self-similarity, pure torch);
- ``demo``: dense SmolVLA against GridS on the offline tabletop task (:mod:`lerobot_grids.envs`), trained and
  evaluated with LeRobot's tools.

Their commands are in :mod:`lerobot_grids.scripts`.
"""
