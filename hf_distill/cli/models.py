"""The scripts' model step: loading teacher and student (always with explicit dtypes) and checking them before
any training, fine-tuning the teacher on the task, building the student from it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hf_distill.students import build_student, check_buildable, select_layers, validate_layers
from hf_distill.trainer import LabelsTrainer
from hf_distill.trainer.compatibility import (
    check_distillable,
    check_hidden_sizes,
    check_intermediate,
    check_intermediate_for_built_student,
    check_tokenizers,
    check_vocabulary_fits,
    config_label_names,
)

from .checks import EVALUATION_SCHEDULES, check_sequence_length, check_teacher_head
from .paths import TEACHER_RECORD

__all__ = [
    "ScriptModels",
    "finetune_teacher",
    "hub_kwargs",
    "load_models",
    "load_student",
    "load_teacher",
    "loaded_whole",
    "ready_models",
    "student_layers",
]

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


def load_teacher(model_args, training_args, num_labels: int, label_names, *, outside_trainer: bool = False):
    # Fine-tuning needs fp32 master weights, and a student built from the teacher would start from bf16-rounded
    # weights: both load it in float32 (ready_models casts it to bf16 after). A teacher only run is loaded in the
    # dtype it runs in.
    fp32 = model_args.finetune_teacher or not model_args.student_model_name_or_path
    dtype = torch.bfloat16 if training_args.bf16 and not fp32 else torch.float32
    # a head refit on the task may have another size than the checkpoint's (a teacher fine-tuned on other labels)
    kwargs = {}
    if model_args.finetune_teacher:
        kwargs = {**_label_kwargs(num_labels, label_names), "ignore_mismatched_sizes": True}
    # A student built from a teacher that is not fine-tuned first is copied from its weights: whole, not ZeRO-3's
    # partitions (a refit teacher is read back whole after its fine-tune, in finetune_teacher). So is a teacher run
    # outside DistillationTrainer's engine (`outside_trainer`: pseudo-labels, the baselines' evaluation, the recipe's
    # training), which would call empty partitions: only the trainer's ZeRO-3 engine gathers them.
    whole = not model_args.student_model_name_or_path or outside_trainer
    with loaded_whole(not model_args.finetune_teacher and whole):
        teacher = AutoModelForSequenceClassification.from_pretrained(
            model_args.teacher_model_name_or_path, dtype=dtype, **kwargs, **hub_kwargs(model_args)
        )
    if not model_args.finetune_teacher and label_names is not None:
        teacher.config.id2label = dict(enumerate(label_names))
        teacher.config.label2id = {name: index for index, name in enumerate(label_names)}
    return teacher


@contextlib.contextmanager
def loaded_whole(whole: bool = True) -> Iterator[None]:
    """A context in which `from_pretrained` loads a model whole when `whole` and DeepSpeed ZeRO-3 is on (whose
    zero.Init would leave each process an empty partition of every weight); else nothing.

    transformers starts zero.Init whenever its DeepSpeed config says stage 3, and accelerate's
    `zero3_init_context_manager(enable=False)` leaves that config in place (transformers 5.25, accelerate 1.16):
    the config is taken away for the load and put back after."""
    from transformers.integrations import deepspeed as hf_deepspeed

    if not whole or not hf_deepspeed.is_deepspeed_zero3_enabled():
        yield
        return
    reference = hf_deepspeed._hf_deepspeed_config_weak_ref  # no public getter; restored through the public setter
    config = reference() if reference is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_deepspeed.set_hf_deepspeed_config(config)


def load_student(model_args, num_labels: int, label_names):
    config = AutoConfig.from_pretrained(model_args.student_model_name_or_path, **hub_kwargs(model_args))
    is_classifier = any(name.endswith("ForSequenceClassification") for name in config.architectures or [])
    if is_classifier and config.num_labels != num_labels:
        raise ValueError(
            f"The student {model_args.student_model_name_or_path!r} has num_labels={config.num_labels} but the task "
            f"has {num_labels}. Give a student without a classification head, or one with {num_labels} labels."
        )
    # Always fp32: transformers 5 loads a checkpoint's own dtype, and an fp16 student trains badly (no master weights).
    return AutoModelForSequenceClassification.from_pretrained(
        model_args.student_model_name_or_path,
        dtype=torch.float32,
        **_label_kwargs(num_labels, label_names),
        **hub_kwargs(model_args),
    )


def finetune_teacher(teacher, tokenizer, train_dataset, collator, model_args, training_args):
    """Fine-tunes a pretrained teacher on the task (`LabelsTrainer`) and saves it under <output_dir>/teacher."""
    teacher_dir = Path(training_args.output_dir) / "teacher"
    schedule = {}
    if training_args.lr_scheduler_type in EVALUATION_SCHEDULES:
        # They step on evaluations, and the fine-tune has no eval set (transformers refuses them without one).
        logger.info("The teacher's fine-tune evaluates nothing, so it decays its learning rate linearly instead of "
                    "with %s (the student's schedule).", training_args.lr_scheduler_type.value)  # fmt: skip
        schedule = {"lr_scheduler_type": "linear", "lr_scheduler_kwargs": {}}
    args = dataclasses.replace(
        training_args,
        **schedule,
        output_dir=str(teacher_dir),
        num_train_epochs=model_args.teacher_num_train_epochs,
        learning_rate=model_args.teacher_learning_rate,
        eval_strategy="no",
        eval_on_start=False,  # there is no eval set: transformers would fail as the fine-tune starts
        save_strategy="no",
        load_best_model_at_end=False,
        report_to="none",
        max_steps=-1,
    )
    logger.info("Fine-tuning the teacher on the task for %s epochs", args.num_train_epochs)
    teacher_class = type(teacher)  # before training: FSDP2 swaps the class of a module it shards, in place
    trainer = LabelsTrainer(
        model=teacher, args=args, train_dataset=train_dataset, data_collator=collator, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    if trainer.is_world_process_zero():  # what a later run reading this folder as its teacher names on its card
        record = {"teacher": model_args.teacher_card_name, "hub_id": model_args.teacher_hub_id}
        (teacher_dir / TEACHER_RECORD).write_text(json.dumps(record) + "\n")
    if not is_sharded(trainer.model):
        return trainer.model
    # Under FSDP the trained teacher's parameters are DTensor shards (ZeRO-3: empty partitions), which build_student
    # cannot copy (seen on a GPU: "aten.copy_.default got mixed torch.Tensor and DTensor"): the student is built
    # from, and distilled by, the saved teacher read back whole.
    trainer.accelerator.wait_for_everyone()  # every rank reads what the main process wrote
    if not any(teacher_dir.glob("*.safetensors")) and not any(teacher_dir.glob("*.bin")):
        raise ValueError(
            f"The fine-tuned teacher is sharded, and {teacher_dir} holds no full weights to read it back from: with "
            "FSDP set fsdp_state_dict_type: FULL_STATE_DICT, with DeepSpeed ZeRO-3 zero3_save_16bit_model: true "
            "(the configs in configs/accelerate do), or fine-tune the teacher beforehand and pass it as the teacher."
        )
    with loaded_whole():  # else from_pretrained partitions it again under ZeRO-3
        return teacher_class.from_pretrained(
            teacher_dir, dtype=torch.float32, trust_remote_code=model_args.trust_remote_code
        )


def is_sharded(model) -> bool:
    """True when some parameter of `model` is only a shard: an FSDP2 DTensor, or a DeepSpeed ZeRO-3 partition."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without distributed support shards nothing
        DTensor = ()  # noqa: N806
    return any(isinstance(parameter, DTensor) or hasattr(parameter, "ds_id") for parameter in model.parameters())


