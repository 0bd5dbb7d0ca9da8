"""hf_distill.tasks.loading: the rows held out of train, and evaluation sets too small to be scored.

Tiny in-memory datasets and tmp files written for these tests; no GLUE rows are copied here.
"""

from __future__ import annotations

import logging

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from hf_distill.cli.data_arguments import DataArguments
from hf_distill.tasks.glue import load_glue_tsv
from hf_distill.tasks.loading import HELD_OUT_SEED, hold_out, load_data


def classes(labels: list[int], texts: list[str] | None = None) -> DatasetDict:
    names = [f"c{index}" for index in range(max(labels) + 1)]
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=names), "idx": Value("int32")})
    texts = texts if texts is not None else [f"text {index}" for index in range(len(labels))]
    return DatasetDict(
        train=Dataset.from_dict({"sentence": texts, "label": labels, "idx": list(range(len(labels)))}, features)
    )


# ---- held-out rows that repeat training rows ----


def test_held_out_rows_repeating_a_training_row_are_counted_in_the_log_and_the_split_is_unchanged(caplog):
    texts = ["a fine day", "a fine day", "a fine day", "rain", "rain", "snow", "wind", "sun", "fog", "hail"]
    raw = classes([0, 1] * 5, texts)
    expected = raw["train"].train_test_split(test_size=4, seed=HELD_OUT_SEED, stratify_by_column="label")
    with caplog.at_level(logging.INFO, logger="hf_distill.tasks.loading"):
        held = hold_out(raw, 4, stratify=True, text_columns=["sentence"])
    # the split is the recorded one: recorded searches name it
    assert held["train"]["idx"] == expected["train"]["idx"]
    assert held["validation"]["idx"] == expected["test"]["idx"]
    remaining = set(held["train"]["sentence"])
    repeated = sum(text in remaining for text in held["validation"]["sentence"])
    assert repeated > 0  # the seed puts copies on both sides: the case under test
    assert (
        f"{repeated} of the 4 held-out rows (--validation_split_size 4) have a text identical to a remaining training "
        "row" in caplog.text
    )


def test_held_out_pairs_are_compared_on_both_texts_and_nothing_is_said_without_repeats(caplog):
    raw = DatasetDict(
        train=Dataset.from_dict(
            {"a": ["x"] * 6, "b": [f"y{index}" for index in range(6)], "label": [0.5] * 6, "idx": list(range(6))}
        )
    )
    with caplog.at_level(logging.INFO, logger="hf_distill.tasks.loading"):
        hold_out(raw, 2, stratify=False, text_columns=["a", "b"])
    assert "held-out rows" not in caplog.text  # "x" repeats, but no pair (a, b) does


def test_a_glue_tasks_held_out_rows_keep_its_class_mix(tmp_path):
    (tmp_path / "SST-2").mkdir()
    rows = "".join(f"film {index} \t{int(index % 10 < 3)}\n" for index in range(100))  # 70 negative, 30 positive
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "SST-2" / name).write_text("sentence\tlabel\n" + rows)
    raw = load_data(DataArguments(task_name="sst2", data_dir=str(tmp_path), validation_split_size=10))[0]
    expected = load_glue_tsv("sst2", tmp_path, splits=["train"])["train"].train_test_split(
        test_size=10, seed=HELD_OUT_SEED, stratify_by_column="label"
    )
    assert raw["validation"]["idx"] == expected["test"]["idx"]
    assert sorted(raw["validation"]["label"]) == [0] * 7 + [1] * 3


# ---- the stratified split's conditions, said with the option ----


