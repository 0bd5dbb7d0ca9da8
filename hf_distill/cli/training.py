"""The scripts' training step: the trainer for the chosen student training (ours or a baseline), train, save."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from transformers import Trainer

from hf_distill.publish.export import remove_exports
from hf_distill.trainer import DistillationTrainer, LabelsTrainer

from .run_record import RunRecordCallback

__all__ = ["STUDENT_TRAININGS", "make_trainer", "recipe_trainer_class", "script_training_defaults", "train_and_save"]

# distill: ours; labels_only: the same student without a teacher; recipe: the copied blog recipe; pseudo_labels: the
# transfer rows labelled with the teacher's argmax, trained as labels. The baselines are there to measure ours against.
STUDENT_TRAININGS = ("distill", "labels_only", "recipe", "pseudo_labels")


def script_training_defaults(training_args: Any) -> None:
    """Defaults the scripts change from Trainer's, each for a reason a user would otherwise meet as noise or cost.

    - `ddp_find_unused_parameters=False` unless set: every student weight is used, so DDP's extra graph walk per step
      buys nothing.
    - `dataloader_pin_memory=False` on a machine without an accelerator: pinning needs one, and every dataloader
      otherwise warns that it is set but unused.
    """
    if training_args.ddp_find_unused_parameters is None:
        training_args.ddp_find_unused_parameters = False
    if training_args.dataloader_pin_memory and training_args.device.type == "cpu":
        training_args.dataloader_pin_memory = False


def make_trainer(student_training: str, student: Any, teacher: Any, **trainer_kwargs: Any) -> Trainer:
    """`DistillationTrainer` for "distill", the copied recipe for "recipe", `LabelsTrainer` for the others (a plain
    `Trainer` would scale their loss wrongly under gradient accumulation and DDP: `labels_trainer.py`)."""
    if student_training in ("labels_only", "pseudo_labels"):
        return LabelsTrainer(model=student, **trainer_kwargs)
    trainer_class = recipe_trainer_class() if student_training == "recipe" else DistillationTrainer
    return trainer_class(model=student, teacher_model=teacher, **trainer_kwargs)


# The results files Trainer.save_metrics writes in the output folder. all_results.json is merged into, not replaced:
# an earlier run's keys there (its onnx_int8_* scores, its export_error) would be published as this student's.
RESULTS_FILES = ("all_results.json", "train_results.json", "eval_results.json")


# The students `train_and_save` trained in this run (their trainers' class names): run_entry_point tells a failure
# after training (it keeps its traceback) from bad input (one line) by it, and empties it when a run starts.
TRAINED: list[str] = []


def train_and_save(trainer: Trainer) -> None:
    """Trains (resuming when `--resume_from_checkpoint` says so), then saves the student, its metrics and state.

    An earlier run's results files, card and exports in the output folder (a rerun with --overwrite_output_dir) are
    removed first, so that the run's results hold only its own keys, and a run that fails after saving its student
    never leaves it under the earlier student's card (check_output_dir refused a README.md that is not our card).
    """
    if trainer.is_world_process_zero():  # the process that writes them
        for name in (*RESULTS_FILES, "README.md"):
            (Path(trainer.args.output_dir) / name).unlink(missing_ok=True)
        remove_exports(trainer.args.output_dir)
    settings = getattr(trainer.args, "hf_distill_run_settings", None)  # set by check_before_loading
    if settings is not None:
        trainer.add_callback(RunRecordCallback(settings))  # each checkpoint says what it was trained with
    result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    TRAINED.append(type(trainer).__name__)  # a ValueError from here on is no bad input (run_entry_point)
    trainer.save_model()
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()


RECIPE_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "recipe.py"


def check_recipe_available(student_training: str) -> None:
    """--student_training recipe reads the copied recipe from the source checkout's benchmarks/, which an installed
    wheel lacks: refused before any data or model loads, not when its trainer is built after them."""
    if student_training == "recipe" and not RECIPE_FILE.is_file():
        raise ValueError(
            "--student_training recipe trains with the copied recipe in the source checkout's benchmarks/recipe.py, "
            "which this installation lacks: install hf-distill from a checkout (pip install -e .), or choose "
            "another --student_training."
        )


def recipe_trainer_class() -> type:
    """The copied Trainer-subclass recipe, kept in benchmarks/ as the baseline (not part of the library)."""
    spec = importlib.util.spec_from_file_location("hf_distill_benchmarks_recipe", RECIPE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RecipeDistillationTrainer
