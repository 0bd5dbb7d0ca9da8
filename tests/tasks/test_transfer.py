"""Transfer-set builders (`hf_distill.tasks.transfer`) and the data files they read, without the script."""

from __future__ import annotations

import logging
import math

import pytest
from datasets import Dataset, Features, Value

from hf_distill.tasks.augment import augment_dataset
from hf_distill.tasks.files import load_custom_files
from hf_distill.tasks.transfer import load_unlabeled_file, mix_transfer_rows, unlabeled_rows


def scored(scores: list[float]) -> Dataset:
    features = Features({"sentence": Value("string"), "label": Value("float32")})
    return Dataset.from_dict({"sentence": [f"text {i}" for i in range(len(scores))], "label": scores}, features)


def test_a_regression_mix_turns_every_transfer_label_into_nan():
    # Copies of rows without a float label column carry int64 -100, a valid regression target once cast to float:
    # the mix must give them the regression "no label" mark, NaN, which the task term never sees.
    copies = augment_dataset(Dataset.from_dict({"sentence": ["a b c", "d e"]}), text_columns=["sentence"],
                             method="ngram", copies=2, probability=0.0, seed=0, keep_duplicates=True)  # fmt: skip
    assert copies["label"] == [-100] * 4
    mixed = mix_transfer_rows(scored([2.5, 4.0]), [copies], ["sentence"], regression=True)
    assert mixed["label"][:2] == [2.5, 4.0]
    assert len(mixed) == 6 and all(math.isnan(label) for label in mixed["label"][2:])
    assert mixed.features["label"] == Value("float32")


def test_a_classification_mix_drops_whatever_label_a_transfer_set_holds():
    labelled = Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]})
    transfer = Dataset.from_dict({"sentence": ["fine", "awful"], "label": [1, 0]})  # labels the teacher must give
    mixed = mix_transfer_rows(labelled, [transfer], ["sentence"], regression=False)
    assert mixed["label"] == [1, 0, -100, -100] and mixed.features["label"] == Value("int64")


def test_augment_takes_the_tasks_kind_when_the_label_column_does_not_tell_it():
    ratings = Dataset.from_dict({"sentence": ["a b", "c d"], "label": [1, 5]})  # integer ratings, a regression
    # (p = 0 copies every row unchanged: kept, these check the labels alone)
    inferred = augment_dataset(ratings, text_columns=["sentence"], method="ngram", copies=1, probability=0.0, seed=0,
                               keep_duplicates=True)  # fmt: skip
    assert inferred["label"] == [-100, -100]
    told = augment_dataset(ratings, text_columns=["sentence"], method="ngram", copies=1, probability=0.0, seed=0,
                           regression=True, keep_duplicates=True)  # fmt: skip
    assert told.features["label"] == Value("float32") and all(math.isnan(label) for label in told["label"])
    classes = augment_dataset(scored([0.5]), text_columns=["sentence"], method="ngram", copies=1, probability=0.0,
                              seed=0, regression=False, keep_duplicates=True)  # fmt: skip
    assert classes["label"] == [-100] and classes.features["label"] == Value("int64")


def test_unlabeled_rows_from_a_dataset_turn_missing_texts_into_empty_ones():
    rows = unlabeled_rows(Dataset.from_dict({"sentence": ["ok", None], "label": [1, 0]}), ["sentence"],
                          regression=False)  # fmt: skip
    assert rows["sentence"] == ["ok", ""] and rows["label"] == [-100, -100]


def test_a_text_column_named_like_the_label_column_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"text column 'label' has the name of the label column"):
        unlabeled_rows([{"label": "a text"}], ["label"], regression=False)


