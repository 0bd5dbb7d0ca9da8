"""Your own data files (CSV, TSV, JSON lines) as a `DatasetDict` with integer or float labels, checked row by row."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

logger = logging.getLogger(__name__)

__all__ = ["check_text_columns", "load_custom_files"]

_COLUMNS_FIX = (
    "Pass the file's column names (--text_column, and --label_column for labelled files), or rename the columns in "
    "the file."
)
_FIELD_SIZE_LIMIT = 2**31 - 1  # csv's largest (a C long on every platform)
_OUTPUT_COLUMNS = ("label", "idx")  # what load_custom_files writes beside the text columns
_SHOWN = 80  # characters of a bad value quoted in a message: a whole file can be one JSON line


def load_custom_files(
    train_file: str | Path,
    validation_file: str | Path | None,
    text_columns: Sequence[str],
    label_column: str = "label",
    encoding: str = "utf-8",
    label_order: Sequence[str] | None = None,
) -> tuple[DatasetDict, list[str] | None]:
    """Load your own train (and validation) files: CSV, TSV or JSON lines, chosen by extension.

    ``.csv`` is read with Python's default CSV dialect (quoted fields allowed); ``.tsv`` tab-separated with quotes
    taken literally, as GLUE's files are (a text field quoted the CSV way is refused, naming its line: save such a file
    as .csv); ``.jsonl``/``.json`` one JSON object per line, or a ``.json`` file holding one JSON array of objects
    (pandas' ``to_json(orient="records")``). Labels:

    - any label written as a decimal (``3.8``, or a JSON float) makes the task a regression: float labels, no names;
    - all integers: classification; the distinct values, sorted numerically, become ids 0..K-1 (``0``/``1`` keep
      their values; ``1..5`` stars become ids 0..4), names are the values as strings;
    - otherwise strings: the distinct strings, sorted, become ids 0..K-1; or, when `label_order` (the teacher's
      label names, in its id order) holds the same names (ignoring case), ids in that order.

    Names come from the training file; a validation label outside them is an error.

    Args:
        train_file (`str` or `Path`): training data.
        validation_file (`str` or `Path`, *optional*): evaluation data, same columns.
        text_columns (`Sequence[str]`): one text column, or two for sentence pairs.
        label_column (`str`, *optional*, defaults to `"label"`): the label column; it becomes ``"label"``.
        encoding (`str`, *optional*, defaults to `"utf-8"`): text encoding of the files (e.g. ``"latin-1"``).

    Returns:
        `tuple[DatasetDict, list[str] | None]`: splits ``train`` (and ``validation``) with columns
        ``(*text_columns, "label", "idx")``, and the label names (`None` for regression).
    """
    text_columns = check_text_columns(text_columns)
    _check_file_columns(text_columns, label_column)
    files = {"train": Path(train_file)}
    if validation_file is not None:
        files["validation"] = Path(validation_file)
    records = {split: _read_records(path, [*text_columns, label_column], encoding) for split, path in files.items()}

    read = [(_typed_label(value), line) for value, line in _labels(records["train"], label_column, files["train"])]
    train_labels = [value for value, _ in read]
    _say_mixed_labels(files["train"], read)
    decimals = [line for value, line in read if isinstance(value, float)]
    if decimals:
        label_names, to_id = None, None
        label_feature = Value("float32")
    else:
        distinct = set(train_labels)
        ordered = sorted(distinct) if all(isinstance(value, int) for value in distinct) else sorted(map(str, distinct))
        label_names = _in_order(ordered, label_order, files["train"])
        to_id = {name: index for index, name in enumerate(label_names)}
        label_feature = ClassLabel(names=label_names)

    splits = {}
    for split, path in files.items():
        columns: dict[str, list] = {
            column: [_text(row[column], path, line, column) for row, line in records[split]] for column in text_columns
        }
        labels = []
        for value, line in _labels(records[split], label_column, path):
            typed = _typed_label(value)
            if to_id is None:
                if isinstance(typed, str):
                    # name the decimals too: among names, the odd label may be the decimal, not this line
                    raise ValueError(
                        f"{path}, line {line}: label {value!r} is not a number, but the task is a regression (the "
                        f"training labels are decimals: {len(decimals)} of them, the first on line {decimals[0]} of "
                        f"{files['train'].name}). Write every label as a number, or, if the labels are classes, "
                        "write them as names or whole numbers."
                    )
                labels.append(float(typed))
            elif str(typed) in to_id:
                labels.append(to_id[str(typed)])
            else:
                raise ValueError(
                    f"{path}, line {line}: label {value!r} does not occur in the training file {files['train']}, "
                    f"whose labels are {label_names}. Fix the label or add examples of it to the training data."
                )
        columns["label"] = labels
        columns["idx"] = list(range(len(labels)))
        features = Features(
            {**{column: Value("string") for column in text_columns}, "label": label_feature, "idx": Value("int32")}
        )
        splits[split] = Dataset.from_dict(columns, features=features)
    if label_names is not None and len(label_names) < 2:  # after the rows' own errors, which name their line
        # num_labels = 1, which transformers trains as a regression on class id 0
        raise ValueError(
            f"{files['train']}: every label in column {label_column!r} is {label_names[0]!r}, so there is one class "
            "and nothing to classify: add examples of the other classes, or write the labels as decimals (e.g. 3.0) "
            "for a regression."
        )
    return DatasetDict(splits), label_names


def check_text_columns(text_columns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(text_columns, str):
        text_columns = (text_columns,)
    text_columns = tuple(text_columns)
    if not 1 <= len(text_columns) <= 2 or not all(isinstance(column, str) for column in text_columns):
        raise ValueError(
            f"text_columns must name one text column or two (a sentence pair), got {text_columns!r}: e.g. "
            "('sentence',) or ('sentence1', 'sentence2')."
        )
    return text_columns


def _in_order(ordered: list, label_order: Sequence[str] | None, path: Path) -> list[str]:
    """The label names as ids 0..K-1: `ordered`, or the teacher's order (`label_order`) when the file's string labels
    are the teacher's names, ignoring case: a teacher ordered contradiction, neutral, entailment reads the file's
    entailment/neutral/contradiction as its own classes, not as the alphabetical order it would be refused for."""
    names = [str(value) for value in ordered]
    if not label_order or any(isinstance(value, int) for value in ordered):
        return names
    by_lower = {name.lower(): name for name in names}
    theirs = [str(name).lower() for name in label_order]
    if len(by_lower) != len(names) or sorted(by_lower) != sorted(theirs):
        return names
    chosen = [by_lower[name] for name in theirs]
    if chosen != names:
        logger.info("%s: its labels take the teacher's order, %s.", path.name, dict(enumerate(chosen)))
    return chosen


def _check_file_columns(text_columns: tuple[str, ...], label_column: str) -> None:
    """Refuses text columns the loader would overwrite or misread: the output has one column per name, and writes
    "label" and "idx" itself."""
    if len(text_columns) == 2 and text_columns[0] == text_columns[1]:
        raise ValueError(
            f"--text_column names {text_columns[0]!r} twice: a sentence pair would be that text with itself. Pass "
            "one text column, or two different ones for a pair."
        )
    if label_column in text_columns:
        raise ValueError(
            f"--text_column {label_column!r} is also the --label_column: the text would become the class label. Pass "
            "the label's own column with --label_column, or another text column with --text_column."
        )
    reserved = [column for column in text_columns if column in _OUTPUT_COLUMNS]
    if reserved:
        raise ValueError(
            f"--text_column {reserved[0]!r} has the name of a column the loader writes ('label', 'idx'), which "
            "would replace the text: rename that column in the file (e.g. to 'text') and pass the new name with "
            "--text_column."
        )


def _read_records(
    path: Path, required: list[str], encoding: str, *, fix: str = _COLUMNS_FIX
) -> list[tuple[dict, int]]:
    """Rows of a data file as (row, line number) pairs, checked to hold the `required` columns (`fix`: what the
    message for a missing one tells the user to change)."""
    return list(_iter_records(path, required, encoding, fix=fix))


def _iter_records(
    path: Path, required: list[str], encoding: str, *, fix: str = _COLUMNS_FIX
) -> Iterator[tuple[dict, int]]:
    """`_read_records`' rows one at a time, each checked as it is read: a reader that stops early (the first N rows
    of a large unlabelled file) neither holds nor checks the rest."""
    if not path.is_file():
        raise ValueError(f"Data file {str(path)!r} does not exist.")
    previous_limit = csv.field_size_limit(_FIELD_SIZE_LIMIT)  # a long document is one field: no 128 KiB limit
    try:
        yield from _read_open_records(path, required, _opening(encoding), fix)
    except UnicodeDecodeError as error:
        raise _not_text(path, encoding, error) from None
    finally:
        csv.field_size_limit(previous_limit)


def _csv_rows(path: Path, reader: csv.DictReader) -> Iterator[dict]:
    """`reader`'s rows; a malformed quote is a one-line error naming its line."""
    try:
        yield from reader
    except csv.Error as error:
        # DictReader's line_num is the last row it gave; its reader's, the line the error was found on
        start, end = reader.line_num + 1, reader.reader.line_num
        lines = f"line {end}" if end <= start else f"lines {start}-{end}"
        raise ValueError(
            f"{path}, {lines}: {error} (a quote opened in a field on line {start} and not closed as CSV closes it?). "
            'Double a quote that is part of the text ("") and quote the whole field, or remove the stray quote.'
        ) from None


