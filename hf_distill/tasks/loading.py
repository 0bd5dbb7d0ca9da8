"""The script's data: a GLUE task (official TSVs or the Hub) or your own files, and rows held out of train."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .files import check_text_columns, load_custom_files
from .glue import GLUE_TASKS, load_glue_hub, load_glue_tsv, tokenize_dataset

logger = logging.getLogger(__name__)

__all__ = [
    "HELD_OUT_SEED",
    "HP_VALIDATION",
    "check_regression_rows",
    "hold_out",
    "limit_and_tokenize",
    "load_data",
    "repeated_texts",
    "text_rows",
]

HELD_OUT_SEED = 42  # the held-out split of --validation_split_size never moves with --seed
HP_VALIDATION = "hp_validation"  # the rows a hyperparameter search scores its trials on


def load_data(data_args, label_order=None):
    """Returns (DatasetDict, label names or None, text columns, evaluation splits, metric names). `label_order`: the
    teacher's label names in its id order, which your own files' string labels follow where they are those names."""
    if data_args.task_name:
        task = GLUE_TASKS[data_args.task_name]
        eval_splits = ["validation_matched", "validation_mismatched"] if task.name == "mnli" else ["validation"]
        if data_args.data_dir is not None:
            raw = load_glue_tsv(task.name, data_args.data_dir, splits=["train", *eval_splits])
        else:
            hub = load_glue_hub(task.name)
            raw = type(hub)({split: hub[split] for split in ["train", *eval_splits]})
        if data_args.validation_split_size is not None:
            # Tune on rows held out of train, never on dev. A hyperparameter search scores its trials on them
            # ("hp_validation") and the final student on dev; otherwise they replace the evaluation splits.
            held = hold_out(
                raw,
                data_args.validation_split_size,
                stratify=task.label_names is not None,
                text_columns=task.text_columns,
            )
            if getattr(data_args, "hp_search_trials", None):
                raw["train"], raw[HP_VALIDATION] = held["train"], held["validation"]
            else:
                raw = held
                eval_splits = ["validation"]
        label_names = list(task.label_names) if task.label_names else None
        if label_names is None:
            searched = bool(getattr(data_args, "hp_search_trials", None))
            held_out = data_args.validation_split_size is not None and not searched
            check_regression_rows(raw, data_args, eval_splits, held_out=held_out)
        return raw, label_names, task.text_columns, eval_splits, list(task.metric_names)
    raw, label_names = load_custom_files(
        data_args.train_file,
        data_args.validation_file,
        data_args.text_column,
        data_args.label_column,
        encoding=data_args.file_encoding,
        label_order=label_order,
    )
    text_columns = tuple(check_text_columns(data_args.text_column))  # a Python caller's "text" is one column
    if data_args.validation_file is None:
        raw = hold_out(
            raw, data_args.validation_split_size, stratify=label_names is not None, text_columns=text_columns
        )
    if getattr(data_args, "hp_search_trials", None):
        # The search's own rows, held out of what is left of train: never the evaluation split the final student
        # is reported on (the validation file, or the rows held out just above).
        held = hold_out(
            raw, data_args.validation_split_size, stratify=label_names is not None, text_columns=text_columns
        )
        raw["train"], raw[HP_VALIDATION] = held["train"], held["validation"]
    if label_names is None:
        check_regression_rows(raw, data_args, ["validation"], held_out=data_args.validation_file is None)
    metric_names = ["pearson", "spearmanr"] if label_names is None else ["accuracy", "f1_macro"]
    return raw, label_names, text_columns, ["validation"], metric_names


def hold_out(raw, size: int, *, stratify: bool, text_columns: Sequence[str] | None = None):
    """Splits `size` rows off the training split as the evaluation split ("validation"), with a fixed seed.

    The split is kept as it is (recorded searches name it): held-out rows whose text (`text_columns`, by default
    every column but ``label`` and ``idx``) also stands in the remaining training rows are counted in the log.
    """
    if size >= len(raw["train"]):
        raise ValueError(
            f"--validation_split_size {size} leaves no training rows: train has {len(raw['train']):,} at this point. "
            "Pass a smaller --validation_split_size."
        )
    if stratify:
        _check_stratified(raw["train"], size)
    split = raw["train"].train_test_split(
        test_size=size, seed=HELD_OUT_SEED, stratify_by_column="label" if stratify else None
    )
    if text_columns is None:
        text_columns = [column for column in split["train"].column_names if column not in ("label", "idx")]
    repeated = repeated_texts(split["train"], split["test"], text_columns)
    if repeated:
        logger.warning(
            "%d of the %d held-out rows (--validation_split_size %d) have a text identical to a remaining "
            "training row (the training split repeats them): their held-out scores are of texts the model trained "
            "on.",
            repeated,
            size,
            size,
        )
    return type(raw)({"train": split["train"], "validation": split["test"]})


def _check_stratified(train, size: int) -> None:
    """The conditions of datasets' stratified split, said with the option and the fix (its own errors name
    neither)."""
    counts = Counter(_columns(train, ["label"])[0])
    label = train.features["label"]
    name = label.int2str if hasattr(label, "int2str") else str
    shown = ", ".join(f"{name(value)} {count}" for value, count in sorted(counts.items()))
    rarest, fewest = min(sorted(counts.items()), key=lambda item: item[1])
    if fewest < 2:
        raise ValueError(
            f"--validation_split_size {size}: a stratified hold-out needs at least 2 rows of each class, but class "
            f"{name(rarest)!r} has {fewest} (class counts: {shown}). Add rows of that class, or drop its row from "
            "the training data."
        )
    if size < len(counts):
        raise ValueError(
            f"--validation_split_size {size} is smaller than the number of classes ({len(counts)}; class counts: "
            f"{shown}): a stratified hold-out takes at least one row of each. Pass --validation_split_size "
            f"{len(counts)} or more."
        )
    if len(train) - size < len(counts):
        raise ValueError(
            f"--validation_split_size {size} leaves {len(train) - size} training rows for {len(counts)} classes "
            f"(class counts: {shown}), and a stratified hold-out keeps at least one row of each in train. Pass "
            f"--validation_split_size {len(train) - len(counts)} or less."
        )


def repeated_texts(train, held, text_columns: Sequence[str]) -> int:
    """How many `held` rows have the text (every text column alike) of a `train` row."""
    texts = set(text_rows(train, text_columns))
    return sum(row in texts for row in text_rows(held, text_columns))


def text_rows(dataset, text_columns: Sequence[str]) -> list[tuple]:
    """Each row's text, every text column together, as a tuple."""
    return list(zip(*_columns(dataset, text_columns)))


