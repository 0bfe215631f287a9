"""GridS inside a vision tower: windows of patches read at continuous points. Pure torch.

A vision tower whose output tokens each merge a ``w x w`` window of patches (SmolVLM's pixel shuffle: ``w =
4`` at 512x512, 32x32 patches merged into 8x8 tokens) can be sampled before its last layers run. A point ``p``
in the token grid's coordinates (``(0, 0)`` the centre of the top-left window, ``(1, 1)`` the centre of the
bottom-right one, as GridS's points on the token grid) names the window centred on it; its ``w x w`` patches
are read by bilinear interpolation of the patch grid (eq. 2-3) at the window's offsets, differentiable in the
point (eq. 4). At a point of the window lattice every read falls on a patch centre and the window is exactly
one the tower's merge would take.
"""

from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from lerobot_grids.grids import bilinear_sample, grid_centres


def window_offsets(window: int, device=None, dtype=None) -> Tensor:
    """``[w*w, 2]`` the ``(x, y)`` offsets of a window's patches from its centre, in patches, row by row (the
    order in which a pixel shuffle concatenates them)."""
    return grid_centres((window, window), device, dtype) * (window - 1) - (window - 1) / 2


def pool_windows(patches: Tensor, window: int) -> Tensor:
    """``[B, (H/w) * (W/w), C]`` the mean of each ``w x w`` window of ``patches [B, H, W, C]``, row-major on
    the token grid: one feature per window, for a point predictor that works on the token grid."""
    pooled = F.avg_pool2d(patches.permute(0, 3, 1, 2), window)  # [B, C, H/w, W/w]
    return pooled.flatten(2).transpose(1, 2)


def read_windows(patches: Tensor, points: Tensor, window: int, mode: str = "bilinear") -> Tensor:
    """``[B, K, w*w, C]`` the ``w x w`` windows of ``patches [B, H, W, C]`` centred on ``points [B, K, 2]``
    (token-grid coordinates, see the module), each read by ``mode`` interpolation (``bilinear`` or
    ``nearest``)."""
    batch, height, width, channels = patches.shape
    num_points = points.shape[1]
    points = points.to(patches.dtype)
    span = points.new_tensor(
        [width - window, height - window]
    )  # from the first window's centre to the last's
    centres = (window - 1) / 2 + points * span  # in patches
    positions = centres.unsqueeze(2) + window_offsets(window, points.device, points.dtype)  # [B, K, w*w, 2]
    normalised = positions / points.new_tensor([max(width - 1, 1), max(height - 1, 1)])
    read = bilinear_sample(patches, normalised.flatten(1, 2), mode)  # [B, K*w*w, C]
    return read.view(batch, num_points, window * window, channels)