@pytest.mark.parametrize(
    ("labels", "size", "message"),
    [
        ([0] * 10 + [1] * 10 + [2], 5,
         r"--validation_split_size 5: a stratified hold-out needs at least 2 rows of each class, but class 'c2' has 1 "
         r"\(class counts: c0 10, c1 10, c2 1\)\. Add rows of that class, or drop its row from the training data\.$"),
        ([0] * 10 + [1] * 10 + [2] * 10, 2,
         r"--validation_split_size 2 is smaller than the number of classes \(3; class counts: c0 10, c1 10, c2 10\): "
         r"a stratified hold-out takes at least one row of each\. Pass --validation_split_size 3 or more\.$"),
    ],
    ids=["a_class_of_one_row", "fewer_rows_than_classes"],
)  # fmt: skip
def test_a_stratified_split_datasets_would_refuse_is_refused_naming_the_option_and_the_fix(labels, size, message):
    with pytest.raises(ValueError, match=message):
        hold_out(classes(labels), size, stratify=True)


def test_a_split_that_leaves_fewer_training_rows_than_classes_is_refused_with_the_largest_that_works():
    raw = classes([0] * 2 + [1] * 2 + [2] * 2)
    with pytest.raises(ValueError, match=r"--validation_split_size 4 leaves 2 training rows for 3 classes .* Pass "
                       r"--validation_split_size 3 or less\.$"):  # fmt: skip
        hold_out(raw, 4, stratify=True)


# ---- a regression needs two evaluation rows (Pearson, Spearman) ----


def regression_file(tmp_path, rows: int = 8):
    path = tmp_path / "train.csv"
    path.write_text("text,score\n" + "".join(f"text {index},{index / 2}\n" for index in range(rows)))
    return str(path)


def test_a_regression_held_out_set_of_one_row_is_refused_before_training(tmp_path):
    args = DataArguments(train_file=regression_file(tmp_path), text_column=["text"], label_column="score",
                         validation_split_size=1)  # fmt: skip
    message = (
        r"--validation_split_size 1 gives the regression's evaluation 1 row, but Pearson and Spearman need at least "
        r"2: pass --validation_split_size 2 or more\.$"
    )
    with pytest.raises(ValueError, match=message):
        load_data(args)


def test_a_regression_cut_to_one_evaluation_row_is_refused_before_training(tmp_path):
    validation = tmp_path / "dev.csv"
    validation.write_text("text,score\nx,0.5\ny,1.5\n")
    args = DataArguments(train_file=regression_file(tmp_path), validation_file=str(validation), text_column=["text"],
                         label_column="score", max_eval_samples=1)  # fmt: skip
    with pytest.raises(ValueError, match=r"--max_eval_samples 1 gives the regression's evaluation 1 row, but "):
        load_data(args)


def test_a_regression_validation_file_of_one_row_is_refused_naming_it(tmp_path):
    validation = tmp_path / "dev.csv"
    validation.write_text("text,score\nx,0.5\n")
    args = DataArguments(train_file=regression_file(tmp_path), validation_file=str(validation), text_column=["text"],
                         label_column="score")  # fmt: skip
    with pytest.raises(ValueError, match=r"--validation_file 'dev\.csv' gives the regression's evaluation 1 row"):
        load_data(args)


def test_a_classification_may_evaluate_on_one_row(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\na,0\nb,1\nc,0\nd,1\n")
    args = DataArguments(train_file=str(path), text_column=["text"], validation_file=str(path), max_eval_samples=1)
    assert load_data(args)[0]["validation"].num_rows == 4  # cut to 1 later, by limit_and_tokenize


def test_a_text_column_given_as_one_string_is_one_column(tmp_path):
    # DataArguments(text_column="text") from Python was read character by character: columns ('t', 'e', 'x', 't')
    path = tmp_path / "train.csv"
    path.write_text("text,label\na,0\nb,1\nc,0\nd,1\n")
    args = DataArguments(train_file=str(path), text_column="text", validation_file=str(path))
    assert load_data(args)[2] == ("text",)
    unlabeled = tmp_path / "u.csv"
    unlabeled.write_text("sentence\nmore\n")
    args = DataArguments(train_file=str(path), text_column="text", validation_file=str(path),
                         unlabeled_file=str(unlabeled), unlabeled_text_column="sentence")  # fmt: skip
    assert args.text_column == ["text"] and args.unlabeled_text_column == ["sentence"]