def _columns(dataset, names: Sequence[str]) -> list[list]:
    """Whole columns as lists, read at once: iterating a datasets Column goes row by row (seconds on SST-2)."""
    values = dataset.select_columns(list(names))[:]
    return [values[name] for name in names]


def check_regression_rows(raw, data_args, eval_splits: Sequence[str], *, held_out: bool) -> None:
    """Pearson and Spearman need two rows: a regression's evaluation (or search) split of one is refused before any
    training, naming what left it so. `held_out`: the evaluation splits are rows held out of train."""
    limit = data_args.max_eval_samples
    for split in [*eval_splits, HP_VALIDATION]:
        if split not in raw:
            continue
        searched = split == HP_VALIDATION  # never cut by --max_eval_samples
        rows = len(raw[split]) if searched or limit is None else min(len(raw[split]), limit)
        if rows >= 2:
            continue
        if not searched and limit is not None and limit < 2:
            cause, fix = f"--max_eval_samples {limit}", "pass --max_eval_samples 2 or more"
        elif searched or held_out:
            cause = f"--validation_split_size {data_args.validation_split_size}"
            fix = "pass --validation_split_size 2 or more"
        elif getattr(data_args, "validation_file", None):
            cause, fix = f"--validation_file {Path(data_args.validation_file).name!r}", "add rows to it"
        else:
            cause, fix = f"The {split} split", "add rows to it"
        raise ValueError(
            f"{cause} gives the regression's {'search' if searched else 'evaluation'} {rows} row, but Pearson and "
            f"Spearman need at least 2: {fix}."
        )


def limit_and_tokenize(raw, data_args, tokenizer, text_columns, eval_splits):
    """Cuts the evaluation splits to `--max_eval_samples`, then tokenises every split.

    `raw["train"]` must already hold the labelled rows only (see `hf_distill.cli.transfer`). Returns the tokenised
    splits (train, "transfer" and "hp_validation" when present) and a dict of evaluation split -> tokenised dataset.
    """
    for split in eval_splits:
        if data_args.max_eval_samples is not None:
            raw[split] = raw[split].select(range(min(data_args.max_eval_samples, len(raw[split]))))
    tokenized = tokenize_dataset(raw, tokenizer, text_columns, max_length=data_args.max_seq_length)
    return tokenized, {split: tokenized[split] for split in eval_splits}
