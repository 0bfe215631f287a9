"""How much of the dense tokens the sampled tokens keep (paper App. I, Fig. 7). Pure torch."""

import torch.nn.functional as F  # noqa: N812
from torch import Tensor


def cosine_similarity_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``[B, N, M]`` cosine similarities between the tokens of ``a [B, N, C]`` and ``b [B, M, C]``."""
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).transpose(1, 2)


def information_retention(dense: Tensor, sampled: Tensor) -> Tensor:
    """App. I eq. 5: for each dense token, its largest cosine similarity to any sampled token.

    Args:
        dense: ``[B, H*W, C]`` the dense tokens.
        sampled: ``[B, K, C]`` the tokens read from them.

    Returns:
        ``[B, H*W]`` retention scores in ``[-1, 1]`` (1: the token is kept by some sample).
    """
    return cosine_similarity_matrix(dense, sampled).amax(dim=-1)


def token_self_similarity(tokens: Tensor) -> Tensor:
    """``[B, N, N]`` cosine similarity of every token with every other (Fig. 7 right)."""
    return cosine_similarity_matrix(tokens, tokens)
