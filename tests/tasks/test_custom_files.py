"""hf_distill.tasks.files: your own data files that would be read wrongly without a word are refused in one line.

The rows below are written for these tests (tmp files); no GLUE rows are copied here.
"""

from __future__ import annotations

import json

import pytest

from hf_distill.tasks.files import load_custom_files
from hf_distill.tasks.transfer import load_unlabeled_file


def write(path, text: str):
    path.write_text(text)
    return path


# ---- text columns the loader would overwrite or misread ----


@pytest.mark.parametrize("reserved", ["label", "idx"])
def test_a_text_column_named_like_a_column_the_loader_writes_is_refused(tmp_path, reserved):
    # the loader writes "label" and "idx" itself: a text column of either name was replaced, its text lost
    train = write(tmp_path / "train.csv", f"{reserved},rating\ngreat movie,pos\nawful film,neg\n")
    message = (
        rf"--text_column '{reserved}' has the name of a column the loader writes \('label', 'idx'\), which would "
        rf"replace the text: rename that column in the file \(e\.g\. to 'text'\) and pass the new name with "
        r"--text_column\.$"
    )
    with pytest.raises(ValueError, match=message):
        load_custom_files(train, None, [reserved], label_column="rating")


def test_a_text_column_that_is_also_the_label_column_is_refused(tmp_path):
    # the text became the class label and the real label column was ignored
    train = write(tmp_path / "train.csv", "s,label\ngreat movie,1\nawful film,0\n")
    message = (
        r"--text_column 's' is also the --label_column: the text would become the class label\. Pass the label's "
    )
    with pytest.raises(ValueError, match=message):
        load_custom_files(train, None, ["s"], label_column="s")


def test_a_text_column_named_twice_is_refused(tmp_path):
    # one "s" column, later tokenised as the pair (s, s)
    train = write(tmp_path / "train.csv", "s,label\ngreat movie,1\nawful film,0\n")
    message = r"--text_column names 's' twice: a sentence pair would be that text with itself\. Pass one text column"
    with pytest.raises(ValueError, match=message):
        load_custom_files(train, None, ["s", "s"])


def test_a_text_column_named_label_is_still_fine_in_an_unlabelled_file(tmp_path):
    # the unlabelled file's columns are renamed to the task's: nothing there is overwritten
    path = write(tmp_path / "u.csv", "label\nnice film\n")
    assert load_unlabeled_file(path, ["label"], regression=False, output_columns=["sentence"])["sentence"] == [
        "nice film"
    ]


# ---- labels ----


@pytest.mark.parametrize(("rows", "shown"), [("a,pos\nb,pos\n", "'pos'"), ("a,1\nb,1\n", "'1'")])
def test_a_classification_training_file_with_one_class_is_refused(tmp_path, rows, shown):
    # one label gave num_labels = 1, which transformers trains as a regression on class id 0
    train = write(tmp_path / "train.csv", "text,label\n" + rows)
    message = (
        rf"train\.csv: every label in column 'label' is {shown}, so there is one class and nothing to classify: add "
        r"examples of the other classes, or write the labels as decimals \(e\.g\. 3\.0\) for a regression\.$"
    )
    with pytest.raises(ValueError, match=message):
        load_custom_files(train, None, ["text"])


