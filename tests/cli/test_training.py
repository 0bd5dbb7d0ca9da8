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


@pytest.mark.parametrize(("device", "pinned"), [("cpu", False), ("cuda", True)])
def test_script_defaults_turn_off_memory_pinning_only_on_a_machine_without_an_accelerator(
    tmp_path, monkeypatch, device, pinned
):
    import torch

    # without --use_cpu (which already turns pinning off): a machine that has no GPU, or one that has
    args = make_args(tmp_path, use_cpu=False)
    monkeypatch.setattr(type(args), "device", property(lambda self: torch.device(device)))
    assert args.dataloader_pin_memory is True  # Trainer's default
    script_training_defaults(args)
    assert args.dataloader_pin_memory is pinned


def test_a_resumed_run_continues_from_its_checkpoints_step(tmp_path):
    from transformers import TrainerCallback

    def trainer(callbacks=(), **overrides):
        args = make_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2, **overrides)
        return LabelsTrainer(model=tiny.classifier(layers=1), args=args, train_dataset=tiny.class_rows(32),
                             data_collator=tiny.collate, callbacks=list(callbacks))  # fmt: skip

    trainer().train()

    class Steps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    steps = []
    train_and_save(trainer([Steps()], resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2")))
    assert steps == [3, 4]  # steps 1 and 2 came from the checkpoint, not trained again
