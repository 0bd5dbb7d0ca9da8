"""`LabelsTrainer`: training on labels alone (the baselines, the teacher's fine-tune) with the loss of one large batch
under gradient accumulation, unlabelled rows kept out, and a plain Trainer's updates where a step is one batch."""

from __future__ import annotations

import copy
import math

import pytest
import tiny
import torch
from references import reference_task_loss as reference_loss
from trainers import EXACT_UPDATES, make_args, state
from transformers import Trainer, TrainingArguments

from hf_distill import DistillationTrainer, LabelsTrainer
from hf_distill.cli.training import make_trainer


def model_and_rows(kind: str, *, unlabelled: bool = False):
    """A tiny student and 16 rows of `kind` (class, regression, token, masked_lm); with `unlabelled`, every third row
    has no label (-100, NaN for regression; masked_lm rows, each with its own count of masked positions, unchanged)."""
    if kind == "token":
        return tiny.token_classifier(layers=1, seed=1, initializer_range=0.5), tiny.token_rows(16, seed=2)
    if kind == "masked_lm":
        return tiny.masked_lm(layers=1, seed=1, initializer_range=0.5), tiny.mlm_rows(16, seed=3)
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


def loss_on(trainer: LabelsTrainer, rows, n: int):
    """The training loss of the first `n` rows as one step (counts from `get_batch_samples`), the student's logits,
    the batch and its counts."""
    batch = tiny.collate([rows[i] for i in range(n)])
    counts = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))[1]
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=counts)
    with torch.no_grad():
        logits = trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return loss, logits, batch, counts


@pytest.mark.parametrize("kind", ["class", "regression", "token"])
def test_the_loss_is_the_mean_over_labelled_rows_or_counted_positions(tmp_path, kind):
    model, rows = model_and_rows(kind, unlabelled=True)
    trainer = LabelsTrainer(model=model, args=make_args(tmp_path), train_dataset=rows, data_collator=tiny.collate)
    loss, logits, batch, counts = loss_on(trainer, rows, 9)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference_loss(kind, logits, batch["labels"]), rel=1e-5)
    if kind != "token":  # 6 of the 9 rows carry a label: the unlabelled ones never reach the loss or the gradient
        assert counts.tolist()[:2] == [9.0, 6.0]
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("kind", ["class", "regression", "token"])
def test_both_trainers_report_the_same_eval_loss_under_label_smoothing(tmp_path, kind):
    # DistillationTrainer's eval_loss was the model's own, unsmoothed, beside a smoothed training task term and a
    # smoothed LabelsTrainer eval_loss: the student's and the baseline's eval losses were different quantities.
    model, rows = model_and_rows(kind)
    teacher = copy.deepcopy(model)
    args = dict(label_smoothing_factor=0.1, per_device_eval_batch_size=5)
    ours = DistillationTrainer(model=model, teacher_model=teacher, args=make_args(tmp_path / "d", **args),
                               eval_dataset=rows, data_collator=tiny.collate)  # fmt: skip
    baseline = LabelsTrainer(model=model, args=make_args(tmp_path / "l", **args), eval_dataset=rows,
                             data_collator=tiny.collate)  # fmt: skip
    loss = ours.evaluate()["eval_loss"]
    assert loss == pytest.approx(baseline.evaluate()["eval_loss"], rel=1e-5)
    if kind != "token":  # the batches' means, weighted by their rows (Trainer's evaluation loop)
        logits = torch.cat([model(**{k: v for k, v in tiny.collate([rows[i] for i in range(b, min(b + 5, 16))]).items()
                                     if k != "labels"}).logits.detach() for b in range(0, 16, 5)])  # fmt: skip
        labels = torch.tensor([rows[i]["labels"] for i in range(16)])
        batches = [(b, min(b + 5, 16)) for b in range(0, 16, 5)]
        smoothing = 0.0 if kind == "regression" else 0.1
        expected = sum(reference_loss(kind, logits[b:e], labels[b:e], smoothing) * (e - b) for b, e in batches) / 16
        assert loss == pytest.approx(expected, rel=1e-5)


