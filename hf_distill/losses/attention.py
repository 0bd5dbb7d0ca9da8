"""Losses between the two models' self-attention: MiniLM's attention and value-relation transfer.

MiniLM (Wang et al., 2020, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
Pre-Trained Transformers", sec. 3) distils the last Transformer layer's self-attention: per head and query, the
KL from the teacher's attention distribution over the keys to the student's (`attention_kl`), and the same KL
between the "value relations" ``softmax(V V^T / sqrt(d))`` of the two models (`value_relation_kl`). MiniLMv2
(Wang et al., 2021, "MiniLMv2: Multi-Head Self-Attention Relation Distillation for Compressing Pretrained
Transformers", sec. 3) splits the concatenated vectors into a number R of *relation* heads chosen independently of
either model's attention heads, so that a student and a teacher with different head counts and widths can be
distilled against each other; `value_relation_kl` takes that R.

Both losses are KL(teacher || student) per head and counted query, averaged over the heads, then averaged (or
summed) over the counted queries. The mask `(B, L)` marks the counted positions, both as queries and as keys: keys
outside it carry no mass in either model (each row is renormalised over the counted keys), so whatever a model
attends to on padding never counts.
"""

from __future__ import annotations

import math

import torch

from ._common import Reduction, as_counted, at_least_float32, reduce_positions, zero_uncounted

__all__ = ["attention_kl", "value_relation_kl"]


def attention_kl(
    *,
    student_attentions: torch.Tensor,
    teacher_attentions: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    log_space: bool = False,
) -> torch.Tensor:
    """MiniLM's self-attention transfer: KL(teacher's attention row || student's) per head and counted query.

    With ``a_t`` and ``a_s`` the two models' attention distributions of head h at query i, restricted to the
    counted keys and renormalised there, the loss of the query is ``mean_h sum_j a_t[j] (log a_t[j] - log a_s[j])``
    (``0 log 0 = 0``), computed from the log of the given probabilities, never from the probabilities themselves.
    Renormalising makes the loss the same whether a model's attention put mass on padding (no key mask) or exactly
    zero there (the usual additive mask), and whatever the rows sum to.

    Both models must have the same number of heads: with different head counts there is no head-to-head
    correspondence, and MiniLMv2's relation heads (`value_relation_kl`) are the way to go.

    Note that in training mode transformers returns the attention probabilities *after* attention dropout: a key
    the student's dropout zeroed where the teacher has mass makes the KL infinite. Distil with
    ``attention_probs_dropout_prob=0`` in the student's config (the teacher runs in eval mode).

    Args:
        student_attentions (`torch.Tensor` of shape `(B, H, L, L)`): one layer of the student's attention
            probabilities as transformers returns them with ``output_attentions=True`` (query, key), e.g.
            ``outputs.attentions[-1]``. Entries <= 0 carry no mass.
        teacher_attentions (`torch.Tensor` of shape `(B, H, L, L)`): the teacher's, same H and L.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1/True where a position counts (the attention mask).
            Queries outside it do not count and keys outside it carry no mass in either model. Default: every
            position.
        reduction (`"mean"` or `"sum"`): the per-query loss (already averaged over heads) averaged over the
            counted queries, or summed over them.
        log_space (`bool`): the attentions are given as log-probabilities (``log_softmax`` of the scores; -inf
            carries no mass), renormalised over the counted keys with a logsumexp. Pass them where you can: a
            peaked row's probability can round to 0 in float32 (a score ~100 below its row's maximum) where the
            other model's is not, which makes the KL from probabilities infinite; its log stays finite.

    Returns:
        `torch.Tensor`: a float32 (float64 for float64 attentions) scalar >= 0. A query with no counted key, or no
        counted query at all, gives 0, never NaN, with finite gradients.
    """
    mask = as_counted(mask)  # once: checking a 0/1 mask waits for the GPU
    for name, attentions in (("student", student_attentions), ("teacher", teacher_attentions)):
        if (
            not isinstance(attentions, torch.Tensor)
            or attentions.dim() != 4
            or attentions.shape[-1] != attentions.shape[-2]
        ):
            shape = tuple(attentions.shape) if isinstance(attentions, torch.Tensor) else type(attentions).__name__
            raise ValueError(
                f"{name}_attentions must have shape (B, H, L, L) (query, key), got {shape}: pass one layer of "
                "the model's output_attentions, e.g. outputs.attentions[-1]."
            )
    (batch, student_heads, length, _), teacher_heads = student_attentions.shape, teacher_attentions.shape[1]
    if teacher_attentions.shape[0] != batch or teacher_attentions.shape[2] != length:
        raise ValueError(
            f"student and teacher attentions must cover the same batch and sequence length, got student "
            f"{tuple(student_attentions.shape)} and teacher {tuple(teacher_attentions.shape)}: pass both models the "
            "same batch."
        )
    if student_heads != teacher_heads:
        raise ValueError(
            f"attention_kl needs the same number of heads in both models, got student H={student_heads} and teacher "
            f"H={teacher_heads}: use value_relation_kl (MiniLMv2's relation heads, independent of the attention "
            "heads), or map the teacher's heads onto the student's first."
        )
    key_counted = _key_mask(mask, batch=batch, length=length)
    # The cells of a counted query and a counted key (B, 1, L, L): an uncounted query's row is left without mass, so
    # what a model put there (NaN too, which a counted row now keeps) reaches neither the value nor the gradient.
    counted = None if key_counted is None else key_counted & key_counted.transpose(-1, -2)
    renormalised = _renormalised_from_log_probs if log_space else _renormalised_log_probs
    per_head = _kl_over_keys(
        student_log_probs=renormalised(student_attentions, key_counted=counted),
        teacher_log_probs=renormalised(teacher_attentions, key_counted=counted),
    )  # (B, H, L)
    return reduce_positions(per_head.mean(dim=1), mask=mask, temperature=1.0, reduction=reduction)


