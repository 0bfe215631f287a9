"""Content-addressed point predictor: K learned queries attend over the dense tokens, and each point is the
attention-weighted mean of the token centres (a spatial soft-argmax, as in deep visuomotor policies), so the
points move with what is in the image. Pure torch.

The paper's predictor (``GridSampler``'s ``mlp``) sees only the pooled tokens; this one sees every token, and
with an instruction ``context`` its queries are shifted by it, so which block the instruction names can move
the points.
"""

import torch
from torch import Tensor, nn


class AttentionPointPredictor(nn.Module):
    """``[B, N, C]`` tokens of an ``H x W`` grid (and an optional ``[B, context_dim]`` context,
    ``context_dim`` defaulting to ``C``) in, ``[B, K, 2]`` points out.

    ``score[k, j] = q_k . key(token_j) / sqrt(d) - |c_j - s_k|^2 / (2 sigma^2)``, softmax over ``j``, points
    ``p_k = sum_j w_kj c_j`` for token centres ``c_j``. The second term is a Gaussian prior around learned
    anchors ``s_k`` (``sigma`` wide, about a token pitch) that start at ``start_points``: training starts
    from spread points, and the content term moves them. Differentiable end to end.
    """

    def __init__(
        self,
        dim: int,
        num_points: int,
        hidden_dim: int,
        start_points: Tensor,
        use_context: bool,
        context_dim: int | None = None,
    ):
        super().__init__()
        self.token_norm = nn.LayerNorm(dim)
        self.key = nn.Linear(dim, hidden_dim)
        self.queries = nn.Parameter(torch.randn(num_points, hidden_dim) / hidden_dim**0.5)
        self.anchors = nn.Parameter(start_points.clone().float())
        if use_context:
            self.context_norm = nn.LayerNorm(context_dim or dim)
            self.context_queries = nn.Linear(context_dim or dim, num_points * hidden_dim)
            nn.init.zeros_(self.context_queries.weight)
            nn.init.zeros_(self.context_queries.bias)
        else:
            self.context_queries = None

    def forward(self, tokens: Tensor, centres: Tensor, sigma: float, context: Tensor | None = None) -> Tensor:
        """``centres [N, 2]`` of the tokens, ``sigma`` the prior's width (in the centres' units)."""
        dtype = self.key.weight.dtype
        keys = self.key(self.token_norm(tokens.to(dtype)))  # [B, N, d]
        queries = self.queries.expand(tokens.shape[0], -1, -1)
        if self.context_queries is not None:
            shift = self.context_queries(self.context_norm(context.to(dtype)))
            queries = queries + shift.view_as(queries)
        scores = queries @ keys.transpose(1, 2) / keys.shape[-1] ** 0.5  # [B, K, N]
        centres = centres.to(dtype)
        prior = -torch.cdist(self.anchors, centres).square() / (2 * sigma**2)  # [K, N]
        weights = torch.softmax(scores + prior, dim=-1)
        return weights @ centres
