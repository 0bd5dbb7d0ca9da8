"""DistillationTrainer invariants on tiny random BERTs (CPU, no network)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import tiny
import torch
from references import reference_class_loss, reference_cosine_loss, reference_task_loss, reference_token_loss
from safetensors.torch import load_file
from trainers import EXACT_UPDATES, make_args, make_trainer, state
from transformers import AutoModelForSequenceClassification, TrainingArguments

from hf_distill import DistillationTrainer, DistillationTrainingArguments

# ---- the loss -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("temperature", "alpha_kd", "alpha_task"), [(2.0, 0.5, 0.5), (4.0, 0.9, 0.1), (1.0, 1.0, 0.0)]
)
def test_class_loss_is_weighted_sum_of_reference_terms(tmp_path, temperature, alpha_kd, alpha_task):
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
    trainer = make_trainer(
        tmp_path,
        student,
        teacher,
        tiny.class_rows(8),
        temperature=temperature,
        alpha_kd=alpha_kd,
        alpha_task=alpha_task,
    )
    batch = tiny.collate([tiny.class_rows(8)[i] for i in range(8)])
    student.train()
    loss, outputs = trainer.compute_loss(student, batch, return_outputs=True)
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        student_logits = student(**inputs).logits.double()
        teacher_logits = teacher(**inputs).logits.double()
    kd = reference_class_loss(student_logits, teacher_logits, temperature)
    task = reference_task_loss("class", student_logits, batch["labels"])
    assert kd > 1e-3  # the teacher and student really disagree, so the KD term is exercised
    assert loss.item() == pytest.approx(alpha_kd * kd + alpha_task * task, rel=1e-5)
    torch.testing.assert_close(outputs.logits.double(), student_logits)  # return_outputs gives the student's


def test_token_loss_counts_labelled_positions_else_attention_mask(tmp_path):
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.3)
    student = tiny.masked_lm(layers=1, seed=1, initializer_range=0.3)
    data = tiny.token_rows(6, num_labels=tiny.VOCAB_SIZE, ignored_fraction=0.6)
    trainer = make_trainer(tmp_path, student, teacher, data, temperature=3.0, alpha_kd=0.7, alpha_task=0.3)
    batch = tiny.collate([data[i] for i in range(6)])
    student.train()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        student_logits = student(**inputs).logits.double()  # (B, L, V)
        teacher_logits = teacher(**inputs).logits.double()
    labelled = batch["labels"].ne(-100)
    kd = reference_token_loss(student_logits, teacher_logits, labelled, 3.0)
    task = reference_task_loss("token", student_logits, batch["labels"])
    loss = trainer.compute_loss(student, batch)
    assert loss.item() == pytest.approx(0.7 * kd + 0.3 * task, rel=1e-5)
    # Without labels the loss is alpha_kd * KD over the attention mask (padding excluded).
    unlabelled = trainer.compute_loss(student, inputs)
    kd_attention = reference_token_loss(student_logits, teacher_logits, batch["attention_mask"].bool(), 3.0)
    assert batch["attention_mask"].eq(0).any()
    assert unlabelled.item() == pytest.approx(0.7 * kd_attention, rel=1e-5)


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_distils_with_mse_not_a_constant_softmax(tmp_path, outputs):
    # Mistake 3: KL over a one-logit softmax is identically 0 (the copied recipe's STS-B). With several outputs the
    # KD term is F.mse_loss over every output (each example's mean over them), not each example's sum
    options = dict(num_labels=outputs, initializer_range=0.5)
    if outputs > 1:  # one output is taken for regression; several must say so
        options["problem_type"] = "regression"
    teacher = tiny.classifier(layers=2, seed=0, **options)
    student = tiny.classifier(layers=1, seed=1, **options)
    data = tiny.class_rows(8, regression=True)
    trainer = make_trainer(tmp_path, student, teacher, data, alpha_kd=0.6, alpha_task=0.4)
    batch = tiny.collate([data[i] for i in range(8)])
    if outputs > 1:  # (B, K) float targets (tiny.collate pads list labels as token labels)
        batch["labels"] = batch["labels"][:, None] * torch.linspace(1.0, -1.0, outputs)
    student.train()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s = student(**inputs).logits.double().view(-1)
        t = teacher(**inputs).logits.double().view(-1)
    kd = ((s - t) ** 2).mean().item()
    task = ((s - batch["labels"].double().view(-1)) ** 2).mean().item()
    assert kd > 1e-4
    assert trainer.compute_loss(student, batch).item() == pytest.approx(0.6 * kd + 0.4 * task, rel=1e-5)


# ---- trainer invariants -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["class", "token"])
def test_cosine_term_adds_the_reference_cosine_of_last_hidden_states(tmp_path, level):
    if level == "class":  # positions counted by the attention mask
        teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
        student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
        data = tiny.class_rows(8)
    else:  # token labels: still every attended token (DistilBERT's L_cos), while the token KL counts labelled ones
        teacher = tiny.token_classifier(layers=2, seed=0, initializer_range=0.5)
        student = tiny.token_classifier(layers=1, seed=1, initializer_range=0.5)
        data = tiny.token_rows(8, seed=2, ignored_fraction=0.4)
    options = dict(temperature=2.0, alpha_kd=0.5, alpha_task=0.3, alpha_cos=0.7)
    with_cos = make_trainer(tmp_path, student, teacher, data, **options)
    without = make_trainer(tmp_path, student, teacher, data, **{**options, "alpha_cos": 0.0})
    batch = tiny.collate([data[i] for i in range(8)])
    student.train()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        student_hidden = student(**inputs, output_hidden_states=True).hidden_states[-1].double()  # (B, L, D)
        teacher_hidden = teacher(**inputs, output_hidden_states=True).hidden_states[-1].double()
    counted = batch["attention_mask"].bool()
    assert counted.logical_not().any()  # some positions must not count
    if level == "token":  # and the labelled positions are fewer
        assert batch["labels"].ne(-100).sum() < counted.sum()
    cos = reference_cosine_loss(student_hidden, teacher_hidden, counted)
    assert cos > 1e-3
    difference = with_cos.compute_loss(student, batch).item() - without.compute_loss(student, batch).item()
    assert difference == pytest.approx(0.7 * cos, rel=1e-5)
    # In training the sum is divided by the positions counted over the whole accumulated batch (here: this one).
    labelled_positions = batch["labels"].ne(-100).sum() if level == "token" else counted.sum()
    counts = torch.tensor([8.0, 8.0, float(labelled_positions), float(counted.sum())])
    in_training = with_cos.compute_loss(student, batch, num_items_in_batch=counts)
    assert in_training.item() == pytest.approx(with_cos.compute_loss(student, batch).item(), rel=1e-6)


def test_cosine_term_is_logged_and_trains(tmp_path):
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
    trainer = make_trainer(
        tmp_path, student, teacher, tiny.class_rows(16), logging_steps=2, alpha_kd=0.3, alpha_task=0.2, alpha_cos=0.5
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2  # 16 rows in batches of 4 (make_args): 4 steps, logged every 2
    for entry in logged:
        weighted = 0.3 * entry["loss_kd"] + 0.2 * entry["loss_task"] + 0.5 * entry["loss_cos"]
        assert entry["loss_cos"] > 0 and entry["loss"] == pytest.approx(weighted, rel=1e-4)


@pytest.mark.parametrize("term", ["alpha_kd", "alpha_task", "alpha_cos", "alpha_hidden", "alpha_attention",
                                  "alpha_value_relation"])  # fmt: skip
def test_each_term_alone_sends_the_student_its_own_gradient(tmp_path, term):
    # a term whose value was right but detached from the graph (no gradient to the student) passed every other test:
    # autograd's directional derivative of each term alone against a central finite difference of compute_loss
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5).double()
    student = tiny.classifier(layers=2, seed=1, initializer_range=0.5).double().train()  # no dropout (tiny)
    weights = {name: 0.0 for name in ("alpha_kd", "alpha_task", "alpha_cos", "alpha_hidden", "alpha_attention",
                                      "alpha_value_relation")}  # fmt: skip
    rows = tiny.class_rows(8)
    trainer = make_trainer(tmp_path, student, teacher, rows, **{**weights, term: 1.0})
    batch = tiny.collate([rows[i] for i in range(8)])
    parameters = [parameter for parameter in student.parameters() if parameter.requires_grad]
    generator = torch.Generator().manual_seed(0)
    direction = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in parameters]
    gradients = torch.autograd.grad(trainer.compute_loss(student, dict(batch)), parameters, allow_unused=True)
    analytic = sum(float((g * v).sum()) for g, v in zip(gradients, direction) if g is not None)
    step = 1e-3 if term == "alpha_attention" else 1e-6  # the attention tap computes in float32

    def loss_moved(sign: float) -> float:
        with torch.no_grad():
            for parameter, v in zip(parameters, direction):
                parameter.add_(sign * step * v)
            value = trainer.compute_loss(student, dict(batch)).item()
            for parameter, v in zip(parameters, direction):
                parameter.sub_(sign * step * v)
        return value

    numeric = (loss_moved(1.0) - loss_moved(-1.0)) / (2 * step)
    assert abs(numeric) > 1e-6  # the term moves with the student's weights
    assert analytic == pytest.approx(numeric, rel=1e-3)


def test_cosine_term_refuses_unequal_hidden_sizes_and_the_logit_cache(tmp_path):
    teacher = tiny.classifier(layers=2, seed=0)
    narrow = tiny.classifier(layers=1, seed=1, hidden_size=16, intermediate_size=32)
    with pytest.raises(ValueError, match=r"student's hidden_size is 16 and the teacher's 32.*alpha_cos=0"):
        make_trainer(tmp_path, narrow, teacher, tiny.class_rows(4), alpha_cos=0.5)
    make_trainer(tmp_path, narrow, teacher, tiny.class_rows(4))  # without the cosine term the widths may differ
    with pytest.raises(
        ValueError, match=r"alpha_cos=0.5 needs the teacher's internals every step.*cache_teacher_logits"
    ):
        make_args(tmp_path, alpha_cos=0.5, cache_teacher_logits=True)


def test_training_leaves_teacher_bit_identical_and_out_of_optimizer_and_checkpoints(tmp_path):
    teacher = tiny.classifier(layers=2, seed=0, dropout=0.1, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, dropout=0.1)
    teacher_before, student_before = state(teacher), state(student)
    trainer = make_trainer(
        tmp_path, student, teacher, tiny.class_rows(24), save_strategy="steps", save_steps=3, num_train_epochs=1
    )
    trainer.train()

    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for name, tensor in state(teacher).items():
        assert torch.equal(tensor, teacher_before[name]), f"teacher weight {name} changed"
    assert any(not torch.equal(t, student_before[n]) for n, t in state(student).items()), "student did not train"

    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised and not optimised & {id(p) for p in teacher.parameters()}
    assert optimised <= {id(p) for p in student.parameters()}

    trainer.save_model(str(tmp_path / "saved"))
    checkpoint = tmp_path / "out" / "checkpoint-6"
    for folder in (tmp_path / "saved", checkpoint):
        weights = load_file(str(folder / "model.safetensors"))
        # the student's own keys as built, not as it is now: a teacher attached to it would be in both
        assert set(weights) == set(student_before), f"{folder} holds more than the student"
        assert not list(folder.glob("pytorch_model*.bin")), "weights must be saved as safetensors"
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert reloaded.config.num_hidden_layers == 1
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, student.state_dict()[name])


@pytest.mark.parametrize(
    ("logging", "steps"),
    [
        (dict(logging_steps=2), [2, 4]),
        # windows of 1 and 2 steps, not logging_steps=3: the terms were divided by logging_steps, not the window
        (dict(logging_steps=3, logging_first_step=True), [1, 3]),
        (dict(logging_steps=0.5), [2, 4]),  # a ratio of the 4 steps: windows of 2, never divided by 0.5
    ],
    ids=["every_2", "first_step", "ratio"],
)
def test_logs_loss_terms_beside_loss(tmp_path, logging, steps):
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(16), alpha_kd=0.3, alpha_task=0.7, **logging)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logged] == steps  # 16 rows in batches of 4 (make_args): 4 steps
    for entry in logged:
        assert entry["loss_kd"] > 0 and entry["loss_task"] > 0
        assert entry["loss"] == pytest.approx(0.3 * entry["loss_kd"] + 0.7 * entry["loss_task"], rel=1e-4)


def test_logged_loss_terms_are_the_windows_own_after_a_resume_and_in_a_second_train(tmp_path):
    # The window's start was set only at construction: a resume divided its first window by every step since 0,
    # and a second train() (or search trial) restarted at step 0 below it and logged no terms at all.
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    options = dict(logging_steps=2, max_steps=4, alpha_kd=0.3, alpha_task=0.7, save_strategy="steps", save_steps=2)

    def logged(trainer):
        return {entry["step"]: entry for entry in trainer.state.log_history if "loss" in entry}

    full = make_trainer(tmp_path / "full", tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(16), **options)
    full.train()
    resumed = make_trainer(tmp_path / "full", tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(16),
                           **options)  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "out" / "checkpoint-2"))
    for term in ("loss_kd", "loss_task"):
        assert logged(resumed)[4][term] == pytest.approx(logged(full)[4][term], rel=1e-5)
    again = make_trainer(tmp_path / "again", tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(16),
                         **options)  # fmt: skip
    again.train()
    first = logged(again)
    again.state.log_history = []
    again.train()
    assert set(logged(again)) == {2, 4} and all("loss_kd" in entry for entry in logged(again).values())
    assert logged(again)[2]["loss"] == pytest.approx(0.3 * logged(again)[2]["loss_kd"] + 0.7 * logged(again)[2][
        "loss_task"], rel=1e-4) and first[2]["loss_kd"] > 0  # fmt: skip


def test_logged_loss_terms_restart_with_the_smaller_batch_after_an_out_of_memory_retry(tmp_path):
    # auto_find_batch_size reruns the training loop at half the batch after an out-of-memory error: the terms the
    # failed attempt had summed were logged in the retry's first window (and its start was the failed one's step)
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)

    class RunsOutOfMemoryOnce(DistillationTrainer):
        steps = 0

        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)  # the terms are summed for the log: then memory runs out
            RunsOutOfMemoryOnce.steps += 1
            if RunsOutOfMemoryOnce.steps == 3:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return loss

    trainer = RunsOutOfMemoryOnce(
        model=tiny.classifier(layers=1, seed=1, initializer_range=0.5), teacher_model=teacher,
        args=make_args(tmp_path, auto_find_batch_size=True, per_device_train_batch_size=8, logging_steps=2,
                       alpha_kd=0.3, alpha_task=0.7),
        train_dataset=tiny.class_rows(64), data_collator=tiny.collate,
    )  # fmt: skip
    trainer.train()
    assert trainer.state.train_batch_size == 7  # it did retry, at 90% of the batch
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logged] == [2, 4, 6, 8, 10]  # the retry's log alone: 64 rows / 7
    for entry in logged:
        assert entry["loss"] == pytest.approx(0.3 * entry["loss_kd"] + 0.7 * entry["loss_task"], rel=1e-4)


def test_evaluation_runs_the_student_alone_and_reports_its_task_loss(tmp_path):
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
    eval_data = tiny.class_rows(16, seed=5)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), eval_dataset=eval_data)
    teacher_calls = []
    teacher.register_forward_hook(lambda *_: teacher_calls.append(1))
    metrics = trainer.evaluate()
    assert teacher_calls == []
    batch = tiny.collate([eval_data[i] for i in range(16)])
    student.eval()
    with torch.no_grad():
        expected = student(**batch).loss.item()  # the loss ordinary fine-tuning reports
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_bf16_runs_the_teacher_in_half_precision_and_keeps_fp32_student(tmp_path):
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1)
    seen, autocast = [], []
    teacher.classifier.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    # under autocast too, not only in bf16 weights: an fp16 run keeps fp32 weights and relies on autocast alone (a
    # forward outside it ran in fp32 at twice the cost, and the bf16 weights hid that here)
    teacher.register_forward_pre_hook(lambda module, args: autocast.append(torch.is_autocast_enabled("cpu")))
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), bf16=True, max_steps=2)
    trainer.train()
    assert seen and set(seen) == {torch.bfloat16} and autocast and all(autocast)
    assert next(teacher.parameters()).dtype == torch.bfloat16  # the caller's object, cast in place (no second copy)
    assert all(p.dtype == torch.float32 for p in student.parameters())
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in trainer.state.log_history if "loss" in e)


def test_evaluation_before_training_runs_the_student_under_the_runs_autocast(tmp_path):
    # Preparing the teacher with accelerator.prepare_model made an evaluate() before train() run the student in
    # float32 without autocast under bf16
    student = tiny.classifier(layers=1, seed=1)
    autocast = []
    # inside the forward: Accelerate's autocast wraps the prepared student's forward, past its pre-hooks
    student.classifier.register_forward_hook(
        lambda module, args, output: autocast.append(
            torch.is_autocast_enabled("cpu") and output.dtype == torch.bfloat16
        )
    )
    trainer = make_trainer(tmp_path, student, tiny.classifier(layers=2, seed=0), tiny.class_rows(8), bf16=True)
    trainer.evaluate(tiny.class_rows(8, seed=4))
    assert autocast and all(autocast)


def test_a_half_precision_teacher_runs_in_float32_without_bf16(tmp_path):
    # transformers 5 loads a checkpoint in the dtype it was stored in: an fp16 teacher stayed fp16 in fp32 training
    teacher = tiny.classifier(layers=2, seed=0).half()
    trainer = make_trainer(tmp_path, tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(8), max_steps=1)
    assert all(p.dtype == torch.float32 for p in trainer.teacher_model.parameters())
    trainer.train()


@pytest.mark.parametrize("bf16", [False, True])
def test_a_quantized_teacher_is_moved_never_cast(tmp_path, bf16):
    # prepare_teacher passed dtype= (None included) to .to(), which transformers refuses for a bitsandbytes or GPTQ
    # model ("You cannot cast a bitsandbytes model in a new `dtype`"): an 8-bit teacher could not be used at all.
    # bitsandbytes is not installed here: the teacher is marked as from_pretrained marks one, which .to() reads.
    from transformers.utils.quantization_config import QuantizationMethod

    teacher = tiny.classifier(layers=2, seed=0)
    teacher.half()  # a quantized model's other weights are half precision: kept as they are
    teacher.quantization_method = QuantizationMethod.BITS_AND_BYTES
    teacher.is_quantized = True
    trainer = make_trainer(tmp_path, tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(8), bf16=bf16)
    assert all(p.dtype == torch.float16 for p in trainer.teacher_model.parameters())


class _PeftLike(torch.nn.Module):
    """peft's PeftModelForSequenceClassification as the trainer sees it: a forward naming some inputs and passing
    **kwargs (token_type_ids among them) on to the model `get_base_model()` returns. peft is not installed here."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.config = base.config

    def get_base_model(self):
        return self.base

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, task_ids=None, **kwargs):  # fmt: skip
        return self.base(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                         labels=labels, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=return_dict, **kwargs)  # fmt: skip