def _opening(encoding: str | None) -> str:
    """The codec a file is opened with: UTF-8 skips a byte-order mark (Excel's "CSV UTF-8"), which would otherwise
    become part of the first column's name or line."""
    if encoding is None or encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        return "utf-8-sig"
    return encoding


def _not_text(path: Path, encoding: str | None, error: UnicodeDecodeError) -> ValueError:
    return ValueError(
        f"{path} is not valid {encoding or 'utf-8'} text ({error.reason}): pass the file's encoding with "
        "--file_encoding (e.g. latin-1), or save it as UTF-8."
    )


def _read_open_records(path: Path, required: list[str], encoding: str, fix: str) -> Iterator[tuple[dict, int]]:
    suffix = path.suffix.lower()
    records = 0
    with open(path, encoding=encoding, newline="") as handle:
        if suffix in (".csv", ".tsv"):
            if suffix == ".csv":
                # strict: a quote left open (`I'd say meh" overall`) is an error, not a field that swallows the lines
                # after it into one row with the last line's label
                reader = csv.DictReader(handle, strict=True)
            else:
                reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            present = reader.fieldnames or []
            if not present:
                raise ValueError(
                    f"{path} is empty (not even a header line): write a header naming its columns and one row per "
                    "line, or pass another file."
                )
            _check_columns(path, required, present, fix=fix)
            # DictReader keeps the last field of a repeated name; one no column is read from loses nothing
            repeated = sorted({column for column in required if present.count(column) > 1})
            if repeated:
                raise ValueError(
                    f"{path}, line 1: the header names the column(s) {repeated} more than once, so only the last "
                    "one's values would be read. Rename the repeated column(s) in the header."
                )
            spanning, line_before = [], reader.line_num
            for row in _csv_rows(path, reader):
                # a quoted field holding line breaks: valid CSV, but said below (blank lines skipped are not)
                if any(isinstance(value, str) and ("\n" in value or "\r" in value) for value in row.values()):
                    spanning.append(line_before + 1)
                line_before = reader.line_num
                if None in row or None in row.values():  # DictReader's marks for extra / missing fields
                    raise ValueError(
                        f"{path}, line {reader.line_num}: expected {len(present)} fields ({present}), got a different "
                        "number. Fix the line (an unquoted delimiter inside a text?)."
                    )
                if suffix == ".tsv":
                    _check_unquoted(path, reader.line_num, row, required)
                records += 1
                yield row, reader.line_num
            if spanning:  # info: texts with line breaks are common (tweets); strict quoting refuses most merges
                logger.info(
                    "%s: %d row(s) span more than one line (a quoted field holding line breaks), the first starting "
                    "on line %d: if a stray quote merged lines there, fix it.",
                    path,
                    len(spanning),
                    spanning[0],
                )
        elif suffix == ".json" and _starts_an_array(handle):
            # a JSON array of objects (pandas' to_json(orient="records"), datasets' to_json(lines=False)): read
            # whole, each object named by the line it starts on
            for row, line_number in _json_array(path, handle.read()):
                _check_columns(path, required, list(row), line=line_number, fix=fix)
                records += 1
                yield row, line_number
        elif suffix in (".jsonl", ".json"):
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}, line {line_number}: not a JSON object ({error}); the file must hold one JSON object "
                        "per line (JSON lines)."
                    ) from None
                if isinstance(row, list):  # a .jsonl holding an array (a .json array is read above)
                    raise ValueError(
                        f"{path}, line {line_number}: a JSON array of {len(row):,} item(s), not one JSON object per "
                        "line: write JSON lines (pandas: to_json(orient='records', lines=True)), or name the file "
                        ".json to have it read as one JSON array."
                    )
                if not isinstance(row, dict):
                    raise ValueError(
                        f"{path}, line {line_number}: expected a JSON object per line, got {_shown(row)}. Write one "
                        "JSON object per line (JSON lines)."
                    )
                _check_columns(path, required, list(row), line=line_number, fix=fix)
                records += 1
                yield row, line_number
        else:
            raise ValueError(
                f"Cannot read {str(path)!r}: unknown extension {path.suffix!r}. Use .csv, .tsv, .jsonl (JSON lines) "
                "or .json (JSON lines, or one array of objects)."
            )
    if not records:
        what = "a header line and no rows" if suffix in (".csv", ".tsv") else "no JSON object"
        raise ValueError(f"{path} holds no examples: {what}. Add rows, one per line, or pass another file.")


