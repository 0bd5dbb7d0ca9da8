"""hf_distill.publish.evaluation: the teacher scored beside the student, through a Trainer or in place."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tiny
import torch
import transformers.trainer
from trainers import make_args

from hf_distill import DistillationTrainer
from hf_distill.publish import evaluation
from hf_distill.trainer.teacher import gather_whole, is_engine_wrapped


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float(np.mean(prediction.predictions.argmax(-1) == prediction.label_ids))}


def side_by_side(tmp_path, monkeypatch, *, engine: bool, **args) -> tuple[dict[str, float], list[str]]:
    teacher = tiny.classifier(layers=2, num_labels=3, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, num_labels=3, seed=1, initializer_range=0.5)
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=make_args(tmp_path, **args), data_collator=tiny.collate
    )
    if engine:  # what Trainer reports under FSDP or DeepSpeed, which Accelerate runs on no CPU
        trainer.is_fsdp_enabled = True
    calls = []
    in_place = evaluation.evaluate_in_place

    def spy(evaluator, model, dataset, metric_key_prefix):
        calls.append(metric_key_prefix)
        return in_place(evaluator, model, dataset, metric_key_prefix)

    monkeypatch.setattr(evaluation, "evaluate_in_place", spy)
    splits = {"validation": tiny.class_rows(21, seed=3), "validation_mismatched": tiny.class_rows(9, seed=4)}
    return evaluation.evaluate_side_by_side(trainer, teacher, splits, tiny.collate, accuracy), calls


@pytest.mark.parametrize(
    "settings",
    [{"label_smoothing_factor": 0.0}, {"label_smoothing_factor": 0.2}, {"bf16": True}],
    ids=["plain", "label_smoothing", "bf16_autocast"],
)
def test_a_whole_teacher_under_an_engine_is_scored_in_place_as_a_trainer_scores_it(tmp_path, monkeypatch, settings):
    # Under FSDP2, a new Trainer would `accelerator.prepare` the teacher, which accelerate 1.15 refuses without an
    # optimizer (seen on an H200 with --student_training labels_only's path): the teacher is scored in place instead.
    # Its loss is the evaluator's, label smoothing included (in place, it was the model's own, unsmoothed loss), and
    # under the run's autocast (bf16 on CPU too: without it the in-place loss differs in the 4th digit).
    through_trainer, calls = side_by_side(tmp_path / "plain", monkeypatch, engine=False, **settings)
    assert calls == []
    in_place, calls = side_by_side(tmp_path / "engine", monkeypatch, engine=True, **settings)
    assert calls == ["teacher_eval", "teacher_eval"]
    timings = ("runtime", "per_second", "preparation_time")
    keys = sorted(key for key in through_trainer if not any(timing in key for timing in timings))
    assert keys == sorted(key for key in in_place if not any(timing in key for timing in timings))
    assert {"teacher_eval_accuracy", "teacher_eval_loss", "teacher_eval_accuracy_mm", "eval_loss_mm"} <= set(keys)
    for key in keys:
        assert in_place[key] == pytest.approx(through_trainer[key], rel=1e-6), key


@pytest.mark.parametrize("return_dict", [True, False], ids=["model_output", "tuple"])
def test_the_in_place_scores_match_a_float64_reference(tmp_path, return_dict):
    teacher = tiny.classifier(layers=2, num_labels=3, seed=0, initializer_range=0.5).eval()
    teacher.config.return_dict = return_dict  # False: the forward returns (loss, logits) tuples
    rows = tiny.class_rows(21, seed=3)
    evaluator = evaluation.Trainer(model=teacher, args=make_args(tmp_path), data_collator=tiny.collate,
                                   compute_metrics=accuracy)  # fmt: skip
    scores = evaluation.evaluate_in_place(evaluator, teacher, rows, metric_key_prefix="teacher_eval")
    batch = tiny.collate([rows[i] for i in range(len(rows))])
    with torch.no_grad():
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], return_dict=True)
        logits = logits.logits.double()
    # per_device_eval_batch_size 8: batches of 8, 8, 5; the loss is the mean of the batch means weighted by size
    expected_loss = torch.nn.functional.cross_entropy(logits, batch["labels"]).item()
    assert scores["teacher_eval_loss"] == pytest.approx(expected_loss, rel=1e-5)
    expected_accuracy = (logits.argmax(-1) == batch["labels"]).double().mean().item()
    assert scores["teacher_eval_accuracy"] == pytest.approx(expected_accuracy, abs=1e-12)
    assert teacher.training is False


def test_a_model_no_engine_wrapped_comes_back_as_it_is():
    teacher = tiny.classifier(layers=1, seed=0)
    assert not is_engine_wrapped(teacher)
    assert gather_whole(teacher) is teacher


def test_evaluation_and_predictions_cover_every_row_when_training_drops_its_last_batch(tmp_path):
    # transformers 5 drops the last batch of evaluation and prediction too under dataloader_drop_last: 21 rows in
    # batches of 8 were scored on 16
    teacher = tiny.classifier(layers=2, num_labels=3, seed=0)
    student = tiny.classifier(layers=1, num_labels=3, seed=1)
    args = make_args(tmp_path, dataloader_drop_last=True)
    rows = tiny.class_rows(21, seed=3)
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=tiny.class_rows(10),
        data_collator=tiny.collate,
        compute_metrics=accuracy,
    )
    assert len(trainer.get_train_dataloader()) == 2  # training still drops its last, short batch (10 rows, 4 a batch)
    assert trainer.predict(rows).predictions.shape == (21, 3)
    metrics = evaluation.evaluate_side_by_side(trainer, teacher, {"validation": rows}, tiny.collate, accuracy)
    labels = np.array([row["labels"] for row in rows.rows])
    for model, prefix in ((student, "eval"), (teacher, "teacher_eval")):
        with torch.no_grad():
            logits = np.stack([model.eval()(**tiny.collate([rows[i]])).logits[0].numpy() for i in range(21)])
        assert metrics[f"{prefix}_accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == labels)))
    assert trainer.args.dataloader_drop_last  # as it was


def test_a_recipe_student_and_its_teacher_are_scored_on_the_same_rows_when_training_drops_its_last_batch(tmp_path):
    # --student_training recipe: a plain Trainer, whose evaluate dropped the last batch (16 of 21 rows) while the
    # teacher's LabelsTrainer scored all 21
    from hf_distill.cli.training import recipe_trainer_class

    def rows_scored(prediction) -> dict[str, float]:
        return {"rows": float(len(prediction.label_ids))}

    teacher = tiny.classifier(layers=2, num_labels=3, seed=0)
    student = tiny.classifier(layers=1, num_labels=3, seed=1)
    trainer = recipe_trainer_class()(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, dataloader_drop_last=True),
        train_dataset=tiny.class_rows(10),
        data_collator=tiny.collate,
        compute_metrics=rows_scored,
    )
    rows = tiny.class_rows(21, seed=3)
    metrics = evaluation.evaluate_side_by_side(trainer, teacher, {"validation": rows}, tiny.collate, rows_scored)
    assert metrics["eval_rows"] == metrics["teacher_eval_rows"] == 21
    assert len(trainer.get_train_dataloader()) == 2  # the recipe still trains as copied: its last, short batch dropped
    assert trainer.args.dataloader_drop_last


@pytest.mark.parametrize("persistent", [False, True])
def test_every_split_is_scored_on_its_own_rows_under_persistent_workers(tmp_path, persistent):
    # transformers keeps one "eval" dataloader under dataloader_persistent_workers, whatever dataset is asked for:
    # MNLI's mismatched split (9 rows) was scored on the matched one (21), the teacher's too
    def rows_scored(prediction) -> dict[str, float]:
        return {"rows": float(len(prediction.label_ids)), "label_sum": float(np.sum(prediction.label_ids))}

    teacher = tiny.classifier(layers=2, num_labels=3, seed=0)
    student = tiny.classifier(layers=1, num_labels=3, seed=1)
    args = make_args(tmp_path, dataloader_num_workers=int(persistent), dataloader_persistent_workers=persistent)
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=args, data_collator=tiny.collate, compute_metrics=rows_scored
    )
    splits = {"validation_matched": tiny.class_rows(21, seed=3), "validation_mismatched": tiny.class_rows(9, seed=4)}
    metrics = evaluation.evaluate_side_by_side(trainer, teacher, splits, tiny.collate, rows_scored)
    mismatched_labels = float(sum(int(row["labels"]) for row in splits["validation_mismatched"]))
    for prefix in ("eval", "teacher_eval"):
        assert metrics[f"{prefix}_rows"] == 21 and metrics[f"{prefix}_rows_mm"] == 9
        assert metrics[f"{prefix}_label_sum_mm"] == mismatched_labels


def test_a_run_that_evaluated_and_kept_its_best_checkpoint_is_scored_beside_its_teacher(tmp_path):
    # The teacher's evaluator copied the run's eval_strategy without an eval_dataset: transformers refused to build
    # it, after training (every configs/glue/*.yaml evaluates each epoch). Its "epoch": 0 also overwrote the student's.
    teacher = tiny.classifier(layers=2, num_labels=3, seed=0)
    student = tiny.classifier(layers=1, num_labels=3, seed=1)
    # and a scheduler that needs an evaluation strategy too (transformers refuses it without one)
    args = make_args(tmp_path, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
                     lr_scheduler_type="reduce_lr_on_plateau")  # fmt: skip
    rows = tiny.class_rows(12, seed=3)
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=args, train_dataset=tiny.class_rows(8), eval_dataset=rows,
        data_collator=tiny.collate, compute_metrics=accuracy,
    )  # fmt: skip
    trainer.train()
    splits = {"validation": rows, "validation_mismatched": tiny.class_rows(5, seed=4)}  # as MNLI's
    metrics = evaluation.evaluate_side_by_side(trainer, teacher, splits, tiny.collate, accuracy)
    assert "eval_accuracy" in metrics and "teacher_eval_accuracy" in metrics and "eval_accuracy_mm" in metrics
    assert metrics["epoch"] == 1.0  # the student's, not the teacher evaluator's 0
    assert "epoch_mm" not in metrics  # the one training's epoch, said once


def test_the_student_is_scored_with_the_metrics_given_as_the_teacher_is(tmp_path):
    # a trainer built without compute_metrics scored the student without them: the teacher's accuracy stood alone
    teacher = tiny.classifier(layers=1, num_labels=3, seed=0)
    student = tiny.classifier(layers=1, num_labels=3, seed=1)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=make_args(tmp_path),
                                  data_collator=tiny.collate)  # fmt: skip
    metrics = evaluation.evaluate_side_by_side(trainer, teacher, {"validation": tiny.class_rows(21, seed=3)},
                                               tiny.collate, accuracy)  # fmt: skip
    assert {"eval_accuracy", "teacher_eval_accuracy"} <= set(metrics)
    assert trainer.compute_metrics is None  # the trainer's own, back
    assert not (tmp_path / "out" / "teacher_eval").exists()  # the evaluator's empty folder is not left behind


@pytest.mark.parametrize("flag", ["bf16_full_eval", "fp16_full_eval"])
def test_scoring_under_a_half_precision_eval_leaves_both_models_in_float32(tmp_path, flag):
    # Trainer's evaluation casts the model it scores to half precision in place: the student then exported and
    # described afterwards was the rounded one, and the teacher too
    teacher = tiny.classifier(layers=2, num_labels=3, seed=0)
    student = tiny.classifier(layers=1, num_labels=3, seed=1)
    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, args=make_args(tmp_path, **{flag: True}), data_collator=tiny.collate
    )
    evaluation.evaluate_side_by_side(trainer, teacher, {"validation": tiny.class_rows(6)}, tiny.collate, accuracy)
    assert next(student.parameters()).dtype == torch.float32
    assert next(teacher.parameters()).dtype == torch.float32
    assert getattr(trainer.args, flag) is True  # the run's setting, turned off only while scoring


@pytest.mark.parametrize("nan_inf_filter", [True, False])
def test_in_place_leaves_a_non_finite_batch_loss_out_only_where_trainer_does(tmp_path, nan_inf_filter):
    # Trainer's evaluation loop, with logging_nan_inf_filter on (its default), leaves the non-finite batch losses out
    # of eval_loss (a NaN-labelled regression row makes its batch's MSE NaN); in place, eval_loss was NaN. With the
    # setting off, Trainer's eval_loss is NaN, and so is the in-place one.
    teacher = tiny.classifier(layers=2, num_labels=1, seed=0).eval()
    rows = tiny.class_rows(21, seed=3, regression=True)
    rows.rows[2]["labels"] = float("nan")  # in the first batch of 8
    args = make_args(tmp_path, logging_nan_inf_filter=nan_inf_filter)
    evaluator = evaluation.LabelsTrainer(model=teacher, args=args, data_collator=tiny.collate)
    through_trainer = evaluator.evaluate(eval_dataset=rows, metric_key_prefix="teacher_eval")["teacher_eval_loss"]
    in_place = evaluation.evaluate_in_place(evaluator, teacher, rows, metric_key_prefix="teacher_eval")
    if nan_inf_filter:
        assert np.isfinite(through_trainer)
        assert in_place["teacher_eval_loss"] == pytest.approx(through_trainer, rel=1e-6)
    else:
        assert np.isnan(through_trainer) and np.isnan(in_place["teacher_eval_loss"])


def test_the_teachers_evaluator_reports_to_no_tracker(tmp_path, monkeypatch):
    # The teacher's evaluator copied the run's report_to: its teacher_eval_* metrics went to the run's tracker too,
    # logged at its own step 0 beside the student's. A recording callback stands for the tracker (none installed).
    logged = []

    class RecordingTracker(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logged.append(dict(logs))

    monkeypatch.setattr(transformers.trainer, "get_reporting_integration_callbacks",
                        lambda report_to: [RecordingTracker] if report_to else [])  # fmt: skip
    metrics, _ = side_by_side(tmp_path, monkeypatch, engine=False, report_to="tensorboard")
    assert "teacher_eval_loss" in metrics and "teacher_eval_loss_mm" in metrics
    assert not [key for logs in logged for key in logs if key.startswith("teacher_eval")]
    assert [sorted(key for key in logs if key.startswith("eval_loss")) for logs in logged] == [["eval_loss"]] * 2


def test_in_a_run_that_pushes_only_the_students_hub_repo_is_created(tmp_path, monkeypatch):
    # The teacher's evaluator copies the run's arguments: with push_to_hub on, building it created a Hub repo too.
    created = []

    class RecordingHub:  # stands for transformers' hf_api(): records repo creation, refuses anything else
        def create_repo(self, repo_id, **kwargs):
            created.append(repo_id)
            return SimpleNamespace(repo_id=repo_id)

        def __getattr__(self, name):
            raise AssertionError(f"the Hub was called: {name}")

    monkeypatch.setattr(transformers.trainer, "hf_api", RecordingHub)
    metrics, _ = side_by_side(tmp_path, monkeypatch, engine=False, push_to_hub=True, hub_model_id="someone/student")
    assert "teacher_eval_loss" in metrics
    assert created == ["someone/student"]  # the student trainer's own, once
