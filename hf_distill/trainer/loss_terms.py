"""The training loss as a table of weighted terms: ``loss = sum(weight * term)`` over the terms whose weight > 0.

Each term is a [`LossTerm`]: its name (logged as ``loss_<name>``), the `DistillationTrainingArguments` field that
holds its weight, a function returning the term's *sum* over one micro-batch, and the item count of the whole
accumulated batch that sum is divided by (see `batch_counts.py`). Adding a term is one entry in `LOSS_TERMS` and
one function; `DistillationTrainer.compute_loss` and `log` loop over the table (torchdistill's weighted-sum loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from hf_distill import losses
from hf_distill.losses._common import at_least_float32

from .batch_counts import labelled_rows, sequence_input

__all__ = ["LOSS_TERMS", "LossContext", "LossTerm", "active_terms", "task_sum"]


@dataclass
class LossContext:
    """What the terms of one micro-batch read.

    Attributes:
        student_outputs: the student's forward outputs (`logits` `(B, C)`, `(B, 1)` or `(B, L, V)`; `hidden_states`
            when a term asked for them).
        teacher: the teacher's logits (same shape as the student's), or for a token-level cache the pair
            (top-k log-probabilities, top-k indices), each `(B, L, k)`.
        teacher_outputs: the teacher's forward outputs when it ran online, else None.
        inputs: the batch (labels included, cache columns removed).
        kind: "class", "regression", "token" (`(B, L, V)` logits) or "token_selected" (`(N, V)` logits of the N
            counted positions, in row-major order).
        temperature: the softmax temperature T.
        label_smoothing: the task term's cross-entropy label smoothing (`label_smoothing_factor`; class and token
            heads, never regression).
        next_token: a causal LM: the token KD counts the positions that predict a counted token (`token_mask`).
    """

    student_outputs: Any
    teacher: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    teacher_outputs: Any
    inputs: dict[str, Any]
    kind: str
    temperature: float
    hidden_pairs: list[tuple[int, int]] = field(default_factory=list)  # (student, teacher) hidden_states indices
    projection: Any = None  # student width -> teacher width (TinyBERT's W_h), when the widths differ
    student_tap: Any = None  # LastLayerTap of each model, when an attention/value term is on
    teacher_tap: Any = None
    value_relation_heads: int = 1
    chunked: dict[str, Any] | None = None  # the deferred vocabulary heads and their inputs (token_kd_chunk_size)
    label_smoothing: float = 0.0
    next_token: bool = False

    @property
    def student_logits(self) -> torch.Tensor:
        return self.student_outputs.logits

    @property
    def labels(self) -> torch.Tensor | None:
        return self.inputs.get("labels")

    @cached_property
    def chunked_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(KD sum, cross-entropy sum) over the counted positions, the heads run in chunks (`token_heads.py`)."""
        from .token_heads import chunked_token_sums

        labels = self.labels[self.token_mask] if self.labels is not None else None
        return chunked_token_sums(
            student_head=self.chunked["student_head"],
            teacher_head=self.chunked["teacher_head"],
            student_hidden=self.chunked["student_head_input"],
            teacher_hidden=self.chunked["teacher_head_input"],
            labels=labels,
            temperature=self.temperature,
            chunk_size=self.chunked["chunk_size"],
            label_smoothing=self.label_smoothing,
            autocast=self.chunked.get("autocast"),
        )

    def _positions(self, labels: torch.Tensor | None, next_token: bool = False) -> torch.Tensor:
        sequence = sequence_input(self.inputs)  # the positions `batch_counts.count_items` counts
        reference = self.student_logits if sequence is None else sequence
        return losses.token_mask(
            labels, self.inputs.get("attention_mask"), reference.shape, reference.device, next_token=next_token
        )

    @cached_property
    def attended_mask(self) -> torch.Tensor:
        """`(B, L)` bool: every attended token (attention mask 1, else every position), which the hidden-state,
        cosine, attention and value-relation terms match, whatever positions the token-level KD counts."""
        return self._positions(None)

    @cached_property
    def token_mask(self) -> torch.Tensor:
        """`(B, L)` bool: the positions that count (see `hf_distill.losses.token_mask`)."""
        return self._positions(self.labels, self.next_token)


