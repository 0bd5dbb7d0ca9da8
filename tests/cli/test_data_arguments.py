"""hf_distill.cli.data_arguments: options the run would ignore or fail on later are refused before anything loads."""

from __future__ import annotations

import importlib.util

import pytest

from hf_distill.cli.data_arguments import DataArguments

GLUE = {"task_name": "sst2", "data_dir": "/nowhere/glue"}  # nothing is read: the arguments are checked alone
OWN = {"train_file": "/nowhere/train.csv", "text_column": ["text"], "validation_split_size": 10}


# ---- options of the other data source ----


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"validation_file": "/nowhere/my_dev.tsv"},
         r"--validation_file '/nowhere/my_dev\.tsv' goes with --train_file \(your own data\), but --task_name sst2 "
         r"evaluates on the task's own dev set: drop --validation_file, or pass your files with --train_file instead "
         r"of --task_name\.$"),
        ({"text_column": ["text"]},
         r"--text_column text goes with --train_file \(your own data\); --task_name sst2 reads the task's own "
         r"column\(s\) \(sentence\): drop --text_column\.$"),
        ({"label_column": "y"},
         r"--label_column 'y' goes with --train_file \(your own data\); --task_name sst2 reads the task's own label: "
         r"drop --label_column\.$"),
        ({"file_encoding": "latin-1"},
         r"--file_encoding 'latin-1' is the encoding of your own files .*--task_name sst2 reads the task's UTF-8 "
         r"files: drop --file_encoding\.$"),
    ],
)  # fmt: skip
def test_options_of_your_own_files_are_refused_with_a_glue_task(extra, message):
    # they were ignored: scores on GLUE dev looked like scores on the user's file
    with pytest.raises(ValueError, match=message):
        DataArguments(**GLUE, **extra)


def test_the_default_label_column_is_fine_with_a_glue_task(tmp_path):
    assert DataArguments(**GLUE, label_column="label").task_name == "sst2"
    for spelling in ("UTF-8", "utf8", "U8"):  # what the task's files are read as, however it is spelt
        assert DataArguments(**GLUE, file_encoding=spelling).file_encoding == spelling
    # the encoding of an unlabelled file beside the task's own (the GLUE files are read as UTF-8 whatever it says)
    unlabeled = tmp_path / "u.csv"
    unlabeled.write_text("sentence\nfine\n")
    assert DataArguments(**GLUE, file_encoding="latin-1", unlabeled_file=str(unlabeled)).file_encoding == "latin-1"


def test_data_dir_is_refused_with_your_own_files():
    message = (
        r"--data_dir '/nowhere/glue' goes with --task_name \(a GLUE task's TSV folder\); --train_file is read from "
        r"its own path: drop --data_dir\.$"
    )
    with pytest.raises(ValueError, match=message):
        DataArguments(**OWN, data_dir="/nowhere/glue")


# ---- refused here, not after the models load ----


def test_unlabeled_train_rows_without_max_train_samples_is_refused_with_the_later_errors_advice():
    message = (
        r"--unlabeled_train_rows 10 takes the training rows after the labelled ones, but without --max_train_samples "
        r"every training row is labelled and none is left: pass --max_train_samples N below the training split's "
        r"size: the first N rows stay labelled and the rows after them can be used\.$"
    )
    with pytest.raises(ValueError, match=message):
        DataArguments(**GLUE, unlabeled_train_rows=10)
    assert DataArguments(**GLUE, unlabeled_train_rows=10, max_train_samples=100).unlabeled_train_rows == 10


def test_an_unknown_file_encoding_is_refused_naming_the_option():
    message = r"--file_encoding 'utf-9' is not an encoding Python knows: pass one such as utf-8 or latin-1\.$"
    with pytest.raises(ValueError, match=message):
        DataArguments(**OWN, file_encoding="utf-9")
    assert DataArguments(**OWN, file_encoding="Latin-1").file_encoding == "Latin-1"


@pytest.mark.parametrize(
    ("extra", "option"),
    [({"max_eval_samples": 1}, "--max_eval_samples 1"), ({"validation_split_size": 1}, "--validation_split_size 1")],
)
def test_a_regression_task_scored_on_one_row_is_refused(extra, option):
    # Pearson and Spearman fail on one row: after the teacher's fine-tune or a whole training epoch
    message = (
        rf"{option} leaves STS-B's evaluation 1 row, but Pearson and Spearman need at least 2: pass {option[:-1]}2"
    )
    with pytest.raises(ValueError, match=message):
        DataArguments(task_name="stsb", data_dir="/nowhere/glue", **extra)
    assert DataArguments(task_name="sst2", data_dir="/nowhere/glue", **extra).task_name == "sst2"


def test_a_zero_is_still_said_as_out_of_range_for_a_regression():
    with pytest.raises(ValueError, match=r"max_eval_samples must be >= 1, got 0"):
        DataArguments(task_name="stsb", data_dir="/nowhere/glue", max_eval_samples=0)


def test_a_zero_transfer_row_count_is_said_as_out_of_range():
    # it was said that every training row is labelled (the check of --max_train_samples' absence came first)
    with pytest.raises(ValueError, match=r"unlabeled_train_rows must be >= 1, got 0"):
        DataArguments(task_name="sst2", data_dir="/nowhere/glue", unlabeled_train_rows=0)


@pytest.mark.parametrize(
    "name",
    ["max_seq_length", "max_train_samples", "max_eval_samples", "validation_split_size", "max_unlabeled_samples",
     "unlabeled_train_rows", "hp_search_trials"],
)  # fmt: skip
@pytest.mark.parametrize("value", [0, -3])
def test_every_count_below_one_is_refused_naming_the_option(name, value):
    # --max_unlabeled_samples 0 read no row of the file: the run distilled without a transfer set and said nothing
    extra = {"unlabeled_file": "/nowhere/u.csv"} if name == "max_unlabeled_samples" else {}
    with pytest.raises(ValueError, match=rf"^{name} must be >= 1, got {value}\.$"):
        DataArguments(**GLUE, **extra, **{name: value})


def test_a_bool_is_no_copy_count():
    # from Python only (the parser refuses it): True made one copy and said "--augment_copies True" on the card
    with pytest.raises(ValueError, match=r"--augment_copies must be an integer >= 0, got True"):
        DataArguments(**GLUE, augment="mask", augment_copies=True)


def test_augmentation_with_zero_copies_is_no_transfer_set():
    # --augment mask --augment_copies 0 makes no rows: pseudo-labels would train on the labels alone
    assert DataArguments(**GLUE, augment="mask", augment_copies=0).transfer_flags() == []
    with pytest.raises(ValueError, match=r"no transfer set was asked for"):
        DataArguments(**GLUE, student_training="pseudo_labels", augment="mask", augment_copies=0)


def test_a_search_holds_its_rows_out_of_train_beside_your_validation_file():
    # the trials are scored on the held-out rows, the final student on the validation file; without a search the
    # held-out rows would be a second evaluation split
    own = {**OWN, "validation_split_size": 20, "validation_file": "/nowhere/v.csv"}
    with pytest.raises(ValueError, match=r"'v\.csv' is the evaluation split: drop one of them"):
        DataArguments(**own)
    if importlib.util.find_spec("optuna") is None:  # the constructor refuses a search without it
        pytest.skip("optuna is not installed")
    args = DataArguments(**own, hp_search_trials=4)
    assert (args.validation_split_size, args.validation_file, args.hp_search_trials) == (20, "/nowhere/v.csv", 4)