def test_an_evaluation_batch_without_a_label_is_left_out_under_label_smoothing_too(tmp_path):
    # its smoothed loss was clamped to 0 / 1 = 0, which Trainer weighed in by the batch's rows: a low eval_loss
    model, rows = model_and_rows("class")
    for row in rows.rows[:5]:
        row["labels"] = -100  # the first evaluation batch holds no labelled row
    args = dict(label_smoothing_factor=0.1, per_device_eval_batch_size=5)
    ours = DistillationTrainer(model=model, teacher_model=copy.deepcopy(model), args=make_args(tmp_path / "d", **args),
                               eval_dataset=rows, data_collator=tiny.collate)  # fmt: skip
    baseline = LabelsTrainer(model=model, args=make_args(tmp_path / "l", **args), eval_dataset=rows,
                             data_collator=tiny.collate)  # fmt: skip
    loss = ours.evaluate()["eval_loss"]
    assert loss == pytest.approx(baseline.evaluate()["eval_loss"], rel=1e-5)
    with torch.no_grad():
        logits = model(**{k: v for k, v in tiny.collate(rows.rows).items() if k != "labels"}).logits
    labels = torch.tensor([row["labels"] for row in rows.rows])
    batches = [(5, 10), (10, 15), (15, 16)]  # the labelled batches, weighted by their rows
    expected = sum(reference_loss("class", logits[b:e], labels[b:e], 0.1) * (e - b) for b, e in batches) / 11
    assert loss == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["class", "regression", "token"])
def test_a_compiled_model_keeps_the_summed_loss(tmp_path, kind):
    # Trainer hands compute_loss the torch.compile'd model; unwrapped with accelerate's default
    # keep_torch_compile=True its class is OptimizedModule, which names no head: every batch took the model's own
    # per-micro-batch loss, NaN on a row without a label.
    model, rows = model_and_rows(kind, unlabelled=True)
    trainer = LabelsTrainer(model=model, args=make_args(tmp_path), train_dataset=rows, data_collator=tiny.collate)
    compiled = torch.compile(model, backend="eager")
    batch = tiny.collate([rows[i] for i in range(9)])
    assert trainer._summed_kind(compiled, batch["labels"]) == kind  # was None: OptimizedModule names no head
    counts = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))[1]
    compiled.train()
    loss = trainer.compute_loss(compiled, dict(batch), num_items_in_batch=counts)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert loss.item() == pytest.approx(reference_loss(kind, logits, batch["labels"]), rel=1e-5)