def value_relation_kl(
    *,
    student_values: torch.Tensor,
    teacher_values: torch.Tensor,
    mask: torch.Tensor | None = None,
    num_relation_heads: int,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """MiniLM's value-relation transfer with MiniLMv2's relation heads: KL between ``softmax(V_r V_r^T / sqrt(d))``.

    Each model's value vectors `(B, L, D)` are split into R relation heads of size ``d = D / R`` (the student's and
    the teacher's own D, so the two widths may differ); per head r the relation of query i is
    ``softmax_j(<v_r[i], v_r[j]> / sqrt(d))`` over the counted keys j (the others get -inf before the softmax), and
    the loss of the query is ``mean_r KL(teacher relation || student relation)``, reduced like `attention_kl`. With R
    equal to both models' number of attention heads this is MiniLM's value relation; the same function computes
    MiniLMv2's query-query and key-key relations from the query or key projections' outputs.

    Args:
        student_values (`torch.Tensor` of shape `(B, L, D_s)`): the student's value vectors at the chosen layer,
            the value projection's output before the split into attention heads.
        teacher_values (`torch.Tensor` of shape `(B, L, D_t)`): the teacher's, same B and L.
        mask (`torch.Tensor` of shape `(B, L)`, *optional*): 1/True where a position counts, as a query and as a
            key. Default: every position.
        num_relation_heads (`int`): R >= 1, which must divide both D_s and D_t.
        reduction (`"mean"` or `"sum"`): the per-query loss (already averaged over the R heads) averaged over the
            counted queries, or summed over them.

    Returns:
        `torch.Tensor`: a float32 (float64 for float64 values) scalar >= 0. An example with no counted position gives
        0, never NaN, with finite gradients.
    """
    mask = as_counted(mask)  # once: checking a 0/1 mask waits for the GPU
    for name, values in (("student", student_values), ("teacher", teacher_values)):
        if not isinstance(values, torch.Tensor) or values.dim() != 3:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(
                f"{name}_values must have shape (B, L, D) (the value projection's output before the split into "
                f"heads), got {shape}."
            )
    if student_values.shape[:2] != teacher_values.shape[:2]:
        raise ValueError(
            f"student and teacher values must cover the same batch and sequence length (B, L), got student "
            f"{tuple(student_values.shape)} and teacher {tuple(teacher_values.shape)}: pass both models the same "
            "batch."
        )
    student_width, teacher_width = student_values.shape[2], teacher_values.shape[2]
    if isinstance(num_relation_heads, bool) or not isinstance(num_relation_heads, int) or num_relation_heads < 1:
        raise ValueError(f"num_relation_heads must be an integer >= 1, got {num_relation_heads!r}.")
    if student_width % num_relation_heads or teacher_width % num_relation_heads:
        common = math.gcd(student_width, teacher_width)
        divisors = [r for r in range(1, common + 1) if common % r == 0]
        raise ValueError(
            f"num_relation_heads={num_relation_heads} must divide both value widths, got student D={student_width} "
            f"and teacher D={teacher_width}: choose R among their common divisors {divisors}."
        )
    batch, length = student_values.shape[:2]
    key_counted = _key_mask(mask, batch=batch, length=length)
    if mask is not None:
        # padded rows as 0 before the relations' matmul, whose backward sums every key's row into each query's
        student_values, teacher_values = (zero_uncounted(v, mask=mask) for v in (student_values, teacher_values))
    per_head = _kl_over_keys(
        student_log_probs=_relation_log_probs(student_values, num_heads=num_relation_heads, key_counted=key_counted),
        teacher_log_probs=_relation_log_probs(teacher_values, num_heads=num_relation_heads, key_counted=key_counted),
    )  # (B, R, L)
    return reduce_positions(per_head.mean(dim=1), mask=mask, temperature=1.0, reduction=reduction)


def _key_mask(mask: torch.Tensor | None, *, batch: int, length: int) -> torch.Tensor | None:
    """The mask `(B, L)` as booleans `(B, 1, 1, L)`, broadcasting over heads and queries to mark counted keys."""
    if mask is None:
        return None
    if tuple(mask.shape) != (batch, length):
        raise ValueError(
            f"mask must have shape (B, L) = {(batch, length)}, got {tuple(mask.shape)}: pass the batch's attention "
            "mask."
        )
    return mask.bool()[:, None, None, :]


def _renormalised_log_probs(attentions: torch.Tensor, *, key_counted: torch.Tensor | None) -> torch.Tensor:
    """Log of the attention rows restricted to the counted keys and renormalised there; -inf where no mass."""
    probs = at_least_float32(attentions)
    # `not <= 0`, not `> 0`: a NaN probability (an overflowed half-precision model) is not a key without mass, it
    # stays NaN (and its row with it) rather than the row being renormalised over the other keys; entries <= 0 carry
    # no mass, as documented
    has_mass = ~(probs <= 0) if key_counted is None else key_counted & ~(probs <= 0)
    ones = torch.ones_like(probs)
    # log of 1, not of 0, where there is no mass: log's gradient there would be 0 / 0 = NaN even when unused.
    log_probs = torch.where(has_mass, torch.log(torch.where(has_mass, probs, ones)), float("-inf"))
    mass = torch.where(has_mass, probs, torch.zeros_like(probs)).sum(dim=-1, keepdim=True)  # (B, H, L, 1)
    # a row with no mass on the counted keys stays all -inf (it carries no mass) rather than -inf - -inf = NaN.
    log_mass = torch.log(torch.where(mass <= 0, torch.ones_like(mass), mass))
    return log_probs - log_mass


def _renormalised_from_log_probs(log_probs: torch.Tensor, *, key_counted: torch.Tensor | None) -> torch.Tensor:
    """`_renormalised_log_probs` from log-probabilities: restricted to the counted keys, renormalised there by a
    logsumexp; -inf where no mass."""
    log_probs = at_least_float32(log_probs)
    # `!=`, not `>`: a NaN log-probability is kept (NaN), not taken for a key without mass
    has_mass = log_probs != float("-inf") if key_counted is None else key_counted & (log_probs != float("-inf"))
    row_has_mass = has_mass.any(dim=-1, keepdim=True)
    # a row with no mass is summed as zeros (its logsumexp over -inf alone would be -inf, and -inf - -inf NaN), and
    # stays all -inf: it carries no mass
    kept = torch.where(has_mass, log_probs, float("-inf"))
    kept = torch.where(row_has_mass, kept, torch.zeros_like(kept))
    log_mass = torch.logsumexp(kept, dim=-1, keepdim=True)
    return torch.where(has_mass, kept - log_mass, float("-inf"))


def _relation_log_probs(values: torch.Tensor, *, num_heads: int, key_counted: torch.Tensor | None) -> torch.Tensor:
    """``log_softmax(V_r V_r^T / sqrt(d))`` per relation head `(B, R, L, L)`, -inf at the keys that do not count."""
    batch, length, width = values.shape
    head_size = width // num_heads
    heads = at_least_float32(values).reshape(batch, length, num_heads, head_size).transpose(1, 2)  # (B, R, L, d)
    scores = heads @ heads.transpose(-1, -2) / math.sqrt(head_size)  # (B, R, L, L)
    if key_counted is not None:
        scores = scores.masked_fill(~key_counted, float("-inf"))
        # An example with no counted key would softmax a row of -inf into NaN: give it a finite, uniform row
        # instead; its queries never count, and uniform against uniform is a KL of exactly 0.
        scores = torch.where(key_counted.any(dim=-1, keepdim=True), scores, torch.zeros_like(scores))
    return torch.log_softmax(scores, dim=-1)


def _kl_over_keys(*, student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the last dimension, from log-probabilities where -inf means no mass."""
    teacher_probs = teacher_log_probs.exp()
    # 0 * log 0 = 0, selected before the product: at a key without teacher mass -inf - -inf is NaN, and the
    # product's backward would multiply the zero gradient there by it.
    difference = torch.where(teacher_probs > 0, teacher_log_probs - student_log_probs, torch.zeros_like(teacher_probs))
    return (teacher_probs * difference).sum(dim=-1)
