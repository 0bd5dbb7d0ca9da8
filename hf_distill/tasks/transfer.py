"""Transfer sets: inputs the teacher labels beyond the labelled rows (Turc et al., 2019; Tang et al., 2019).

A student distilled only on the rows its teacher was fit on sees nearly one-hot soft targets there, which carry little
beyond the labels. Letting the teacher label more inputs (unlabelled in-domain text, or augmented copies of the
labelled rows, see `augment.py`) is where distillation beats fine-tuning.

Transfer rows carry a label that marks "no label": -100 for classification, NaN for regression (where -100 is a
valid target). `DistillationTrainer` averages its task term over the labelled rows only and its teacher terms over
every row, so both kinds mix freely in any batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, Features, Value, concatenate_datasets

from .files import _iter_records, _text, check_text_columns

__all__ = ["NO_LABEL", "drop_labels", "load_unlabeled_file", "mix_transfer_rows", "unlabeled_rows"]

logger = logging.getLogger(__name__)

NO_LABEL = -100  # classification; regression rows use NaN


def _label_feature(regression: bool) -> Value:
    # A ClassLabel cannot hold -100, so mixed training sets carry plain integer labels.
    return Value("float32") if regression else Value("int64")


def _no_label(regression: bool) -> float | int:
    return math.nan if regression else NO_LABEL


def unlabeled_rows(
    source: Dataset | Sequence[dict],
    text_columns: Sequence[str],
    *,
    regression: bool,
    max_samples: int | None = None,
    label_column: str = "label",
) -> Dataset:
    """Rows of unlabelled text, ready to mix with labelled ones.

    Args:
        source (`Dataset` or a sequence of dicts): rows holding the text column(s); other columns are dropped (a label
            column too: transfer rows are labelled by the teacher alone). A missing text (None) becomes "".
        text_columns (`Sequence[str]`): one text column, or two for sentence pairs.
        regression (`bool`): whether the task is a regression (the "no label" mark is then NaN, else -100).
        max_samples (`int`, *optional*): keep only the first N rows.
        label_column (`str`): the name of the label column of the result (not one of `text_columns`).

    Returns:
        `Dataset` with columns ``(*text_columns, label_column)``, every label the "no label" mark.
    """
    text_columns = check_text_columns(text_columns)
    dataset = source if isinstance(source, Dataset) else Dataset.from_list(list(source))
    missing = [column for column in text_columns if column not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The unlabelled rows lack the text column(s) {missing}; their columns are {dataset.column_names}. Pass "
            "the column names of your text (unlabeled_text_column)."
        )
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    dataset = dataset.select_columns(list(text_columns))
    if any(dataset.data.column(column).null_count for column in text_columns):  # Arrow's count: no scan
        # As a data file's empty field reads: a tokenizer refuses None with an error naming no row.
        dataset = dataset.map(lambda row: {column: row[column] or "" for column in text_columns})
    return _with_no_labels(dataset, text_columns, regression, label_column)


def load_unlabeled_file(
    path: str | Path,
    text_columns: Sequence[str],
    *,
    regression: bool,
    max_samples: int | None = None,
    encoding: str = "utf-8",
    label_column: str = "label",
    output_columns: Sequence[str] | None = None,
) -> Dataset:
    """Unlabelled text from a CSV, TSV or JSON lines file (as `load_custom_files` reads them).

    Every other column of the file (a label column too) is ignored, and the log names them: the teacher labels these
    rows. A text field holds text, a number (read as written) or nothing (JSON null or NaN: ""); a row without text
    in any of its columns is dropped, and so is a pair with one side blank; the log counts both. Refused with a clear
    message: a missing or empty file, one without the text column(s) (naming the columns it has) or without any text
    there, or a text field holding anything else (a nested object, a list, true/false; naming the line).

    Args:
        text_columns: the file's text column(s).
        output_columns: the names the text columns get in the result, in the same order (default: `text_columns`),
            e.g. the task's ``("sentence1", "sentence2")`` for a file that calls them ``("question", "answer")``.
    """
    text_columns = check_text_columns(text_columns)
    if len(text_columns) == 2 and text_columns[0] == text_columns[1]:
        raise ValueError(
            f"The unlabelled file's text columns (--unlabeled_text_column) name {text_columns[0]!r} twice: every pair "
            f"would be that text with itself. Pass the two different columns of {Path(path).name} that hold the pair."
        )
    output_columns = text_columns if output_columns is None else check_text_columns(output_columns)
    if len(output_columns) != len(text_columns):
        raise ValueError(
            f"output_columns {list(output_columns)} must name as many columns as text_columns {list(text_columns)}."
        )
    path = Path(path)
    fix = "Pass the file's text column name(s) (--unlabeled_text_column), or rename the columns in the file."
    # Read one row at a time, keeping only the text, and no further than max_samples rows with text: a large corpus
    # cut to a few rows is neither held whole nor checked past them.
    rows, blank_lines, half_lines, ignored = [], [], [], set()
    for row, line in _iter_records(path, list(text_columns), encoding, fix=fix):
        ignored.update(set(row) - set(text_columns))
        texts = {out: _text(row[column], path, line, column) for column, out in zip(text_columns, output_columns)}
        # a row without text (an empty field, as pandas writes NaN; whitespace; null) gives the teacher [CLS] [SEP];
        # a pair with one side blank, [CLS] a [SEP] [SEP]: an input no row of a pair task looks like
        filled = [bool(text.strip()) for text in texts.values()]
        if all(filled):
            rows.append(texts)
            if max_samples is not None and len(rows) >= max_samples:
                break
        else:
            (half_lines if any(filled) else blank_lines).append(line)
    if ignored:
        logger.info("Ignoring the column(s) %s of %s: the teacher labels the unlabelled rows.", sorted(ignored),
                    path.name)  # fmt: skip
    if not rows:
        if half_lines:
            raise ValueError(
                f"{path} holds no pair with text on both sides in columns {list(text_columns)}: of its "
                f"{len(blank_lines) + len(half_lines)} row(s), {len(half_lines)} have one side blank and the rest "
                "both. Pass the two columns that hold the pairs' texts (--unlabeled_text_column), or another file."
            )
        raise ValueError(
            f"{path} holds no text in column(s) {list(text_columns)}: its {len(blank_lines)} row(s) are all blank. "
            "Pass the column that holds the text (--unlabeled_text_column), or another file."
        )
    for lines, what in ((blank_lines, "without text"), (half_lines, "with one side of the pair blank")):
        if lines:
            shown = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
            logger.info("Dropped %d row(s) of %s %s (lines %s).", len(lines), path.name, what, shown)
    return unlabeled_rows(
        rows, output_columns, regression=regression, max_samples=max_samples, label_column=label_column
    )


def drop_labels(dataset: Dataset, text_columns: Sequence[str], *, regression: bool, label_column: str = "label"):
    """`dataset`'s text column(s) with every label replaced by the "no label" mark (e.g. training rows held out as
    unlabelled text, to simulate few labels)."""
    return _with_no_labels(dataset.select_columns(list(text_columns)), text_columns, regression, label_column)


def mix_transfer_rows(
    labelled: Dataset, transfer: Sequence[Dataset], text_columns: Sequence[str], *, regression: bool
) -> Dataset:
    """The labelled rows followed by every transfer set, with one label feature (int64 or float32) for all.

    Only the text column(s) and ``label`` are kept. Every transfer row's label becomes the task's "no label" mark,
    whatever the set held (an augmented copy of integer-labelled rows carries -100, a valid regression target): the
    teacher alone labels them. Shuffling is left to the Trainer's sampler.
    """
    text_columns = check_text_columns(text_columns)
    columns = [*text_columns, "label"]
    features = Features({**{column: Value("string") for column in text_columns}, "label": _label_feature(regression)})
    parts = [labelled.select_columns(columns).cast(features)]
    parts += [drop_labels(part, text_columns, regression=regression) for part in transfer if len(part)]  # `features`
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def _with_no_labels(dataset: Dataset, text_columns: Sequence[str], regression: bool, label_column: str) -> Dataset:
    if label_column in text_columns:
        raise ValueError(
            f"The text column {label_column!r} has the name of the label column the rows get: pass another "
            "label_column, or rename that text column."
        )
    if label_column in dataset.column_names:
        dataset = dataset.remove_columns(label_column)
    labels = [_no_label(regression)] * len(dataset)
    features = Features(
        {**{column: Value("string") for column in text_columns}, label_column: _label_feature(regression)}
    )
    return dataset.add_column(label_column, labels).cast(features)
