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

from .batch_counts import labelled_rows

__all__ = ["LOSS_TERMS", "LossContext", "LossTerm", "active_terms"]


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
        kind: "class", "regression" or "token".
        temperature: the softmax temperature T.
    """

    student_outputs: Any
    teacher: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    teacher_outputs: Any
    inputs: dict[str, Any]
    kind: str
    temperature: float

    @property
    def student_logits(self) -> torch.Tensor:
        return self.student_outputs.logits

    @property
    def labels(self) -> torch.Tensor | None:
        return self.inputs.get("labels")

    @cached_property
    def token_mask(self) -> torch.Tensor:
        """`(B, L)` bool: the positions that count (see `hf_distill.losses.token_mask`)."""
        logits = self.student_logits
        return losses.token_mask(self.labels, self.inputs.get("attention_mask"), logits.shape, logits.device)


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
    """

    name: str
    weight_field: str
    compute: Callable[[LossContext], torch.Tensor | None]
    count: Callable[[str], str]
    needs_hidden_states: bool = False
    needs_online_teacher: bool = False
    description: str = field(default="", compare=False)


def _kd_sum(context: LossContext) -> torch.Tensor:
    """KD over every row, labelled or not: T² · KL (class and token heads) or MSE to the teacher (regression)."""
    logits, teacher, temperature = context.student_logits, context.teacher, context.temperature
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
    if context.kind == "token":
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    if context.kind == "regression":
        num_rows = logits.shape[0]
        # Boolean selection, not a where() over NaN targets: a NaN on the unselected side would still poison the
        # gradient (0 * NaN).
        keep = labelled_rows(labels.view(num_rows, -1))
        predictions = logits.float().view(num_rows, -1)[keep]
        targets = labels.float().view(num_rows, -1)[keep]
        return F.mse_loss(predictions, targets, reduction="none").mean(dim=1).sum()
    return F.cross_entropy(logits.float(), labels.view(-1), ignore_index=-100, reduction="sum")


def _cos_sum(context: LossContext) -> torch.Tensor:
    """DistilBERT's cosine between last hidden states `(B, L, D)`, summed over the counted positions."""
    return losses.hidden_state_cosine(
        student_hidden=context.student_outputs.hidden_states[-1],
        teacher_hidden=context.teacher_outputs.hidden_states[-1],
        mask=context.token_mask,
        reduction="sum",
    )


def _per_example_or_position(kind: str) -> str:
    return "positions" if kind == "token" else "examples"


def _per_label(kind: str) -> str:
    return "positions" if kind == "token" else "labelled"


LOSS_TERMS: tuple[LossTerm, ...] = (
    LossTerm("kd", "alpha_kd", _kd_sum, _per_example_or_position, description="soft targets from the teacher"),
    LossTerm("task", "alpha_task", _task_sum, _per_label, description="the student's loss on the labels"),
    LossTerm(
        "cos",
        "alpha_cos",
        _cos_sum,
        lambda kind: "positions",
        needs_hidden_states=True,
        needs_online_teacher=True,
        description="cosine between last hidden states (Sanh et al., 2019)",
    ),
)


def active_terms(args: Any) -> list[tuple[LossTerm, float]]:
    """The terms of `LOSS_TERMS` whose weight in `args` is > 0, with their weights, in table order."""
    return [
        (term, float(getattr(args, term.weight_field))) for term in LOSS_TERMS if getattr(args, term.weight_field) > 0
    ]