@dataclass(frozen=True)
class LossTerm:
    """One weighted term of the training loss.

    Attributes:
        name: logged as ``loss_<name>``.
        weight_field: the `DistillationTrainingArguments` field holding its weight; weight 0 skips the term entirely.
        compute: the term's sum over one micro-batch, or None when the batch has nothing it applies to (no labels).
        count: which count of `batch_counts.COUNT_NAMES` the sum is divided by, given the output kind.
        needs_hidden_states: both models must return their hidden states.
        needs_online_teacher: the teacher must run every step (a logit cache does not hold what it reads).
        needs_last_layer: both models' last-layer query/key/value projections are tapped (`intermediate.py`).
    """

    name: str
    weight_field: str
    compute: Callable[[LossContext], torch.Tensor | None]
    count: Callable[[str], str]
    needs_hidden_states: bool = False
    needs_online_teacher: bool = False
    needs_last_layer: bool = False


def _kd_sum(context: LossContext) -> torch.Tensor:
    """KD over every row, labelled or not: T² · KL (class and token heads) or MSE to the teacher (regression)."""
    logits, teacher, temperature = context.student_logits, context.teacher, context.temperature
    if context.chunked is not None:  # the heads deferred: run in chunks over the counted positions
        return context.chunked_sums[0]
    if context.kind == "token_selected":  # (N, V): the heads ran on the counted positions only (token_heads.py)
        if isinstance(teacher, tuple):  # the token-level cache's top-k at those positions, (N, k) each
            return losses.token_topk_kl_divergence(
                student_logits=logits.unsqueeze(0),
                teacher_topk_log_probs=teacher[0].unsqueeze(0),
                teacher_topk_indices=teacher[1].unsqueeze(0),
                mask=None,
                temperature=temperature,
                reduction="sum",
            )
        return losses.class_kl_divergence(
            student_logits=logits, teacher_logits=teacher, temperature=temperature, reduction="sum"
        )
    if context.kind == "token":
        if isinstance(teacher, tuple):  # the token-level cache: top-k log-probabilities and their indices
            return losses.token_topk_kl_divergence(
                student_logits=logits,
                teacher_topk_log_probs=teacher[0],
                teacher_topk_indices=teacher[1],
                mask=context.token_mask,
                temperature=temperature,
                reduction="sum",
            )
        return losses.token_kl_divergence(
            student_logits=logits,
            teacher_logits=teacher,
            mask=context.token_mask,
            temperature=temperature,
            reduction="sum",
        )
    if context.kind == "regression":
        return losses.regression_mse(student_predictions=logits, teacher_predictions=teacher, reduction="sum")
    return losses.class_kl_divergence(
        student_logits=logits, teacher_logits=teacher, temperature=temperature, reduction="sum"
    )


def _task_sum(context: LossContext) -> torch.Tensor | None:
    """The student's own loss on the labelled rows only (labels -100, or NaN for regression, mark "no label")."""
    labels, logits = context.labels, context.student_logits
    if labels is None:
        return None
    if context.chunked is not None:
        return context.chunked_sums[1]
    if context.kind == "token_selected":  # (N, V) logits at the counted positions: N rows of a class head
        return task_sum(logits, labels[context.token_mask], "class", label_smoothing=context.label_smoothing)
    return task_sum(logits, labels, context.kind, label_smoothing=context.label_smoothing)


