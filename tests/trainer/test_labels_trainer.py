"""`LabelsTrainer`: training on labels alone (the baselines, the teacher's fine-tune) with the loss of one large batch
under gradient accumulation, unlabelled rows kept out, and a plain Trainer's updates where a step is one batch."""

from __future__ import annotations

import copy
import math

import pytest
import tiny
import torch
from trainers import EXACT_UPDATES, make_args, state
from transformers import Trainer, TrainingArguments

from hf_distill import LabelsTrainer


def model_and_rows(kind: str, *, unlabelled: bool = False):
    """A tiny student and 16 rows of `kind` (class, regression, token); with `unlabelled`, every third row has no
    label (-100, NaN for regression)."""
    if kind == "token":
        return tiny.token_classifier(layers=1, seed=1, initializer_range=0.5), tiny.token_rows(16, seed=2)
    regression = kind == "regression"
    model = tiny.classifier(layers=1, seed=1, num_labels=1 if regression else 3, initializer_range=0.5)
    if regression:
        model.config.problem_type = "regression"
    rows = tiny.class_rows(16, seed=3, regression=regression).rows
    if unlabelled:
        for index, row in enumerate(rows):
            if index % 3 == 1:
                row["labels"] = math.nan if regression else -100
    return model, tiny.ListDataset(rows)


def reference_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> float:
    """The supervised loss in float64 from the definitions: the mean over labelled rows (or counted positions)."""
    logits, total, count = logits.double(), 0.0, 0
    if kind == "token":
        pairs = [(logits[b, p], int(labels[b, p])) for b in range(labels.shape[0]) for p in range(labels.shape[1])]
    else:
        pairs = [(logits[b], labels[b].item()) for b in range(labels.shape[0])]
    for row, label in pairs:
        if kind == "regression":
            if math.isnan(label):
                continue
            total += (row.item() - label) ** 2
        else:
            if label == -100:
                continue
            log_probs = [x - math.log(sum(math.exp(y) for y in row.tolist())) for x in row.tolist()]
            total += -(1 - smoothing) * log_probs[label] - smoothing * sum(log_probs) / len(log_probs)
        count += 1
    return total / count


@pytest.mark.parametrize("kind", ["class", "regression", "token"])
def test_the_loss_is_the_mean_over_labelled_rows_or_counted_positions(tmp_path, kind):
    model, rows = model_and_rows(kind, unlabelled=True)
    trainer = LabelsTrainer(model=model, args=make_args(tmp_path), train_dataset=rows, data_collator=tiny.collate)
    batch = tiny.collate([rows[i] for i in range(9)])
    counts = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))[1]
    model.train()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=counts)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference_loss(kind, logits, batch["labels"]), rel=1e-5)
    if kind != "token":  # 6 of the 9 rows carry a label: the unlabelled ones never reach the loss or the gradient
        assert counts.tolist()[:2] == [9.0, 6.0]
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("kind", ["class", "token"])
def test_label_smoothing_matches_its_definition(tmp_path, kind):
    model, rows = model_and_rows(kind)
    args = make_args(tmp_path, label_smoothing_factor=0.1)
    trainer = LabelsTrainer(model=model, args=args, train_dataset=rows, data_collator=tiny.collate)
    batch = tiny.collate([rows[i] for i in range(6)])
    counts = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))[1]
    model.train()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=counts)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    expected = reference_loss(kind, logits, batch["labels"], smoothing=0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(reference_loss(kind, logits, batch["labels"]), rel=1e-3)  # smoothing counts


@pytest.mark.parametrize("kind", ["class", "regression", "token"])
def test_gradient_accumulation_matches_one_large_batch(tmp_path, kind):
    # Micro-batches of 4 hold different numbers of labelled rows (class, regression) or counted positions (token).
    model, rows = model_and_rows(kind, unlabelled=True)
    finals, losses = {}, {}
    for name, batch, accumulation in (("1x8", 8, 1), ("2x4", 4, 2)):
        trained = copy.deepcopy(model)
        args = make_args(
            tmp_path / name,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            **EXACT_UPDATES,
        )
        trainer = LabelsTrainer(model=trained, args=args, train_dataset=rows, data_collator=tiny.collate)
        trainer.train()
        finals[name] = state(trained)
        losses[name] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert any(not torch.equal(finals["1x8"][k], v) for k, v in state(model).items())
    for key, value in finals["1x8"].items():
        torch.testing.assert_close(finals["2x4"][key], value, rtol=1e-4, atol=1e-4, msg=f"{key} differs")
    assert len(losses["2x4"]) == 2 and losses["2x4"] == pytest.approx(losses["1x8"], rel=1e-4)


@pytest.mark.parametrize("kind", ["class", "regression", "token"])
def test_one_batch_per_step_updates_as_a_plain_trainer_bit_for_bit(tmp_path, kind):
    # The results' baselines and teachers were trained by a plain Trainer with one micro-batch per step on one
    # process, where its loss is right: there LabelsTrainer must take the very same steps (AdamW, warm-up, clipping).
    model, rows = model_and_rows(kind)
    finals, losses = {}, {}
    for name, trainer_class in (("plain", Trainer), ("labels", LabelsTrainer)):
        trained = copy.deepcopy(model)
        args = TrainingArguments(
            output_dir=str(tmp_path / name),
            per_device_train_batch_size=4,
            num_train_epochs=2,
            learning_rate=5e-3,
            warmup_steps=2,
            weight_decay=0.01,
            max_grad_norm=0.5,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = trainer_class(model=trained, args=args, train_dataset=rows, data_collator=tiny.collate)
        trainer.train()
        finals[name] = state(trained)
        losses[name] = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert any(not torch.equal(finals["plain"][k], v) for k, v in state(model).items())
    for key, value in finals["plain"].items():
        assert torch.equal(finals["labels"][key], value), f"{key} differs"
    assert losses["labels"] == losses["plain"]


def test_evaluation_reports_the_models_own_loss(tmp_path):
    model, rows = model_and_rows("class")
    args = make_args(tmp_path, per_device_eval_batch_size=16)
    trainer = LabelsTrainer(model=model, args=args, train_dataset=rows, data_collator=tiny.collate)
    metrics = trainer.evaluate(eval_dataset=rows)
    batch = tiny.collate(rows.rows)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert metrics["eval_loss"] == pytest.approx(reference_loss("class", logits, batch["labels"]), rel=1e-5)
