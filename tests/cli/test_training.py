"""hf_distill.cli.training.train_and_save: what a rerun into the same folder leaves of the earlier run."""

from __future__ import annotations

import pytest
import tiny
from trainers import make_args

from hf_distill.cli.training import script_training_defaults, train_and_save
from hf_distill.trainer import LabelsTrainer


def test_a_rerun_removes_the_earlier_students_card_and_exports_before_training(tmp_path):
    # a rerun that failed after saving its student left it under the earlier student's card (its architecture, its
    # scores), and beside the earlier student's ONNX file
    out = tmp_path / "out"
    (out / "onnx").mkdir(parents=True)
    (out / "onnx" / "model.onnx").write_bytes(b"earlier")
    (out / "README.md").write_text("the earlier student's card")
    (out / "all_results.json").write_text('{"eval_accuracy": 0.9}')
    trainer = LabelsTrainer(model=tiny.classifier(layers=1), args=make_args(tmp_path, max_steps=1),
                            train_dataset=tiny.class_rows(4), data_collator=tiny.collate)  # fmt: skip
    train_and_save(trainer)
    assert not (out / "README.md").exists() and not (out / "onnx").exists()
    assert "eval_accuracy" not in (out / "all_results.json").read_text()
    assert (out / "model.safetensors").is_file()


def test_the_recipe_is_refused_before_loading_where_the_checkout_lacks_it(monkeypatch, tmp_path):
    # an installed wheel has no benchmarks/: the recipe's trainer failed with FileNotFoundError after data, models and
    # a teacher fine-tune
    from hf_distill.cli import training

    training.check_recipe_available("recipe")  # the checkout has it
    monkeypatch.setattr(training, "RECIPE_FILE", tmp_path / "benchmarks" / "recipe.py")
    with pytest.raises(ValueError, match=r"--student_training recipe .*benchmarks/recipe\.py.*pip install -e \."):
        training.check_recipe_available("recipe")
    training.check_recipe_available("distill")  # the others need no file


def test_script_defaults_turn_off_ddps_unused_parameter_search_only_where_the_user_left_it_unset(tmp_path):
    # a user's True (a student some of whose weights a step leaves unused) must stay: DDP raises without it
    unset, chosen = make_args(tmp_path), make_args(tmp_path, ddp_find_unused_parameters=True)
    script_training_defaults(unset)
    script_training_defaults(chosen)
    assert (unset.ddp_find_unused_parameters, chosen.ddp_find_unused_parameters) == (False, True)
