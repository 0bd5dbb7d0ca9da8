"""GLUE task table, TSV parsing (hand-written files in the official layout), custom files and tokenization.

The sentences below are written for these tests; no GLUE rows are copied here. The last tests read the real
files from ``../shared/data/glue`` beside the checkout, when that folder exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from transformers import BertTokenizer

from hf_distill.tasks import glue
from hf_distill.tasks.files import load_custom_files
from hf_distill.tasks.glue import (
    GLUE_TASKS,
    load_glue,
    load_glue_tsv,
    normalize_task_name,
    tokenize_dataset,
)

GLUE_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "glue"


def write_tsv(path: Path, rows: list[list[str]], *, bom: bool = False, final_newline: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(row) for row in rows) + ("\n" if final_newline else "")
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


# ---- task table and names ----


def test_label_names_follow_the_hub_order():
    expected = {
        "cola": ("unacceptable", "acceptable"),
        "sst2": ("negative", "positive"),
        "mrpc": ("not_equivalent", "equivalent"),
        "stsb": None,
        "qqp": ("not_duplicate", "duplicate"),
        "mnli": ("entailment", "neutral", "contradiction"),
        "qnli": ("entailment", "not_entailment"),
        "rte": ("entailment", "not_entailment"),
        "wnli": ("not_entailment", "entailment"),
    }
    assert {name: task.label_names for name, task in GLUE_TASKS.items()} == expected
    assert GLUE_TASKS["stsb"].is_regression and GLUE_TASKS["stsb"].num_labels == 1


def test_text_columns_and_folders():
    assert GLUE_TASKS["qnli"].text_columns == ("question", "sentence")
    assert GLUE_TASKS["mnli"].text_columns == ("premise", "hypothesis")
    assert GLUE_TASKS["qqp"].text_columns == ("question1", "question2")
    folders = ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"]
    assert [task.folder for task in GLUE_TASKS.values()] == folders


@pytest.mark.parametrize(
    ("name", "expected"),
    [("sst2", "sst2"), ("SST-2", "sst2"), ("sst-2", "sst2"), ("STS-B", "stsb"), ("CoLA", "cola"), (" MNLI ", "mnli")],
)
def test_normalize_task_name_accepts_usual_spellings(name, expected):
    assert normalize_task_name(name) == expected


def test_normalize_task_name_refuses_unknown_names():
    with pytest.raises(ValueError, match="Unknown GLUE task 'imdb'; valid names: cola, sst2, mrpc, stsb"):
        normalize_task_name("imdb")
    with pytest.raises(ValueError, match="must be a string"):
        normalize_task_name(2)


# ---- parsing each task's official layout ----


def test_cola_has_no_header_and_its_test_file_has_one(tmp_path):
    write_tsv(
        tmp_path / "CoLA" / "train.tsv", [["src1", "1", "", "Birds sing."], ["src1", "0", "*", "Sing birds the."]]
    )
    # dev.tsv in GLUE has no final newline
    write_tsv(tmp_path / "CoLA" / "dev.tsv", [["src2", "1", "", "It rained."]], final_newline=False)
    write_tsv(tmp_path / "CoLA" / "test.tsv", [["index", "sentence"], ["0", "Fish swim."]])
    data = load_glue_tsv("cola", tmp_path)
    assert list(data) == ["train", "validation", "test"]
    assert data["train"].column_names == ["sentence", "label", "idx"]
    assert data["train"].to_list() == [
        {"sentence": "Birds sing.", "label": 1, "idx": 0},
        {"sentence": "Sing birds the.", "label": 0, "idx": 1},
    ]
    assert data["validation"].to_list() == [{"sentence": "It rained.", "label": 1, "idx": 0}]
    assert data["test"].to_list() == [{"sentence": "Fish swim.", "label": -1, "idx": 0}]
    assert data["train"].features["label"].names == ["unacceptable", "acceptable"]


def test_sst2_keeps_the_sentence_verbatim(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", [["sentence", "label"], ["a warm , funny film ", "1"]])
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["dull and long ", "0"]])
    write_tsv(tmp_path / "SST-2" / "test.tsv", [["index", "sentence"], ["0", "a quiet gem "]])
    data = load_glue_tsv("SST-2", tmp_path)
    assert data["train"][0] == {"sentence": "a warm , funny film ", "label": 1, "idx": 0}
    assert data["validation"][0]["label"] == 0
    assert data["test"][0] == {"sentence": "a quiet gem ", "label": -1, "idx": 0}


def test_mrpc_reads_the_bom_header_and_literal_quotes(tmp_path):
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    rows = [
        header,
        ["1", "11", "12", 'She called it "a fair deal", he said.', '"A fair deal," she called it.'],
        ["0", "13", "14", "Prices rose 5 % in May.", "Sales fell in June."],
    ]
    write_tsv(tmp_path / "MRPC" / "train.tsv", rows, bom=True)
    write_tsv(tmp_path / "MRPC" / "dev.tsv", rows[:2], bom=True)
    write_tsv(
        tmp_path / "MRPC" / "test.tsv",
        [["index", "#1 ID", "#2 ID", "#1 String", "#2 String"], ["0", "15", "16", 'A "b', "c"]],
    )
    data = load_glue_tsv("mrpc", tmp_path)
    assert data["train"].column_names == ["sentence1", "sentence2", "label", "idx"]
    # QUOTE_NONE: the quotes stay, and the row does not swallow the next line.
    assert data["train"].to_list() == [
        {
            "sentence1": 'She called it "a fair deal", he said.',
            "sentence2": '"A fair deal," she called it.',
            "label": 1,
            "idx": 0,
        },
        {"sentence1": "Prices rose 5 % in May.", "sentence2": "Sales fell in June.", "label": 0, "idx": 1},
    ]
    assert data["test"][0] == {"sentence1": 'A "b', "sentence2": "c", "label": -1, "idx": 0}


def test_stsb_reads_ten_columns_and_float_scores(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
    write_tsv(
        tmp_path / "STS-B" / "train.tsv",
        [
            [*header, "score"],
            ["0", "main-news", "f", "2012", "0001", "none", "none", "A dog runs.", "A dog is running.", "4.800"],
            ["1", "main-news", "f", "2012", "0002", "none", "none", "A man eats.", "It snows.", "0.250"],
        ],
    )
    write_tsv(tmp_path / "STS-B" / "test.tsv", [header, ["0", "g", "f", "2015", "0003", "none", "none", "x", "y"]])
    data = load_glue_tsv("stsb", tmp_path)
    assert list(data) == ["train", "test"]
    assert data["train"].features["label"] == datasets.Value("float32")
    assert data["train"]["label"] == pytest.approx([4.8, 0.25])
    assert data["train"][1]["sentence2"] == "It snows."
    assert data["test"][0]["label"] == -1.0


def test_rte_maps_string_labels_by_hub_order(tmp_path):
    header = ["index", "sentence1", "sentence2", "label"]
    write_tsv(
        tmp_path / "RTE" / "train.tsv",
        [
            header,
            ["0", "Tom owns a red car.", "Tom owns a car.", "entailment"],
            ["1", "It is dry.", "It rains.", "not_entailment"],
        ],
    )
    write_tsv(tmp_path / "RTE" / "dev.tsv", [header, ["0", "A cat sleeps.", "An animal sleeps.", "entailment"]])
    data = load_glue_tsv("rte", tmp_path / "RTE")  # the task folder itself works too
    assert data["train"]["label"] == [0, 1]
    assert data["train"][0]["sentence2"] == "Tom owns a car."
    assert data["validation"]["label"] == [0]


def test_wnli_and_qnli_columns(tmp_path):
    write_tsv(
        tmp_path / "WNLI" / "train.tsv",
        [["index", "sentence1", "sentence2", "label"], ["0", "The jar fell. It broke.", "The jar broke.", "1"]],
    )
    write_tsv(
        tmp_path / "QNLI" / "dev.tsv",
        [["index", "question", "sentence", "label"], ["0", "Who wrote it?", "Ann wrote it.", "entailment"]],
    )
    wnli = load_glue_tsv("wnli", tmp_path)
    qnli = load_glue_tsv("qnli", tmp_path)
    assert wnli["train"][0]["label"] == 1  # 1 = entailment, the Hub's id for it in WNLI
    assert list(qnli) == ["validation"]  # QNLI's train.tsv is not required
    assert qnli["validation"][0] == {"question": "Who wrote it?", "sentence": "Ann wrote it.", "label": 0, "idx": 0}


def test_qqp_columns(tmp_path):
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    write_tsv(tmp_path / "QQP" / "train.tsv", [header, ["5", "1", "2", "How old is it?", "What age is it?", "1"]])
    write_tsv(tmp_path / "QQP" / "test.tsv", [["id", "question1", "question2"], ["0", "Why?", "How?"]])
    data = load_glue_tsv("qqp", tmp_path)
    assert data["train"][0] == {"question1": "How old is it?", "question2": "What age is it?", "label": 1, "idx": 0}
    assert data["test"][0]["label"] == -1


def test_mnli_reads_matched_and_mismatched_dev_files(tmp_path):
    parses = ["sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse"]
    train_header = ["index", "promptID", "pairID", "genre", *parses, "sentence1", "sentence2", "label1", "gold_label"]
    dev_header = [*train_header[:10], "label1", "label2", "label3", "label4", "label5", "gold_label"]
    blank = ["p"] * 4
    write_tsv(
        tmp_path / "MNLI" / "train.tsv",
        [
            train_header,
            ["0", "1", "1e", "fiction", *blank, "He left early.", "He stayed.", "contradiction", "contradiction"],
        ],
    )
    for name, label in (("dev_matched.tsv", "neutral"), ("dev_mismatched.tsv", "entailment")):
        write_tsv(
            tmp_path / "MNLI" / name,
            [dev_header, ["0", "2", "2n", "travel", *blank, "A premise.", "A hypothesis.", *[label] * 5, label]],
        )
    write_tsv(
        tmp_path / "MNLI" / "test_matched.tsv",
        [train_header[:10], ["0", "3", "3n", "slate", *blank, "Test premise.", "Test hypothesis."]],
    )
    data = load_glue_tsv("mnli", tmp_path)
    assert list(data) == ["train", "validation_matched", "validation_mismatched", "test_matched"]
    assert data["train"][0] == {"premise": "He left early.", "hypothesis": "He stayed.", "label": 2, "idx": 0}
    assert data["validation_matched"]["label"] == [1]
    assert data["validation_mismatched"]["label"] == [0]
    assert data["test_matched"][0]["label"] == -1


def test_load_glue_tsv_loads_only_the_requested_splits(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", [["sentence", "label"], ["good ", "1"]])
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["bad ", "0"]])
    assert list(load_glue_tsv("sst2", tmp_path, splits=["validation"])) == ["validation"]


def test_a_doubled_final_newline_adds_no_row(tmp_path):
    path = write_tsv(tmp_path / "SST-2" / "train.tsv", [["sentence", "label"], ["a fine film ", "1"], ["dull ", "0"]])
    path.write_text(path.read_text() + "\n")
    train = load_glue_tsv("sst2", tmp_path, splits=["train"])["train"]
    assert train["sentence"] == ["a fine film ", "dull "] and train["label"] == [1, 0]


# ---- refusals ----


def test_refuses_a_missing_data_dir(tmp_path):
    with pytest.raises(ValueError, match="data_dir .*nowhere.* is not a folder.*SST-2/"):
        load_glue_tsv("sst2", tmp_path / "nowhere")


def test_refuses_a_folder_without_the_task_files(tmp_path):
    with pytest.raises(ValueError, match=r"No rte files in .*expected at least one of .*train\.tsv.*dev\.tsv"):
        load_glue_tsv("rte", tmp_path)


def test_refuses_another_tasks_folder_as_the_tasks_own(tmp_path):
    # RTE read from WNLI's folder (the same columns) loaded without a word, every label flipped: WNLI's 1 is
    # entailment, RTE's id 1 not_entailment
    write_tsv(
        tmp_path / "WNLI" / "train.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "A b.", "A.", "1"]]
    )
    with pytest.raises(ValueError, match=r"data_dir .*WNLI' is wnli's folder \(WNLI/\), not rte's: pass the GLUE root "
                                         r"holding RTE/, or the RTE folder itself"):  # fmt: skip
        load_glue_tsv("rte", tmp_path / "WNLI")
    assert load_glue_tsv("wnli", tmp_path / "WNLI")["train"][0]["label"] == 1  # its own folder, as before
    (tmp_path / "RTE").mkdir()  # the root holding both: each task reads its own
    write_tsv(
        tmp_path / "RTE" / "dev.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "A b.", "A.", "entailment"]]
    )
    assert load_glue_tsv("rte", tmp_path)["validation"][0]["label"] == 0


def test_refuses_a_requested_split_whose_file_is_missing(tmp_path):
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["bad ", "0"]])
    with pytest.raises(ValueError, match=r"split 'train' needs the file .*SST-2/train\.tsv"):
        load_glue_tsv("sst2", tmp_path, splits=["train", "validation"])
    with pytest.raises(ValueError, match="mnli has no split 'validation'"):
        load_glue_tsv("mnli", tmp_path, splits=["validation"])


def test_refuses_a_glue_root_without_the_tasks_folder_naming_the_folder(tmp_path):
    # it said "qqp split 'train' needs the file '<root>/train.tsv' ... leave the split out of `splits`"
    write_tsv(tmp_path / "SST-2" / "train.tsv", [["sentence", "label"], ["good ", "1"]])
    with pytest.raises(ValueError, match=r"data_dir .* holds no QQP/ folder and no qqp files: pass the GLUE root "
                                         r"holding QQP/, or the QQP folder itself"):  # fmt: skip
        load_glue_tsv("qqp", tmp_path, splits=["train", "validation"])


@pytest.mark.parametrize("header", [True, False])
def test_refuses_a_split_with_no_rows(tmp_path, header):
    # a dev.tsv holding its header alone (or an empty CoLA dev.tsv, which has none) trained a student, scored it on
    # nothing and failed after saving it (ZeroDivisionError in the latency pass)
    task = "sst2" if header else "cola"
    folder = tmp_path / ("SST-2" if header else "CoLA")
    folder.mkdir()
    (folder / "dev.tsv").write_text("sentence\tlabel\n" if header else "")
    what = "empty, or a header alone"
    with pytest.raises(ValueError, match=rf"dev\.tsv holds no {task} rows \({what}\): give the whole"):
        load_glue_tsv(task, tmp_path, splits=["validation"])


def test_refuses_a_header_without_the_task_columns(tmp_path):
    path = write_tsv(
        tmp_path / "RTE" / "train.tsv", [["index", "premise", "hypothesis", "label"], ["0", "a", "b", "0"]]
    )
    with pytest.raises(ValueError, match=r"train\.tsv, line 1: the header .* lacks the column\(s\) \['sentence1'"):
        load_glue_tsv("rte", path.parent)


def test_refuses_a_row_with_the_wrong_number_of_columns(tmp_path):
    write_tsv(
        tmp_path / "SST-2" / "train.tsv",
        [["sentence", "label"], ["fine ", "1"], ["a stray\ttab ", "0"]],
    )
    with pytest.raises(ValueError, match=r"train\.tsv, line 3: expected 2 columns, .* got 3 tab-separated fields"):
        load_glue_tsv("sst2", tmp_path)


def test_qqps_cut_lines_are_skipped_counted_and_said(tmp_path, caplog):
    # QQP's official files hold lines cut short (transformers' QqpProcessor and Megatron skip them); invented rows
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    write_tsv(
        tmp_path / "QQP" / "train.tsv",
        [header, ["0", "1", "2", "How?", "Why?", "0"], ["1", "3", "4", "What is"], ["2", "5", "6", "A?", "B?", "1"]],
    )
    with caplog.at_level("WARNING"):
        train = load_glue_tsv("qqp", tmp_path, splits=["train"])["train"]
    assert train["question1"] == ["How?", "A?"] and train["label"] == [0, 1] and train["idx"] == [0, 1]
    assert "skipped 1 line(s) not in 6 columns" in caplog.text and "(first: line 3)" in caplog.text


def test_refuses_a_cola_row_with_the_wrong_number_of_columns(tmp_path):
    write_tsv(tmp_path / "CoLA" / "train.tsv", [["src", "1", "", "Fine."], ["src", "1", "A header?"]])
    with pytest.raises(ValueError, match=r"train\.tsv, line 2: expected 4 columns, no header, got 3"):
        load_glue_tsv("cola", tmp_path)


def test_refuses_an_unknown_label(tmp_path):
    write_tsv(
        tmp_path / "RTE" / "dev.tsv",
        [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"], ["1", "c", "d", "maybe"]],
    )
    with pytest.raises(ValueError, match=r"dev\.tsv, line 3: unknown rte label 'maybe'; expected one of"):
        load_glue_tsv("rte", tmp_path)
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["meh ", "2"]])
    with pytest.raises(ValueError, match=r"dev\.tsv, line 2: unknown sst2 label '2'"):
        load_glue_tsv("sst2", tmp_path)


def test_refuses_a_score_that_is_not_a_number(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
    write_tsv(tmp_path / "STS-B" / "dev.tsv", [[*header, "score"], ["0", *"gfyoss", "a", "b", "high"]])
    with pytest.raises(ValueError, match=r"dev\.tsv, line 2: the stsb score 'high' is not a number"):
        load_glue_tsv("stsb", tmp_path)
    # NaN is the "no label" mark (the row then counted as labelled, the teacher's fine-tune MSE went NaN), inf no score
    for value in ("nan", "inf", "-Infinity"):
        write_tsv(tmp_path / "STS-B" / "dev.tsv", [[*header, "score"], ["0", *"gfyoss", "a", "b", value]])
        with pytest.raises(ValueError, match=rf"dev\.tsv, line 2: the stsb score '{value}' is not a finite number"):
            load_glue_tsv("stsb", tmp_path)


# ---- Hub path ----


def test_load_glue_reads_files_and_never_touches_the_hub_when_given_data_dir(tmp_path, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub must not be contacted when data_dir is given")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.setattr(glue, "load_glue_hub", no_hub)
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [["sentence", "label"], ["fine ", "1"]])
    assert load_glue("sst-2", data_dir=tmp_path)["validation"]["label"] == [1]


def test_load_glue_without_data_dir_asks_the_hub_for_the_normalized_config(monkeypatch):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append(args) or "hub data")
    assert load_glue("STS-B") == "hub data"
    assert calls == [("nyu-mll/glue", "stsb")]


# ---- custom files ----


def test_custom_csv_with_string_labels_maps_sorted_names(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text('text,sentiment\n"Good, really good",positive\nawful,negative\nok I guess,neutral\n')
    validation = tmp_path / "dev.csv"
    validation.write_text("text,sentiment\nmeh,neutral\n")
    data, label_names = load_custom_files(train, validation, ["text"], "sentiment")
    assert label_names == ["negative", "neutral", "positive"]
    assert data["train"].column_names == ["text", "label", "idx"]
    assert data["train"]["text"][0] == "Good, really good"  # CSV quoting is honoured
    assert data["train"]["label"] == [2, 0, 1]
    assert data["validation"]["label"] == [1]
    assert data["train"].features["label"].names == label_names


def test_custom_tsv_sentence_pairs_with_integer_labels(tmp_path):
    train = write_tsv(tmp_path / "train.tsv", [["a", "b", "stars"], ['"Yes" she said', "no", "5"], ["x", "y", "1"]])
    data, label_names = load_custom_files(train, None, ("a", "b"), "stars")
    assert list(data) == ["train"]
    assert label_names == ["1", "5"]  # sorted numerically, ids 0..K-1
    assert data["train"]["label"] == [1, 0]
    assert data["train"]["a"][0] == '"Yes" she said'  # TSV quotes are literal, as in GLUE


def test_custom_jsonl_with_float_labels_is_a_regression(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(row) for row in [{"s": "a", "y": 0.5}, {"s": "b", "y": 3}]) + "\n")
    data, label_names = load_custom_files(train, None, ["s"], "y")
    assert label_names is None
    assert data["train"].features["label"] == datasets.Value("float32")
    assert data["train"]["label"] == pytest.approx([0.5, 3.0])


def test_custom_files_refuse_a_missing_column(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("sentence,label\nhi,1\n")
    with pytest.raises(ValueError, match=r"train\.csv: missing column\(s\) \['text'\]; the columns present are "):
        load_custom_files(train, None, ["text"], "label")


def test_custom_files_refuse_an_unknown_extension(tmp_path):
    train = tmp_path / "train.parquet"
    train.write_text("")
    with pytest.raises(ValueError, match=r"unknown extension '\.parquet'. Use \.csv, \.tsv, \.jsonl \(JSON lines\) or "
                       r"\.json"):  # fmt: skip
        load_custom_files(train, None, ["text"], "label")


def test_custom_files_refuse_a_validation_label_unseen_in_training(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,cat\nb,dog\n")
    validation = tmp_path / "dev.csv"
    validation.write_text("text,label\nc,cat\nd,bird\n")
    with pytest.raises(ValueError, match=r"dev\.csv, line 3: label 'bird' does not occur in the training file"):
        load_custom_files(train, validation, ["text"], "label")


def test_custom_files_refuse_bad_rows_and_text_columns(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,1,extra\n")
    with pytest.raises(ValueError, match=r"train\.csv, line 2: expected 2 fields"):
        load_custom_files(train, None, ["text"], "label")
    train.write_text("text,label\na,\n")
    with pytest.raises(ValueError, match=r"train\.csv, line 2: label '' in column 'label' is empty"):
        load_custom_files(train, None, ["text"], "label")
    with pytest.raises(ValueError, match="text_columns must name one text column or two"):
        load_custom_files(train, None, ["a", "b", "c"], "label")


def test_custom_files_refuse_labels_that_are_not_finite_numbers(tmp_path):
    # "nan" would turn a 0/1 classification into a regression; a NaN regression target is the "no label" mark and
    # would silently leave the loss; either way the user meant a label that is not there.
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,0\nb,1\nc,nan\n")
    with pytest.raises(ValueError, match=r"train\.csv, line 4: label 'nan' in column 'label' is not a finite number"):
        load_custom_files(train, None, ["text"], "label")
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(json.dumps({"s": "a", "y": 0.5}) + "\n" + json.dumps({"s": "b", "y": float("nan")}) + "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl, line 2: label nan in column 'y' is not a finite number"):
        load_custom_files(jsonl, None, ["s"], "y")
    validation = tmp_path / "dev.csv"
    validation.write_text("text,label\nd,inf\n")
    train.write_text("text,label\na,0.5\nb,1.5\n")
    with pytest.raises(ValueError, match=r"dev\.csv, line 2: label 'inf' .* is not a finite number"):
        load_custom_files(train, validation, ["text"], "label")


# ---- tokenization ----


@pytest.fixture
def tokenizer():
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "."]
    # BertTokenizer(vocab_file=...) ignores the file in transformers 5.24 (only special tokens survive); pass a dict.
    return BertTokenizer(vocab={word: index for index, word in enumerate(words)})


def test_tokenize_dataset_pairs_truncates_without_padding(tokenizer):
    data = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {
                    "sentence1": ["the cat sat on the mat .", "a dog"],
                    "sentence2": ["the dog ran .", "ran"],
                    "label": [0, 1],
                    "idx": [0, 1],
                }
            )
        }
    )
    tokenized = tokenize_dataset(data, tokenizer, "rte", max_length=8)
    train = tokenized["train"]
    assert set(train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert train["labels"] == [0, 1]
    lengths = [len(ids) for ids in train["input_ids"]]
    assert lengths == [8, 6]  # truncated to max_length; the short pair is not padded up to it
    assert train["token_type_ids"][1] == [0, 0, 0, 0, 1, 1]  # [CLS] a dog [SEP] | ran [SEP]


def test_tokenize_dataset_with_explicit_single_column(tokenizer):
    data = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["the cat", "a dog ran"], "label": [1, 0]})}
    )
    train = tokenize_dataset(data, tokenizer, ["text"], max_length=16)["train"]
    assert train["input_ids"] == [[2, 5, 6, 3], [2, 10, 11, 12, 3]]
    assert train["labels"] == [1, 0]


def test_tokenize_dataset_refuses_missing_columns_and_bad_lengths(tokenizer):
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["the cat"], "label": [1]})})
    with pytest.raises(ValueError, match=r"Split 'train' lacks the column\(s\) \['sentence'\]"):
        tokenize_dataset(data, tokenizer, "sst2")
    with pytest.raises(ValueError, match="max_length must be a positive int, got 0"):
        tokenize_dataset(data, tokenizer, ["text"], max_length=0)


@pytest.mark.parametrize(("columns", "length", "minimum"), [(["text"], 2, 3), (["text", "other"], 3, 4)])
def test_tokenize_dataset_refuses_a_max_length_that_leaves_no_room_past_the_special_tokens(
    tokenizer, columns, length, minimum
):
    # transformers then truncates nothing: every example kept its whole length
    data = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["the cat sat"], "other": ["a dog ran"], "label": [1]})}
    )
    special = minimum - 1
    message = (
        rf"max_length {length} \(--max_seq_length\) leaves no room for text: the tokenizer adds {special} special "
        rf"tokens to each example, and with no room left it truncates nothing\. Pass --max_seq_length {minimum} or "
        r"more\.$"
    )
    with pytest.raises(ValueError, match=message):
        tokenize_dataset(data, tokenizer, columns, max_length=length)
    kept = tokenize_dataset(data, tokenizer, columns, max_length=minimum)["train"]["input_ids"][0]
    assert len(kept) == minimum


# ---- real GLUE rows ----

REAL_ROW_COUNTS = {
    "sst2": {"train": 67_349, "validation": 872, "test": 1_821},
    "mrpc": {"train": 3_668, "validation": 408, "test": 1_725},
    "stsb": {"train": 5_749, "validation": 1_500, "test": 1_379},
    "cola": {"train": 8_551, "validation": 1_043, "test": 1_063},
    "rte": {"train": 2_490, "validation": 277, "test": 3_000},
    "wnli": {"train": 635, "validation": 71, "test": 146},
    "qnli": {"validation": 5_463, "test": 5_463},
}


@pytest.mark.parametrize("task", list(REAL_ROW_COUNTS))
def test_real_glue_files_load_with_the_published_row_counts(task):
    folder = GLUE_ROOT / GLUE_TASKS[task].folder
    if not folder.is_dir():
        pytest.skip(f"real GLUE data not found at {folder}")
    data = load_glue_tsv(task, GLUE_ROOT)
    assert {split: len(dataset) for split, dataset in data.items()} == REAL_ROW_COUNTS[task]
    assert set(data["test"]["label"]) == {-1}
    labels = data["validation"]["label"]
    if GLUE_TASKS[task].is_regression:
        assert 0.0 <= min(labels) and max(labels) <= 5.0
    else:
        assert set(labels) == set(range(GLUE_TASKS[task].num_labels))
        if "train" in data:
            assert set(data["train"]["label"]) == set(range(GLUE_TASKS[task].num_labels))
    for column in GLUE_TASKS[task].text_columns:
        assert all(data["validation"][column]), f"empty {column} in {task} validation"


def test_real_mrpc_tokenized_copy_has_the_same_labels():
    folder = GLUE_ROOT / "MRPC" / "senteval_tokenized"
    if not folder.is_dir():
        pytest.skip(f"real GLUE data not found at {folder}")
    original = load_glue_tsv("mrpc", GLUE_ROOT, splits=["train", "validation"])
    tokenized = load_glue_tsv("mrpc", folder, splits=["train", "validation"])
    for split in ("train", "validation"):
        assert tokenized[split]["label"] == original[split]["label"]


def test_a_deberta_with_relative_positions_only_reads_any_length():
    # its position table was said to end at max_position_embeddings (deberta-v3: 512), though no input reads it
    from transformers import DebertaV2Config

    from hf_distill.tasks.positions import usable_positions

    assert usable_positions(DebertaV2Config(max_position_embeddings=64, position_biased_input=False)) is None
    assert usable_positions(DebertaV2Config(max_position_embeddings=64, position_biased_input=True)) == 64
