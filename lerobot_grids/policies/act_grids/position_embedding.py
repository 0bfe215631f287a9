"""ACT's 2-D sinusoidal position embedding, evaluated at continuous points of a feature map.

LeRobot's ``ACTSinusoidalPositionEmbedding2d`` embeds the cell in row ``i`` and column ``j`` of an ``H x W``
feature map by its positions ``(i + 1) / H`` and ``(j + 1) / W``, scaled to ``(0, 2 pi]``: per axis, half of
the channels, sines and cosines interleaved at the frequencies ``temperature ** (-2 (c // 2) / half)``, the
rows' channels first. :func:`sinusoid_at_points` is the same function of a continuous position, so a GridS
token read at a point between cells is embedded where it was read (at a cell's centre it is that cell's
embedding).
"""

import math

import torch
from torch import Tensor

TEMPERATURE = 10000
EPS = 1e-6


def sinusoid_at_points(points: Tensor, grid_hw: tuple[int, int], dimension: int) -> Tensor:
    """``[B, K, dimension]`` ACT's 2-D sinusoidal embedding of ``points [B, K, 2]``.

    ``points`` are ``(x, y)`` in ``[0, 1]`` on the ``grid_hw`` feature map, ``(0, 0)`` the centre of its
    top-left cell and ``(1, 1)`` of its bottom-right one (:func:`lerobot_grids.grids.bilinear_sample`'s
    convention).
    """
    height, width = grid_hw
    half = dimension // 2
    points = points.to(torch.promote_types(points.dtype, torch.float32))  # float32 as ACT's, or float64
    # A cell's 1-based index, continuous between centres, over the grid's size: (i + 1) / H, as ACT's.
    rows = (points[..., 1] * (height - 1) + 1) / (height + EPS) * (2 * math.pi)
    cols = (points[..., 0] * (width - 1) + 1) / (width + EPS) * (2 * math.pi)
    channel = torch.arange(half, dtype=points.dtype, device=points.device)
    inverse_frequency = TEMPERATURE ** (2 * (channel // 2) / half)
    return torch.cat([_interleaved(rows, inverse_frequency), _interleaved(cols, inverse_frequency)], dim=-1)


def _interleaved(positions: Tensor, inverse_frequency: Tensor) -> Tensor:
    """Sines of the even channels and cosines of the odd ones, interleaved as ACT's embedding has them."""
    angles = positions.unsqueeze(-1) / inverse_frequency
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)
