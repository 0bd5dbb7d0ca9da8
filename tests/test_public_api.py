"""The import paths the README documents keep working across the package's layout."""

from __future__ import annotations

import hf_distill
import hf_distill.losses as losses
from hf_distill.trainer.loss_terms import LOSS_TERMS, active_terms


def test_documented_import_paths_resolve_to_the_same_objects():
    from hf_distill import DistillationTrainer, DistillationTrainingArguments, build_student
    from hf_distill.student import build_student as old_build_student
    from hf_distill.students import build_student as new_build_student
    from hf_distill.trainer import DistillationTrainer as trainer_class

    assert build_student is old_build_student is new_build_student
    assert DistillationTrainer is trainer_class
    assert issubclass(DistillationTrainingArguments, hf_distill.trainer.arguments.TrainingArguments)
    for name in ("class_kl_divergence", "token_kl_divergence", "token_topk_kl_divergence", "regression_mse"):
        assert callable(getattr(losses, name))
    assert callable(losses.hidden_state_cosine) and callable(losses.token_mask)


def test_every_loss_term_has_a_weight_argument_and_zero_weights_are_skipped(tmp_path):
    args = hf_distill.DistillationTrainingArguments(
        output_dir=str(tmp_path), alpha_kd=0.7, alpha_task=0.0, alpha_cos=0.2, report_to="none"
    )
    names = [term.name for term in LOSS_TERMS]
    assert len(set(names)) == len(names)
    assert all(hasattr(args, term.weight_field) for term in LOSS_TERMS)
    assert [(term.name, weight) for term, weight in active_terms(args)] == [("kd", 0.7), ("cos", 0.2)]
