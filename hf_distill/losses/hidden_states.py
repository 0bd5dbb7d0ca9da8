"""Losses between the two models' hidden states `(B, L, D)`: DistilBERT's cosine."""

from __future__ import annotations

import torch

from ._common import Reduction, at_least_float32, check_same_shape, reduce_positions

__all__ = ["hidden_state_cosine"]


def hidden_state_cosine(
    *,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    eps: float = 1e-8,
) -> torch.Tensor:
    """Cosine distance ``1 - cos(h_s, h_t)`` between student and teacher hidden states, per counted position.

    DistilBERT's L_cos (Sanh et al., 2019, sec. 3): it aligns the directions of the two models' last hidden states,
    which only makes sense when both have the same hidden size (a DistilBERT-style student does). It asks the
    student to reproduce the representation the teacher's head reads, not only the head's output.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, D)`): the student's hidden states.
        teacher_hidden (`torch.Tensor`, same shape): the teacher's hidden states at the same positions.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1/True where a position counts (attention mask 1, or
            labels != -100 for token heads); padding never counts. Default: every position.
        reduction (`"mean"` or `"sum"`): averaged (or summed) over the counted positions.
        eps (`float`): lower bound of the product of the two norms (a zero vector gives cos 0, distance 1).

    Returns:
        `torch.Tensor`: a float32 scalar in [0, 2] per position. Nothing counted gives 0.
    """
    check_same_shape(student_hidden, teacher_hidden)
    if student_hidden.dim() != 3:
        raise ValueError(f"hidden states must have shape (B, L, D), got {tuple(student_hidden.shape)}.")
    student, teacher = at_least_float32(student_hidden), at_least_float32(teacher_hidden)
    norms = (student.norm(dim=-1) * teacher.norm(dim=-1)).clamp(min=eps)  # (B, L)
    distance = 1 - (student * teacher).sum(dim=-1) / norms  # (B, L)
    return reduce_positions(distance, mask=mask, temperature=1.0, reduction=reduction)
