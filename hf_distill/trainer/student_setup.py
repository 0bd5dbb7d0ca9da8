"""`DistillationTrainer`'s student: checked against the teacher when given or built by `model_init` (each
hyperparameter-search trial), its hidden-state projection attached, and saved without it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .arguments import DistillationTrainingArguments
from .compatibility import check_distillable, check_hidden_sizes, check_intermediate
from .intermediate import PROJECTION_NAME, attach_projection
from .loss_terms import active_terms
from .model_inputs import unwrap

__all__ = ["StudentSetupMixin"]


class StudentSetupMixin:
    """Methods of `DistillationTrainer` (a `transformers.Trainer`); uses its `_unplaced_teacher` and `args`."""

    def _check_student(self, student: nn.Module, args: DistillationTrainingArguments) -> None:
        if student is self._unplaced_teacher:
            raise ValueError("the student is the teacher object itself: build a separate student to distil into.")
        check_distillable(student, self._unplaced_teacher)
        if args.alpha_cos > 0:
            check_hidden_sizes(student, self._unplaced_teacher)
        check_intermediate(student, self._unplaced_teacher, args)
        attach_projection(student, self._unplaced_teacher, args)

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """[`~transformers.Trainer.call_model_init`], with the teacher/student checks on every student it builds."""
        student = super().call_model_init(trial)
        if trial is None or self.hp_search_backend is None:
            self._check_student(student, self.args)
        # else: Trainer builds a trial's student before it applies the trial's values to `args`; `_hp_search_setup`
        # checks it (and attaches its projection) with them
        return student

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """[`~transformers.Trainer.save_model`]: checkpoints keep the hidden-state projection (resume is exact); the
        saved student leaves it out, so it loads as a plain `AutoModelFor...`."""
        student = unwrap(self.model)
        projection = getattr(student, PROJECTION_NAME, None)
        if projection is None or (_internal_call and not getattr(self, "_saving_to_push", False)):
            return super().save_model(output_dir, _internal_call=_internal_call)
        delattr(student, PROJECTION_NAME)
        try:
            return super().save_model(output_dir, _internal_call=_internal_call)
        finally:
            student.add_module(PROJECTION_NAME, projection)

    def push_to_hub(self, *args: Any, **kwargs: Any) -> Any:
        """[`~transformers.Trainer.push_to_hub`], whose save (an internal one, which keeps the projection for a
        checkpoint) writes the student without the hidden-state projection, as `save_model` does."""
        self._saving_to_push = True
        try:
            return super().push_to_hub(*args, **kwargs)
        finally:
            self._saving_to_push = False

    def _hp_search_setup(self, trial: Any) -> None:
        """Applies a trial's values to `args` (Trainer), then re-validates them and rebuilds the table of loss terms:
        a trial may change any weight, the temperature or the learning rate."""
        super()._hp_search_setup(trial)
        if trial is None or self.hp_search_backend is None:
            return
        self.args.validate_distillation()
        if self.model is not None:
            self._check_student(unwrap(self.model), self.args)  # this trial's weights, map and seed
        self._hidden_pairs = None  # a trial may change hidden_layer_map
        self._loss_terms = active_terms(self.args)
        self._logged_term_sums = torch.zeros(len(self._loss_terms), device=self.args.device)
        if self.args.cache_teacher_logits:
            self.prepare_teacher_cache()  # a token cache stores log-probabilities at the trial's temperature and k
