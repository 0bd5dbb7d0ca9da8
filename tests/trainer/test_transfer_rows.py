"""Rows without labels (a transfer set) mixed with labelled rows: the task term averages over the labelled rows only,
the teacher's terms over every row, exactly under gradient accumulation; and `model_init` for hyperparameter search."""

from __future__ import annotations

import copy
import math

import pytest
import tiny
import torch
import torch.nn.functional as F
from references import reference_class_loss
from trainers import EXACT_UPDATES, make_args, make_trainer, state

from hf_distill import DistillationTrainer
from hf_distill.trainer.batch_counts import count_index, count_items
from hf_distill.trainer.loss_terms import task_sum


def mixed_rows(n: int, *, regression: bool, seed: int = 3) -> tiny.ListDataset:
    """Class (or regression) rows of which every third is unlabelled: -100, or NaN for regression."""
    rows = tiny.class_rows(n, seed=seed, regression=regression).rows
    for index, row in enumerate(rows):
        if index % 3 == 1:
            row["labels"] = math.nan if regression else -100
    return tiny.ListDataset(rows)


def models(regression: bool):
    num_labels = 1 if regression else 3
    teacher = tiny.classifier(layers=2, seed=0, num_labels=num_labels, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, num_labels=num_labels, initializer_range=0.5)
    if regression:
        teacher.config.problem_type = student.config.problem_type = "regression"
    return teacher, student


@pytest.mark.parametrize("regression", [False, True], ids=["class", "regression"])
def test_unlabelled_rows_enter_the_teacher_term_but_never_the_task_term(tmp_path, regression):
    teacher, student = models(regression)
    data = mixed_rows(9, regression=regression)
    trainer = make_trainer(tmp_path, student, teacher, data, temperature=2.0, alpha_kd=0.4, alpha_task=0.6)
    batch = tiny.collate([data[i] for i in range(9)])
    student.train()
    loss = trainer.compute_loss(student, batch)
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        student_out = student(**inputs).logits.double()
        teacher_out = teacher(**inputs).logits.double()
    labelled = torch.tensor([i % 3 != 1 for i in range(9)])
    if regression:
        kd = F.mse_loss(student_out, teacher_out).item()  # over all 9 rows
        task = F.mse_loss(student_out[labelled].view(-1), batch["labels"][labelled].double()).item()
    else:
        kd = reference_class_loss(student_out, teacher_out, 2.0)  # over all 9 rows
        task = F.cross_entropy(student_out[labelled], batch["labels"][labelled]).item()  # over the 6 labelled
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(0.4 * kd + 0.6 * task, rel=1e-5)

    # Whatever an unlabelled row's label field would say, it never reaches the loss or the gradient.
    student.zero_grad()
    trainer.compute_loss(student, batch).backward()
    grads = [p.grad.clone() for p in student.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("regression", [False, True], ids=["class", "regression"])
def test_gradient_accumulation_with_unlabelled_rows_matches_one_large_batch(tmp_path, regression):
    teacher, student = models(regression)
    # 16 rows; micro-batches of 4 hold different numbers of labelled rows (every third row is unlabelled).
    data = mixed_rows(16, regression=regression)
    finals = {}
    for name, batch, accumulation in (("1x8", 8, 1), ("2x4", 4, 2)):
        copy_ = copy.deepcopy(student)
        args = make_args(
            tmp_path / name,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            **EXACT_UPDATES,
        )
        trainer = DistillationTrainer(
            model=copy_, teacher_model=teacher, args=args, train_dataset=data, data_collator=tiny.collate
        )
        trainer.train()
        finals[name] = state(copy_)
    moved = any(not torch.equal(finals["1x8"][k], v) for k, v in state(student).items())
    assert moved
    for key, value in finals["1x8"].items():
        torch.testing.assert_close(finals["2x4"][key], value, rtol=1e-4, atol=1e-4, msg=f"{key} differs")


def test_a_batch_with_no_labelled_row_trains_on_the_teacher_alone(tmp_path):
    teacher, student = models(False)
    rows = tiny.class_rows(4, seed=5).rows
    for row in rows:
        row["labels"] = -100
    trainer = make_trainer(tmp_path, student, teacher, tiny.ListDataset(rows), alpha_kd=0.5, alpha_task=0.5)
    batch = tiny.collate(rows)
    student.train()
    loss = trainer.compute_loss(student, batch, num_items_in_batch=torch.tensor([4.0, 0.0, 30.0, 30.0]))
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        kd = reference_class_loss(student(**inputs).logits.double(), teacher(**inputs).logits.double(), 2.0)
    assert loss.item() == pytest.approx(0.5 * kd, rel=1e-5)  # task term 0, never 0 / 0


def test_a_multi_output_regression_row_with_one_missing_target_is_left_out_of_the_task_loss():
    batch = tiny.collate([{"input_ids": [5, 6, 7], "labels": 0.0}] * 4)
    batch["labels"] = torch.tensor([[1.0, 2.0], [0.5, math.nan], [3.0, 1.0], [2.0, 2.0]])
    logits = torch.tensor([[0.5, 1.0], [9.0, 9.0], [2.0, 3.0], [1.5, 2.5]])
    labelled = count_items(batch)[count_index("labelled")]
    assert labelled.item() == 3
    loss = task_sum(logits, batch["labels"], "regression") / labelled
    complete = [0, 2, 3]
    expected = F.mse_loss(logits[complete].double(), batch["labels"][complete].double()).item()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected, rel=1e-6)


