"""Building `DistillationTrainer`s on tiny models for the tests."""

from __future__ import annotations

import tiny
import torch

from hf_distill import DistillationTrainer, DistillationTrainingArguments

# Settings under which gradient accumulation and multi-rank runs must match one large batch exactly: plain SGD
# (Adam is nearly scale-invariant and would hide a loss scaled N times too large), a constant learning rate, no
# clipping, and both loss terms on.
EXACT_UPDATES = dict(
    optim="sgd",
    learning_rate=0.2,
    lr_scheduler_type="constant",
    max_grad_norm=0.0,
    temperature=3.0,
    alpha_kd=0.6,
    alpha_task=0.4,
)


def make_args(tmp_path, **overrides) -> DistillationTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        num_train_epochs=1,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    values.update(overrides)
    return DistillationTrainingArguments(**values)


def make_trainer(tmp_path, student, teacher, train, eval_dataset=None, **overrides) -> DistillationTrainer:
    return DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, **overrides),
        train_dataset=train,
        eval_dataset=eval_dataset,
        data_collator=tiny.collate,
    )


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