def test_a_wrapped_teacher_taking_its_inputs_through_kwargs_still_gets_the_segment_ids(tmp_path):
    # only the wrapper's named inputs were passed: a LoRA teacher read every sentence pair as one segment
    base = tiny.classifier(layers=2, seed=0, type_vocab_size=2)
    with torch.no_grad():
        base.bert.embeddings.token_type_embeddings.weight[1].normal_(0, 1.0)  # segments matter, as when pretrained
    teacher = _PeftLike(base)
    trainer = make_trainer(tmp_path, tiny.classifier(layers=1, seed=1, type_vocab_size=2), teacher, tiny.class_rows(8))
    batch = tiny.collate(list(tiny.class_rows(4)))
    length = batch["input_ids"].shape[1]
    batch["token_type_ids"] = (torch.arange(length) >= length // 2).long().expand(4, -1)  # sentence pairs
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        expected = base(**inputs).logits
    torch.testing.assert_close(trainer.teacher_logits(batch), expected, rtol=0, atol=0)


def test_a_teacher_spread_over_devices_by_its_device_map_stays_there(tmp_path):
    # .to(device) pulled a device_map="auto" teacher, spread over several GPUs, onto one
    teacher = tiny.classifier(layers=2, seed=0)
    teacher.hf_device_map = {"bert": 0, "classifier": 1}
    moved = []
    teacher.to = lambda *args, **kwargs: moved.append((args, kwargs))
    trainer = make_trainer(tmp_path, tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(8), bf16=True)
    assert trainer.teacher_model is teacher and moved == []
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())  # frozen all the same