@dataclasses.dataclass
class ScriptModels:
    """The teacher, its tokenizer and, when one was given, the student, loaded and checked before any training.

    `layers` are the teacher layers a built student starts from (None: `build_student`'s default, or a given
    student).
    """

    teacher: Any
    tokenizer: Any
    student: Any
    layers: list[int] | None


def student_layers(model_args, depth: int) -> list[int] | None:
    """The teacher layers a built student starts from (`--student_num_layers` or `--student_layers`), checked against
    the teacher's `depth`; None for a given student."""
    if model_args.student_num_layers is not None:
        if model_args.student_num_layers > depth:
            raise ValueError(
                f"--student_num_layers {model_args.student_num_layers} is more than the teacher's {depth} layers: a "
                f"student initialised from the teacher has at most {depth}. Pass e.g. --student_num_layers "
                f"{max(depth // 2, 1)}."
            )
        return select_layers(depth, model_args.student_num_layers)
    if model_args.student_layers is not None:
        return validate_layers(model_args.student_layers, depth)
    return None


def teacher_label_names(model_args) -> list[str] | None:
    """The label names of a teacher used as it is (no --finetune_teacher), in its id order; None when it names them
    LABEL_i or has none. Your own files' string labels take this order where they are these names."""
    if model_args.finetune_teacher:
        return None
    return config_label_names(
        AutoConfig.from_pretrained(model_args.teacher_model_name_or_path, **hub_kwargs(model_args))
    )


