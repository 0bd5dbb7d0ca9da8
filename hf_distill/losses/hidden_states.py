"""Losses between the two models' hidden states `(B, L, D)`: DistilBERT's cosine, TinyBERT's MSE."""

from __future__ import annotations

import torch

from ._common import Reduction, as_counted, at_least_float32, reduce_positions, zero_uncounted

__all__ = ["hidden_state_cosine", "hidden_state_mse"]


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
    mask = as_counted(mask)  # once: checking a 0/1 mask waits for the GPU
    _check_hidden_shapes(
        student_hidden,
        teacher_hidden,
        fix="use a student of the teacher's width (a DistilBERT-style "
        "one), or hidden_state_mse with a learned projection",
    )
    student, teacher = _padding_zeroed(student_hidden, teacher_hidden, mask=mask)
    norms = (student.norm(dim=-1) * teacher.norm(dim=-1)).clamp(min=eps)  # (B, L)
    distance = 1 - (student * teacher).sum(dim=-1) / norms  # (B, L)
    return reduce_positions(distance, mask=mask, temperature=1.0, reduction=reduction)


def hidden_state_mse(
    *,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Mean squared error between student and teacher hidden states, per counted position.

    TinyBERT's hidden-state loss (Jiao et al., 2020, eq. 8): ``MSE(H_s W_h, H_t)``, where ``W_h`` is a learned
    projection from the student's hidden size to the teacher's. This function takes the student's states already
    projected (the projection is a parameter of the training, not of the loss). Unlike the cosine it also matches
    the norms of the two representations. Per position it is the mean over D of ``(h_s - h_t)**2``; with no mask
    and ``"mean"`` it equals ``F.mse_loss(student_hidden, teacher_hidden)``.

    Args:
        student_hidden (`torch.Tensor` of shape `(B, L, D)`): the student's hidden states, projected to the
            teacher's width D when the two widths differ.
        teacher_hidden (`torch.Tensor` of shape `(B, L, D)`): the teacher's hidden states at the same positions.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1/True where a position counts (the attention mask);
            padding never counts, whatever its states. Default: every position.
        reduction (`"mean"` or `"sum"`): the per-position error averaged (or summed) over the counted positions.

    Returns:
        `torch.Tensor`: a float32 (float64 for float64 states) scalar >= 0. Nothing counted gives 0, never NaN.
    """
    mask = as_counted(mask)  # once: checking a 0/1 mask waits for the GPU
    width, teacher_width = student_hidden.shape[-1], teacher_hidden.shape[-1]
    _check_hidden_shapes(
        student_hidden,
        teacher_hidden,
        fix="project the student's hidden states to the teacher's width first (TinyBERT's W_h, e.g. a learned "
        f"nn.Linear({width}, {teacher_width}))",
    )
    student, teacher = _padding_zeroed(student_hidden, teacher_hidden, mask=mask)
    per_position = (student - teacher).pow(2).mean(dim=-1)  # (B, L)
    return reduce_positions(per_position, mask=mask, temperature=1.0, reduction=reduction)


def _padding_zeroed(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, *, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both states in at least float32, 0 at the positions that do not count: a NaN or inf in a padded row then
    reaches neither the value nor the gradient (a where after the math hides it from the value only). A where
    rather than selecting the counted rows: no host sync on a GPU for a boolean mask."""
    student, teacher = at_least_float32(student_hidden), at_least_float32(teacher_hidden)
    if mask is None:
        return student, teacher
    return zero_uncounted(student, mask=mask), zero_uncounted(teacher, mask=mask)


def _check_hidden_shapes(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, *, fix: str) -> None:
    if student_hidden.dim() != 3 or teacher_hidden.dim() != 3:
        raise ValueError(
            f"hidden states must have shape (B, L, D), got student {tuple(student_hidden.shape)} and teacher "
            f"{tuple(teacher_hidden.shape)}."
        )
    if student_hidden.shape[:2] == teacher_hidden.shape[:2] and student_hidden.shape[2] != teacher_hidden.shape[2]:
        raise ValueError(
            f"student hidden size {student_hidden.shape[2]} differs from the teacher's {teacher_hidden.shape[2]}: "
            f"{fix}."
        )
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"student and teacher hidden states must have the same shape (B, L, D), got student "
            f"{tuple(student_hidden.shape)} and teacher {tuple(teacher_hidden.shape)}: pass both models the same "
            "batch."
        )