def _starts_an_array(handle) -> bool:
    """Whether an open text file's first character past whitespace is "[" (the position is put back)."""
    start = handle.tell()
    character = handle.read(1)
    while character and character.isspace():
        character = handle.read(1)
    handle.seek(start)
    return character == "["


def _json_array(path: Path, text: str) -> Iterator[tuple[dict, int]]:
    """The objects of a JSON array file, each with the line it starts on."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1

    def skip(at: int) -> int:
        while at < len(text) and text[at].isspace():
            at += 1
        return at

    counted = [0, 1]  # (a position, its line): each count goes on from the last, never from the file's start

    def line(at: int) -> int:
        if at < counted[0]:  # (an error's position may lie before the last item's start)
            return text.count("\n", 0, at) + 1
        counted[1] += text.count("\n", counted[0], at)
        counted[0] = at
        return counted[1]

    position = skip(position)
    if position < len(text) and text[position] == "]":
        return
    while True:
        try:
            item, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}, line {line(error.pos)}: not valid JSON ({error.msg}); the file must hold one JSON array of "
                "objects, or one JSON object per line (JSON lines)."
            ) from None
        if not isinstance(item, dict):
            raise ValueError(
                f"{path}, line {line(position)}: expected a JSON object in the array, got {_shown(item)}. Write one "
                "object per row, its columns as keys."
            )
        yield item, line(position)
        position = skip(end)
        if position < len(text) and text[position] == "]":
            if skip(position + 1) != len(text):
                raise ValueError(
                    f"{path}, line {line(skip(position + 1))}: text after the JSON array's end. Remove it, or write "
                    "one JSON array only."
                )
            return
        if position >= len(text) or text[position] != ",":
            raise ValueError(
                f"{path}, line {line(min(position, len(text)))}: expected ',' or ']' after an object of the JSON "
                "array. Fix the file (a JSON array of objects, or JSON lines)."
            )
        position = skip(position + 1)


def _check_unquoted(path: Path, line: int, row: dict, columns: list[str]) -> None:
    """A .tsv is read with its quotes as text (as GLUE's files are), so a field quoted the CSV way, as pandas and Excel
    write one holding a quote (`"He said ""hi"" to me"`), would be read with its quotes doubled. Refused, naming the
    line."""
    for column in columns:
        value = row[column]
        inner = value[1:-1]
        if len(value) > 2 and value[0] == value[-1] == '"' and '""' in inner and '"' not in inner.replace('""', ""):
            raise ValueError(
                f"{path}, line {line}: column {column!r} holds {_shown(value, with_type=False)}, a field quoted the "
                "CSV way (the quotes around it and each inner quote doubled), but a .tsv file's quotes are read as "
                "text: save the file as .csv (pandas: to_csv('file.csv', index=False)), read with CSV quoting."
            )


def _check_columns(path: Path, required: list[str], present: list[str], *, fix: str, line: int | None = None) -> None:
    missing = [column for column in required if column not in present]
    if missing:
        where = f"{path}, line {line}" if line is not None else str(path)
        raise ValueError(f"{where}: missing column(s) {missing}; the columns present are {present}. {fix}")


def _text(value, path: Path, line: int, column: str) -> str:
    """A text column's value as a string: text as it is, a number as written, a missing value (JSON null or NaN) as "";
    anything else (a nested object, a list, true/false) is refused, naming where it is."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):  # JSON's NaN (Python's json reads it): no value, as null
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(
        f"{path}, line {line}: column {column!r} holds {_shown(value)}, not text. Write the text "
        "itself in that field (a nested object's text as a string of its own column)."
    )


def _labels(records: list[tuple[dict, int]], label_column: str, path: Path):
    for row, line in records:
        value = row[label_column]
        if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
            raise ValueError(
                f"{path}, line {line}: label {value!r} in column {label_column!r} is empty or not a class name or "
                "number. Fill in the label or drop the line."
            )
        if not isinstance(value, (str, int, float)):  # a JSON list or object: str() would make it a class name
            raise ValueError(
                f"{path}, line {line}: label {_shown(value, with_type=False)} in column {label_column!r} is a "
                f"{type(value).__name__}, not a class name or number. Write the label itself (a string or a number)."
            )
        if isinstance(value, str) and value.strip() == label_column:
            raise ValueError(
                f"{path}, line {line}: the label is {value!r}, the label column's own name: a repeated header line "
                "(files joined with cat?). Remove that line."
            )
        typed = _typed_label(value)
        if isinstance(typed, float) and not math.isfinite(typed):
            # NaN marks "no label" for a regression head, and "nan" would make a classification a regression.
            raise ValueError(
                f"{path}, line {line}: label {value!r} in column {label_column!r} is not a finite number. Fill in "
                "the label or drop the line (unlabelled text belongs in --unlabeled_file)."
            )
        yield value, line


def _say_mixed_labels(path: Path, read: list[tuple[int | float | str, int]]) -> None:
    """Warns of labels whose kinds mix in a way a typo makes: a few decimals among whole numbers (one "1.0" turns a
    classification into a regression), or numbers among names (the classes are then ordered as text: "10" before
    "2")."""
    kinds: dict[type, list[int]] = {}
    for value, line in read:
        kinds.setdefault(type(value), []).append(line)
    decimals, integers, names = kinds.get(float, []), kinds.get(int, []), kinds.get(str, [])
    if decimals and integers and len(decimals) <= max(len(read) // 100, 1):
        logger.warning(
            "%s: %d of %d labels are decimals (the first on line %d), so the labels are read as regression targets; "
            "if they are classes, write those labels as whole numbers.",
            path,
            len(decimals),
            len(read),
            decimals[0],
        )
    elif names and integers and not decimals:  # with a decimal the task is a regression, and the names are refused
        numbers = integers
        logger.warning(
            "%s: the labels mix numbers (%d rows, the first on line %d) and names (%d rows, the first on line %d), "
            "so every label is a class name ordered as text ('10' before '2'); if that is not meant, fix those lines.",
            path,
            len(numbers),
            numbers[0],
            len(names),
            names[0],
        )


def _shown(value, *, with_type: bool = True) -> str:
    """A value for a message: its type and the start of its repr, never a whole file's worth."""
    text = repr(value)
    if len(text) > _SHOWN:
        text = text[:_SHOWN] + "..."
    return f"{type(value).__name__} {text}" if with_type else text


def _typed_label(value) -> int | float | str:
    # CSV gives strings; JSON gives numbers or strings. "3" is an integer label, "3.8" a regression target.
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip()
    # plain ASCII numbers only: int() and float() also read "1_2" as 12 and Arabic-Indic digits as their values, which
    # merged labels the file keeps apart ("1_2" and "12") into one class
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


_INTEGER = re.compile(r"[-+]?[0-9]+")
_DECIMAL = re.compile(
    r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?:inf|infinity|nan)", flags=re.IGNORECASE
)
