"""GridS: the Differentiable Grid Sampler ("See What Matters", ICML 2026, §3).

Dense visual tokens of one camera, laid out on an ``H x W`` grid, are reduced to ``K`` tokens read at
learned continuous points by bilinear interpolation. Pure torch: nothing here knows about LeRobot.
"""

import contextlib
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from lerobot_grids.point_predictors import AttentionPointPredictor

SAMPLERS = ("grids", "dense", "random", "topk")
PREDICTORS = ("mlp", "attention")
POOLINGS = ("mean", "max")
ATTENTION_PRIORS = ("token", "share")
INTERPOLATIONS = ("bilinear", "nearest")


@dataclass
class GridSConfig:
    """Settings of one GridS sampler.

    Attributes:
        num_tokens: K, tokens kept per camera (paper: 16, 4 or 1).
        sampler: ``grids`` (the paper's method), ``dense`` (all tokens pass unchanged: the baseline),
            ``random`` or ``topk`` (K tokens chosen uniformly at random or by largest L2 norm: the
            discrete baselines of Tab. 10 at the same budget).
        predictor: how ``grids`` predicts its points: ``mlp``, the paper's (an MLP of the pooled tokens,
            eq. 1), or ``attention``, content-addressed
            (:class:`~lerobot_grids.point_predictors.AttentionPointPredictor`: K learned queries attend over
            every token; a point is the attention-weighted mean of the token centres).
        instruction: the predictor also sees the instruction (the policy's embedded language tokens,
        mean-pooled
            over the prompt; given to ``forward`` as ``context``), so which object the instruction names can
            move the points. Starts as the predictor without it (its weights start at zero).
        pooling: global pooling of the dense tokens before the ``mlp`` point predictor, eq. 1 (``mean``) or
            the global max pooling ablation of Tab. 12.
        interpolation: ``bilinear`` (eq. 2-3) or the ``nearest`` ablation of Tab. 12, which has no
            gradient with respect to the points.
        coord_injection: add a coordinate-encoder embedding of each point to its sample (§3.2;
            switched off in the Tab. 12 ablation).
        attention_prior: width of the ``attention`` predictor's Gaussian prior around each point's anchor:
            ``token``, one token pitch whatever K; ``share``, half the side of each point's share of the grid,
            ``sqrt(H * W / K) / 2`` token pitches (one pitch for K=16 on an 8x8 grid, two for K=4, four for
            K=1): fewer points each reach further.
        predictor_hidden_dim: hidden width of the point-predicting MLP.
        coord_encoder_hidden_dim: hidden width of the coordinate encoder.
        split_layer: sample inside the vision tower (``smolvla_grids`` only): its first ``split_layer``
            layers run on every patch, the points are predicted from their output, and the remaining layers
            run on the patch windows read at the points only (:mod:`lerobot_grids.window_sampling`); ``None``
            samples the tower's output tokens (the paper's place).
    """

    num_tokens: int = 16
    sampler: str = "grids"
    predictor: str = "mlp"
    instruction: bool = False
    pooling: str = "mean"
    attention_prior: str = "token"
    interpolation: str = "bilinear"
    coord_injection: bool = True
    predictor_hidden_dim: int = 256
    coord_encoder_hidden_dim: int = 256
    split_layer: int | None = None

    def __post_init__(self):
        _check_choice("sampler", self.sampler, SAMPLERS)
        _check_choice("predictor", self.predictor, PREDICTORS)
        if self.sampler != "grids" and (self.predictor != "mlp" or self.instruction):
            raise ValueError(
                f"GridS predictor={self.predictor!r} / instruction={self.instruction} choose how the grids "
                f"sampler predicts its points; the {self.sampler!r} sampler predicts none. Use "
                "--policy.grids.sampler=grids."
            )
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("attention_prior", self.attention_prior, ATTENTION_PRIORS)
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        if self.num_tokens < 1:
            raise ValueError(
                f"GridS num_tokens must be at least 1, got {self.num_tokens}. Set --policy.grids.num_tokens "
                "to the number of tokens to keep per camera (paper: 16, 4 or 1)."
            )
        for name in ("predictor_hidden_dim", "coord_encoder_hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"GridS {name} must be at least 1, got {getattr(self, name)}.")
        if self.split_layer is not None and (self.sampler != "grids" or self.split_layer < 0):
            raise ValueError(
                f"GridS split_layer={self.split_layer} samples inside the vision tower after that many "
                f"layers: it needs --policy.grids.sampler=grids (got {self.sampler!r}) and a layer count of "
                "0 or more."
            )
        inert = [
            name
            for name in self.settings_without_effect()
            if getattr(self, name) != type(self).__dataclass_fields__[name].default
        ]
        if inert:
            raise ValueError(
                "GridS "
                + "; ".join(
                    f"{name}={getattr(self, name)!r} has no effect ({READ_BY[name]})" for name in inert
                )
                + f" with sampler={self.sampler!r}, predictor={self.predictor!r}, "
                f"coord_injection={self.coord_injection}."
                f" Drop {' and '.join(f'--policy.grids.{name}' for name in inert)}, or choose the sampler "
                "that uses it."
            )

    def settings_without_effect(self) -> list[str]:
        """The settings this sampler never reads: set to anything but their default, they are refused (they
        would be written to the config and the model card and change nothing)."""
        unused = {
            "dense": [
                "num_tokens",
                "pooling",
                "attention_prior",
                "interpolation",
                "coord_injection",
                "predictor_hidden_dim",
                "coord_encoder_hidden_dim",
            ],
            "random": ["pooling", "attention_prior", "interpolation", "predictor_hidden_dim"],
            "topk": ["pooling", "attention_prior", "interpolation", "predictor_hidden_dim"],
            "grids": ["pooling"] if self.predictor == "attention" else ["attention_prior"],
        }[self.sampler]
        if not self.coord_injection and "coord_encoder_hidden_dim" not in unused:
            unused.append("coord_encoder_hidden_dim")
        return unused


# What reads each setting that some samplers ignore (for the message refusing it where it has no effect).
READ_BY = {
    "num_tokens": "sampler=dense keeps every token",
    "pooling": "only the mlp predictor of sampler=grids pools the tokens",
    "attention_prior": "only the attention predictor of sampler=grids has a prior (predictor=attention)",
    "interpolation": "only sampler=grids reads between token centres",
    "coord_injection": "sampler=dense adds no coordinate embedding",
    "predictor_hidden_dim": "only sampler=grids predicts points",
    "coord_encoder_hidden_dim": "the coordinate encoder exists only with coord_injection=true and a pruning "
    "sampler",
}


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(
            f"Unknown GridS {name} {value!r}: choose one of {', '.join(choices)} (--policy.grids.{name}=...)."
        )


def bilinear_sample(feature_map: Tensor, points: Tensor, mode: str = "bilinear") -> Tensor:
    """Read ``feature_map`` at continuous ``points`` (eq. 2-3), differentiable in both (eq. 4).

    Args:
        feature_map: ``[B, H, W, C]`` dense tokens on their grid.
        points: ``[B, K, 2]`` points ``(x, y)`` in ``[0, 1]``, x along the width; ``(0, 0)`` is the
            centre of the top-left token and ``(1, 1)`` the centre of the bottom-right one.
        mode: ``bilinear`` or ``nearest``.

    Returns:
        ``[B, K, C]`` the interpolated tokens.
    """
    # grid_sample with align_corners=True maps -1 and +1 to the centres of the corner tokens.
    grid = (points * 2 - 1).unsqueeze(1).to(feature_map.dtype)  # [B, 1, K, 2]
    sampled = F.grid_sample(
        feature_map.permute(0, 3, 1, 2), grid, mode=mode, padding_mode="border", align_corners=True
    )  # [B, C, 1, K]
    return sampled.squeeze(2).transpose(1, 2)


def grid_centres(grid_hw: tuple[int, int], device=None, dtype=None) -> Tensor:
    """``[H*W, 2]`` the ``(x, y)`` point of every token centre, in row-major token order.

    Made once per grid, device and dtype and shared between calls (never change it in place); an ordinary
    tensor even when first asked for under ``torch.inference_mode`` (LeRobot's acting paths), so that training
    can use it after. Under ``torch.compile`` it is made in the graph, which keeps it as a constant; under a
    dispatch mode (fake tensors, FLOP counting) it is made anew, so that no fake tensor is kept for later
    calls."""
    if torch.compiler.is_compiling() or is_in_torch_dispatch_mode():
        return _grid_centres(tuple(grid_hw), device, dtype)
    return _cached_grid_centres(tuple(grid_hw), device, dtype)


def _grid_centres(grid_hw: tuple[int, int], device, dtype) -> Tensor:
    height, width = grid_hw
    ys = torch.linspace(0, 1, height, device=device, dtype=dtype)
    xs = torch.linspace(0, 1, width, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=-1)


@functools.lru_cache(maxsize=16)
def _cached_grid_centres(grid_hw: tuple[int, int], device, dtype) -> Tensor:
    with torch.inference_mode(False), torch.no_grad():
        return _grid_centres(grid_hw, device, dtype)


Region = tuple[int, int, int, int]  # (top, bottom, left, right): token rows and columns, inclusive


def crop_to_region(
    tokens: Tensor, grid_hw: tuple[int, int], region: Region
) -> tuple[Tensor, tuple[int, int]]:
    """``tokens [B, H*W, C]`` of an ``H x W`` grid cut to the rows and columns of ``region``, and the cut
    grid."""
    top, bottom, left, right = region
    height, width = grid_hw
    cut = tokens.reshape(tokens.shape[0], height, width, -1)[:, top : bottom + 1, left : right + 1]
    return cut.reshape(tokens.shape[0], -1, tokens.shape[-1]), (bottom - top + 1, right - left + 1)


def region_points_to_grid(points: Tensor, grid_hw: tuple[int, int], region: Region) -> Tensor:
    """Points ``[B, K, 2]`` of a region's own grid (``(0, 0)`` its top-left token centre, ``(1, 1)`` its
    bottom-right one) as points of the whole ``H x W`` grid."""
    top, bottom, left, right = region
    height, width = grid_hw
    low = points.new_tensor([left / max(width - 1, 1), top / max(height - 1, 1)])
    span = points.new_tensor([(right - left) / max(width - 1, 1), (bottom - top) / max(height - 1, 1)])
    return low + points * span


def mean_pairwise_distance(points: Tensor) -> Tensor:
    """Mean Euclidean distance between the distinct points of each item, averaged over the batch.

    A collapse indicator: 0 when all K points fall into one spot (and for K=1).
    """
    num_points = points.shape[1]
    if num_points < 2:
        return points.new_zeros(())
    distances = torch.cdist(points.float(), points.float())
    return distances.sum(dim=(1, 2)).mean() / (num_points * (num_points - 1))


def spread_points(num_points: int) -> Tensor:
    """``[K, 2]`` a low-discrepancy layout (golden-ratio lattice): the points the predictor starts from."""
    index = torch.arange(num_points, dtype=torch.float64)
    xs = (index + 0.5) / num_points
    ys = torch.frac(0.5 + index * (math.sqrt(5) - 1) / 2)
    return torch.stack([xs, ys], dim=-1).clamp(0.05, 0.95)


class GridSampler(nn.Module):
    """Dense tokens of one camera in, K tokens out (§3.2).

    Tokens keep their dtype (a bfloat16 backbone stays bfloat16); the predictor and the coordinate
    encoder run in their own parameters' dtype.

    ``grids``: the global context ``z`` (eq. 1, mean or max pooling) goes through a LayerNorm (it keeps
    the sigmoid away from saturation, as in the authors' code) and an MLP whose sigmoid gives K points
    ``P = sigmoid(MLP(z))``; each point reads the grid by bilinear interpolation (eq. 2-3) and, with
    ``coord_injection``, gets a coordinate-encoder embedding of ``P`` added. The MLP starts from spread
    points and the coordinate encoder from zero, so training starts from plain samples of the
    pretrained tokens.
    """

    def __init__(
        self, dim: int, config: GridSConfig, context_dim: int | None = None, output_dim: int | None = None
    ):
        """``dim``: width of the tokens the points are predicted from and read; ``context_dim``: of the
        instruction (default ``dim``); ``output_dim``: of the tokens the coordinate embedding is added to
        (default ``dim``; they differ when sampling inside a vision tower)."""
        super().__init__()
        self.config = config
        self.dim = dim
        context_dim, output_dim = context_dim or dim, output_dim or dim
        if config.sampler == "dense":
            return
        if config.sampler == "grids" and config.predictor == "attention":
            self.attention_predictor = AttentionPointPredictor(
                dim,
                config.num_tokens,
                config.predictor_hidden_dim,
                spread_points(config.num_tokens),
                config.instruction,
                context_dim,
            )
        elif config.sampler == "grids":
            self.context_norm = nn.LayerNorm(dim)
            self.point_predictor = nn.Sequential(
                nn.Linear(dim, config.predictor_hidden_dim),
                nn.GELU(),
                nn.Linear(config.predictor_hidden_dim, 2 * config.num_tokens),
            )
            with torch.no_grad():
                self.point_predictor[-1].bias.copy_(torch.logit(spread_points(config.num_tokens)).flatten())
            if config.instruction:  # added to the pooled tokens; zero at first: the paper's predictor
                self.instruction_norm = nn.LayerNorm(context_dim)
                self.instruction_proj = nn.Linear(context_dim, dim)
                nn.init.zeros_(self.instruction_proj.weight)
                nn.init.zeros_(self.instruction_proj.bias)
        if config.coord_injection:
            self.coord_encoder = nn.Sequential(
                nn.Linear(2, config.coord_encoder_hidden_dim),
                nn.GELU(),
                nn.Linear(config.coord_encoder_hidden_dim, output_dim),
            )
            nn.init.zeros_(self.coord_encoder[-1].weight)
            nn.init.zeros_(self.coord_encoder[-1].bias)

    def output_tokens(self, grid_hw: tuple[int, int]) -> int:
        """Number of tokens ``forward`` returns for a grid of ``grid_hw``."""
        return grid_hw[0] * grid_hw[1] if self.config.sampler == "dense" else self.config.num_tokens

    def check_grid(self, grid_hw: tuple[int, int], where: str = "") -> None:
        """Refuse more tokens per camera than the grid has: a discrete sampler (``random``, ``topk``) cannot
        pick them, and ``grids`` points beyond the grid's count read no more than the dense tokens (the
        paper's K is far below it; use ``sampler=dense`` to keep every token). ``where``: which grid, for the
        message."""
        height, width = grid_hw
        if self.config.sampler != "dense" and self.config.num_tokens > height * width:
            raise ValueError(
                f"GridS sampler {self.config.sampler!r} cannot pick {self.config.num_tokens} tokens from a "
                f"{height}x{width} grid of {height * width}{where}: set --policy.grids.num_tokens to at most "
                f"{height * width} (or --policy.grids.sampler=dense to keep every token)."
            )

    def predict_points(
        self, tokens: Tensor, grid_hw: tuple[int, int], context: Tensor | None, region: Region | None = None
    ) -> Tensor:
        """``[B, K, 2]`` the ``grids`` sampler's points, in the predictor's own dtype even under autocast
        (``accelerate launch --mixed_precision``): bfloat16 would round a point by up to a few thousandths of
        the image. With a ``region`` (the token rows and columns the camera's image covers; the rest is the
        padding that made it square), the predictor sees the region's tokens only and its points stay inside
        it: no point reads a padding row or column."""
        if region is not None:
            cut, cut_hw = crop_to_region(tokens, grid_hw, region)
            return region_points_to_grid(self.predict_points(cut, cut_hw, context), grid_hw, region)
        if self.config.instruction and context is None:
            raise ValueError(
                "This GridS sampler is instruction-conditioned (instruction=True) and got no instruction."
            )
        height, width = grid_hw
        device = tokens.device.type
        with contextlib.nullcontext() if device == "meta" else torch.autocast(device, enabled=False):
            if self.config.predictor == "attention":
                pitch = 1 / max(height - 1, width - 1, 1)
                width_in_pitches = (
                    1.0
                    if self.config.attention_prior == "token"
                    else math.sqrt(height * width / self.config.num_tokens) / 2
                )
                centres = grid_centres(grid_hw, tokens.device)
                return self.attention_predictor(tokens, centres, width_in_pitches * pitch, context)
            pooled = tokens.mean(dim=1) if self.config.pooling == "mean" else tokens.amax(dim=1)
            pooled = pooled.to(self.context_norm.weight.dtype)
            if self.config.instruction:
                pooled = pooled + self.instruction_proj(self.instruction_norm(context.to(pooled.dtype)))
            logits = self.point_predictor(self.context_norm(pooled))
            return torch.sigmoid(logits).view(tokens.shape[0], self.config.num_tokens, 2)

    def forward(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        context: Tensor | None = None,
        region: Region | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Sample ``tokens [B, H*W, C]`` of an ``H x W`` grid; ``context [B, C]``: the instruction, for a
        sampler with ``instruction=True`` (ignored otherwise); ``region``: the token rows and columns the
        image covers (``None``: all), outside which no pruning sampler reads (``dense`` passes every token, as
        the dense policy).

        Returns:
            ``(tokens [B, K, C], points [B, K, 2])``; for ``dense``, all ``H*W`` tokens unchanged and
            their centres.
        """
        batch, num_tokens, _ = tokens.shape
        height, width = grid_hw
        if height * width != num_tokens:
            raise ValueError(
                f"GridS got {num_tokens} tokens for a {height}x{width} grid ({height * width} tokens)."
            )
        if self.config.sampler == "dense":
            return tokens, grid_centres((height, width), tokens.device, tokens.dtype).expand(batch, -1, -1)
        if region is None:
            sampled, points = self.sample(tokens, grid_hw, context)
        else:
            cut, cut_hw = crop_to_region(tokens, grid_hw, region)
            sampled, points = self.sample(cut, cut_hw, context)
            points = region_points_to_grid(points, grid_hw, region)
        return self.embed_coordinates(sampled, points), points

    def sample(
        self, tokens: Tensor, grid_hw: tuple[int, int], context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``(samples [B, K, C], points [B, K, 2])`` of a pruning sampler, before the coordinate embedding."""
        self.check_grid(grid_hw)
        batch, num_tokens, _ = tokens.shape
        height, width = grid_hw
        if self.config.sampler == "grids":
            points = self.predict_points(tokens, (height, width), context)
            sampled = bilinear_sample(
                tokens.view(batch, height, width, -1), points, self.config.interpolation
            )
        else:
            if self.config.sampler == "random":
                scores = torch.rand(batch, num_tokens, device=tokens.device)
            else:
                scores = tokens.float().norm(dim=-1)
            index = scores.topk(self.config.num_tokens, dim=1).indices
            sampled = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
            points = grid_centres((height, width), tokens.device, tokens.dtype)[index]
        return sampled, points

    def embed_coordinates(self, sampled: Tensor, points: Tensor) -> Tensor:
        """``sampled [B, K, C]`` with the coordinate encoder's embedding of their ``points`` added (§3.2),
        with ``coord_injection``."""
        if not self.config.coord_injection:
            return sampled
        position = self.coord_encoder(points.to(self.coord_encoder[0].weight.dtype))
        return sampled + position.to(sampled.dtype)