@pytest.mark.parametrize("kind", ["class", "token"])
def test_label_smoothing_matches_its_definition(tmp_path, kind):
    model, rows = model_and_rows(kind)
    args = make_args(tmp_path, label_smoothing_factor=0.1)
    trainer = LabelsTrainer(model=model, args=args, train_dataset=rows, data_collator=tiny.collate)
    loss, logits, batch, _ = loss_on(trainer, rows, 6)
    expected = reference_loss(kind, logits, batch["labels"], smoothing=0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(reference_loss(kind, logits, batch["labels"]), rel=1e-3)  # smoothing counts


@pytest.mark.parametrize("kind", ["class", "regression", "token"])
def test_distillation_trainer_smooths_its_task_term_by_the_same_definition(tmp_path, kind):
    """label_smoothing_factor reaches DistillationTrainer's task term (a Trainer's label smoother never runs under an
    overridden compute_loss), over the labelled rows only, and never a regression head's."""
    model, rows = model_and_rows(kind, unlabelled=True)
    args = make_args(tmp_path, label_smoothing_factor=0.1, alpha_kd=0.0, alpha_task=1.0)
    trainer = DistillationTrainer(model=model, teacher_model=copy.deepcopy(model), args=args, train_dataset=rows,
                                  data_collator=tiny.collate)  # fmt: skip
    loss, logits, batch, _ = loss_on(trainer, rows, 9)
    smoothing = 0.0 if kind == "regression" else 0.1
    assert loss.item() == pytest.approx(reference_loss(kind, logits, batch["labels"], smoothing=smoothing), rel=1e-5)


@pytest.mark.parametrize(("gather", "chunk"), [(False, None), (True, None), (True, 3)])
def test_distillation_trainer_smooths_masked_lm_heads_on_every_path(tmp_path, gather, chunk):
    """The masked-LM task term with smoothing: full logits, heads on the counted positions, and in chunks."""
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5)
    student = tiny.masked_lm(layers=1, seed=1, initializer_range=0.5)
    data = tiny.mlm_rows(6, seed=3, probability=0.3)
    args = make_args(tmp_path, label_smoothing_factor=0.2, alpha_kd=0.0, alpha_task=1.0,
                     token_kd_gather_positions=gather, token_kd_chunk_size=chunk)  # fmt: skip
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data,
                                  data_collator=tiny.collate)  # fmt: skip
    loss, logits, batch, _ = loss_on(trainer, data, 6)
    expected = reference_loss("token", logits, batch["labels"], smoothing=0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(reference_loss("token", logits, batch["labels"]), rel=1e-3)


def train_copy(model, trainer_class, args, rows, collate=tiny.collate, **extra):
    """Trains a copy of `model`; returns its final state, its logged losses and the copy."""
    trained = copy.deepcopy(model)
    trainer = trainer_class(model=trained, args=args, train_dataset=rows, data_collator=collate, **extra)
    trainer.train()
    return state(trained), [entry["loss"] for entry in trainer.state.log_history if "loss" in entry], trained


@pytest.mark.parametrize("kind", ["class", "regression", "token", "masked_lm"])
def test_gradient_accumulation_matches_one_large_batch(tmp_path, kind):
    # Micro-batches of 4 hold different numbers of labelled rows (class, regression) or counted positions (token,
    # masked_lm).
    # In float64: with these large steps float32 summation order alone moved a weight by 1.4e-4 (regression).
    model, rows = model_and_rows(kind, unlabelled=True)
    model = model.double()
    finals, losses = {}, {}
    for name, batch, accumulation in (("1x8", 8, 1), ("2x4", 4, 2)):
        args = make_args(
            tmp_path / name,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            **EXACT_UPDATES,
        )
        finals[name], losses[name], _ = train_copy(model, LabelsTrainer, args, rows)
    assert any(not torch.equal(finals["1x8"][k], v) for k, v in state(model).items())
    for key, value in finals["1x8"].items():
        torch.testing.assert_close(finals["2x4"][key], value, rtol=1e-9, atol=1e-9, msg=f"{key} differs")
    assert len(losses["2x4"]) == 2 and losses["2x4"] == pytest.approx(losses["1x8"], rel=1e-6)  # logged as float32


@pytest.mark.parametrize("kind", ["class", "regression", "token"])
def test_one_batch_per_step_updates_as_a_plain_trainer_bit_for_bit(tmp_path, kind):
    # The results' baselines and teachers were trained by a plain Trainer with one micro-batch per step on one
    # process, where its loss is right: there LabelsTrainer must take the very same steps (AdamW, warm-up, clipping).
    model, rows = model_and_rows(kind)
    finals, losses = {}, {}
    for name, trainer_class in (("plain", Trainer), ("labels", LabelsTrainer)):
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
        finals[name], losses[name], _ = train_copy(model, trainer_class, args, rows)
    assert any(not torch.equal(finals["plain"][k], v) for k, v in state(model).items())
    for key, value in finals["plain"].items():
        assert torch.equal(finals["labels"][key], value), f"{key} differs"
    assert losses["labels"] == losses["plain"]


def test_label_smoothing_leaves_a_regression_head_alone_in_training_and_evaluation(tmp_path):
    # Trainer's LabelSmoother indexes log-probabilities by the labels: on a regression head's float targets it fails.
    model, rows = model_and_rows("regression")
    args = make_args(tmp_path, label_smoothing_factor=0.1, max_steps=2, per_device_eval_batch_size=16)
    trainer = LabelsTrainer(model=model, args=args, train_dataset=rows, data_collator=tiny.collate)
    trainer.train()
    metrics = trainer.evaluate(eval_dataset=rows)
    batch = tiny.collate(rows.rows)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert metrics["eval_loss"] == pytest.approx(reference_loss("regression", logits, batch["labels"]), rel=1e-5)


def test_evaluation_reports_the_models_own_loss(tmp_path):
    model, rows = model_and_rows("class")
    args = make_args(tmp_path, per_device_eval_batch_size=16)
    trainer = LabelsTrainer(model=model, args=args, train_dataset=rows, data_collator=tiny.collate)
    metrics = trainer.evaluate(eval_dataset=rows)
    batch = tiny.collate(rows.rows)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert metrics["eval_loss"] == pytest.approx(reference_loss("class", logits, batch["labels"]), rel=1e-5)


def multi_label_rows(n: int) -> tiny.ListDataset:
    """Rows with multi-hot float labels over 3 classes (BERT's multi-label head: BCE with logits)."""
    generator = torch.Generator().manual_seed(5)
    rows = tiny.class_rows(n, seed=3).rows
    for row in rows:
        row["labels"] = (torch.rand(3, generator=generator) < 0.5).float().tolist()
    return tiny.ListDataset(rows)


def collate_multi_label(rows: list[dict]) -> dict[str, torch.Tensor]:
    batch = tiny.collate([{**row, "labels": 0} for row in rows])
    batch["labels"] = torch.tensor([row["labels"] for row in rows])
    return batch


@pytest.mark.parametrize("case", ["multi_label", "compute_loss_func"])
def test_heads_it_does_not_sum_keep_their_own_loss_averaged_over_the_step(tmp_path, case):
    # A multi-label head keeps the model's own BCE, averaged over the micro-batches of a step; with a user's
    # compute_loss_func LabelsTrainer is a plain Trainer. Either way 2 x 4 == 1 x 8 (equal micro-batches, every row
    # labelled) and, with one micro-batch per step, a plain Trainer's updates bit for bit.
    if case == "multi_label":
        model, rows, collate, extra = tiny.classifier(layers=1, seed=1), multi_label_rows(16), collate_multi_label, {}
    else:
        model, rows, collate = *model_and_rows("class"), tiny.collate

        def mean_cross_entropy(outputs, labels, num_items_in_batch=None):
            total = torch.nn.functional.cross_entropy(outputs.logits, labels, reduction="sum")
            return total / num_items_in_batch if num_items_in_batch is not None else total / len(labels)

        extra = {"compute_loss_func": mean_cross_entropy}
    finals, problem_types = {}, {}
    for name, trainer_class, batch, accumulation in (
        ("labels_1x8", LabelsTrainer, 8, 1),
        ("labels_2x4", LabelsTrainer, 4, 2),
        ("plain_1x8", Trainer, 8, 1),
    ):
        args = make_args(
            tmp_path / name,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            **EXACT_UPDATES,
        )
        finals[name], _, trained = train_copy(model, trainer_class, args, rows, collate, **extra)
        problem_types[name] = trained.config.problem_type
    if case == "multi_label":  # the model computed its own loss, detecting the multi-hot labels itself
        assert problem_types["labels_2x4"] == "multi_label_classification"
    assert any(not torch.equal(finals["labels_1x8"][k], v) for k, v in state(model).items())
    for key, value in finals["labels_1x8"].items():
        torch.testing.assert_close(finals["labels_2x4"][key], value, rtol=1e-4, atol=1e-4, msg=f"{key} differs")
        assert torch.equal(finals["plain_1x8"][key], value), f"{key} differs from a plain Trainer's"


def test_a_head_it_does_not_sum_logs_a_lone_last_micro_batchs_own_loss(tmp_path):
    # 12 rows in micro-batches of 4 under 2 accumulation steps: the epoch's second step holds one micro-batch, whose
    # loss is its own mean (divided by the step's 1 micro-batch, not the configured 2). Learning rate 0 keeps the
    # model fixed, so each step's loss is the untrained model's.
    model, rows = tiny.classifier(layers=1, seed=1), multi_label_rows(12)
    with torch.no_grad():
        own = [model(**collate_multi_label(rows.rows[start : start + 4])).loss.item() for start in (0, 4, 8)]
    args = make_args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2, learning_rate=0.0,
                     train_sampling_strategy="sequential")  # fmt: skip
    trainer = LabelsTrainer(model=model, args=args, train_dataset=rows, data_collator=collate_multi_label)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses == pytest.approx([(own[0] + own[1]) / 2, own[2]], rel=1e-5)