def test_a_student_sharing_the_teachers_modules_is_refused(tmp_path):
    # freezing the teacher froze the shared student weights without a word
    teacher, student = tiny.classifier(layers=2, seed=0), tiny.classifier(layers=1, seed=1)
    student.bert.embeddings = teacher.bert.embeddings
    with pytest.raises(ValueError, match=r"shares 5 parameter\(s\) with the teacher \(e\.g\. bert\.embeddings\."):
        make_trainer(tmp_path, student, teacher, tiny.class_rows(4))


# ---- gradient accumulation ----------------------------------------------------------------------------------------


def _train_final_state(
    tmp_path, name, student, teacher, data, *, batch, accumulation, trainer_class=None, alpha_cos=0.0, **extra
):
    trainer_class = trainer_class or DistillationTrainer
    args = make_args(
        tmp_path / name,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        **{**EXACT_UPDATES, **extra},
        alpha_cos=alpha_cos,
    )
    trainer = trainer_class(
        model=student, teacher_model=teacher, args=args, train_dataset=data, data_collator=tiny.collate
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return state(student), losses


class _PerMicroBatchMean(DistillationTrainer):
    """What a copied recipe does: each micro-batch's own mean, divided by the accumulation steps."""

    loss_is_scaled_for_ga = False

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        return batches, None


@pytest.mark.parametrize("level", ["class", "token", "token+cos"])
def test_gradient_accumulation_matches_one_large_batch(tmp_path, level):
    alpha_cos = 0.5 if level.endswith("+cos") else 0.0
    if level == "class":
        teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
        student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
        data = tiny.class_rows(32, seed=2)
    else:
        teacher = tiny.token_classifier(layers=2, seed=0, initializer_range=0.5)
        student = tiny.token_classifier(layers=1, seed=1, initializer_range=0.5)
        data = tiny.token_rows(32, seed=2, ignored_fraction=0.4)  # uneven lengths and label counts
    one_batch, losses_one = _train_final_state(
        tmp_path, "1x8", copy.deepcopy(student), teacher, data, batch=8, accumulation=1, alpha_cos=alpha_cos
    )
    accumulated, losses_acc = _train_final_state(
        tmp_path, "2x4", copy.deepcopy(student), teacher, data, batch=4, accumulation=2, alpha_cos=alpha_cos
    )
    for name, tensor in one_batch.items():
        # float32 sums in another order, over 4 SGD steps: ~1e-5; a loss scaled 2x too large moves weights ~0.1.
        torch.testing.assert_close(accumulated[name], tensor, rtol=1e-4, atol=1e-4, msg=f"{name} differs")
    assert losses_acc == pytest.approx(losses_one, rel=1e-5)
    if level.startswith("token"):
        # The check has teeth: per-micro-batch means weigh unevenly filled micro-batches wrongly.
        naive, _ = _train_final_state(
            tmp_path,
            "naive",
            copy.deepcopy(student),
            teacher,
            data,
            batch=4,
            accumulation=2,
            trainer_class=_PerMicroBatchMean,
            alpha_cos=alpha_cos,
        )
        assert any(not torch.allclose(naive[n], t, rtol=1e-4, atol=1e-4) for n, t in one_batch.items())


def test_gradient_accumulation_matches_one_large_batch_for_a_causal_lm(tmp_path):
    # its counted positions are those predicting a labelled token: the whole batch's counts must be taken the same
    # way as each micro-batch's loss, or unevenly labelled micro-batches are weighed wrongly
    teacher, student = _gpt2(0, torch.float32), _gpt2(1, torch.float32)
    generator = torch.Generator().manual_seed(3)
    rows = []
    for _ in range(32):
        length = int(torch.randint(4, 12, (1,), generator=generator))
        ids = torch.randint(5, tiny.VOCAB_SIZE, (length,), generator=generator).tolist()
        prompt = int(torch.randint(0, length, (1,), generator=generator))  # completion-only labels, or all (0)
        rows.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    data = tiny.ListDataset(rows)
    one_batch, losses_one = _train_final_state(
        tmp_path, "1x8", copy.deepcopy(student), teacher, data, batch=8, accumulation=1, alpha_task=0.0, alpha_kd=1.0
    )
    accumulated, losses_acc = _train_final_state(
        tmp_path, "2x4", copy.deepcopy(student), teacher, data, batch=4, accumulation=2, alpha_task=0.0, alpha_kd=1.0
    )
    for name, tensor in one_batch.items():
        torch.testing.assert_close(accumulated[name], tensor, rtol=1e-4, atol=1e-4, msg=f"{name} differs")
    assert losses_acc == pytest.approx(losses_one, rel=1e-5)
    # and the sum of the micro-batches' losses is the mean KL over the whole batch's predicting positions (the
    # equivalence above holds with any divisor both runs share)
    teacher, student = _gpt2(0), _gpt2(1)
    trainer = make_trainer(tmp_path / "sum", student, teacher, data, alpha_task=0.0, alpha_kd=1.0, temperature=2.0)
    micro = [tiny.collate([rows[i] for i in range(j, j + 4)]) for j in (0, 4)]
    _, counts = trainer.get_batch_samples(iter(micro), 2, torch.device("cpu"))
    student.train()
    total = sum(trainer.compute_loss(student, batch, num_items_in_batch=counts).item() for batch in micro)
    kl, count = 0.0, 0
    for batch in micro:
        mask = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
        mask[:, :-1] = batch["labels"][:, 1:].ne(-100)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with torch.no_grad():
            kl += reference_token_loss(student(**inputs).logits, teacher(**inputs).logits, mask, 2.0) * int(mask.sum())
        count += int(mask.sum())
    assert counts[2] == count and total == pytest.approx(kl / count, rel=1e-9)


class _BeforeTransformers519(DistillationTrainer):
    """Trainer as transformers 5.0-5.18 have it, without `loss_is_scaled_for_ga`: `training_step` divides the loss by
    the accumulation steps again unless `model_accepts_loss_kwargs`."""

    loss_is_scaled_for_ga = None


def test_gradient_accumulation_holds_where_transformers_decides_the_scaling_from_the_model(tmp_path):
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
    student.accepts_loss_kwargs = False  # as some transformers models declare: Trainer reads it
    data = tiny.class_rows(32, seed=2)

    def trained(name, batch, steps):
        return _train_final_state(tmp_path, name, copy.deepcopy(student), teacher, data, batch=batch,
                                  accumulation=steps, trainer_class=_BeforeTransformers519)  # fmt: skip

    (one_batch, losses_one), (accumulated, losses_acc) = trained("1x8", 8, 1), trained("2x4", 4, 2)
    for name, tensor in one_batch.items():
        torch.testing.assert_close(accumulated[name], tensor, rtol=1e-4, atol=1e-4, msg=f"{name} differs")
    assert losses_acc == pytest.approx(losses_one, rel=1e-5)


# ---- resume -------------------------------------------------------------------------------------------------------


def test_resume_from_checkpoint_ends_with_the_same_student(tmp_path):
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    student = tiny.classifier(layers=1, seed=1, dropout=0.1)
    data = tiny.class_rows(16, seed=3)
    common = dict(num_train_epochs=2, save_strategy="steps", save_steps=4, output_dir=str(tmp_path / "run"))

    full = make_trainer(tmp_path, copy.deepcopy(student), teacher, data, **common)
    full.train()
    expected = state(full.model)

    resumed_student = tiny.classifier(layers=1, seed=99, dropout=0.1)  # weights come from the checkpoint
    resumed = make_trainer(tmp_path, resumed_student, teacher, data, **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-4"))
    assert resumed.state.global_step == full.state.global_step == 8
    for name, tensor in state(resumed.model).items():
        torch.testing.assert_close(tensor, expected[name], rtol=1e-5, atol=1e-6, msg=f"{name} differs after resume")


# ---- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(temperature=0.0), r"temperature must be > 0, got 0.0"),
        (dict(temperature=-1.0), r"temperature must be > 0, got -1.0"),
        (dict(temperature=2e19), r"temperature=2e\+19 is past 1.84e\+19: the loss's temperature\*\*2 factor over"),
        (dict(temperature=float("nan")), r"temperature must be a finite number, got nan"),
        (dict(alpha_kd=-0.1), r"alpha_kd must be >= 0, got -0.1"),
        (dict(alpha_task=-2), r"alpha_task must be >= 0, got -2"),
        (dict(alpha_cos=-0.5), r"alpha_cos must be >= 0, got -0.5"),
        (dict(alpha_kd=0.0, alpha_task=0.0), r"every loss weight .*is 0"),
        # was accepted, then every chunk ignored: the heads ran on every position (out of memory where it was set)
        (
            dict(token_kd_chunk_size=64, token_kd_gather_positions=False),
            r"token_kd_chunk_size=64 chunks .* token_kd_gather_positions=False runs the heads on every position",
        ),
        # was accepted, then ignored: with the cache no head runs in chunks
        (
            dict(token_kd_chunk_size=64, cache_teacher_logits=True),
            r"^token_kd_chunk_size=64 chunks the heads of an online teacher and its student, but "
            r"cache_teacher_logits=True runs no teacher head .*: unset token_kd_chunk_size, or set "
            r"cache_teacher_logits=False\.$",
        ),
        # was accepted, then the first step failed inside torch's cross-entropy
        (dict(label_smoothing_factor=1.5), r"label_smoothing_factor must be in \[0, 1\], got 1.5: .*0.1"),
        (dict(label_smoothing_factor=-0.1), r"label_smoothing_factor must be in \[0, 1\], got -0.1"),
        (dict(value_relation_heads=0), r"value_relation_heads must be an integer >= 1, got 0: pass R such as 12"),
        # a bool is an int to Python: alpha_kd=True would have trained at weight 1.0
        (dict(alpha_kd=True), r"alpha_kd must be a finite number, got True"),
    ],
)
def test_arguments_refuse_bad_values_naming_field_value_and_fix(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, **overrides)


