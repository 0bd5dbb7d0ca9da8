"""Reductions and checks shared by every loss: sums or means over counted items, float32 promotion."""

from __future__ import annotations

from typing import Literal

import torch

Reduction = Literal["mean", "sum"]

# The largest temperature whose square (the loss's T**2 factor) float32 holds: about 1.84e19.
MAX_TEMPERATURE = torch.finfo(torch.float32).max ** 0.5


def reduce_positions(
    per_position: torch.Tensor, *, mask: torch.Tensor | None, temperature: float, reduction: Reduction
) -> torch.Tensor:
    """``T**2`` times the per-position loss `(B, L)` summed over the counted positions, then reduced."""
    if mask is None:
        total, count = per_position.sum(), per_position.numel()
    else:
        if mask.shape != per_position.shape:
            raise ValueError(f"mask must have shape (B, L) = {tuple(per_position.shape)}, got {tuple(mask.shape)}.")
        counted = as_counted(mask)
        # where, not multiply: a non-finite KL at a padded position must not leak in as 0 * inf = NaN.
        total = torch.where(counted, per_position, torch.zeros_like(per_position)).sum()
        count = counted.sum()
    return reduce(total * temperature**2, count=count, reduction=reduction)


def counted_positions(values: torch.Tensor, *, mask: torch.Tensor | None) -> torch.Tensor:
    """`values` `(B, L, ...)` at the positions `mask` `(B, L)` counts, as `(N, ...)` (all B x L without a mask).
    Selected before any math: a NaN or inf at an uncounted position, hidden from the value by a where() after it,
    would still reach the gradient (the where's zero gradient times a NaN local derivative is NaN); and the softmaxes
    run over the counted positions only."""
    if mask is None:
        return values.reshape(-1, *values.shape[2:])
    if mask.shape != values.shape[:2]:
        raise ValueError(f"mask must have shape (B, L) = {tuple(values.shape[:2])}, got {tuple(mask.shape)}.")
    return values[as_counted(mask)]


def as_counted(mask: torch.Tensor | None) -> torch.Tensor | None:
    """`mask` as booleans (None stays None). A non-boolean mask must hold 0/1: labels passed as the mask would count
    their -100s. Checking it waits for the GPU once; a boolean mask (what the trainer passes) is taken as it is, so
    each loss converts its mask once, first."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        stray = mask[(mask != 0) & (mask != 1)]
        if stray.numel():
            shown = stray.unique()[:4].tolist()
            raise ValueError(
                f"mask must hold 0/1 or booleans (1: the position counts), got values such as {shown}: for token "
                "labels pass `labels != -100` (hf_distill.losses.token_mask), else the attention mask."
            )
    return mask.bool()


def zero_uncounted(values: torch.Tensor, *, mask: torch.Tensor) -> torch.Tensor:
    """`values` `(B, L, ...)` with 0 at the positions `mask` `(B, L)` does not count, chosen by a where: math on a NaN
    or inf left there would reach the gradient of the counted positions, or be multiplied by a zero gradient into
    NaN."""
    if mask.shape != values.shape[:2]:
        raise ValueError(f"mask must have shape (B, L) = {tuple(values.shape[:2])}, got {tuple(mask.shape)}.")
    counted = as_counted(mask).reshape(*mask.shape, *([1] * (values.dim() - 2)))
    return torch.where(counted, values, torch.zeros_like(values))


def reduce(total: torch.Tensor, *, count: torch.Tensor | int, reduction: Reduction) -> torch.Tensor:
    if reduction == "sum":
        return total
    if reduction == "mean":
        # clamp: nothing counted gives 0 / 1 = 0 rather than 0 / 0 = NaN.
        if isinstance(count, torch.Tensor):
            return total / count.clamp(min=1)
        return total / max(count, 1)
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    # fp16/bf16 are promoted to float32; float64 stays float64 (the reference tests and gradcheck use it).
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def check_same_shape(student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher outputs must have the same shape, got student {tuple(student.shape)} and "
            f"teacher {tuple(teacher.shape)}: check that both models have the same head and number of labels."
        )


def check_temperature(temperature: float) -> None:
    # NaN fails both; past MAX_TEMPERATURE (inf included) every row softens to uniform, T**2 overflows float32 to
    # inf, and the loss is 0 * inf = NaN
    if not 0 < temperature <= MAX_TEMPERATURE:
        raise ValueError(
            f"temperature must be > 0 and finite (at most {MAX_TEMPERATURE:.3g}, whose square float32 holds), got "
            f"{temperature!r}: pass e.g. 1.0 or 2.0."
        )