def check_token_types(tokenizer, config, role: str) -> None:
    """Refuses a model whose token-type table is smaller than the types the tokenizer gives a sentence pair (a
    RoBERTa-style model with type_vocab_size 1 under a BERT tokenizer's 0/1 types): an IndexError at the first step."""
    size = getattr(config, "type_vocab_size", None)
    if not size:  # no token types (DistilBERT), or DeBERTa-v2's 0: the ids are not read
        return
    types = tokenizer("a", "b").get("token_type_ids") or [0]
    if max(types) >= size:
        raise ValueError(
            f"The tokenizer gives a sentence pair's second text token type {max(types)}, but the {role}'s token-type "
            f"table holds {size} (type_vocab_size={size}): it would index past it at the first step. Give a {role} "
            f"made for this tokenizer (type_vocab_size {max(types) + 1} or more), or a tokenizer made for the {role}."
        )


def pad_on_the_right(tokenizer) -> None:
    """Sets an encoder's tokenizer to pad on the right: padded on the left, a BERT-like encoder reads each row's
    tokens at positions shifted by its padding (absolute position ids count from the row's first slot), so the
    teacher's soft targets and both models' scores were of inputs neither was trained on. Said when it changes."""
    side = getattr(tokenizer, "padding_side", "right")
    if side != "right":
        logger.warning(
            "The tokenizer pads on the %s; an encoder's absolute positions would then shift with each row's padding: "
            "padding on the right (saved so with the student).",
            side,
        )
        tokenizer.padding_side = "right"


def load_models(
    model_args,
    training_args,
    num_labels: int,
    label_names,
    *,
    max_seq_length: int,
    student_training: str = "distill",
    text_pairs: bool = False,
) -> ScriptModels:
    """Loads and checks teacher, tokenizer and any given student; every mismatch is refused here, before training."""
    # Seed before loading: a fine-tuned teacher's (or a Hub student's) new head is initialised here, long before
    # the first Trainer seeds; unseeded, a rerun with the same --seed refits a different teacher.
    transformers.set_seed(training_args.seed)
    teacher_config = AutoConfig.from_pretrained(model_args.teacher_model_name_or_path, **hub_kwargs(model_args))
    check_teacher_head(teacher_config, num_labels, model_args, label_names)
    check_sequence_length(max_seq_length, teacher_config, "teacher")
    layers = student_layers(model_args, teacher_config.num_hidden_layers)
    tokenizer = AutoTokenizer.from_pretrained(model_args.teacher_model_name_or_path, **hub_kwargs(model_args))
    check_vocabulary_fits(tokenizer, teacher_config)
    pad_on_the_right(tokenizer)
    if text_pairs:  # (a built student keeps the teacher's table)
        check_token_types(tokenizer, teacher_config, "teacher")
    # any training but distill runs the teacher outside DistillationTrainer (pseudo-labels, evaluation, the recipe)
    outside = student_training != "distill"
    teacher = load_teacher(model_args, training_args, num_labels, label_names, outside_trainer=outside)
    student = None
    if model_args.student_model_name_or_path:
        student = load_student(model_args, num_labels, label_names)
        check_sequence_length(max_seq_length, student.config, "student")
        check_distillable(student, teacher)
        if training_args.alpha_cos > 0:  # refused now, not after a teacher fine-tune
            check_hidden_sizes(student, teacher)
        check_intermediate(student, teacher, training_args)
        student_tokenizer = AutoTokenizer.from_pretrained(
            model_args.student_model_name_or_path, **hub_kwargs(model_args)
        )
        check_vocabulary_fits(student_tokenizer, student.config, who="student")  # a folder without tokenizer files
        check_tokenizers(student_tokenizer, tokenizer)
        if text_pairs:
            check_token_types(tokenizer, student.config, "student")
    else:  # refused now, not after a teacher fine-tune
        check_buildable(teacher, model_args.student_architecture)
        check_intermediate_for_built_student(layers, teacher, training_args)
    return ScriptModels(teacher=teacher, tokenizer=tokenizer, student=student, layers=layers)


def ready_models(models: ScriptModels, train_dataset, collator, model_args, training_args) -> ScriptModels:
    """Fine-tunes the teacher when asked, builds the student from it when none was given, and stores a bf16 teacher
    in the dtype it runs in. Returns the models to distil."""
    teacher, student = models.teacher, models.student
    if model_args.finetune_teacher:
        teacher = finetune_teacher(teacher, models.tokenizer, train_dataset, collator, model_args, training_args)
    if student is None:  # from the float32 teacher load_teacher loaded (.float() is then a no-op), before any cast
        student = build_student(teacher.float(), layers=models.layers, architecture=model_args.student_architecture)
        student.config.id2label, student.config.label2id = teacher.config.id2label, teacher.config.label2id
        student.config.problem_type = teacher.config.problem_type
    if training_args.bf16:
        teacher = teacher.to(torch.bfloat16)  # stored in the dtype it runs in (docs/benchmarks.md: speed)
    return dataclasses.replace(models, teacher=teacher, student=student)