@pytest.mark.parametrize(("launcher", "flag"), [("fp16", "bf16"), ("bf16", "fp16")])
def test_arguments_refuse_a_precision_that_overrides_the_launchers(tmp_path, monkeypatch, launcher, flag):
    # `accelerate launch` with a fp16 config sets ACCELERATE_MIXED_PRECISION=fp16, and TrainingArguments then lets a
    # config's `bf16: true` replace it without a word: the run would train in the other precision.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    with pytest.raises(ValueError, match=rf"launcher asks for {launcher} .*but {flag} is true.*--{flag} false"):
        make_args(tmp_path, **{flag: True})


def test_arguments_accept_the_launchers_own_precision(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert make_args(tmp_path, bf16=True).mixed_precision == "bf16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert make_args(tmp_path, bf16=True).mixed_precision == "bf16"


@pytest.mark.parametrize("launcher", ["bf16", "fp16"])
def test_a_launchers_half_precision_sets_its_flag(tmp_path, monkeypatch, launcher):
    # `accelerate launch` with a bf16 config and no --bf16: transformers trains in bf16 (mixed_precision) but leaves
    # args.bf16 False, so every choice made from the flag (teacher weights, padding to multiples of 8, the latency's
    # dtype, the pseudo-label pass's autocast) would have been made for a float32 run
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    args = make_args(tmp_path)
    assert args.mixed_precision == launcher and getattr(args, launcher)
    assert not getattr(args, "fp16" if launcher == "bf16" else "bf16")
    assert args.pad_to_multiple_of == 8
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert not make_args(tmp_path).bf16 and not make_args(tmp_path).fp16


def test_a_launchers_bf16_reaches_a_deepspeed_configs_auto_precision_and_copies_of_the_arguments(
    tmp_path, monkeypatch
):
    pytest.importorskip("deepspeed")
    import dataclasses

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    deepspeed = {
        "bf16": {"enabled": "auto"},
        "zero_optimization": {"stage": 2},
        "train_micro_batch_size_per_gpu": "auto",
    }
    args = make_args(tmp_path, deepspeed=deepspeed)
    assert args.bf16 and args.hf_deepspeed_config.config["bf16"]["enabled"] is True  # filled from the flag
    # a bf16 launch on a CPU without --use_cpu: transformers refuses the flag there, so it is left unset, and a copy
    # of the arguments (evaluation, the teacher's fine-tune) validates as the first construction did
    on_cpu = make_args(tmp_path, use_cpu=False)
    assert not on_cpu.bf16 and on_cpu.mixed_precision == "bf16"
    assert dataclasses.replace(on_cpu, output_dir=str(tmp_path / "copy")).mixed_precision == "bf16"


def test_arguments_have_help_text_and_serialise():
    from dataclasses import fields

    extra = {f.name: f for f in fields(DistillationTrainingArguments)}
    for name in ("temperature", "alpha_kd", "alpha_task", "alpha_cos"):
        assert len(extra[name].metadata.get("help", "")) > 20
    args = DistillationTrainingArguments(output_dir="unused", temperature=3.0, report_to="none")
    assert json.loads(args.to_json_string())["temperature"] == 3.0


@pytest.mark.parametrize(
    ("student_kwargs", "message"),
    [
        (dict(vocab_size=80), r"vocabulary has 80 tokens but the teacher's has 96"),
        (dict(num_labels=2), r"student has num_labels=2 but the teacher has num_labels=3"),
        (dict(num_labels=1), r"student has a regression head but the teacher has a classification head"),
        (dict(problem_type="multi_label_classification"), r"multi_label_classification"),
    ],
)
def test_refuses_pairs_that_cannot_be_distilled(tmp_path, student_kwargs, message):
    teacher = tiny.classifier(layers=2, num_labels=3)
    student = tiny.classifier(layers=1, **{"num_labels": 3, **student_kwargs})
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, student, teacher, tiny.class_rows(4))