def task_sum(logits: torch.Tensor, labels: torch.Tensor, kind: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """The supervised loss summed over the labelled rows (class, regression) or counted positions (token).

    Args:
        logits: `(B, C)`, `(B, 1)` (regression) or `(B, L, V)` (token).
        labels: `(B,)` class ids (-100: no label), `(B,)`/`(B, 1)` floats (NaN: no label), or `(B, L)` token ids
            (-100: not counted).
        kind: "class", "regression" or "token".
        label_smoothing: cross-entropy's label smoothing (`Trainer`'s `label_smoothing_factor`); class and token
            heads only, a regression head's MSE ignores it.
    """
    if kind == "token":
        return F.cross_entropy(
            at_least_float32(logits).flatten(0, 1),
            labels.flatten(),
            ignore_index=-100,
            reduction="sum",
            label_smoothing=label_smoothing,
        )
    if kind == "regression":
        num_rows = logits.shape[0]
        # Boolean selection, not a where() over NaN targets: a NaN on the unselected side would still poison the
        # gradient (0 * NaN).
        keep = labelled_rows(labels.view(num_rows, -1))
        predictions = at_least_float32(logits).view(num_rows, -1)[keep]
        targets = labels.to(predictions.dtype).view(num_rows, -1)[keep]
        return F.mse_loss(predictions, targets, reduction="none").mean(dim=1).sum()
    # float32 at least (half-precision logits), a float64 student's float64
    return F.cross_entropy(
        at_least_float32(logits), labels.view(-1), ignore_index=-100, reduction="sum", label_smoothing=label_smoothing
    )


def _cos_sum(context: LossContext) -> torch.Tensor:
    """DistilBERT's cosine between last hidden states `(B, L, D)`, summed over the attended tokens."""
    return losses.hidden_state_cosine(
        student_hidden=context.student_outputs.hidden_states[-1],
        teacher_hidden=context.teacher_outputs.hidden_states[-1],
        mask=context.attended_mask,
        reduction="sum",
    )


def _hidden_sum(context: LossContext) -> torch.Tensor:
    """TinyBERT's hidden-state MSE over the mapped layer pairs (embeddings included), averaged over the pairs so that
    the weight does not grow with depth; the student's states projected to the teacher's width when they differ."""
    student_states = context.student_outputs.hidden_states
    teacher_states = context.teacher_outputs.hidden_states
    total = None
    for student_index, teacher_index in context.hidden_pairs:
        student_hidden = student_states[student_index]
        if context.projection is not None:
            student_hidden = context.projection(student_hidden.to(context.projection.weight.dtype))
        term = losses.hidden_state_mse(
            student_hidden=student_hidden,
            teacher_hidden=teacher_states[teacher_index],
            mask=context.attended_mask,
            reduction="sum",
        )
        total = term if total is None else total + term
    return total / len(context.hidden_pairs)


def _attention_sum(context: LossContext) -> torch.Tensor:
    """MiniLM's KL between the last layers' self-attention distributions, over the attended queries and keys."""
    mask = context.attended_mask
    context.student_tap.check_gradients()
    return losses.attention_kl(
        student_attentions=context.student_tap.attention_log_probabilities(mask),
        teacher_attentions=context.teacher_tap.attention_log_probabilities(mask),
        mask=mask,
        reduction="sum",
        log_space=True,
    )


def _value_relation_sum(context: LossContext) -> torch.Tensor:
    """MiniLM's value-relation KL of the last layers (any widths: R relation heads split each model's width)."""
    context.student_tap.check_gradients()
    return losses.value_relation_kl(
        student_values=context.student_tap.values(),
        teacher_values=context.teacher_tap.values(),
        mask=context.attended_mask,
        num_relation_heads=context.value_relation_heads,
        reduction="sum",
    )


def _per_example_or_position(kind: str) -> str:
    return "positions" if kind.startswith("token") else "examples"


def _per_label(kind: str) -> str:
    return "positions" if kind.startswith("token") else "labelled"


LOSS_TERMS: tuple[LossTerm, ...] = (
    LossTerm("kd", "alpha_kd", _kd_sum, _per_example_or_position),  # soft targets from the teacher
    LossTerm("task", "alpha_task", _task_sum, _per_label),  # the student's own loss on the labelled rows
    LossTerm(
        "cos",
        "alpha_cos",
        _cos_sum,
        lambda kind: "tokens",
        needs_hidden_states=True,
        needs_online_teacher=True,
    ),  # cosine between last hidden states (Sanh et al., 2019)
    LossTerm(
        "hidden",
        "alpha_hidden",
        _hidden_sum,
        lambda kind: "tokens",
        needs_hidden_states=True,
        needs_online_teacher=True,
    ),  # MSE between mapped hidden states (TinyBERT)
    LossTerm(
        "attention",
        "alpha_attention",
        _attention_sum,
        lambda kind: "tokens",
        needs_online_teacher=True,
        needs_last_layer=True,
    ),  # KL between last-layer attention distributions (MiniLM)
    LossTerm(
        "value_relation",
        "alpha_value_relation",
        _value_relation_sum,
        lambda kind: "tokens",
        needs_online_teacher=True,
        needs_last_layer=True,
    ),  # KL between last-layer value relations (MiniLM)
)


def active_terms(args: Any) -> list[tuple[LossTerm, float]]:
    """The terms of `LOSS_TERMS` whose weight in `args` is > 0, with their weights, in table order."""
    return [
        (term, float(getattr(args, term.weight_field))) for term in LOSS_TERMS if getattr(args, term.weight_field) > 0
    ]
