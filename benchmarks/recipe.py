"""The Trainer-subclass distillation recipe most users copy, kept as the baseline hf-distill is measured against.

Written from the recipe's public description (a blog post and the Hugging Face docs' knowledge-distillation guide),
with its published defaults (alpha 0.5, temperature 2.0) and only the change current transformers forces on it
(`compute_loss` must take `num_items_in_batch`). Its known faults are kept on purpose, since they are what is
measured (hf-distill has a test for each):

- the teacher is moved with `.to(device)` and never passes through Accelerate: under fp16/bf16 there is no autocast
  for it, so it runs in the dtype it was given (fp32 for a teacher loaded in fp32; `distill_glue.py --bf16` stores its
  teacher in bf16 first, so there it runs in bf16);
- it is given every input, labels included, so it also computes a loss nobody reads;
- `KLDivLoss(reduction="batchmean")` on class logits only, each micro-batch its own mean: under gradient
  accumulation on transformers 5, whose Trainer leaves the division by the accumulation steps to a `compute_loss`
  that takes `num_items_in_batch` (BERT's forward takes `**kwargs`), the k micro-batches' means are summed, not
  averaged: k times the loss, the gradient and the logged loss;
- the student's loss is the model's own, so `label_smoothing_factor` is not applied (the script warns of it).

Not part of the library: `scripts/benchmark.py` times it, `scripts/distill_glue.py --student_training recipe` trains
with it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

__all__ = ["RecipeDistillationTrainer"]


class RecipeDistillationTrainer(Trainer):
    """`Trainer` whose loss is ``alpha * student_loss + (1 - alpha) * T**2 * KL(teacher || student)``.

    Args:
        teacher_model (`nn.Module`): the teacher, run under `torch.no_grad()` on every training step.
        alpha (`float`, *optional*): weight of the student's own loss. Defaults to `args.alpha_task` when the
            arguments have it (so hf-distill's configs drive both), else 0.5.
        temperature (`float`, *optional*): defaults to `args.temperature` when present, else 2.0.
        **kwargs: any `Trainer` argument.
    """

    def __init__(
        self,
        *args: Any,
        teacher_model: nn.Module | None = None,
        alpha: float | None = None,
        temperature: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if teacher_model is None:
            raise ValueError("RecipeDistillationTrainer needs teacher_model=.")
        self.teacher = teacher_model
        self.teacher.to(self.args.device)  # as the recipe does: moved, never prepared
        self.teacher.eval()
        self.alpha = alpha if alpha is not None else getattr(self.args, "alpha_task", 0.5)
        self.temperature = temperature if temperature is not None else getattr(self.args, "temperature", 2.0)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs_student = model(**inputs)
        student_loss = outputs_student.loss
        with torch.no_grad():
            outputs_teacher = self.teacher(**inputs)
        if outputs_student.logits.size() != outputs_teacher.logits.size():
            raise ValueError("student and teacher logits differ in shape")
        loss_function = nn.KLDivLoss(reduction="batchmean")
        loss_logits = loss_function(
            F.log_softmax(outputs_student.logits / self.temperature, dim=-1),
            F.softmax(outputs_teacher.logits / self.temperature, dim=-1),
        ) * (self.temperature**2)
        loss = self.alpha * student_loss + (1.0 - self.alpha) * loss_logits
        return (loss, outputs_student) if return_outputs else loss