def test_arguments_take_numpy_numbers_as_numbers(tmp_path):
    # np.float32 and np.int64 are not float or int subclasses: "alpha_kd must be a finite number, got 0.5"
    import numpy as np

    args = make_args(tmp_path, alpha_kd=np.float32(0.5), temperature=np.int64(2), label_smoothing_factor=np.float32(0))
    assert (args.alpha_kd, args.temperature) == (0.5, 2.0) and type(args.temperature) is float


def test_arguments_store_whole_number_weights_as_floats(tmp_path):
    # a search trial's value is cast to the type of the one it replaces: an int weight would turn 0.3 into 0
    names = ("alpha_kd", "alpha_task", "alpha_cos", "alpha_hidden", "alpha_attention", "alpha_value_relation")
    args = make_args(tmp_path, **dict.fromkeys(names, 1))
    assert {name: type(getattr(args, name)) for name in names} == dict.fromkeys(names, float)
    assert [getattr(args, name) for name in names] == [1.0] * 6


def test_refuses_classifiers_whose_labels_are_ordered_otherwise_and_says_other_names(tmp_path, caplog):
    # negative/positive against positive/negative was accepted: the KL taught every positive as a negative
    teacher = tiny.classifier(num_labels=2, id2label={0: "negative", 1: "positive"})
    flipped = tiny.classifier(layers=1, num_labels=2, id2label={0: "positive", 1: "negative"})
    with pytest.raises(ValueError, match=r"student orders its labels \{0: 'positive', 1: 'negative'\} and the teacher "
                                         r"\{0: 'negative', 1: 'positive'\}.* id2label"):  # fmt: skip
        make_trainer(tmp_path, flipped, teacher, tiny.class_rows(4, num_labels=2))
    token_teacher = tiny.token_classifier(num_labels=2, id2label={0: "O", 1: "B-PER"})
    with pytest.raises(ValueError, match=r"student orders its labels"):
        make_trainer(tmp_path, tiny.token_classifier(layers=1, num_labels=2, id2label={0: "B-PER", 1: "O"}),
                     token_teacher, tiny.token_rows(4))  # fmt: skip
    # the same order, or default names on either side: accepted without a word
    for student in (tiny.classifier(layers=1, num_labels=2, id2label={0: "negative", 1: "positive"}),
                    tiny.classifier(layers=1, num_labels=2)):  # fmt: skip
        with caplog.at_level("WARNING"):
            make_trainer(tmp_path, student, teacher, tiny.class_rows(4, num_labels=2))
        assert "names its labels" not in caplog.text
    upper = tiny.classifier(layers=1, num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"})  # case is no other name
    with caplog.at_level("WARNING"):
        make_trainer(tmp_path, upper, teacher, tiny.class_rows(4, num_labels=2))
    assert "names its labels" not in caplog.text
    with pytest.raises(ValueError, match=r"student orders its labels \{0: 'POSITIVE', 1: 'NEGATIVE'\}"):
        make_trainer(tmp_path, tiny.classifier(layers=1, num_labels=2, id2label={0: "POSITIVE", 1: "NEGATIVE"}),
                     teacher, tiny.class_rows(4, num_labels=2))  # fmt: skip
    renamed = tiny.classifier(layers=1, num_labels=2, id2label={0: "neg", 1: "pos"})
    with caplog.at_level("WARNING"):
        make_trainer(tmp_path, renamed, teacher, tiny.class_rows(4, num_labels=2))
    said = "student names its labels {0: 'neg', 1: 'pos'} and the teacher {0: 'negative', 1: 'positive'}"
    assert said in caplog.text


def test_refuses_an_encoder_decoder_model_before_training(tmp_path):
    # a T5 pair passed every check and failed inside the model at the first step ("specify exactly one of input_ids")
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=tiny.VOCAB_SIZE, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(config)
    with pytest.raises(ValueError, match=r"The student \(T5ForConditionalGeneration\) is an encoder-decoder model"):
        make_trainer(tmp_path, t5, copy.deepcopy(t5), tiny.token_rows(4))


def test_refuses_a_token_classifier_with_one_label(tmp_path):
    # one logit per position: a softmax over it is 1, so the token KL was 0 and the student got no gradient
    teacher = tiny.token_classifier(num_labels=1)
    with pytest.raises(ValueError, match=r"The student is a token classifier with num_labels=1: .*always 0"):
        make_trainer(tmp_path, tiny.token_classifier(layers=1, num_labels=1), teacher, tiny.token_rows(4))


def test_refuses_token_classifiers_with_different_label_counts(tmp_path):
    teacher = tiny.token_classifier(layers=2, num_labels=5)
    with pytest.raises(ValueError, match=r"student has num_labels=4 but the teacher has num_labels=5"):
        make_trainer(tmp_path, tiny.token_classifier(layers=1, num_labels=4), teacher, tiny.token_rows(4))
    # the same label count is accepted
    make_trainer(tmp_path, tiny.token_classifier(layers=1, num_labels=5), teacher, tiny.token_rows(4))


def test_refuses_a_per_example_head_with_a_per_token_one_before_the_teacher_cache_is_built(tmp_path):
    # the same label count passed every check; the first step refused the logits' shapes, after the whole teacher
    # pass over the training set (cache_teacher_logits) had run and been written
    teacher, student = tiny.classifier(layers=2, num_labels=5), tiny.token_classifier(layers=1, num_labels=5)
    for first, second in ((student, teacher), (teacher, student)):
        with pytest.raises(ValueError, match=r"one output per example .*Bert\w+Classification.* one per token"):
            make_trainer(tmp_path, first, second, tiny.token_rows(4), cache_teacher_logits=True)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"one output per example .* one per token \(BertForMaskedLM\)"):
        make_trainer(tmp_path, tiny.classifier(layers=1, num_labels=tiny.VOCAB_SIZE), tiny.masked_lm(layers=2),
                     tiny.token_rows(4))  # fmt: skip


