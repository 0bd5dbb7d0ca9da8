"""GLUE tasks: the task table, loading the official TSV files (or the Hub), custom data files, tokenization.

One table, [`GLUE_TASKS`], drives everything: which text columns a task has, its label names in the order of the
Hugging Face Hub's ``nyu-mll/glue`` dataset (so label ids mean the same whether the data came from the Hub or from
TSV files), its metrics and the layout of its files. Datasets loaded here have the Hub's column names
(``sentence``, ``sentence1``/``sentence2``, ..., ``label``, ``idx``) and, for the test splits, label -1.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from .files import check_text_columns

logger = logging.getLogger(__name__)

__all__ = [
    "GLUE_TASKS",
    "GlueTask",
    "load_glue",
    "load_glue_hub",
    "load_glue_tsv",
    "normalize_task_name",
    "tokenize_dataset",
]


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task is named, labelled, scored and stored.

    Attributes:
        name (`str`): the Hub config name, e.g. ``"sst2"``.
        folder (`str`): the folder of the official TSV files, e.g. ``"SST-2"``.
        text_columns (`tuple[str, ...]`): the Hub's text column(s), one or a pair.
        label_names (`tuple[str, ...]` or `None`): class names in the Hub's id order; `None` for regression.
        metric_names (`tuple[str, ...]`): keys of the GLUE metric's result.
        main_metric (`str`): the metric to select checkpoints by.
        split_files (`dict[str, str]`): split name -> TSV file name in `folder`.
        tsv_columns (`dict[str, str]`): Hub column (text columns and ``"label"``) -> TSV header name.
        headerless (`tuple[int, dict[str, int]]`, *optional*): for a task whose train/dev files have no header
            (CoLA): their column count and the position of each Hub column.
        skips_cut_lines (`bool`): lines with another field count are skipped, counted and said (QQP, whose
            official files hold cut lines that every reader of them skips), not refused.
    """

    name: str
    folder: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metric_names: tuple[str, ...]
    main_metric: str
    split_files: dict[str, str]
    tsv_columns: dict[str, str]
    headerless: tuple[int, dict[str, int]] | None = None
    skips_cut_lines: bool = False

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)


_SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
_PAIR = {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}
_NLI = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in [
        # CoLA train/dev: no header; columns source, label, original mark, sentence. Its test.tsv has a header.
        GlueTask(
            "cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",),
            "matthews_correlation", _SPLITS, {"sentence": "sentence"}, headerless=(4, {"sentence": 3, "label": 1}),
        ),
        GlueTask(
            "sst2", "SST-2", ("sentence",), ("negative", "positive"), ("accuracy",), "accuracy", _SPLITS,
            {"sentence": "sentence", "label": "label"},
        ),
        # MRPC: label column "Quality"; the train/dev header starts with a UTF-8 BOM (read as utf-8-sig).
        GlueTask(
            "mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("accuracy", "f1"), "f1",
            _SPLITS, {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"},
        ),
        # STS-B: 10 columns (9 in test); the label is the float "score".
        GlueTask(
            "stsb", "STS-B", ("sentence1", "sentence2"), None, ("pearson", "spearmanr"), "pearson", _SPLITS,
            {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"},
        ),
        GlueTask(
            "qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), ("accuracy", "f1"), "f1",
            _SPLITS, {"question1": "question1", "question2": "question2", "label": "is_duplicate"},
            skips_cut_lines=True,
        ),
        GlueTask(
            "mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",),
            "accuracy",
            {
                "train": "train.tsv",
                "validation_matched": "dev_matched.tsv",
                "validation_mismatched": "dev_mismatched.tsv",
                "test_matched": "test_matched.tsv",
                "test_mismatched": "test_mismatched.tsv",
            },
            {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
        ),
        GlueTask(
            "qnli", "QNLI", ("question", "sentence"), _NLI, ("accuracy",), "accuracy", _SPLITS,
            {"question": "question", "sentence": "sentence", "label": "label"},
        ),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), _NLI, ("accuracy",), "accuracy", _SPLITS, _PAIR),
        GlueTask(
            "wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",), "accuracy",
            _SPLITS, _PAIR,
        ),
    ]
}  # fmt: skip


def normalize_task_name(name: str) -> str:
    """The [`GLUE_TASKS`] key for a task name in any usual spelling: ``"SST-2"``, ``"sst-2"`` -> ``"sst2"``."""
    if not isinstance(name, str):
        raise ValueError(f"A GLUE task name must be a string such as 'sst2', got {name!r}.")
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"Unknown GLUE task {name!r}; valid names: {', '.join(GLUE_TASKS)}.")
    return key


def load_glue(task: str, data_dir: str | Path | None = None) -> DatasetDict:
    """A GLUE task from the official TSV files in `data_dir` ([`load_glue_tsv`]), else from the Hub."""
    if data_dir is not None:
        return load_glue_tsv(task, data_dir)
    return load_glue_hub(task)