def test_an_unlabelled_files_text_column_named_label_can_be_read_under_the_tasks_name(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("label,score\nnice film,1\n")
    rows = load_unlabeled_file(path, ["label"], regression=False, output_columns=["sentence"])
    assert rows.column_names == ["sentence", "label"] and rows["sentence"] == ["nice film"] and rows["label"] == [-100]


def test_every_ignored_column_of_an_unlabelled_file_is_named_in_the_log(tmp_path, caplog):
    path = tmp_path / "u.jsonl"
    path.write_text('{"sentence": "fine"}\n{"sentence": "awful", "sentiment": 0, "idx": 7}\n')
    with caplog.at_level(logging.INFO, logger="hf_distill.tasks.transfer"):
        rows = load_unlabeled_file(path, ["sentence"], regression=False)
    assert rows["sentence"] == ["fine", "awful"] and rows["label"] == [-100, -100]
    assert "Ignoring the column(s) ['idx', 'sentiment'] of u.jsonl" in caplog.text  # the key from line 2 on too


def test_blank_rows_of_an_unlabelled_file_are_dropped_and_counted_in_the_log(tmp_path, caplog):
    # an empty field (pandas writes NaN so), whitespace or a JSON null became a transfer row of [CLS] [SEP] alone
    path = tmp_path / "u.csv"
    path.write_text('sentence,stars\nfine day,5\n"",3\n   ,1\nawful,0\n')
    with caplog.at_level(logging.INFO, logger="hf_distill.tasks.transfer"):
        rows = load_unlabeled_file(path, ["sentence"], regression=False)
    assert rows["sentence"] == ["fine day", "awful"]
    assert "Dropped 2 row(s) of u.csv without text (lines 3, 4)" in caplog.text
    blank = tmp_path / "blank.csv"
    blank.write_text('sentence\n""\n \n')
    with pytest.raises(ValueError, match=r"blank\.csv holds no text in column\(s\) \['sentence'\].*2 row"):
        load_unlabeled_file(blank, ["sentence"], regression=False)


def test_a_pair_with_one_side_blank_is_dropped_and_counted_apart(tmp_path, caplog):
    # it gave the teacher [CLS] q [SEP] [SEP], an input no pair task's row looks like; JSON NaN is no text
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"a": "q", "b": null}\n{"a": null, "b": NaN}\n{"a": "", "b": "r"}\n{"a": "s", "b": "t"}\n')
    with caplog.at_level(logging.INFO, logger="hf_distill.tasks.transfer"):
        rows = load_unlabeled_file(pairs, ["a", "b"], regression=False)
    assert rows["a"] == ["s"] and rows["b"] == ["t"]
    assert "Dropped 1 row(s) of p.jsonl without text (lines 2)" in caplog.text
    assert "Dropped 2 row(s) of p.jsonl with one side of the pair blank (lines 1, 3)" in caplog.text
    half = tmp_path / "half.jsonl"
    half.write_text('{"a": "q", "b": ""}\n{"a": "", "b": ""}\n')
    with pytest.raises(ValueError, match=r"half\.jsonl holds no pair with text on both sides.*2 row\(s\), 1 have one"):
        load_unlabeled_file(half, ["a", "b"], regression=False)


