"""What a run's checkpoints were trained with, kept in each of them (`hf_distill_run.json`), so that
`--resume_from_checkpoint` continues that run and not another: a resume with another task, teacher, student shape
or learning rate trained on without a word, and its card described the new settings only.

The record holds the settings that decide what the student learns, as the command gave them (before a search
replaced any); speed and memory knobs (batch sizes for evaluation, the teacher cache's place, chunking) and where
outputs go may change. A local path is kept as a digest of where it resolves, never as a machine path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_distill.trainer.arguments import distillation_settings

from .paths import PATH_OPTIONS

__all__ = ["RUN_RECORD", "RunRecordCallback", "check_resumed_settings", "given_paths", "run_settings"]

logger = logging.getLogger(__name__)

RUN_RECORD = "hf_distill_run.json"

# Script options that change nothing the student learns from: where models are cached, what is scored or exported
# after training, how a file is decoded (a wrong encoding is refused anyway), whether an output folder is replaced.
_FREE_OPTIONS = frozenset(
    {"cache_dir", "trust_remote_code", "max_eval_samples", "export", "hp_search_only", "overwrite_output_dir",
     "eval_mask_seed", "file_encoding"}
)  # fmt: skip
# Distillation settings that change speed or memory only: the same loss either way.
_FREE_DISTILLATION = frozenset(
    {"teacher_cache_dir", "teacher_cache_batch_size", "cache_teacher_logits", "token_kd_gather_positions",
     "token_kd_chunk_size"}
)  # fmt: skip
# TrainingArguments that decide the optimisation the checkpoint is part of (its length may grow: Trainer resumes a
# run given more epochs or steps; the batch is compared whole, so fewer processes with more accumulation resume).
_TRAINING = (
    "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim",
    "lr_scheduler_type", "warmup_steps", "seed", "data_seed", "label_smoothing_factor", "fp16", "bf16",
)  # fmt: skip
# The teacher a --finetune_teacher run saved in <output_dir>/teacher, reused to resume it (what the refusal of a
# refit says to pass): the same teacher as the base and the fine-tune that made it.
_TEACHER_FIT = ("teacher_model_name_or_path", "finetune_teacher", "teacher_num_train_epochs", "teacher_learning_rate")


def run_settings(model_args: Any, data_args: Any, training_args: Any) -> dict[str, Any]:
    """The settings `RUN_RECORD` keeps: JSON values, a local path as `{"resolves_to": digest}`."""
    settings: dict[str, Any] = {}
    for arguments in (model_args, data_args):
        for field in dataclasses.fields(arguments):
            if field.init and field.name not in _FREE_OPTIONS:
                settings[field.name] = getattr(arguments, field.name)
    for name, value in distillation_settings(training_args).items():
        if name not in _FREE_DISTILLATION:
            settings[name] = value
    for name in _TRAINING:
        settings[name] = getattr(training_args, name, None)
    per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    settings["total_train_batch_size"] = per_step * training_args.world_size
    for name in PATH_OPTIONS & settings.keys():
        settings[name] = _identity(settings[name])
    return json.loads(json.dumps(settings, default=str))  # enums, paths: as text, as they are compared


def given_paths(model_args: Any, data_args: Any) -> dict[str, Any]:
    """The path options as given, for messages (the record keeps digests)."""
    arguments = (model_args, data_args)
    return {name: getattr(args, name) for args in arguments for name in PATH_OPTIONS if hasattr(args, name)}


def _identity(value: Any) -> Any:
    """A local path as a digest of where it resolves (a path given relatively, or another spelling of it, is the same
    place; no machine path is written); anything else (a Hub id, None) as it is."""
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    if not path.exists():
        return value
    return {"resolves_to": hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}


def _shown(value: Any) -> str:
    return "a local path" if isinstance(value, dict) and "resolves_to" in value else repr(value)


def _moved(recorded: Any, now: Any) -> bool:
    """Both local paths, resolving to other places: perhaps the same files moved (another mount, checkout or
    environment), which a digest of the place cannot tell from other files."""
    return all(isinstance(value, dict) and "resolves_to" in value for value in (recorded, now))


def check_resumed_settings(
    checkpoint: Any, settings: dict[str, Any], output_dir: Path, now_given: dict[str, Any] | None = None
) -> None:
    """Refuses a resume whose settings differ from those the checkpoint was trained with, naming each, before any
    data or model loads; a local path that resolves elsewhere is said, not refused (`now_given`: the path options as
    given now, named in that warning). A checkpoint without a record (an older hf-distill's, a plain Trainer's) is
    said and resumed."""
    if not checkpoint or isinstance(checkpoint, bool):
        return
    now_given = now_given or {}  # the path options as given now, for the message
    record = Path(checkpoint) / RUN_RECORD
    if not record.is_file():
        logger.warning(
            "%s holds no %s (written by hf-distill since its resume checks): the settings it was trained with cannot "
            "be compared with this run's; make sure they are the same.",
            checkpoint,
            RUN_RECORD,
        )
        return
    recorded = json.loads(record.read_text())
    for name in PATH_OPTIONS & recorded.keys():
        if isinstance(recorded[name], str) and isinstance(settings.get(name), dict):
            # a path option an older record kept as text (distill_mlm's --dataset_name before 2026-12-07): compared
            # by where it resolves, as it is recorded now
            recorded[name] = _identity(recorded[name])
    compared = dict(settings)
    if recorded.get("finetune_teacher") and not compared.get("finetune_teacher"):
        saved_teacher = _identity(output_dir / "teacher")
        if compared.get("teacher_model_name_or_path") == saved_teacher:  # the run's own fine-tuned teacher, reused
            for name in _TEACHER_FIT:
                compared[name] = recorded.get(name)
    names = sorted(recorded.keys() | compared.keys())
    differing = [name for name in names if recorded.get(name) != compared.get(name)]
    moved = [name for name in differing if _moved(recorded.get(name), compared.get(name))]
    if moved:
        logger.warning(
            "%s was trained with %s at another place than now (%s): resumed as the same files moved; if they are "
            "other files, stop and pass those it was trained with.",
            checkpoint,
            ", ".join(moved),
            ", ".join(f"{name} {now_given.get(name)}" for name in moved),
        )
    differing = [name for name in differing if name not in moved]
    if differing:
        shown = "; ".join(
            f"{name}: {_shown(recorded.get(name))} then, {_shown(compared.get(name))} now" for name in differing
        )
        raise ValueError(
            f"--resume_from_checkpoint {checkpoint} was trained with other settings than this run's ({shown}): "
            "resumed, the student would continue another run's training under this run's card. Pass the settings "
            "it was trained with, drop --resume_from_checkpoint (with --overwrite_output_dir) to start afresh, or "
            f"delete {Path(checkpoint) / RUN_RECORD} to resume with these settings anyway."
        )


class RunRecordCallback(TrainerCallback):
    """Writes the run's settings (`run_settings`) into every checkpoint as it is saved, from the main process."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if folder.is_dir():
            (folder / RUN_RECORD).write_text(json.dumps(self.settings, indent=1, sort_keys=True) + "\n")
