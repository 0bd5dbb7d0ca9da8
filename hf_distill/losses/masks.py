"""Which token positions count: the one definition the losses, the trainer's counts and the cache share."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["token_mask"]


def token_mask(
    labels: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    shape: Sequence[int],
    device: torch.device,
    *,
    next_token: bool = False,
) -> torch.Tensor:
    """`(B, L)` bool: the positions whose token-level distillation counts.

    Labels != -100 when the batch has token labels (integer, `(B, L)`), else attention mask 1, else every position.
    The cache stores outputs at exactly these positions, and the trainer averages over exactly these, so both use
    this function.

    `next_token` (a causal LM, whose logits at position i predict token i + 1): the positions that predict a counted
    token, as the model's own loss shifts its labels: i counts when token i + 1 does (its label != -100, else it is
    attended) and i is attended itself; the last position predicts nothing. A prompt masked with -100 then has its
    last position (which predicts the first answer token) counted, and the answer's last position not.
    """
    if not next_token:
        if isinstance(labels, torch.Tensor) and labels.dim() >= 2 and not labels.is_floating_point():
            return labels.ne(-100)
        if isinstance(attention_mask, torch.Tensor):
            return attention_mask.bool()
        return torch.ones(tuple(shape[:2]), dtype=torch.bool, device=device)
    counted = token_mask(labels, attention_mask, shape, device)
    mask = torch.zeros_like(counted)
    mask[:, :-1] = counted[:, 1:]
    if isinstance(attention_mask, torch.Tensor):
        mask &= attention_mask.bool()
    return mask