def load_glue_hub(task: str) -> DatasetDict:
    """A GLUE task from the Hugging Face Hub (``nyu-mll/glue``); needs network access or a warm datasets cache."""
    return datasets.load_dataset("nyu-mll/glue", normalize_task_name(task))


def load_glue_tsv(task: str, data_dir: str | Path, splits: Sequence[str] | None = None) -> DatasetDict:
    """Load a GLUE task from the official TSV files, with the Hub's split names, columns and label ids.

    Files are read as tab-separated with ``csv.QUOTE_NONE``: GLUE's quotes are literal text, and a quote-aware
    reader would merge lines (MRPC has sentences starting with ``"``).

    Args:
        task (`str`): a GLUE task name, any spelling [`normalize_task_name`] accepts.
        data_dir (`str` or `Path`): the GLUE root (holding ``SST-2/``, ``MRPC/``, ...) or the task's own folder.
        splits (`Sequence[str]`, *optional*): Hub split names to load (``"train"``, ``"validation"``, ``"test"``;
            MNLI: ``"validation_matched"``, ``"validation_mismatched"``, ``"test_matched"``, ``"test_mismatched"``).
            Every one must have its file. Defaults to every split whose file exists.

    Returns:
        [`~datasets.DatasetDict`]: one dataset per split, columns ``(*text_columns, "label", "idx")``; the label is
        a `ClassLabel` with the Hub's names (-1 on test splits) or a float32 score for STS-B.
    """
    spec = GLUE_TASKS[normalize_task_name(task)]
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(
            f"GLUE data_dir {str(data_dir)!r} is not a folder. Pass the folder holding {spec.folder}/ (the GLUE "
            f"root) or the {spec.folder} folder itself."
        )
    task_dir = data_dir / spec.folder if (data_dir / spec.folder).is_dir() else data_dir
    name = task_dir.name.lower()
    other = next((o for o in GLUE_TASKS.values() if o.folder.lower() == name != spec.folder.lower()), None)
    if other is not None:  # RTE read from WNLI's folder (the same columns) flipped every label: WNLI's 1 is entailment
        raise ValueError(
            f"GLUE data_dir {str(data_dir)!r} is {other.name}'s folder ({other.folder}/), not {spec.name}'s: pass the "
            f"GLUE root holding {spec.folder}/, or the {spec.folder} folder itself."
        )
    if splits is None:
        splits = [split for split, file in spec.split_files.items() if (task_dir / file).is_file()]
        if not splits:
            expected = ", ".join(str(task_dir / file) for file in spec.split_files.values())
            raise ValueError(
                f"No {spec.name} files in {str(task_dir)!r}: expected at least one of {expected}. Point data_dir at "
                f"the GLUE root holding {spec.folder}/ (the layout GLUE's download script writes)."
            )
    loaded = {}
    for split in splits:
        if split not in spec.split_files:
            raise ValueError(f"{spec.name} has no split {split!r}; its splits are {', '.join(spec.split_files)}.")
        path = task_dir / spec.split_files[split]
        if (
            not path.is_file()
            and task_dir == data_dir
            and not any((data_dir / f).is_file() for f in spec.split_files.values())
        ):
            raise ValueError(
                f"GLUE data_dir {str(data_dir)!r} holds no {spec.folder}/ folder and no {spec.name} files: pass the "
                f"GLUE root holding {spec.folder}/, or the {spec.folder} folder itself."
            )
        if not path.is_file():
            raise ValueError(
                f"{spec.name} split {split!r} needs the file {str(path)!r}, which does not exist. Add the file, or "
                "leave the split out of `splits`."
            )
        loaded[split] = _read_glue_file(spec, path, has_labels=not split.startswith("test"))
    logger.info("Loaded GLUE %s from %s: %s", spec.name, task_dir, {split: len(ds) for split, ds in loaded.items()})
    return DatasetDict(loaded)