@pytest.mark.parametrize("kind", ["class", "regression"])
def test_the_saved_config_says_what_the_head_trained_as(tmp_path, kind):
    # The summed path calls the model without labels, where BERT would set problem_type itself on its first call.
    model, rows = model_and_rows(kind)
    model.config.problem_type = None
    LabelsTrainer(
        model=model, args=make_args(tmp_path, max_steps=1), train_dataset=rows, data_collator=tiny.collate
    ).train()
    assert model.config.problem_type == ("regression" if kind == "regression" else "single_label_classification")


@pytest.mark.parametrize(("training", "expected"), [("labels_only", LabelsTrainer), ("pseudo_labels", LabelsTrainer),
                                                    ("distill", DistillationTrainer)])  # fmt: skip
def test_the_scripts_train_their_baselines_with_it(tmp_path, training, expected):
    teacher, (student, rows) = tiny.classifier(layers=2, seed=0), model_and_rows("class")
    trainer = make_trainer(training, student, teacher, args=make_args(tmp_path), train_dataset=rows,
                           data_collator=tiny.collate)  # fmt: skip
    assert type(trainer) is expected


@pytest.mark.parametrize("size", ["tp_size", "cp_size", "sp_size"])
@pytest.mark.parametrize("which", ["distill", "distill_model_init", "labels"])
def test_runs_that_split_a_batch_over_ranks_are_refused(tmp_path, monkeypatch, which, size):
    # Ranks of a tensor-, context- or sequence-parallel group share their rows: summing the counts over every rank
    # would count each row once per rank, so both trainers refuse such a run when built, before any step.
    getter = "get_" + size
    monkeypatch.setattr(Trainer, getter, lambda self: 2)
    model, rows = model_and_rows("class")
    with pytest.raises(ValueError, match=rf"Trainer: losses .* over ranks \({size}=2 from .*data parallelism only"):
        if which == "distill_model_init":  # the student hyperparameter_search would rebuild every trial
            DistillationTrainer(
                model_init=lambda: tiny.classifier(layers=1, seed=1),
                teacher_model=tiny.classifier(layers=1, seed=5),
                args=make_args(tmp_path),
                train_dataset=rows,
                data_collator=tiny.collate,
            )
        elif which == "distill":
            DistillationTrainer(
                model=model,
                teacher_model=tiny.classifier(layers=1, seed=5),
                args=make_args(tmp_path),
                train_dataset=rows,
                data_collator=tiny.collate,
            )
        else:
            LabelsTrainer(
                model=model,
                args=TrainingArguments(str(tmp_path / "out"), use_cpu=True, report_to="none"),
                train_dataset=rows,
                data_collator=tiny.collate,
            )


