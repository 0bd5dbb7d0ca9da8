"""The scripts' transfer-set step: which rows the teacher labels beyond the labelled ones, built before any training.

The labelled rows are the first `--max_train_samples` of train; the transfer set is, in this order,
`--unlabeled_train_rows` more rows of train with their labels dropped, the rows of `--unlabeled_file`, and
`--augment_copies` augmented copies of each labelled row. The teacher is fine-tuned on the labelled rows only; the
student is distilled on all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_distill.cache.store import LOGITS_COLUMN, build_teacher_cache
from hf_distill.publish.model_card import public_name
from hf_distill.tasks.augment import EMBEDDING_TOP_K, augment_dataset, embedding_neighbours
from hf_distill.tasks.loading import HP_VALIDATION, text_rows
from hf_distill.tasks.transfer import drop_labels, load_unlabeled_file, mix_transfer_rows
from hf_distill.trainer.model_inputs import accepted_inputs, select_inputs

from .models import hub_kwargs, loaded_whole, pad_on_the_right

__all__ = [
    "TransferSet",
    "build_transfer_set",
    "check_mlm_augmenter",
    "check_unlabeled_file",
    "embedding_table",
    "pseudo_label",
    "teacher_logits_in_order",
    "warn_of_evaluation_rows",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TransferSet:
    """The raw (untokenised) transfer rows, and how many came from where."""

    rows: datasets.Dataset | None
    from_train: int = 0  # rows of the training split, labels dropped (--unlabeled_train_rows)
    from_file: int = 0  # rows of --unlabeled_file
    augmented: int = 0

    @property
    def unlabeled(self) -> int:
        return self.from_train + self.from_file

    def describe(self, data_args) -> str:
        """One sentence for the model card on how the transfer set was made."""
        parts = []
        if self.from_train:
            parts.append(f"{self.from_train:,} rows of the task's training split with labels dropped")
        if self.from_file:
            parts.append(f"{self.from_file:,} rows of unlabelled text")
        if self.augmented:
            how = f"--augment {data_args.augment}, p = {data_args.augment_probability}"
            if data_args.augment == "mlm":
                how += f", masked LM `{public_name(data_args.augment_mlm_model)}`"
            if data_args.augment == "embedding":
                how += f", each replaced word one of its {EMBEDDING_TOP_K} nearest in the teacher's word embeddings"
            if data_args.augment_keep_duplicates:
                parts.append(f"{data_args.augment_copies} augmented copies of each labelled row ({how})")
            else:  # the copies identical to their row or to one another were dropped
                parts.append(
                    f"{self.augmented:,} augmented copies of the labelled rows (up to {data_args.augment_copies} per "
                    f"row, those identical to their row or to one another dropped; {how})"
                )
        return "; ".join(parts) if parts else "none"


TRANSFER_TRAININGS = ("distill", "pseudo_labels")  # the --student_training ways that train on the transfer set


def _built(data_args) -> bool:
    """Whether the run trains on a transfer set: labels only and the recipe train on the labelled rows alone."""
    return data_args.student_training in TRANSFER_TRAININGS


def check_mlm_augmenter(data_args, model_args, teacher_tokenizer, device=None):
    """Loads the masked LM of `--augment mlm` and checks it before any training: a mask token, the teacher's
    vocabulary. Returns (model, tokenizer), the model on `device` (the run's, so that a GPU fills in the words), or
    (None, None) without `--augment mlm`, with `--augment_copies 0` (no word to fill in) or when the run trains on
    no transfer set (`--student_training labels_only` or `recipe`)."""
    if data_args.augment != "mlm" or data_args.augment_copies == 0 or not _built(data_args):
        return None, None
    from .checks import check_model_path  # checks imports the CLI's models, which import this module's users

    name = data_args.augment_mlm_model
    check_model_path(name, "--augment_mlm_model")
    tokenizer = AutoTokenizer.from_pretrained(name, **hub_kwargs(model_args))
    pad_on_the_right(tokenizer)  # it pads the copies it fills in: a BERT-like masked LM's positions would shift
    if tokenizer.mask_token is None:
        raise ValueError(
            f"--augment_mlm_model {name!r} has a tokenizer without a mask token, so it cannot fill in words. Give a "
            "masked LM such as bert-base-uncased."
        )
    if tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise ValueError(
            f"--augment_mlm_model {name!r} has a vocabulary of {len(tokenizer)} tokens that differs from the "
            f"teacher's ({len(teacher_tokenizer)}): its replacement words would be split differently. Give a masked "
            "LM with the teacher's vocabulary (the teacher's own pretrained checkpoint, for instance)."
        )
    with loaded_whole():  # it fills in words outside any trainer: ZeRO-3's empty partitions would fail there
        model, loading = AutoModelForMaskedLM.from_pretrained(
            name, dtype=torch.float32, output_loading_info=True, **hub_kwargs(model_args)
        )
    if loading["missing_keys"]:  # transformers only warns, and initialises them at random
        missing = sorted(loading["missing_keys"])
        raise ValueError(
            f"--augment_mlm_model {public_name(name)!r} has no trained masked-LM head ({len(missing)} of its weights "
            f"are missing from the checkpoint, e.g. {missing[0]}): a base model or a classifier would fill in words "
            "from random weights. Give a masked LM's checkpoint (e.g. bert-base-uncased), or use --augment "
            "mask_ngram."
        )
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def embedding_table(data_args, teacher, tokenizer) -> dict[str, list[str]] | None:
    """The neighbours table of `--augment embedding`, from the (pretrained) teacher's input word embeddings, or None
    without it (or without a transfer set). Under DeepSpeed ZeRO-3 the embedding matrix is gathered for the pass."""
    if data_args.augment != "embedding" or data_args.augment_copies == 0 or not _built(data_args):
        return None
    weight = teacher.get_input_embeddings().weight
    whole = contextlib.nullcontext()
    if hasattr(weight, "ds_id"):  # a ZeRO-3 partition: every rank gathers the whole matrix and builds the table
        import deepspeed

        whole = deepspeed.zero.GatheredParameters([weight], modifier_rank=None)
    with whole:
        return embedding_neighbours(weight, tokenizer, top_k=EMBEDDING_TOP_K)


def warn_of_evaluation_rows(transfer, raw, eval_splits, text_columns) -> None:
    """Warns when transfer rows repeat the text of rows the student is evaluated on (the evaluation splits) or its
    search scores trials on: the teacher's soft targets for exactly those rows would inflate their scores."""
    evaluated = {
        name: set(text_rows(raw[name], text_columns)) for name in (*eval_splits, HP_VALIDATION) if name in raw
    }
    transferred = text_rows(transfer, text_columns)  # read once
    counts = {name: sum(row in texts for row in transferred) for name, texts in evaluated.items()}
    shown = ", ".join(f"{name}: {count}" for name, count in counts.items() if count)
    if shown:
        anywhere = set().union(*evaluated.values())  # a row repeating rows of two splits counts once
        logger.warning(
            "%d of the %d transfer rows repeat the text of a row it is evaluated or searched on (%s): the student "
            "learns the teacher's outputs on those rows, which inflates their scores. Remove them from the "
            "unlabelled text (--unlabeled_file), or evaluate on other rows.",
            sum(row in anywhere for row in transferred),
            len(transferred),
            shown,
        )


def check_unlabeled_file(data_args, text_columns) -> None:
    """Refuses a bad `--unlabeled_file` (its columns, no rows, no text) from its first row with text, before any model
    is loaded: `build_transfer_set` reads it after the teacher (and a masked LM, an embedding table)."""
    if getattr(data_args, "unlabeled_file", None):
        _unlabeled_file_rows(data_args, text_columns, regression=False, max_samples=1)


def _unlabeled_file_rows(data_args, text_columns, regression: bool, max_samples: int | None):
    named = data_args.unlabeled_text_column
    if named and len(named) != len(text_columns):
        raise ValueError(
            f"--unlabeled_text_column {' '.join(named)} names {len(named)} column(s), but the task's text is "
            f"{len(text_columns)} column(s) ({', '.join(text_columns)}): pass {len(text_columns)} column name(s) "
            f"of {Path(data_args.unlabeled_file).name}, in that order."
        )
    return load_unlabeled_file(
        data_args.unlabeled_file,
        named or text_columns,
        regression=regression,
        max_samples=max_samples,
        encoding=data_args.file_encoding,
        output_columns=text_columns,
    )


def build_transfer_set(
    raw_train,
    data_args,
    text_columns,
    *,
    regression: bool,
    seed: int,
    mask_token=None,
    mlm=(None, None),
    neighbours=None,
):
    """Splits `raw_train` into the labelled rows and the transfer set.

    Returns `(labelled, TransferSet)`; `labelled` is the first `max_train_samples` rows (all of train without it).
    `seed` (the run's `--seed`) seeds the augmentation: another seed, other copies.
    Refuses `--unlabeled_train_rows` larger than what train holds after the labelled rows. Under
    `--student_training labels_only` or `recipe`, which train on the labelled rows alone, no transfer set is built
    (no teacher pass, no augmentation) and a warning names the flags that asked for one.
    """
    count = data_args.max_train_samples or len(raw_train)
    labelled = raw_train.select(range(min(count, len(raw_train))))
    ignored = data_args.ignored_augment_flags()
    if ignored:
        logger.warning(
            "%s set%s how augmented copies are made, but --augment is 'none': no copies are made. Pass --augment "
            "mask_ngram (or mask, ngram, mlm, embedding) to make them.",
            " and ".join(ignored),
            "s" if len(ignored) == 1 else "",
        )
    if not _built(data_args):
        requested = data_args.transfer_flags()
        if requested:
            logger.warning(
                "--student_training %s trains on the labelled rows alone: the transfer set (%s) is not built. Use "
                "--student_training distill (or pseudo_labels) to train on it.",
                data_args.student_training,
                ", ".join(requested),
            )
        return labelled, TransferSet(rows=None)
    parts, from_train, from_file = [], 0, 0
    if data_args.unlabeled_train_rows:
        available = len(raw_train) - len(labelled)
        if data_args.unlabeled_train_rows > available:
            if data_args.max_train_samples is None or available == 0:
                fix = (
                    f"pass --max_train_samples N below {len(raw_train):,}: the first N rows stay labelled and the "
                    "rows after them can be used"
                )
            else:
                fix = f"pass --unlabeled_train_rows {available} or fewer, or a smaller --max_train_samples"
            raise ValueError(
                f"--unlabeled_train_rows {data_args.unlabeled_train_rows} asks for more rows than the training split "
                f"holds after the {len(labelled):,} labelled ones ({available:,}): {fix}."
            )
        rows = raw_train.select(range(len(labelled), len(labelled) + data_args.unlabeled_train_rows))
        parts.append(drop_labels(rows, text_columns, regression=regression))
        from_train = len(rows)
    if data_args.unlabeled_file:
        rows = _unlabeled_file_rows(data_args, text_columns, regression, data_args.max_unlabeled_samples)
        parts.append(rows)
        from_file = len(rows)
    augmented = 0
    if data_args.augment in ("mask", "mask_ngram") and data_args.augment_copies > 0 and not mask_token:
        raise ValueError(
            f"--augment {data_args.augment} masks words with the teacher tokenizer's mask token, and this teacher's "
            "tokenizer has none: use --augment ngram (or mlm), or a teacher whose tokenizer has a mask token."
        )
    if data_args.augment != "none" and data_args.augment_copies > 0:
        copies = augment_dataset(
            labelled.cast_column("label", datasets.Value("float32" if regression else "int64")),
            text_columns=text_columns,
            method=data_args.augment,
            copies=data_args.augment_copies,
            probability=data_args.augment_probability,
            seed=seed,
            mask_token=mask_token,
            mlm_model=mlm[0],
            mlm_tokenizer=mlm[1],
            neighbours=neighbours,
            regression=regression,
            keep_duplicates=data_args.augment_keep_duplicates,
        )
        if len(copies) == 0:  # else trained as if no augmentation had been asked for (pseudo-labels: a crash later)
            raise ValueError(
                f"--augment {data_args.augment} --augment_copies {data_args.augment_copies} --augment_probability "
                f"{data_args.augment_probability} made no copy that differs from its row among the {len(labelled):,} "
                "labelled rows (copies identical to their row are dropped): pass a larger --augment_probability, or "
                "--augment_keep_duplicates true to keep them."
            )
        parts.append(copies)
        augmented = len(copies)
    if not parts:
        return labelled, TransferSet(rows=None)
    logger.info(
        "Transfer set: %d unlabelled and %d augmented rows beside %d labelled",
        from_train + from_file,
        augmented,
        len(labelled),
    )
    template = labelled.select(range(0))
    rows = mix_transfer_rows(template, parts, text_columns, regression=regression)
    return labelled, TransferSet(rows=rows, from_train=from_train, from_file=from_file, augmented=augmented)


def pseudo_label(teacher, transfer: datasets.Dataset, collator, training_args, *, regression: bool):
    """The transfer rows labelled with the teacher's argmax (its prediction for regression): hard pseudo-labels, the
    baseline that shows what the soft targets add."""
    unlabelled = transfer.remove_columns("labels")
    logits = torch.as_tensor(teacher_logits_in_order(teacher, unlabelled, collator, training_args))
    labels = logits.view(-1).tolist() if regression else logits.argmax(dim=-1).tolist()
    return unlabelled.add_column("labels", labels).cast_column("labels", transfer.features["labels"])


def teacher_logits_in_order(teacher, rows: datasets.Dataset, collator, training_args) -> np.ndarray:
    """The teacher's logits `(N, C)` on `rows`, row i at index i, from the teacher cache's pass: rows sorted by length
    (a batch pads to its neighbours, not to the longest of a random batch), batches of
    `resolved_teacher_cache_batch_size` (4 x the eval batch), `inference_mode`, in the run's fp16/bf16 autocast.
    scripts/benchmark_transfer.py measures it against the plain `Trainer.predict` pass it replaces
    (docs/benchmarks.md). Under several processes each labels its contiguous share of the rows and all of them
    gather the whole, in order."""
    device = training_args.device  # sets up the process group, when there is one
    world = training_args.world_size
    if 1 < world <= len(rows) and torch.distributed.is_available() and torch.distributed.is_initialized():
        share = rows.shard(num_shards=world, index=training_args.process_index, contiguous=True)
        logits = _teacher_logits(teacher, share, collator, training_args, device)
        shares: list = [None] * world
        torch.distributed.all_gather_object(shares, logits)  # rank order is row order: the shares are contiguous
        return np.concatenate(shares)
    return _teacher_logits(teacher, rows, collator, training_args, device)


def _teacher_logits(teacher, rows: datasets.Dataset, collator, training_args, device) -> np.ndarray:
    teacher = teacher.to(device).eval()
    accepted = accepted_inputs(teacher)
    precision = torch.bfloat16 if training_args.bf16 else torch.float16 if training_args.fp16 else None

    def run_teacher(batch: dict) -> torch.Tensor:
        with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
            logits = teacher(**select_inputs(batch, accepted, keep_labels=False)).logits
        if logits.dim() != 2:  # the first batch tells
            raise ValueError(
                f"Pseudo-labels need one row of logits per example, but the teacher ({type(teacher).__name__}) gives "
                f"logits of shape {tuple(logits.shape)}. Use --student_training distill for token heads."
            )
        return logits

    batch_size = getattr(
        training_args, "resolved_teacher_cache_batch_size", 4 * training_args.per_device_eval_batch_size
    )
    with tempfile.TemporaryDirectory() as folder:  # the pass keeps nothing: labels go into the rows themselves
        cache = build_teacher_cache(
            dataset=rows,
            collator=collator,
            run_teacher=run_teacher,
            device=device,
            batch_size=batch_size,
            top_k=1,
            temperature=1.0,
            path=Path(folder) / "logits",
            show_progress=training_args.local_process_index == 0 and not training_args.disable_tqdm,
        )
        return np.array(cache.columns.with_format("numpy")[LOGITS_COLUMN], dtype=np.float32)