def test_model_init_builds_and_checks_the_student(tmp_path):
    teacher, student = models(False)
    built = []

    def model_init():
        built.append(copy.deepcopy(student))
        return built[-1]

    trainer = DistillationTrainer(
        model_init=model_init,
        teacher_model=teacher,
        args=make_args(tmp_path),
        train_dataset=tiny.class_rows(8),
        data_collator=tiny.collate,
    )
    trainer.train()
    assert len(built) >= 1 and trainer.model is built[-1]

    def wrong_labels():
        return tiny.classifier(layers=1, seed=1, num_labels=5)

    with pytest.raises(ValueError, match=r"student has num_labels=5 but the teacher has num_labels=3"):
        DistillationTrainer(
            model_init=wrong_labels, teacher_model=teacher, args=make_args(tmp_path), data_collator=tiny.collate
        )
    with pytest.raises(ValueError, match="model_init"):
        DistillationTrainer(teacher_model=teacher, args=make_args(tmp_path))


def test_hyperparameter_search_tries_distillation_settings_with_optuna(tmp_path):
    pytest.importorskip("optuna")
    teacher, student = models(False)
    seen = []

    def hp_space(trial):
        return {
            "temperature": trial.suggest_categorical("temperature", [1.0, 4.0]),
            "alpha_kd": trial.suggest_float("alpha_kd", 0.1, 1.0),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        }

    class Recording(DistillationTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                weights = {t.name: w for t, w in self._loss_terms}
                seen.append((self.args.temperature, self.args.alpha_kd, list(weights)))
                # the table of terms is rebuilt with the trial's weights, not only the arguments changed
                assert weights["kd"] == self.args.alpha_kd and weights["task"] == self.args.alpha_task
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer = Recording(
        model_init=lambda: copy.deepcopy(student),
        teacher_model=teacher,
        args=make_args(tmp_path, eval_strategy="no"),
        train_dataset=tiny.class_rows(8),
        eval_dataset=tiny.class_rows(8, seed=9),
        data_collator=tiny.collate,
    )
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        backend="optuna",
        n_trials=2,
        direction="minimize",
        compute_objective=lambda m: m["eval_loss"],
    )
    assert set(best.hyperparameters) == {"temperature", "alpha_kd", "learning_rate"}
    trial_settings = {(t, round(a, 6)) for t, a, _ in seen}
    assert len(trial_settings) == 2  # each trial trained with its own temperature and alpha_kd
    assert all(names == ["kd", "task"] for _, _, names in seen)


class _WeightsSeen(DistillationTrainer):
    """Records the (term, weight) table and the temperature each training step used."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.seen.append(({t.name: w for t, w in self._loss_terms}, self.args.temperature))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def test_the_best_trial_applied_to_args_after_a_search_is_what_the_next_train_uses(tmp_path):
    # the table of terms was built in __init__ and rebuilt only by a trial: setattr(trainer.args, k, v) for the best
    # run's values, then train() (transformers' documented way), trained at the LAST trial's weights
    pytest.importorskip("optuna")
    teacher, student = models(False)
    trials = iter([{"alpha_kd": 0.9, "alpha_task": 0.1}, {"alpha_kd": 0.2, "alpha_task": 0.8}])

    def hp_space(trial):
        values = next(trials)
        return {name: trial.suggest_float(name, value, value) for name, value in values.items()}

    trainer = _WeightsSeen(
        model_init=lambda: copy.deepcopy(student), teacher_model=teacher, args=make_args(tmp_path, eval_strategy="no"),
        train_dataset=tiny.class_rows(8), eval_dataset=tiny.class_rows(4, seed=9), data_collator=tiny.collate,
    )  # fmt: skip
    trainer.seen = []
    trainer.hyperparameter_search(
        hp_space=hp_space, backend="optuna", n_trials=2, direction="minimize", compute_objective=lambda m: 0.0
    )
    assert trainer.seen[-1][0] == {"kd": 0.2, "task": 0.8}
    for name, value in {"alpha_kd": 0.9, "alpha_task": 0.1, "temperature": 3.0}.items():
        setattr(trainer.args, name, value)
    trainer.seen = []
    trainer.train()
    assert trainer.seen and all(seen == ({"kd": 0.9, "task": 0.1}, 3.0) for seen in trainer.seen)
    trainer.args.alpha_kd = trainer.args.alpha_task = 0.0  # checked again, before training
    with pytest.raises(ValueError, match="every loss weight"):
        trainer.train()


def test_a_trial_value_is_never_cut_to_an_int_when_the_argument_was_given_as_one(tmp_path):
    # Trainer casts a trial's value to the type of the argument it replaces: temperature=4, alpha_kd=1 (ints) made
    # a trial's 2.9 and 0.7 train at T = 2 and alpha_kd = 0 (no teacher term), while optuna recorded 2.9 and 0.7
    pytest.importorskip("optuna")
    teacher, student = models(False)
    args = make_args(tmp_path, eval_strategy="no", temperature=4, alpha_kd=1, alpha_task=1)
    assert type(args.temperature) is float and type(args.alpha_kd) is float
    trainer = _WeightsSeen(
        model_init=lambda: copy.deepcopy(student), teacher_model=teacher, args=args,
        train_dataset=tiny.class_rows(8), eval_dataset=tiny.class_rows(4, seed=9), data_collator=tiny.collate,
    )  # fmt: skip
    trainer.seen = []

    def hp_space(trial):
        return {"temperature": trial.suggest_float("temperature", 2.9, 2.9), "alpha_kd": trial.suggest_float(
            "alpha_kd", 0.7, 0.7)}  # fmt: skip

    trainer.hyperparameter_search(
        hp_space=hp_space, backend="optuna", n_trials=1, direction="minimize", compute_objective=lambda m: 0.0
    )
    assert trainer.seen and all(seen == ({"kd": 0.7, "task": 1.0}, 2.9) for seen in trainer.seen)