def test_a_labels_trainer_with_its_own_loss_function_keeps_trainers_scaling(tmp_path, monkeypatch):
    # With a compute_loss_func, LabelsTrainer is a plain Trainer, which divides its own count by these sizes.
    monkeypatch.setattr(Trainer, "get_cp_size", lambda self: 2)
    model, rows = model_and_rows("class")
    trainer = LabelsTrainer(
        model=model,
        args=TrainingArguments(str(tmp_path / "out"), use_cpu=True, report_to="none"),
        train_dataset=rows,
        data_collator=tiny.collate,
        compute_loss_func=lambda outputs, labels, num_items_in_batch=None: outputs.logits.sum(),
    )
    assert trainer.get_cp_size() == 2 and not trainer.uses_whole_batch_counts()  # built: Trainer's scaling applies


def test_a_built_trainer_reads_deepspeeds_tensor_parallel_size_from_the_launchers_plugin_too():
    # Trainer.get_tp_size reads autotp_size from --deepspeed only; under accelerate launch the config is the
    # plugin's, and deepspeed_init applies it all the same, so the check reads it there as well.
    from hf_distill.trainer.batch_counts import check_data_parallel_only

    deepspeed = type("HfDeepSpeedConfig", (), {"config": {"tensor_parallel": {"autotp_size": 4}}})()
    args = type("Args", (), {"deepspeed_plugin": type("Plugin", (), {"hf_ds_config": deepspeed})()})()
    sizes = {"get_tp_size": lambda self: 1, "get_cp_size": lambda self: 1, "get_sp_size": lambda self: 1}
    trainer = type("DistillationTrainer", (), {"args": args, **sizes})()
    with pytest.raises(ValueError, match=r"^DistillationTrainer: .*\(tp_size=4 from the DeepSpeed config's"):
        check_data_parallel_only(trainer)
    deepspeed.config = {"zero_optimization": {"stage": 3}}
    check_data_parallel_only(trainer)  # ZeRO alone: every rank holds its own rows


def test_a_regression_head_with_several_outputs_averages_them_as_its_own_loss():
    # tested with one output only: a sum over the K outputs (K times the model's own MSE) passed
    from hf_distill.trainer.loss_terms import task_sum

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    labels = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    expected = torch.nn.functional.mse_loss(logits, labels).item()
    assert (task_sum(logits, labels, "regression") / 4).item() == pytest.approx(expected, rel=1e-12)


def test_each_rank_divides_the_whole_batchs_counts_by_the_number_of_ranks():
    # only the two-process DDP test would see the counts scaled twice (or not at all); here, without processes
    from types import SimpleNamespace

    from hf_distill.trainer.batch_counts import WholeBatchCountsMixin

    ranks = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2))
    counts = WholeBatchCountsMixin.rank_counts(ranks, torch.tensor([8.0, 6.0, 0.0, 3.0]))
    assert counts.tolist() == [4.0, 3.0, 0.5, 1.5]  # a count of 0 is taken as 1: a zero term, never 0 / 0