def test_a_single_decimal_label_is_still_a_regression(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,2.5\nb,2.5\n")
    assert load_custom_files(train, None, ["text"])[1] is None


@pytest.mark.parametrize("label", [[0], {"class": 1}])
def test_a_json_label_that_is_a_list_or_an_object_is_refused(tmp_path, label):
    # a list became a class named "[0]"
    rows = [{"sentence": "a", "label": label}, {"sentence": "b", "label": 1}]
    train = write(tmp_path / "train.jsonl", "\n".join(json.dumps(row) for row in rows) + "\n")
    kind = type(label).__name__
    with pytest.raises(
        ValueError, match=rf"train\.jsonl, line 1: label .* in column 'label' is a {kind}, not a class"
    ):
        load_custom_files(train, None, ["sentence"])


# ---- file layout ----


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_header_that_repeats_a_column_read_is_refused_naming_it(tmp_path, suffix):
    # csv.DictReader kept the last column of a repeated name, silently
    sep = "," if suffix == ".csv" else "\t"
    train = write(tmp_path / f"train{suffix}", f"sentence{sep}sentence{sep}label\na{sep}b{sep}1\nc{sep}d{sep}0\n")
    message = rf"train\{suffix}, line 1: the header names the column\(s\) \['sentence'\] more than once"
    with pytest.raises(ValueError, match=message):
        load_custom_files(train, None, ["sentence"])


def test_a_repeated_column_that_is_not_read_is_left_alone(tmp_path):
    # two empty names from trailing commas: no column the run reads is lost
    train = write(tmp_path / "train.csv", "sentence,label,,\na,1,,\nb,0,,\n")
    assert load_custom_files(train, None, ["sentence"])[0]["train"]["sentence"] == ["a", "b"]


def test_a_json_array_file_is_read_as_rows(tmp_path):
    # pandas' to_json(orient="records") writes one line holding the whole array: it was refused ("write JSON lines")
    rows = [{"sentence": f"this is example sentence number {index}", "label": index % 2} for index in range(2000)]
    train = write(tmp_path / "records.json", json.dumps(rows))
    loaded = load_custom_files(train, None, ["sentence"])[0]["train"]
    assert loaded["sentence"] == [row["sentence"] for row in rows] and loaded["label"] == [r["label"] for r in rows]
    pretty = write(tmp_path / "pretty.json", json.dumps(rows[:3], indent=2))
    assert load_custom_files(pretty, None, ["sentence"])[0]["train"]["sentence"] == [r["sentence"] for r in rows[:3]]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            '[\n  {"sentence": "a", "label": 1},\n  {"label": 0}\n]',
            r"pretty\.json, line 3: missing column\(s\) \['sentence'\]",
        ),
        (
            '[\n  {"sentence": "a", "label": 1},\n  ["b", 0]\n]',
            r"line 3: expected a JSON object in the array, got list",
        ),
        (
            '[{"sentence": "a", "label": 1} {"sentence": "b", "label": 0}]',
            r"line 1: expected ',' or '\]' after an object",
        ),
        ('[{"sentence": "a", "label": 1}]\n[]', r"line 2: text after the JSON array's end"),
        ('[{"sentence": "a", "label": 1},\n{"sentence": "b", "label": }]', r"line 2: not valid JSON"),
        ("[]", r"holds no examples: no JSON object"),
    ],
)
def test_a_bad_json_array_file_is_refused_naming_its_line(tmp_path, text, match):
    train = write(tmp_path / "pretty.json", text)
    with pytest.raises(ValueError, match=match) as error:
        load_custom_files(train, None, ["sentence"])
    assert "\n" not in str(error.value)


def test_a_json_array_in_a_jsonl_file_is_refused_in_a_short_line(tmp_path):
    rows = [{"sentence": f"this is example sentence number {index}", "label": index % 2} for index in range(2000)]
    train = write(tmp_path / "records.jsonl", json.dumps(rows))
    with pytest.raises(ValueError) as error:
        load_custom_files(train, None, ["sentence"])
    message = str(error.value)
    assert "\n" not in message and len(message) < 400
    assert "records.jsonl, line 1: a JSON array" in message
    assert "write JSON lines (pandas: to_json(orient='records', lines=True)), or name the file .json" in message


def test_a_long_json_value_that_is_not_an_object_is_quoted_short(tmp_path):
    train = write(tmp_path / "train.jsonl", json.dumps("x" * 10_000) + "\n")
    with pytest.raises(ValueError, match=r"line 1: expected a JSON object per line, got str 'xxx") as error:
        load_custom_files(train, None, ["sentence"])
    assert len(str(error.value)) < 300


def test_a_tsv_field_quoted_the_csv_way_is_refused_naming_its_line(tmp_path):
    # pandas' to_csv(sep="\t") quotes a field holding a quote and doubles it: read with the quotes as text (as GLUE's
    # .tsv files must be), the sentence became '"He said ""hi"" to me"'
    path = tmp_path / "t.tsv"
    path.write_text('text\tlabel\nplain text\t0\n"He said ""hi"" to me"\t1\n')
    with pytest.raises(
        ValueError, match=r"t\.tsv, line 3: column 'text' holds '\"He said.*quoted the CSV way.*as \.csv"
    ):
        load_custom_files(path, None, ["text"], "label")
    with pytest.raises(ValueError, match=r"t\.tsv, line 3: column 'text'"):
        load_unlabeled_file(path, ["text"], regression=False)
    (tmp_path / "t.csv").write_text(path.read_text().replace("\t", ","))  # the same rows as CSV read as meant
    data, _ = load_custom_files(tmp_path / "t.csv", None, ["text"], "label")
    assert data["train"]["text"] == ["plain text", 'He said "hi" to me']


def test_a_csv_quoted_second_text_column_of_a_tsv_is_refused_naming_it(tmp_path):
    path = tmp_path / "pair.tsv"
    path.write_text('s1\ts2\tlabel\nworld\tplain\t0\nhello\t"He said ""hi"" to me"\t1\n')
    with pytest.raises(ValueError, match=r"pair\.tsv, line 3: column 's2' holds '\"He said.*quoted the CSV way"):
        load_custom_files(path, None, ["s1", "s2"], "label")