@pytest.mark.parametrize("head", ["BertForQuestionAnswering", "BertForPreTraining", "BertModel"])
def test_refuses_a_head_without_one_logits_output_when_built(tmp_path, head):
    # a question-answering student (build_student makes one) failed at the first step: AttributeError 'logits'
    import transformers

    torch.manual_seed(0)
    model = getattr(transformers, head)(tiny.bert_config(layers=1))
    with pytest.raises(ValueError, match=rf"The student \({head}\) has no single logits output .*sequence"):
        make_trainer(tmp_path, model, tiny.classifier(layers=2), tiny.class_rows(4))
    with pytest.raises(ValueError, match=rf"The teacher \({head}\) has no single logits output"):
        make_trainer(tmp_path, tiny.classifier(layers=1), model, tiny.class_rows(4))


def test_refuses_tokenizers_that_encode_text_differently(tmp_path):
    student_tokenizer = tiny.tokenizer(tmp_path / "a")
    teacher_tokenizer = tiny.tokenizer(tmp_path / "b", extra_words=("brown", "fox", "dog"))
    with pytest.raises(ValueError, match="tokenizers encode the same text differently"):
        DistillationTrainer(
            model=tiny.classifier(layers=1),
            teacher_model=tiny.classifier(layers=2),
            args=make_args(tmp_path),
            processing_class=student_tokenizer,
            teacher_processing_class=teacher_tokenizer,
        )
    # the same vocabulary saved twice is accepted
    DistillationTrainer(
        model=tiny.classifier(layers=1),
        teacher_model=tiny.classifier(layers=2),
        args=make_args(tmp_path),
        processing_class=student_tokenizer,
        teacher_processing_class=tiny.tokenizer(tmp_path / "c"),
    )


def test_refuses_tokenizers_that_differ_only_in_stripping_accents(tmp_path):
    # the first probe sentence is plain ASCII: only the second one's "naïvely" tells them apart
    from transformers import BertTokenizerFast

    from hf_distill.trainer.compatibility import check_tokenizers

    stripping = tiny.tokenizer(tmp_path / "a")
    vocab = (tmp_path / "a" / "vocab.txt").read_text().split()
    keeping = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True,
                                strip_accents=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"tokenizers encode the same text differently.* For \"Distillation keeps"):
        check_tokenizers(stripping, keeping)


def test_a_tokenizer_exactly_the_size_of_the_embedding_table_fits(tmp_path):
    # as bert-base-uncased: 30522 tokens, 30522 embeddings
    from transformers import BertConfig

    from hf_distill.trainer.compatibility import check_vocabulary_fits

    tokenizer = tiny.tokenizer(tmp_path / "a")
    check_vocabulary_fits(tokenizer, BertConfig(vocab_size=len(tokenizer)))
    smaller = len(tokenizer) - 1
    refusal = rf"tokenizer has {len(tokenizer)} tokens but the teacher's embedding table holds {smaller} \(config\."
    with pytest.raises(ValueError, match=refusal + rf"vocab_size\): ids {smaller}\.\.{smaller} "):
        check_vocabulary_fits(tokenizer, BertConfig(vocab_size=smaller))


def test_processors_that_are_not_tokenizers_are_never_called_with_text(tmp_path):
    # image processors are callable too: the check called two of them with a sentence, as if it were an image
    class ImageProcessor:
        def __call__(self, images, *args, **kwargs):
            raise TypeError(f"not an image: {images!r}")

    DistillationTrainer(
        model=tiny.classifier(layers=1), teacher_model=tiny.classifier(layers=2), args=make_args(tmp_path),
        processing_class=ImageProcessor(), teacher_processing_class=ImageProcessor(),
    )  # fmt: skip
    # a multimodal processor holding a tokenizer is compared by it
    processors = []
    for folder, extra in (("a", ()), ("b", ("brown", "fox", "dog"))):
        processor = ImageProcessor()
        processor.tokenizer = tiny.tokenizer(tmp_path / folder, extra_words=extra)
        processors.append(processor)
    with pytest.raises(ValueError, match="tokenizers encode the same text differently"):
        DistillationTrainer(
            model=tiny.classifier(layers=1), teacher_model=tiny.classifier(layers=2), args=make_args(tmp_path),
            processing_class=processors[0], teacher_processing_class=processors[1],
        )  # fmt: skip


def test_refuses_missing_teacher_and_plain_training_arguments(tmp_path):
    with pytest.raises(ValueError, match="teacher_model="):
        DistillationTrainer(model=tiny.classifier(layers=1), args=make_args(tmp_path))
    with pytest.raises(TypeError, match="DistillationTrainingArguments"):
        DistillationTrainer(
            model=tiny.classifier(layers=1),
            teacher_model=tiny.classifier(layers=2),
            args=TrainingArguments(output_dir=str(tmp_path), report_to="none"),
        )
    model = tiny.classifier(layers=1)
    with pytest.raises(ValueError, match="same object"):
        DistillationTrainer(model=model, teacher_model=model, args=make_args(tmp_path))


@pytest.mark.parametrize("head", ["class", "token"])
def test_a_batch_of_inputs_embeds_without_a_mask_counts_every_position(tmp_path, head):
    # no input_ids and no attention_mask: the counts took B tokens where the masks took B x L positions (token
    # heads' cosine inflated L times; class heads' cosine mask took the logits' shape (B, C) and failed)
    make = tiny.token_classifier if head == "token" else tiny.classifier
    teacher, student = make(layers=2, seed=0), make(layers=1, seed=1)
    generator = torch.Generator().manual_seed(5)
    embeds = torch.randn(3, 6, 32, generator=generator)
    labels = torch.randint(0, 3, (3, 6) if head == "token" else (3,), generator=generator)
    trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(4), temperature=2.0, alpha_kd=0.5,
                           alpha_task=0.5, alpha_cos=0.3)  # fmt: skip
    student.train()
    without = trainer.compute_loss(student, {"inputs_embeds": embeds, "labels": labels}).item()
    mask = torch.ones(3, 6, dtype=torch.long)
    with_mask = trainer.compute_loss(student, {"inputs_embeds": embeds, "attention_mask": mask, "labels": labels})
    assert without == pytest.approx(with_mask.item(), rel=1e-6)


