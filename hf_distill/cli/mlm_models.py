"""`scripts/distill_mlm.py`'s model step: a masked-LM teacher and its tokenizer, a student built from it or given,
checked before any training."""

from __future__ import annotations

import dataclasses

import torch
import transformers
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

from hf_distill.students import build_student, select_layers
from hf_distill.trainer.compatibility import (
    check_distillable,
    check_hidden_sizes,
    check_intermediate,
    check_intermediate_for_built_student,
    check_tokenizers,
)

from .checks import check_sequence_length
from .models import ScriptModels, finetune_teacher, hub_kwargs, student_layers

__all__ = ["load_mlm_models", "ready_mlm_models"]


def _has_mlm_head(config) -> bool:
    return any(name.endswith("ForMaskedLM") for name in (config.architectures or []))


def load_mlm_models(model_args, training_args, *, max_seq_length: int) -> ScriptModels:
    """Loads and checks the teacher (a `*ForMaskedLM`, or any BERT with `--finetune_teacher`), its tokenizer and any
    given student; every mismatch is refused here."""
    transformers.set_seed(training_args.seed)  # a new MLM head is initialised here: seed first
    name = model_args.teacher_model_name_or_path
    config = AutoConfig.from_pretrained(name, **hub_kwargs(model_args))
    if not _has_mlm_head(config) and not model_args.finetune_teacher:
        raise ValueError(
            f"The teacher {model_args.teacher_display_name!r} has no masked-LM head (architectures="
            f"{config.architectures}): its predictions would be random. Give a *ForMaskedLM teacher such as "
            "bert-base-uncased, or pass --finetune_teacher to train a new head on the corpus first."
        )
    check_sequence_length(max_seq_length, config, "teacher")
    tokenizer = AutoTokenizer.from_pretrained(name, **hub_kwargs(model_args))
    if tokenizer.mask_token is None:
        raise ValueError(
            f"The teacher's tokenizer ({type(tokenizer).__name__}) has no mask token, so nothing can be masked. Give "
            "a masked-LM teacher whose tokenizer has one ([MASK])."
        )
    layers = student_layers(model_args, config.num_hidden_layers)
    dtype = torch.bfloat16 if training_args.bf16 and not model_args.finetune_teacher else torch.float32
    teacher = AutoModelForMaskedLM.from_pretrained(name, dtype=dtype, **hub_kwargs(model_args))
    student = None
    if model_args.student_model_name_or_path:
        student = AutoModelForMaskedLM.from_pretrained(
            model_args.student_model_name_or_path, dtype=torch.float32, **hub_kwargs(model_args)
        )
        check_distillable(student, teacher)  # vocabulary sizes, head types
        if training_args.alpha_cos > 0:
            check_hidden_sizes(student, teacher)
        check_sequence_length(max_seq_length, student.config, "student")
        student_tokenizer = AutoTokenizer.from_pretrained(
            model_args.student_model_name_or_path, **hub_kwargs(model_args)
        )
        check_tokenizers(student_tokenizer, tokenizer)
        check_intermediate(student, teacher, training_args)
    else:  # refused now, not after a teacher fine-tune (the student built then: ready_mlm_models' layers)
        planned = layers or select_layers(config.num_hidden_layers, 1)
        check_intermediate_for_built_student(planned, teacher, training_args)
    return ScriptModels(teacher=teacher, tokenizer=tokenizer, student=student, layers=layers)


def ready_mlm_models(models: ScriptModels, train_dataset, collator, model_args, training_args) -> ScriptModels:
    """Trains the teacher's new MLM head when asked, builds the student from the teacher when none was given."""
    teacher, student = models.teacher, models.student
    if model_args.finetune_teacher:
        teacher = finetune_teacher(teacher, models.tokenizer, train_dataset, collator, model_args, training_args)
    if student is None:
        layers = models.layers or select_layers(teacher.config.num_hidden_layers, 1)
        student = build_student(teacher.float(), layers=layers, architecture=model_args.student_architecture)
    if training_args.bf16:
        teacher = teacher.to(torch.bfloat16)
    return dataclasses.replace(models, teacher=teacher, student=student)