def test_literal_quotes_in_a_tsv_are_text_as_in_glue(tmp_path):
    path = tmp_path / "g.tsv"  # GLUE's own style: quotes are part of the sentence, and "" alone is no CSV quoting
    path.write_text('text\tlabel\n"a quoted sentence"\t0\nhe said "hi\t1\n"" is two quotes\t0\n')
    data, _ = load_custom_files(path, None, ["text"], "label")
    assert data["train"]["text"] == ['"a quoted sentence"', 'he said "hi', '"" is two quotes']


def test_labels_are_numbers_only_when_written_as_plain_ascii_numbers(tmp_path):
    # int() reads "1_2" as 12 and "٣" as 3: labels the file kept apart were merged into one class
    path = tmp_path / "l.csv"
    path.write_text("text,label\na,1_2\nb,12\nc,2_3\nd,٣\ne,3\n")
    data, names = load_custom_files(path, None, ["text"], "label")
    assert names == sorted(["1_2", "12", "2_3", "٣", "3"]) and len(set(data["train"]["label"])) == 5
    numbers = tmp_path / "n.csv"
    numbers.write_text("text,label\na, 2\nb,+1\nc,-1\n")  # plain integers, spaces and signs as before
    data, names = load_custom_files(numbers, None, ["text"], "label")
    assert names == ["-1", "1", "2"] and data["train"]["label"] == [2, 1, 0]
    decimals = tmp_path / "d.csv"
    decimals.write_text("text,label\na,3.8\nb,1e-1\nc,2\n")
    data, names = load_custom_files(decimals, None, ["text"], "label")
    assert names is None and data["train"]["label"] == pytest.approx([3.8, 0.1, 2.0])


# ---- quotes, repeated headers and labels of mixed kinds ----


def test_a_csv_quote_left_open_is_refused_not_merged_into_one_row(tmp_path):
    # the default (non-strict) reader took lines 2-5 as one text with line 5's label: 2 rows read from 5 lines
    train = write(tmp_path / "train.csv", 'text,label\n"Great film, he said,1\ndull and slow,0\nnot bad,1\n'
                                          "I'd say \"meh\" overall,0\na fine cast,1\n")  # fmt: skip
    with pytest.raises(ValueError, match=r"train\.csv, lines 2-5: .*\(a quote opened in a field on line 2 .*\(\"\"\)"):
        load_custom_files(train, None, ["text"])


def test_a_quoted_field_holding_line_breaks_is_read_and_said(tmp_path, caplog):
    train = write(tmp_path / "train.csv", 'text,label\n"two\nlines",1\none line,0\n"a ""quoted"" word",1\n')
    with caplog.at_level("INFO"):
        data, names = load_custom_files(train, None, ["text"])
    assert data["train"]["text"] == ["two\nlines", "one line", 'a "quoted" word'] and names == ["0", "1"]
    assert "1 row(s) span more than one line (a quoted field holding line breaks), the first starting on line 2" in (
        caplog.text
    )


def test_a_repeated_header_line_is_refused_not_made_a_class(tmp_path):
    # two exports joined with cat: the second header became a third class named "label"
    train = write(tmp_path / "train.csv", "text,label\ngood film,1\nbad film,0\ntext,label\nfine,1\n")
    with pytest.raises(ValueError, match=r"train\.csv, line 4: the label is 'label', the label column's own name: a "
                                         r"repeated header line"):  # fmt: skip
        load_custom_files(train, None, ["text"])


