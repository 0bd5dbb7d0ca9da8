"""Losses between the two models' outputs: class KL `(B, C)`, masked token KL `(B, L, V)` (full or against a
cached top-k), and MSE for regression heads.

The soft-target term is ``T**2 * KL(softmax(t / T) || softmax(s / T))``. The gradient of the KL with respect to
the student's logits is ``(q - p) / T``, and ``q - p`` itself shrinks like ``1 / T`` as both distributions
flatten, so the gradient is O(1 / T**2); multiplying by ``T**2`` keeps the soft term's weight independent of the
temperature (Hinton et al., 2015, sec. 2).
"""

from __future__ import annotations

import torch

from ._common import (
    Reduction,
    as_counted,
    at_least_float32,
    check_same_shape,
    check_temperature,
    counted_positions,
    reduce,
    reduce_positions,
)

__all__ = [
    "class_kl_divergence",
    "kl_divergence_per_row",
    "regression_mse",
    "token_kl_divergence",
    "token_topk_kl_divergence",
]


def kl_divergence_per_row(
    *, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(softmax(t / T) || softmax(s / T)) over the last dimension, unscaled, in float32.

    Args:
        student_logits (`torch.Tensor` of shape `(..., C)`): the student's logits.
        teacher_logits (`torch.Tensor` of shape `(..., C)`): the teacher's logits, same shape.
        temperature (`float`): softmax temperature T > 0.

    Returns:
        `torch.Tensor` of shape `(...)`: one KL value per row, float32.
    """
    check_same_shape(student_logits, teacher_logits)
    check_temperature(temperature)
    # log_softmax is stable for huge logits; working in log space needs no epsilon (1e-8 rounds to 0 in fp16).
    student_log_probs = torch.log_softmax(at_least_float32(student_logits) / temperature, dim=-1)
    teacher_log_probs = torch.log_softmax(at_least_float32(teacher_logits) / temperature, dim=-1)
    teacher_probs = teacher_log_probs.exp()
    pointwise = teacher_probs * (teacher_log_probs - student_log_probs)
    # 0 * log 0 = 0: a class the teacher gives no mass (a -inf logit) must not turn the row into NaN. `== 0`, not
    # `> 0`: a NaN teacher (an overflowed fp16 one) keeps its NaN, where it hid as 0 beside a NaN gradient.
    pointwise = torch.where(teacher_probs == 0, torch.zeros_like(pointwise), pointwise)
    return pointwise.sum(dim=-1)


def class_kl_divergence(
    *,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Soft-target loss for class logits: ``T**2 * KL(softmax(t / T) || softmax(s / T))`` per example.

    Args:
        student_logits (`torch.Tensor` of shape `(B, C)`): the student's class logits, C > 1.
        teacher_logits (`torch.Tensor` of shape `(B, C)`): the teacher's class logits.
        temperature (`float`): softmax temperature T > 0.
        reduction (`"mean"` or `"sum"`): mean over the B examples, or their sum.

    Returns:
        `torch.Tensor`: a float32 scalar. An empty batch gives 0.
    """
    if student_logits.dim() != 2:
        raise ValueError(
            f"class_kl_divergence takes class logits of shape (B, C), got shape {tuple(student_logits.shape)}; "
            "use token_kl_divergence for (B, L, V) token logits."
        )
    if student_logits.shape[-1] < 2:
        raise ValueError(
            "class_kl_divergence needs C > 1 classes: a softmax over one logit is constant and the KL is always 0. "
            "Use regression_mse for a regression head."
        )
    per_row = kl_divergence_per_row(
        student_logits=student_logits, teacher_logits=teacher_logits, temperature=temperature
    )  # (B,)
    return reduce(per_row.sum() * temperature**2, count=per_row.numel(), reduction=reduction)


def token_kl_divergence(
    *,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None,
    temperature: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Soft-target loss for token logits, averaged over the positions that count.

    The softmax runs over the last (vocabulary or tag) dimension, never the sequence axis, and padding never
    counts: ``batchmean`` on a 3-D tensor would sum over every position and divide by B only.

    Args:
        student_logits (`torch.Tensor` of shape `(B, L, V)`): the student's per-position logits.
        teacher_logits (`torch.Tensor` of shape `(B, L, V)`): the teacher's per-position logits.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1/True where a position counts (labels != -100, or
            the attention mask). `None` counts every position. Only the counted positions are computed: whatever
            sits elsewhere (even NaN) reaches neither the value nor the gradient.
        temperature (`float`): softmax temperature T > 0.
        reduction (`"mean"` or `"sum"`): ``T**2 * sum(KL over counted positions)`` divided by the number of
            counted positions, or not divided.

    Returns:
        `torch.Tensor`: a float32 scalar. With no counted position it is 0, never NaN.
    """
    mask = as_counted(mask)  # once: checking a 0/1 mask waits for the GPU
    if student_logits.dim() != 3:
        raise ValueError(
            f"token_kl_divergence takes token logits of shape (B, L, V), got shape {tuple(student_logits.shape)}; "
            "use class_kl_divergence for (B, C) class logits."
        )
    if student_logits.shape[-1] < 2:
        raise ValueError(
            "token_kl_divergence needs V > 1 logits per position: a softmax over one logit is constant and the KL "
            "is always 0."
        )
    check_same_shape(student_logits, teacher_logits)
    per_position = kl_divergence_per_row(
        student_logits=counted_positions(student_logits, mask=mask),
        teacher_logits=counted_positions(teacher_logits, mask=mask),
        temperature=temperature,
    )  # (N,): the counted positions only
    return reduce_positions(per_position, mask=None, temperature=temperature, reduction=reduction)


def token_topk_kl_divergence(
    *,
    student_logits: torch.Tensor,
    teacher_topk_log_probs: torch.Tensor,
    teacher_topk_indices: torch.Tensor,
    mask: torch.Tensor | None,
    temperature: float,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Soft-target loss for token logits against a teacher cached as its top-k log-probabilities per position.

    With S the k cached classes, p_i = exp(teacher_topk_log_probs_i) the teacher's probabilities on S at temperature
    T, r = 1 - sum_S p_i the teacher's remaining mass and q = softmax(s / T) the student's distribution, the KL is
    taken between the two distributions coarse-grained to S plus one "rest" bucket:

        KL_k = sum_{i in S} p_i (log p_i - log q_i) + r (log r - log(1 - sum_{i in S} q_i))

    It equals the full KL when S covers the vocabulary (k = V) and is a lower bound of it otherwise (merging classes
    never increases a KL); the student is still pushed to put the teacher's remaining mass outside S, but not told
    how to spread it there. ``0 log 0 = 0``; ``log(1 - sum_S q)`` is computed as the logsumexp of the student's
    logits outside S minus the logsumexp of all of them, so it never cancels to ``log 0``.

    Args:
        student_logits (`torch.Tensor` of shape `(B, L, V)`): the student's per-position logits.
        teacher_topk_log_probs (`torch.Tensor` of shape `(B, L, k)`): ``log_softmax(teacher_logits / T)`` at the
            teacher's k most likely classes, k <= V.
        teacher_topk_indices (`torch.Tensor` of shape `(B, L, k)`): their class indices, distinct within a position.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1/True where a position counts. `None` counts every
            position. Whatever sits at uncounted positions (even NaN, or repeated indices) is ignored, in the
            gradient too.
        temperature (`float`): the temperature T the cached log-probabilities were taken at.
        reduction (`"mean"` or `"sum"`): ``T**2 * sum(KL_k over counted positions)`` divided by the number of
            counted positions, or not divided.

    Returns:
        `torch.Tensor`: a float32 (float64 for float64 logits) scalar; 0, never NaN, with no counted position.
    """
    mask = as_counted(mask)  # once: checking a 0/1 mask waits for the GPU
    if student_logits.dim() != 3:
        raise ValueError(
            f"token_topk_kl_divergence takes token logits of shape (B, L, V), got shape {tuple(student_logits.shape)}."
        )
    if teacher_topk_log_probs.shape != teacher_topk_indices.shape:
        raise ValueError(
            f"teacher_topk_log_probs {tuple(teacher_topk_log_probs.shape)} and teacher_topk_indices "
            f"{tuple(teacher_topk_indices.shape)} must have the same shape (B, L, k)."
        )
    vocabulary, k = student_logits.shape[-1], teacher_topk_indices.shape[-1]
    if teacher_topk_indices.shape[:2] != student_logits.shape[:2] or teacher_topk_indices.dim() != 3 or k > vocabulary:
        raise ValueError(
            f"the cached teacher top-k must have shape (B, L, k) with k <= V for student logits (B, L, V) = "
            f"{tuple(student_logits.shape)}, got {tuple(teacher_topk_indices.shape)}."
        )
    check_temperature(temperature)
    # the counted positions only (N, ...): whatever the cache holds elsewhere never enters, not even the gradient
    student = at_least_float32(counted_positions(student_logits, mask=mask)) / temperature  # (N, V)
    log_normaliser = torch.logsumexp(student, dim=-1)  # (N,)
    indices = counted_positions(teacher_topk_indices, mask=mask).long()
    teacher_topk_log_probs = counted_positions(teacher_topk_log_probs, mask=mask)
    student_log_probs = student.gather(-1, indices) - log_normaliser.unsqueeze(-1)  # (N, k): log q_i, i in S
    teacher_log_probs = teacher_topk_log_probs.to(student.dtype)
    teacher_probs = teacher_log_probs.exp()
    pointwise = teacher_probs * (teacher_log_probs - student_log_probs)
    # 0 * log 0 = 0: a cached class with no teacher mass must not turn the position into NaN (a NaN one stays NaN).
    per_position = torch.where(teacher_probs == 0, torch.zeros_like(pointwise), pointwise).sum(dim=-1)  # (N,)
    if k < vocabulary:
        # clamp: rounding can make the cached top-k sum to a hair above 1.
        teacher_rest = (1 - teacher_probs.sum(dim=-1)).clamp(min=0)  # (N,)
        outside = student.scatter(-1, indices, float("-inf"))  # (N, V): the logits outside S
        # a student with no mass outside S (every logit there -inf) gets log 0 = -inf, and a logsumexp over zeros
        # instead of over -inf alone (whose gradient is NaN)
        has_rest = (outside > float("-inf")).any(dim=-1)  # (N,)
        outside = torch.where(has_rest.unsqueeze(-1), outside, torch.zeros_like(outside))
        student_log_rest = torch.where(
            has_rest, torch.logsumexp(outside, dim=-1) - log_normaliser, float("-inf")
        )  # log(1 - sum_S q)
        # 0 log 0 = 0 on both sides: xlogy(r, r) = r log r, and no teacher rest adds nothing whatever the student's
        cross = torch.where(teacher_rest == 0, torch.zeros_like(teacher_rest), teacher_rest * student_log_rest)
        per_position = per_position + torch.xlogy(teacher_rest, teacher_rest) - cross
    # With k = V the rest bucket is empty for both distributions and contributes exactly 0; skipping it avoids the
    # logsumexp of an all -inf row (whose gradient is NaN).
    return reduce_positions(per_position, mask=None, temperature=temperature, reduction=reduction)


def regression_mse(
    *,
    student_predictions: torch.Tensor,
    teacher_predictions: torch.Tensor,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Distillation loss for regression heads: squared error between student and teacher predictions.

    A softmax over a single regression output is constant (its KL is identically 0, the STS-B bug of the
    copied recipe), so regression is distilled by matching the teacher's prediction directly, with no
    temperature.

    Args:
        student_predictions (`torch.Tensor` of shape `(B,)` or `(B, K)`): the student's outputs.
        teacher_predictions (`torch.Tensor`, same shape): the teacher's outputs.
        reduction (`"mean"` or `"sum"`): the squared error averaged over the K outputs of each example, then
            averaged (or summed) over the B examples; the mean equals ``F.mse_loss`` for any K.

    Returns:
        `torch.Tensor`: a float32 scalar. An empty batch gives 0.
    """
    if student_predictions.shape != teacher_predictions.shape:
        raise ValueError(
            f"student predictions {tuple(student_predictions.shape)} and teacher predictions "
            f"{tuple(teacher_predictions.shape)} must have the same shape: reshape one like the other (e.g. "
            "predictions.view(-1) for a one-output head)."
        )
    if student_predictions.dim() == 0:
        raise ValueError("regression_mse takes predictions of shape (B,) or (B, K), got a scalar.")
    squared = (at_least_float32(student_predictions) - at_least_float32(teacher_predictions)).pow(2)
    per_example = squared.flatten(1).mean(dim=1) if squared.dim() > 1 else squared  # (B,)
    return reduce(per_example.sum(), count=per_example.numel(), reduction=reduction)
