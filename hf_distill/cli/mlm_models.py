"""`scripts/distill_mlm.py`'s model step: a masked-LM teacher and its tokenizer, a student built from it or given,
checked before any training."""

from __future__ import annotations

import dataclasses
import logging

import torch
import transformers
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, BertModel

from hf_distill.publish.model_card import public_name
from hf_distill.students import build_student, check_buildable, select_layers
from hf_distill.tasks.positions import usable_positions
from hf_distill.trainer.compatibility import (
    check_distillable,
    check_hidden_sizes,
    check_intermediate,
    check_intermediate_for_built_student,
    check_tokenizers,
    check_vocabulary_fits,
)

from .checks import check_sequence_length
from .models import ScriptModels, finetune_teacher, hub_kwargs, loaded_whole, pad_on_the_right, student_layers

__all__ = ["load_mlm_models", "ready_mlm_models"]

logger = logging.getLogger(__name__)


def _missing_head_weights(teacher, loading_info: dict) -> list[str]:
    """The masked-LM head's weights the checkpoint did not hold (initialised at random by from_pretrained): every
    missing key outside the encoder. Decided from the weights, not from `config.architectures`: a BertForPreTraining
    checkpoint holds the whole head, and a config may name a head its weights lack."""
    encoder = f"{teacher.base_model_prefix}."
    return sorted(key for key in loading_info["missing_keys"] if not key.startswith(encoder))


def load_mlm_models(model_args, training_args, *, max_seq_length: int) -> ScriptModels:
    """Loads and checks the teacher (a checkpoint holding a masked-LM head, or any BERT with `--finetune_teacher`),
    its tokenizer and any given student; every mismatch is refused here."""
    transformers.set_seed(training_args.seed)  # a new MLM head is initialised here: seed first
    name = model_args.teacher_model_name_or_path
    config = AutoConfig.from_pretrained(name, **hub_kwargs(model_args))
    check_bidirectional(config, model_args.teacher_display_name)
    check_sequence_length(max_seq_length, config, "teacher")
    tokenizer = AutoTokenizer.from_pretrained(name, **hub_kwargs(model_args))
    if tokenizer.mask_token is None:
        raise ValueError(
            f"The teacher's tokenizer ({type(tokenizer).__name__}) has no mask token, so nothing can be masked. Give "
            "a masked-LM teacher whose tokenizer has one ([MASK])."
        )
    check_vocabulary_fits(tokenizer, config)
    pad_on_the_right(tokenizer)  # --line_by_line pads its rows
    layers = student_layers(model_args, config.num_hidden_layers)
    # float32 when the teacher is fine-tuned (master weights) or the student is built from it: a student copied from
    # a bf16 teacher would start from rounded weights. ready_mlm_models casts the teacher to bf16 afterwards.
    built = model_args.student_model_name_or_path is None
    dtype = torch.bfloat16 if training_args.bf16 and not model_args.finetune_teacher and not built else torch.float32
    with loaded_whole(built and not model_args.finetune_teacher):  # the student copies its weights
        teacher, loading_info = AutoModelForMaskedLM.from_pretrained(
            name, dtype=dtype, output_loading_info=True, **hub_kwargs(model_args)
        )
    missing = _missing_head_weights(teacher, loading_info)
    if missing and not model_args.finetune_teacher:
        raise ValueError(
            f"The teacher {model_args.teacher_display_name!r} has no masked-LM head ({len(missing)} of its weights "
            f"are not in the checkpoint, e.g. {missing[0]}; architectures={config.architectures}): its predictions "
            "would be random. Give a *ForMaskedLM (or *ForPreTraining) teacher such as bert-base-uncased, or pass "
            "--finetune_teacher to train a new head on the corpus first."
        )
    if built and not isinstance(getattr(teacher, "base_model", None), BertModel):
        # build_student copies BERT layers only: refused now, not after a teacher fine-tune
        raise ValueError(
            f"The teacher {model_args.teacher_display_name!r} is a {type(teacher).__name__} (model_type "
            f"{config.model_type!r}): a student is built from a BERT teacher's layers only. Give a BERT teacher, or "
            "a ready student of the teacher's vocabulary with --student_model_name_or_path."
        )
    if built:  # and one DistilBERT can hold, when asked for: refused now, not after a teacher fine-tune
        check_buildable(teacher, model_args.student_architecture)
    student = None
    if model_args.student_model_name_or_path:
        student = AutoModelForMaskedLM.from_pretrained(
            model_args.student_model_name_or_path, dtype=torch.float32, **hub_kwargs(model_args)
        )
        check_bidirectional(student.config, model_args.student_model_name_or_path)
        check_distillable(student, teacher)  # vocabulary sizes, head types
        if training_args.alpha_cos > 0:
            check_hidden_sizes(student, teacher)
        check_sequence_length(max_seq_length, student.config, "student")
        student_tokenizer = AutoTokenizer.from_pretrained(
            model_args.student_model_name_or_path, **hub_kwargs(model_args)
        )
        check_vocabulary_fits(student_tokenizer, student.config, who="student")  # a folder without tokenizer files
        check_tokenizers(student_tokenizer, tokenizer)
        check_intermediate(student, teacher, training_args)
    else:  # refused now, not after a teacher fine-tune (the student built then: ready_mlm_models' layers)
        planned = layers or select_layers(config.num_hidden_layers, 1)
        check_intermediate_for_built_student(planned, teacher, training_args)
    return ScriptModels(teacher=teacher, tokenizer=tokenizer, student=student, layers=layers)