def test_labels_of_mixed_kinds_are_said(tmp_path, caplog):
    rows = "".join(f"t{i},{i % 3}\n" for i in range(150))
    with caplog.at_level("WARNING"):  # one "1.0" among 150 whole numbers: read as a regression, said
        data, names = load_custom_files(write(tmp_path / "typo.csv", f"text,label\n{rows}x,1.0\n"), None, ["text"])
    assert names is None and "1 of 151 labels are decimals (the first on line 152)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # numbers among names: classes ordered as text, said
        data, names = load_custom_files(write(tmp_path / "mix.csv", "text,label\na,2\nb,10\nc,pos\n"), None, ["text"])
    assert names == ["10", "2", "pos"]
    assert "mix numbers (2 rows, the first on line 2) and names (1 rows, the first on line 4)" in caplog.text
    caplog.clear()
    # a decimal among names makes a regression that refuses the names, naming the decimal's line as well: the warning
    # had said "every label is a class name" and the refusal blamed the first name alone
    rows = "".join(f"t{i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
    with caplog.at_level("WARNING"), pytest.raises(ValueError, match=r"dec.csv, line 2: label 'neg' is not a number, "
                                                   r"but the task is a regression \(the training labels are decimals: "
                                                   r"1 of them, the first on line 22 of dec.csv\)"):  # fmt: skip
        load_custom_files(write(tmp_path / "dec.csv", f"text,label\n{rows}u,2.5\n"), None, ["text"])
    assert "class name" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # a regression's whole and decimal scores, or names alone: nothing said
        load_custom_files(write(tmp_path / "scores.csv", "text,label\na,2\nb,3.5\nc,4.25\n"), None, ["text"])
        load_custom_files(write(tmp_path / "names.csv", "text,label\na,pos\nb,neg\n"), None, ["text"])
    assert "labels" not in caplog.text


def test_blank_lines_and_stray_carriage_returns_are_no_rows_spanning_lines(tmp_path, caplog):
    # the warning measured the jump in line numbers, which blank lines and \r\r\n endings make too
    train = tmp_path / "train.csv"
    train.write_bytes(b"text,label\r\r\ngood film,1\r\r\n\r\nbad film,0\r\r\n")
    with caplog.at_level("INFO"):
        data, _ = load_custom_files(train, None, ["text"])
    assert data["train"]["text"] == ["good film", "bad film"] and "span more than one line" not in caplog.text


def test_string_labels_take_a_given_teachers_order_only_where_they_are_its_names(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,Neutral\nb,entailment\nc,contradiction\n")
    teacher = ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]
    assert load_custom_files(train, None, ["text"], label_order=teacher)[1] == [
        "contradiction",
        "Neutral",
        "entailment",
    ]
    assert load_custom_files(train, None, ["text"])[1] == ["Neutral", "contradiction", "entailment"]  # sorted
    # other names (or another count) keep the sorted order, and the teacher check says or refuses as before
    assert load_custom_files(train, None, ["text"], label_order=["neg", "neu", "pos"])[1][0] == "Neutral"
    assert load_custom_files(train, None, ["text"], label_order=teacher[:2])[1][0] == "Neutral"
    numbers = write(tmp_path / "numbers.csv", "text,label\na,2\nb,0\nc,1\n")  # ids are the file's own numbers
    assert load_custom_files(numbers, None, ["text"], label_order=["2", "1", "0"])[1] == ["0", "1", "2"]


def test_integer_labels_keep_their_numeric_order(tmp_path):
    # sorted as text, 10 came before 2: ids 0, 2, 1
    (tmp_path / "t.csv").write_text("text,label\na,1\nb,2\nc,10\n")
    data, names = load_custom_files(tmp_path / "t.csv", None, ["text"])
    assert names == ["1", "2", "10"] and data["train"]["label"] == [0, 1, 2]


# ---- what each line holds ----


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("TRAIN.CSV", "text,label\ngood,1\nbad,0\n"),
        ("Train.JSONL", '{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n'),
    ],
)
def test_a_file_whose_extension_is_in_capitals_is_read_like_its_lowercase_kind(tmp_path, name, text):
    # Windows exports and old tools name files TRAIN.CSV
    data, names = load_custom_files(write(tmp_path / name, text), None, ["text"])
    assert data["train"]["text"] == ["good", "bad"] and data["train"]["label"] == [1, 0] and names == ["0", "1"]


def test_a_csv_line_with_too_few_fields_is_refused_naming_it(tmp_path):
    # csv.DictReader fills the missing fields with None: line 3 became a row with an empty text
    train = write(tmp_path / "train.csv", "label,text\n1,good film\n0\n1,great\n0,bad\n")
    with pytest.raises(ValueError, match=r"train\.csv, line 3: expected 2 fields \(\['label', 'text'\]\), got a "
                                         r"different number"):  # fmt: skip
        load_custom_files(train, None, ["text"])


def test_a_label_of_only_spaces_is_refused_not_made_a_class(tmp_path):
    train = write(tmp_path / "train.csv", "text,label\ngood,pos\nbad,neg\nmeh, \n")
    with pytest.raises(ValueError, match=r"train\.csv, line 4: label ' ' in column 'label' is empty or not a class "
                                         r"name or number\. Fill in the label or drop the line\.$"):  # fmt: skip
        load_custom_files(train, None, ["text"])


def test_a_json_nan_text_is_read_as_empty_text(tmp_path):
    # Python's json.dumps writes a float NaN (a pandas column's missing text) as NaN: it must not become the word "nan"
    train = write(tmp_path / "train.jsonl", '{"text": NaN, "label": 1}\n{"text": "bad", "label": 0}\n')
    assert load_custom_files(train, None, ["text"])[0]["train"]["text"] == ["", "bad"]


def test_a_jsonl_line_without_the_text_column_is_refused_naming_it(tmp_path):
    # unchecked, the missing column surfaced as a KeyError traceback
    train = write(tmp_path / "train.jsonl", '{"text": "good", "label": 1}\n{"txt": "bad", "label": 0}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl, line 2: missing column\(s\) \['text'\]; the columns present "
                                         r"are \['txt', 'label'\]") as error:  # fmt: skip
        load_custom_files(train, None, ["text"])
    assert "\n" not in str(error.value)