def test_a_causal_lm_student_is_refused_the_unshifted_task_term_but_distils_on_the_kl(tmp_path):
    # its logits at position i predict token i + 1; the task term scores position i against label i, which would
    # train it to copy its input
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2(seed):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(GPT2Config(vocab_size=tiny.VOCAB_SIZE, n_positions=32, n_embd=16, n_layer=1, n_head=2))

    teacher, student = gpt2(0), gpt2(1)
    rows = tiny.ListDataset(
        [{"input_ids": row["input_ids"], "labels": row["input_ids"]} for row in tiny.class_rows(8)]
    )
    with pytest.raises(
        ValueError, match=r"student \(GPT2LMHeadModel\) is a causal LM.*alpha_task=0.5.*Set alpha_task=0"
    ):
        make_trainer(tmp_path / "task", student, teacher, rows)
    trainer = make_trainer(tmp_path / "kl", student, teacher, rows, alpha_task=0.0, max_steps=1)
    trainer.train()
    assert trainer.state.global_step == 1


def _gpt2(seed, dtype=torch.float64):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=tiny.VOCAB_SIZE, n_positions=32, n_embd=16, n_layer=1, n_head=2, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.5)  # fmt: skip
    return GPT2LMHeadModel(config).to(dtype)


def test_a_causal_lms_eval_loss_under_label_smoothing_is_its_shifted_smoothed_loss(tmp_path):
    # its logits at i predict token i + 1: it kept the model's own loss, shifted but unsmoothed (7.240 here), beside
    # LabelsTrainer's shifted smoothed one (7.195): the student's and the baseline's eval losses differed in kind
    from hf_distill import LabelsTrainer

    teacher, student = _gpt2(0, torch.float32), _gpt2(1, torch.float32)
    rows = tiny.ListDataset([{"input_ids": r["input_ids"], "labels": r["input_ids"]} for r in tiny.class_rows(8)])
    trainer = make_trainer(tmp_path / "d", student, teacher, rows, eval_dataset=rows, alpha_task=0.0,
                           label_smoothing_factor=0.1, per_device_eval_batch_size=8)  # fmt: skip
    loss = trainer.evaluate()["eval_loss"]
    batch = tiny.collate([rows[i] for i in range(8)])
    student.eval()
    with torch.no_grad():
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels, vocab = batch["labels"], logits.shape[-1]
    shifted = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), label_smoothing=0.1
    )
    unshifted = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), label_smoothing=0.1)
    assert abs(shifted.item() - unshifted.item()) > 0.1  # the two conventions are told apart
    assert loss == pytest.approx(shifted.item(), rel=1e-5)
    baseline = LabelsTrainer(model=student, args=make_args(tmp_path / "l", label_smoothing_factor=0.1,
                             per_device_eval_batch_size=8), eval_dataset=rows, data_collator=tiny.collate)  # fmt: skip
    assert loss == pytest.approx(baseline.evaluate()["eval_loss"], rel=1e-5)


@pytest.mark.parametrize("how", ["gathered", "full", "chunked", "cached"])
def test_a_causal_lms_token_kl_counts_the_positions_that_predict_its_labelled_tokens(tmp_path, how):
    # its logits at i predict token i + 1: with completion-only labels (the prompt -100) the KL was taken at the
    # labelled positions themselves, leaving out the prompt's last position (which predicts the first answer token)
    # and counting the answer's last (which predicts past the end); the model's own loss shifts its labels
    from trainers import make_args

    from hf_distill.trainer.batch_counts import count_index, count_items

    teacher, student = _gpt2(0), _gpt2(1)
    generator = torch.Generator().manual_seed(5)
    rows = []
    for length, answer in ((8, 2), (5, 2), (6, 1)):
        ids = torch.randint(5, tiny.VOCAB_SIZE, (length,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * (length - answer) + ids[length - answer :]})
    data = tiny.ListDataset(rows)
    options = {"gathered": {}, "full": {"token_kd_gather_positions": False}, "chunked": {"token_kd_chunk_size": 2},
               "cached": {"cache_teacher_logits": True, "teacher_cache_top_k": tiny.VOCAB_SIZE}}[how]  # fmt: skip
    trainer = DistillationTrainer(model=student, teacher_model=teacher, data_collator=tiny.collate, train_dataset=data,
                                  args=make_args(tmp_path, alpha_kd=1.0, alpha_task=0.0, temperature=2.0,
                                                 **options))  # fmt: skip
    if how == "cached":
        trainer.prepare_teacher_cache()
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    else:
        batch = tiny.collate(rows)
    expected_mask = torch.zeros(3, 8, dtype=torch.bool)  # the positions before each labelled token
    expected_mask[0, 5:7] = expected_mask[1, 2:4] = expected_mask[2, 4] = True
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
    expected = reference_token_loss(s, t, expected_mask, 2.0)
    unshifted = reference_token_loss(s, t, batch["labels"].ne(-100), 2.0)
    # the cache stores float32 log-probabilities (k = V: no rest bucket)
    rel = 1e-4 if how == "cached" else 1e-9
    assert abs(unshifted - expected) > 20 * rel * expected  # the two conventions are told apart
    student.train()
    assert trainer.compute_loss(student, batch).item() == pytest.approx(expected, rel=rel)
    counted = count_items(tiny.collate(rows), next_token=True)[count_index("positions")]
    assert counted == 5 and count_items(tiny.collate(rows))[count_index("positions")] == 5  # the same count here
    plain = count_items({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}, next_token=True)
    assert plain[count_index("positions")] == 16  # without labels: each attended position before an attended one


def test_a_causal_lm_is_not_distilled_into_a_masked_lm_or_the_reverse(tmp_path):
    # the KL compared the teacher's prediction of token i + 1 with the student's of token i, without a word
    masked = tiny.masked_lm(layers=1)
    rows = tiny.mlm_rows(4)
    for student, teacher in ((masked, _gpt2(0, torch.float32)), (_gpt2(1, torch.float32), tiny.masked_lm(layers=2))):
        causal = "student" if student is not masked else "teacher"
        with pytest.raises(ValueError, match=rf"The {causal} is a causal LM \(GPT2LMHeadModel: .* Distil a causal LM "
                                             r"into a causal LM"):  # fmt: skip
            make_trainer(tmp_path, student, teacher, rows, alpha_task=0.0)


