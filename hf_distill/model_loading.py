"""Loading the script's teacher and student (always with explicit dtypes) and fine-tuning the teacher on the task."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, Trainer

__all__ = ["finetune_teacher", "hub_kwargs", "load_student", "load_teacher"]

logger = logging.getLogger(__name__)


def hub_kwargs(model_args) -> dict:
    """from_pretrained's Hub arguments; remote code only when the user passed --trust_remote_code."""
    return {
        "trust_remote_code": model_args.trust_remote_code,
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
    }


def _label_kwargs(num_labels: int, label_names: list[str] | None) -> dict:
    if label_names is None:
        return {"num_labels": 1, "problem_type": "regression"}
    return {
        "num_labels": num_labels,
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: index for index, name in enumerate(label_names)},
    }


def load_teacher(model_args, training_args, num_labels: int, label_names):
    # Fine-tuning needs fp32 master weights; a teacher only run is loaded in the dtype it runs in.
    dtype = torch.bfloat16 if training_args.bf16 and not model_args.finetune_teacher else torch.float32
    kwargs = _label_kwargs(num_labels, label_names) if model_args.finetune_teacher else {}
    teacher = AutoModelForSequenceClassification.from_pretrained(
        model_args.teacher_model_name_or_path, dtype=dtype, **kwargs, **hub_kwargs(model_args)
    )
    if not model_args.finetune_teacher and label_names is not None:
        teacher.config.id2label = dict(enumerate(label_names))
        teacher.config.label2id = {name: index for index, name in enumerate(label_names)}
    return teacher


def load_student(model_args, num_labels: int, label_names):
    config = AutoConfig.from_pretrained(model_args.student_model_name_or_path, **hub_kwargs(model_args))
    is_classifier = any(name.endswith("ForSequenceClassification") for name in config.architectures or [])
    if is_classifier and config.num_labels != num_labels:
        raise ValueError(
            f"The student {model_args.student_model_name_or_path!r} has num_labels={config.num_labels} but the task "
            f"has {num_labels}. Give a student without a classification head, or one with {num_labels} labels."
        )
    # Always fp32: transformers 5 loads a checkpoint's own dtype, and an fp16 student trains badly (REFERENCES.md).
    return AutoModelForSequenceClassification.from_pretrained(
        model_args.student_model_name_or_path,
        dtype=torch.float32,
        **_label_kwargs(num_labels, label_names),
        **hub_kwargs(model_args),
    )


def finetune_teacher(teacher, tokenizer, train_dataset, collator, model_args, training_args):
    """Fine-tunes a pretrained teacher on the task (plain Trainer) and saves it under <output_dir>/teacher."""
    teacher_dir = Path(training_args.output_dir) / "teacher"
    args = dataclasses.replace(
        training_args,
        output_dir=str(teacher_dir),
        num_train_epochs=model_args.teacher_num_train_epochs,
        learning_rate=model_args.teacher_learning_rate,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        report_to="none",
        max_steps=-1,
    )
    logger.info("Fine-tuning the teacher on the task for %s epochs", args.num_train_epochs)
    trainer = Trainer(
        model=teacher, args=args, train_dataset=train_dataset, data_collator=collator, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    return trainer.model