def _read_glue_file(spec: GlueTask, path: Path, *, has_labels: bool) -> Dataset:
    wanted = [*spec.text_columns, "label"] if has_labels else list(spec.text_columns)
    columns: dict[str, list] = {column: [] for column in (*spec.text_columns, "label")}
    # utf-8-sig drops the BOM that GLUE's script writes before MRPC's header ("\ufeffQuality").
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.headerless is not None and has_labels:
            width, positions = spec.headerless
            layout = f"{width} columns, no header"
        else:
            header = next(reader, [])
            missing = [spec.tsv_columns[column] for column in wanted if spec.tsv_columns[column] not in header]
            if missing:
                raise ValueError(
                    f"{path}, line 1: the header {header} lacks the column(s) {missing} that a {spec.folder} file "
                    f"has. Is this the right file for {spec.name}? GLUE's {spec.folder} files name their columns "
                    f"{[spec.tsv_columns[column] for column in wanted]} in the header."
                )
            width, positions = len(header), {column: header.index(spec.tsv_columns[column]) for column in wanted}
            layout = f"{width} columns, as in the header {header}"
        skipped: list[int] = []
        for row in reader:
            if not row:  # a blank line, e.g. a doubled final newline
                continue
            if len(row) != width and spec.skips_cut_lines:
                skipped.append(reader.line_num)
                continue
            if len(row) != width:
                raise ValueError(
                    f"{path}, line {reader.line_num}: expected {layout}, got {len(row)} tab-separated fields. The "
                    f"file is not in GLUE's {spec.folder} layout (a stray tab or a cut line); fix or remove that line."
                )
            for column in spec.text_columns:
                columns[column].append(row[positions[column]])
            if has_labels:
                columns["label"].append(_parse_label(spec, row[positions["label"]], path, reader.line_num))
            else:
                columns["label"].append(-1.0 if spec.is_regression else -1)
    if skipped:
        logger.warning(
            "%s: skipped %d line(s) not in %s (first: line %d), as GLUE's readers of %s do.",
            path,
            len(skipped),
            layout,
            skipped[0],
            spec.folder,
        )
    if has_labels and not columns["label"]:  # trained or scored on nothing: a run failing after saving its student
        raise ValueError(
            f"{path} holds no {spec.name} rows ({'all lines cut' if skipped else 'empty, or a header alone'}): give "
            f"the whole {spec.folder} file, or pass the data_dir holding GLUE's files."
        )
    columns["idx"] = list(range(len(columns["label"])))
    return Dataset.from_dict(columns, features=_glue_features(spec))


def _parse_label(spec: GlueTask, value: str, path: Path, line: int) -> int | float:
    if spec.label_names is None:
        try:
            score = float(value)
        except ValueError:
            raise ValueError(f"{path}, line {line}: the {spec.name} score {value!r} is not a number.") from None
        if not math.isfinite(score):  # NaN marks "no label" for the student and would poison the teacher's MSE
            raise ValueError(
                f"{path}, line {line}: the {spec.name} score {value!r} is not a finite number. Fix the score or drop "
                "the line."
            )
        return score
    if value in spec.label_names:
        return spec.label_names.index(value)
    if value.isdigit() and int(value) < len(spec.label_names):
        return int(value)
    raise ValueError(
        f"{path}, line {line}: unknown {spec.name} label {value!r}; expected one of {list(spec.label_names)} or "
        f"their ids 0..{len(spec.label_names) - 1}."
    )


def _glue_features(spec: GlueTask) -> Features:
    label = Value("float32") if spec.label_names is None else ClassLabel(names=list(spec.label_names))
    return Features(
        {**{column: Value("string") for column in spec.text_columns}, "label": label, "idx": Value("int32")}
    )


def tokenize_dataset(
    dataset_dict: DatasetDict,
    tokenizer,
    task_or_columns: str | Sequence[str],
    max_length: int = 128,
) -> DatasetDict:
    """Tokenize single sentences or sentence pairs, truncated to `max_length` and not padded.

    Padding is left to the data collator (e.g. [`~transformers.DataCollatorWithPadding`]), which pads each batch to
    its own longest example instead of every example to `max_length`.

    Args:
        dataset_dict ([`~datasets.DatasetDict`]): splits with the text column(s) and ``"label"``.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): the tokenizer shared by teacher and student.
        task_or_columns (`str` or `Sequence[str]`): a GLUE task name (its text columns come from [`GLUE_TASKS`]) or
            the one or two text columns themselves.
        max_length (`int`, *optional*, defaults to 128): longest tokenized example, special tokens included; more
            than the tokenizer's special tokens.

    Returns:
        [`~datasets.DatasetDict`]: the tokenizer's outputs (``input_ids``, ``attention_mask``, ...) and ``labels``;
        every other column is dropped.
    """
    if isinstance(task_or_columns, str):
        text_columns = GLUE_TASKS[normalize_task_name(task_or_columns)].text_columns
    else:
        text_columns = check_text_columns(task_or_columns)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}.")
    special = tokenizer.num_special_tokens_to_add(pair=len(text_columns) == 2)
    if max_length <= special:  # transformers then returns every example whole, not even a warning
        raise ValueError(
            f"max_length {max_length} (--max_seq_length) leaves no room for text: the tokenizer adds {special} "
            "special tokens to each example, and with no room left it truncates nothing. Pass --max_seq_length "
            f"{special + 1} or more."
        )

    def tokenize(batch):
        return tokenizer(*(batch[column] for column in text_columns), truncation=True, max_length=max_length)

    tokenized = {}
    for split, dataset in dataset_dict.items():
        missing = [column for column in (*text_columns, "label") if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Split {split!r} lacks the column(s) {missing} to tokenize; its columns are {dataset.column_names}."
            )
        dropped = [column for column in dataset.column_names if column != "label"]
        tokenized[split] = dataset.map(tokenize, batched=True, remove_columns=dropped).rename_column("label", "labels")
    return DatasetDict(tokenized)