def test_only_causal_lms_count_as_causal():
    from transformers import BertConfig, BertLMHeadModel, GPT2Config, GPT2LMHeadModel, XLMConfig, XLMWithLMHeadModel

    from hf_distill.trainer.compatibility import is_causal_lm

    small = dict(vocab_size=tiny.VOCAB_SIZE, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    assert is_causal_lm(GPT2LMHeadModel(GPT2Config(**small)))
    assert is_causal_lm(BertLMHeadModel(BertConfig(**{**tiny.bert_config(layers=1).to_dict(), "is_decoder": True})))
    assert not is_causal_lm(tiny.masked_lm(layers=1))
    # XLM's LM head model is in transformers' causal and masked maps alike, and its loss does not shift: a masked LM
    xlm = XLMWithLMHeadModel(XLMConfig(vocab_size=tiny.VOCAB_SIZE, emb_dim=16, n_layers=1, n_heads=2, causal=False))
    assert not is_causal_lm(xlm)
    # FSDP2's fully_shard renames the class in place (FSDPGPT2LMHeadModel, a subclass of the model's own): a GPT-2
    # pair was refused as causal against masked once the teacher was sharded, and the shift quietly undone
    from torch.distributed.fsdp import FSDPModule

    for model in (GPT2LMHeadModel(GPT2Config(**small)), tiny.masked_lm(layers=1)):
        causal = is_causal_lm(model)
        model.__class__ = type(f"FSDP{type(model).__name__}", (FSDPModule, type(model)), {})
        assert is_causal_lm(model) == causal


def test_a_trainer_whose_terms_never_read_the_teacher_says_it_still_runs(tmp_path, caplog):
    # alpha_kd=0 and no other teacher term: the teacher ran forward on every step for nothing, silently
    teacher, student = tiny.classifier(layers=2, seed=0), tiny.classifier(layers=1, seed=1)
    calls = []
    teacher.register_forward_hook(lambda *args: calls.append(1))
    with caplog.at_level("WARNING", logger="hf_distill.trainer.student_setup"):
        trainer = make_trainer(tmp_path, student, teacher, tiny.class_rows(8), alpha_kd=0.0, alpha_task=1.0,
                               max_steps=2)  # fmt: skip
    assert "No active loss term reads the teacher" in caplog.text and "on every step" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_distill.trainer.student_setup"):
        trainer._rebuild_loss_terms()  # as every search trial does: said once
    assert "No active loss term reads the teacher" not in caplog.text
    trainer.train()
    assert len(calls) == 2  # as said: the teacher still ran
    caplog.clear()
    with caplog.at_level("WARNING", logger="hf_distill.trainer.student_setup"):
        make_trainer(tmp_path / "kd", tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(8), max_steps=2)
    assert "No active loss term reads the teacher" not in caplog.text


def test_refuses_a_compute_loss_func_it_would_never_call(tmp_path):
    # accepted and never called: a class-weighted task loss was silently replaced by the built-in one
    with pytest.raises(ValueError, match=r"compute_loss_func would never be called\. .*LabelsTrainer takes it"):
        DistillationTrainer(model=tiny.classifier(layers=1), teacher_model=tiny.classifier(layers=2),
                            args=make_args(tmp_path), compute_loss_func=lambda outputs, labels, **_: 0)  # fmt: skip


def test_refuses_a_given_optimizer_that_misses_the_hidden_state_projection(tmp_path):
    # the projection the trainer adds to a narrower student was not in an optimizer built before it: it stayed random
    # for the whole run while its term was logged
    from hf_distill.trainer.intermediate import PROJECTION_NAME

    teacher = tiny.classifier(layers=2, seed=0)
    narrow = tiny.classifier(layers=1, seed=1, hidden_size=16, intermediate_size=24)
    early = torch.optim.AdamW(narrow.parameters(), lr=1e-3)
    with pytest.raises(
        ValueError, match=rf"projection \({PROJECTION_NAME}\) .* Build the optimizer after the trainer"
    ):
        DistillationTrainer(model=narrow, teacher_model=teacher, args=make_args(tmp_path, alpha_hidden=1.0),
                            train_dataset=tiny.class_rows(4), data_collator=tiny.collate,
                            optimizers=(early, None))  # fmt: skip
    student = copy.deepcopy(narrow)  # an optimizer over a student already holding its projection is accepted
    DistillationTrainer(model=student, teacher_model=teacher, args=make_args(tmp_path, alpha_hidden=1.0),
                        train_dataset=tiny.class_rows(4), data_collator=tiny.collate,
                        optimizers=(torch.optim.AdamW(student.parameters(), lr=1e-3), None))  # fmt: skip


@pytest.mark.parametrize("strategy", ["random", "group_by_length"])
def test_predictions_come_back_in_the_datasets_order(tmp_path, strategy):
    # transformers 5 groups prediction by length too under group_by_length: predictions[i] was not row i
    rows = tiny.class_rows(40, seed=5)
    trainer = make_trainer(tmp_path, tiny.classifier(layers=1, seed=1), tiny.classifier(layers=2), rows,
                           train_sampling_strategy=strategy, per_device_eval_batch_size=8)  # fmt: skip
    predicted = trainer.predict(rows)
    assert predicted.label_ids.tolist() == [row["labels"] for row in rows.rows]
    with torch.no_grad():
        first = trainer.model(**{k: v for k, v in tiny.collate([rows[0]]).items() if k != "labels"}).logits
    torch.testing.assert_close(torch.as_tensor(predicted.predictions[0]), first[0], rtol=1e-4, atol=1e-5)


def test_refuses_a_teacher_built_on_the_meta_device_when_constructed(tmp_path):
    # .to() failed inside the trainer's construction with "Cannot copy out of meta tensor; no data!"
    with torch.device("meta"):
        teacher = tiny.classifier(layers=2)
    meta = r"teacher's weights are on the meta device \(\d+ of them, the first 'bert\.embeddings\.word_embeddings\."
    with pytest.raises(ValueError, match=meta + r"weight.\).* from_pretrained"):
        make_trainer(tmp_path, tiny.classifier(layers=1), teacher, tiny.class_rows(4))


@pytest.mark.parametrize("nan_filter", [True, False])
def test_logged_loss_terms_follow_the_nan_inf_filter(tmp_path, nan_filter):
    # Trainer's logging_nan_inf_filter (on by default) leaves a step whose loss is NaN or inf out of the logged loss,
    # adding the window's average so far instead; the terms summed that step as they were, so loss_kd logged NaN
    # beside a finite loss. They follow the filter: filtered, loss is still their weighted sum; unfiltered, NaN both.
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)

    calls = []

    def nan_on_the_last_step(module, args, outputs):
        calls.append(1)
        if len(calls) == 4:
            outputs.logits = torch.full_like(outputs.logits, float("nan"))
        return outputs

    teacher.register_forward_hook(nan_on_the_last_step)
    trainer = make_trainer(tmp_path, tiny.classifier(layers=1, seed=1, initializer_range=0.5), teacher,
                           tiny.class_rows(16), logging_steps=4, max_steps=4, alpha_kd=0.3, alpha_task=0.7,
                           logging_nan_inf_filter=nan_filter)  # fmt: skip
    trainer.train()
    (entry,) = [entry for entry in trainer.state.log_history if "loss" in entry]
    if nan_filter:
        assert math.isfinite(entry["loss"]) and math.isfinite(entry["loss_kd"]) and math.isfinite(entry["loss_task"])
        assert entry["loss"] == pytest.approx(0.3 * entry["loss_kd"] + 0.7 * entry["loss_task"], rel=1e-4)
    else:
        assert math.isnan(entry["loss"]) and math.isnan(entry["loss_kd"])


def test_the_teachers_own_input_columns_reach_the_batch_a_student_without_them_gets(tmp_path):
    # a DistilBERT student takes no token_type_ids: Trainer's unused-column removal, by the student's forward alone,
    # dropped them, and a BERT teacher read sentence pairs as one segment (the tests' collator drops them anyway)
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, default_data_collator

    torch.manual_seed(1)
    student = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=tiny.VOCAB_SIZE, dim=32, hidden_dim=37, n_layers=1, n_heads=2, max_position_embeddings=64,
        num_labels=3, pad_token_id=0))  # fmt: skip
    rows = tiny.ListDataset([{"input_ids": [5, 6, 7, 8], "token_type_ids": [0, 0, 1, 1], "labels": 1}] * 4)
    trainer = DistillationTrainer(model=student, teacher_model=tiny.classifier(layers=2, seed=0),
                                  args=make_args(tmp_path), train_dataset=rows,
                                  data_collator=default_data_collator)  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(batch) == ["input_ids", "labels", "token_type_ids"]