@pytest.mark.parametrize(("content", "message"), [
    ("", r"e\.csv is empty \(not even a header line\).*write a header"),
    ("sentence\n", r"e\.csv holds no examples: a header line and no rows.*Add rows"),
])  # fmt: skip
def test_an_empty_unlabelled_file_is_refused_with_what_to_do(tmp_path, content, message):
    (tmp_path / "e.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        load_unlabeled_file(tmp_path / "e.csv", ["sentence"], regression=False)


def test_unlabelled_json_lines_refuse_text_fields_that_are_not_text(tmp_path):
    path = tmp_path / "u.jsonl"
    for bad, kind in (('{"en": "hi"}', "dict"), ('["a", "b"]', "list"), ("false", "bool")):
        path.write_text(f'{{"sentence": "fine"}}\n{{"sentence": {bad}}}\n')
        with pytest.raises(ValueError, match=rf"u\.jsonl, line 2: column 'sentence' holds {kind} .*not text"):
            load_unlabeled_file(path, ["sentence"], regression=False)
    path.write_text('{"sentence": 0}\n{"sentence": 2.5}\n{"sentence": null}\n')
    # numbers are text as written; the null row has none and is dropped (the test above)
    assert load_unlabeled_file(path, ["sentence"], regression=False)["sentence"] == ["0", "2.5"]


def test_labelled_json_lines_refuse_text_fields_that_are_not_text(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"sentence": {"text": "hi"}, "label": 1}\n')
    with pytest.raises(ValueError, match=r"t\.jsonl, line 1: column 'sentence' holds dict"):
        load_custom_files(path, None, ["sentence"])


def test_a_utf8_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    path = tmp_path / "u.csv"
    path.write_bytes("\ufeffsentence\nfine\n".encode())
    assert load_unlabeled_file(path, ["sentence"], regression=False)["sentence"] == ["fine"]
    labelled = tmp_path / "t.csv"
    labelled.write_bytes("\ufeffsentence,label\nfine,1\nawful,0\n".encode())  # two classes: one is refused
    assert load_custom_files(labelled, None, ["sentence"])[0]["train"]["sentence"] == ["fine", "awful"]


def test_an_undecodable_file_is_refused_naming_itself_and_the_encoding_flag(tmp_path):
    path = tmp_path / "u.csv"
    path.write_bytes(b"sentence\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"u\.csv is not valid utf-8 text .*--file_encoding"):
        load_unlabeled_file(path, ["sentence"], regression=False)
    assert load_unlabeled_file(path, ["sentence"], regression=False, encoding="latin-1")["sentence"] == ["café"]


def test_a_csv_field_longer_than_csvs_default_limit_is_read(tmp_path):
    import csv

    limit = csv.field_size_limit()
    path = tmp_path / "u.csv"
    path.write_text("sentence\n" + "word " * 40_000 + "\n")  # 200,000 characters: over the 131,072 default
    assert len(load_unlabeled_file(path, ["sentence"], regression=False)["sentence"][0]) == 200_000
    assert csv.field_size_limit() == limit  # the reader's limit is put back


def test_an_unlabelled_files_missing_column_message_names_the_flag_to_change(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("text\nfine\n")
    expected = r"missing column\(s\) \['sentence'\]; the columns present are \['text'\]\. Pass the file's text column"
    with pytest.raises(ValueError, match=expected + r" name\(s\) \(--unlabeled_text_column\)"):
        load_unlabeled_file(path, ["sentence"], regression=False)


def test_a_masked_lm_corpus_reads_text_as_the_other_files_do(tmp_path):
    from hf_distill.tasks.corpus import _read_lines

    plain = tmp_path / "corpus.txt"
    plain.write_bytes("\ufefffirst line\nsecond\n".encode())
    assert _read_lines(plain, "text", "utf-8") == ["first line", "second"]  # no byte-order mark in the first line
    plain.write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match=r"corpus\.txt is not valid utf-8 text .*--file_encoding"):
        _read_lines(plain, "text", "utf-8")
    lines = tmp_path / "corpus.jsonl"
    lines.write_text('{"text": "a line"}\n{"text": 0}\n')
    assert _read_lines(lines, "text", "utf-8") == ["a line", "0"]
    lines.write_text('{"text": {"en": "a line"}}\n')
    with pytest.raises(ValueError, match=r"corpus\.jsonl, line 1: column 'text' holds dict"):
        _read_lines(lines, "text", "utf-8")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_max_samples_reads_only_the_rows_it_keeps(tmp_path, suffix):
    # the whole file was read into memory and checked before the first N rows were kept: a large corpus cut to a few
    # rows ran out of memory, and a bad line far past them stopped the run
    import json

    path = tmp_path / f"big{suffix}"
    lines = [f"line {i}" for i in range(1000)]
    if suffix == ".csv":
        path.write_text("sentence,label\n" + "".join(f"{text},1\n" for text in lines) + "broken,line,here\n")
    else:
        rows = "".join(json.dumps({"sentence": text, "label": 1}) + "\n" for text in lines)
        path.write_text(rows + "{not json\n")
    out = load_unlabeled_file(path, ["sentence"], regression=False, max_samples=10)
    assert out["sentence"] == lines[:10] and out["label"] == [-100] * 10
    with pytest.raises(ValueError, match=r"line 100[12]"):  # read whole, the bad line is still refused
        load_unlabeled_file(path, ["sentence"], regression=False)


def test_max_samples_stops_at_its_last_row_without_reading_the_next_line(tmp_path):
    import json

    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"sentence": f"line {i}"}) + "\n" for i in range(10)) + "{not json\n")
    out = load_unlabeled_file(path, ["sentence"], regression=False, max_samples=10)
    assert out["sentence"] == [f"line {i}" for i in range(10)]


def test_an_unlabeled_json_array_file_is_read_and_capped(tmp_path):
    # a .json file holding one array of objects (pandas' to_json(orient="records")) was refused
    import json

    path = tmp_path / "reviews.json"
    path.write_text(json.dumps([{"sentence": f"review {i}", "stars": i % 5} for i in range(10)], indent=1))
    rows = load_unlabeled_file(path, ["sentence"], regression=False, max_samples=4)
    assert rows["sentence"] == [f"review {i}" for i in range(4)] and rows["label"] == [-100] * 4