def check_bidirectional(config, name: str) -> None:
    """A BERT configured as a decoder (a BertLMHeadModel checkpoint) loads as a masked LM whose predictions at a
    [MASK] see only the tokens before it; a student built from it would be causal too."""
    for flag in ("is_decoder", "add_cross_attention"):
        if getattr(config, flag, False):
            raise ValueError(
                f"The model {public_name(str(name))!r} is configured with {flag}=True (a causal decoder): its "
                "masked-token predictions would see only the left context. Give a masked-LM checkpoint, or set "
                f"{flag} to false in its config.json."
            )


def fitting_multiple(multiple: int | None, max_seq_length: int, models: ScriptModels) -> int | None:
    """The training collator's pad_to_multiple_of (8 under fp16/bf16), or None where a full block rounded up to it
    would run past a model's position table (a raw index error at some step)."""
    if not multiple:
        return multiple
    tables = [usable_positions(m.config) for m in (models.teacher, models.student) if m is not None]
    rounded = -(-max_seq_length // multiple) * multiple
    if all(t is None or rounded <= t for t in tables):
        return multiple
    logger.info(
        "Training batches are not padded to a multiple of %d: a %d-token block would become %d, past the position "
        "table (%s).",
        multiple,
        max_seq_length,
        rounded,
        min(t for t in tables if t is not None),
    )
    return None


# Apart by more than any DataLoader's worker count: the collator seeds each worker with its seed + the worker's id.
_RANK_SEED_STRIDE = 10_000


def rank_mask_seed(training_args) -> int | None:
    """The training masking collator's own seed under several processes, one per rank (None on one process, which
    masks from the global RNG as before).

    Trainer seeds every rank alike and the collator drew its masks from the global RNG, so every rank masked the same
    positions at every step. Reseeding the global RNG per rank instead would split the ranks' samplers (each shard
    taken from another shuffle: rows seen twice, others never). A resumed run's masks then differ from an uninterrupted
    run's: Trainer checkpoints the global RNG states, not the collator's generator."""
    if training_args.world_size <= 1:
        return None
    return training_args.seed + _RANK_SEED_STRIDE * (training_args.process_index + 1)


def ready_mlm_models(models: ScriptModels, train_dataset, collator, model_args, training_args) -> ScriptModels:
    """Trains the teacher's new MLM head when asked, builds the student from the teacher when none was given."""
    teacher, student = models.teacher, models.student
    if model_args.finetune_teacher:
        teacher = finetune_teacher(teacher, models.tokenizer, train_dataset, collator, model_args, training_args)
    if student is None:
        # load_mlm_models loaded this teacher in float32 (.float() is then a no-op): the student starts from its
        # exact weights, and only then is the teacher cast to bf16
        layers = models.layers or select_layers(teacher.config.num_hidden_layers, 1)
        student = build_student(teacher.float(), layers=layers, architecture=model_args.student_architecture)
    if training_args.bf16:
        teacher = teacher.to(torch.bfloat16)
    return dataclasses.replace(models, teacher=teacher, student=student)
