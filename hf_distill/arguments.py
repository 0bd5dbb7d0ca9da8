"""`DistillationTrainingArguments`: `TrainingArguments` plus the distillation knobs, validated at the boundary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

__all__ = ["DistillationTrainingArguments"]


@dataclass
class DistillationTrainingArguments(TrainingArguments):
    """[`~transformers.TrainingArguments`] for [`DistillationTrainer`].

    The training loss is ``alpha_kd * KD + alpha_task * TASK``, where KD is the temperature-squared KL divergence
    from the teacher's softened distribution to the student's (mean squared error to the teacher's predictions for
    regression heads) and TASK is the student's ordinary supervised loss on the batch's labels.
    """

    temperature: float = field(
        default=2.0,
        metadata={
            "help": "Softmax temperature T > 0 for the soft targets softmax(teacher_logits / T). Higher T exposes "
            "more of how the teacher ranks the wrong classes; the KD term is multiplied by T**2 so its weight does "
            "not change with T (Hinton et al., 2015). Ignored for regression heads."
        },
    )
    alpha_kd: float = field(
        default=0.5,
        metadata={"help": "Weight (>= 0) of the distillation term KD in the training loss."},
    )
    alpha_task: float = field(
        default=0.5,
        metadata={
            "help": "Weight (>= 0) of the student's own supervised loss on the labels. Batches without labels "
            "use the distillation term alone."
        },
    )

    def __post_init__(self):
        _check_finite("temperature", self.temperature, fix="pass a positive temperature such as 2.0")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature!r}: the soft targets are softmax(logits / "
                "temperature). Pass a positive value such as 2.0."
            )
        for name in ("alpha_kd", "alpha_task"):
            value = getattr(self, name)
            _check_finite(name, value, fix=f"pass a weight >= 0 for {name}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}: it weighs a loss term. Pass 0 to drop it.")
        if self.alpha_kd == 0 and self.alpha_task == 0:
            raise ValueError(
                "alpha_kd and alpha_task are both 0, so the loss would be identically 0 and nothing would train. "
                "Set alpha_kd > 0 to distil, alpha_task > 0 to learn from the labels, or both."
            )
        super().__post_init__()


def _check_finite(name: str, value: float, *, fix: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}: {fix}.")
