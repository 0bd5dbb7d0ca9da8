"""scripts/build_related_text.py (unlabelled text from the other GLUE tasks) and scripts/hold_out_glue.py (a GLUE
folder whose dev.tsv is held-out training rows), on small GLUE-layout files written here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from scripts_under_test import load_script

from hf_distill.tasks.glue import load_glue_tsv
from hf_distill.tasks.transfer import load_unlabeled_file

build_related_text = load_script("build_related_text")
hold_out_glue = load_script("hold_out_glue")

STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"


def _stsb_line(index: int, first: str, second: str, score: float | None = 2.5) -> str:
    fields = [str(index), "main-news", "f", "2012", str(index), "none", "none", first, second]
    return "\t".join(fields + ([] if score is None else [str(score)]))


def glue_dir(tmp_path: Path) -> Path:
    """STS-B (train, dev, test), MRPC and RTE (pairs), SST-2 and CoLA (single sentences), a few rows each."""
    root = tmp_path / "glue"
    files = {
        "STS-B/train.tsv": [STSB_HEADER, _stsb_line(0, "A man plays a guitar.", "A man plays music.", 3.8),
                            _stsb_line(1, "A cat sleeps.", "A dog runs.", 0.4),
                            _stsb_line(2, "Stocks fell sharply.", "Shares dropped.", 4.0)],
        "STS-B/dev.tsv": [STSB_HEADER, _stsb_line(0, "The senate passed the bill.", "The bill passed.", 4.2)],
        "STS-B/test.tsv": [STSB_HEADER.rsplit("\t", 1)[0],
                           _stsb_line(0, "Rain is likely today.", "It may rain.", None)],
        # the MRPC header starts with a BOM, as GLUE writes it
        "MRPC/train.tsv": ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
                           "1\t1\t2\tThe company said profits rose.\tProfits rose, the company said.",
                           # shares a sentence with STS-B's dev, in other case and spacing: left out
                           "0\t3\t4\tthe  SENATE passed the bill.\tA vote is due.",
                           "1\t5\t6\tThe company said profits rose.\tProfits rose, the company said."],  # a repeat
        "RTE/train.tsv": ["index\tsentence1\tsentence2\tlabel",
                          "0\tParis is the capital of France.\tParis is in France.\tentailment",
                          "1\tThe team lost the final.\tA man plays a guitar.\tnot_entailment"],  # STS-B train text
        "SST-2/train.tsv": ["sentence\tlabel", "a gripping , funny film \t1", "dull and overlong \t0"],
        "CoLA/train.tsv": ["gj04\t1\t\tThe dog barked.", "gj04\t0\t*\tDog the barked."],
    }  # fmt: skip
    for name, lines in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def run_main(module, monkeypatch, *arguments: str) -> None:
    monkeypatch.setattr(sys, "argv", [module.__name__, *arguments])
    module.main()


def test_a_pair_task_gets_the_other_pair_tasks_pairs_minus_any_sharing_a_text_with_it(tmp_path, monkeypatch, capsys):
    data = glue_dir(tmp_path)
    output = tmp_path / "stsb.tsv"
    run_main(build_related_text, monkeypatch, "--task", "stsb", "--data_dir", str(data), "--output", str(output))
    lines = output.read_text(encoding="utf-8").splitlines()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["glue", "stsb.tsv"]  # no stsb.tsv.partial beside it
    assert lines[0] == "sentence1\tsentence2"
    assert sorted(lines[1:]) == [
        "Paris is the capital of France.\tParis is in France.",
        "The company said profits rose.\tProfits rose, the company said.",
    ]  # SST-2 and CoLA give no pairs; the pairs holding an STS-B dev or train sentence are left out; no repeat
    printed = capsys.readouterr().out
    assert "mrpc: 1 rows, 1 left out" in printed and "rte: 1 rows, 1 left out" in printed
    rows = load_unlabeled_file(output, ("sentence1", "sentence2"), regression=True)
    assert len(rows) == 2 and set(rows["sentence2"]) == {"Paris is in France.", "Profits rose, the company said."}


def test_a_pair_sharing_the_tasks_second_sentence_or_a_test_text_is_left_out_and_a_blank_side_never_written(
    tmp_path, monkeypatch, capsys
):
    # the leak check reads every text column of every split (dev's sentence2, test's sentence1), and a pair needs
    # two non-blank sides
    data = glue_dir(tmp_path)
    rte = ["index\tsentence1\tsentence2\tlabel", "0\tParis is the capital of France.\tThe bill passed.\tentailment",
           "1\tClouds gather.\tRain is likely today.\tentailment", "2\tAn empty side.\t \tentailment",
           "3\tThe river is wide.\tThe river flows.\tentailment"]  # fmt: skip
    (data / "RTE" / "train.tsv").write_text("\n".join(rte) + "\n", encoding="utf-8")
    output = tmp_path / "stsb.tsv"
    run_main(build_related_text, monkeypatch, "--task", "stsb", "--data_dir", str(data), "--output", str(output),
             "--sources", "rte")  # fmt: skip
    assert output.read_text(encoding="utf-8").splitlines() == [
        "sentence1\tsentence2",
        "The river is wide.\tThe river flows.",
    ]
    assert "rte: 1 rows, 2 left out" in capsys.readouterr().out


def test_a_single_sentence_task_gets_every_sentence_of_the_others_as_a_row(tmp_path, monkeypatch):
    data = glue_dir(tmp_path)
    output = tmp_path / "cola.tsv"
    run_main(build_related_text, monkeypatch, "--task", "cola", "--data_dir", str(data), "--output", str(output))
    rows = load_unlabeled_file(output, ("sentence",), regression=False)
    sentences = set(rows["sentence"])
    assert "a gripping , funny film" in sentences and "The senate passed the bill." in sentences
    assert "Paris is in France." in sentences and "Rain is likely today." in sentences
    assert not {"The dog barked.", "Dog the barked."} & sentences  # CoLA's own sentences never
    assert len(rows) == len(sentences)  # no repeats (MRPC's repeated pair, STS-B's shared sentence)


def test_the_same_seed_writes_the_same_file_and_another_seed_the_same_rows_reordered(tmp_path, monkeypatch):
    data = glue_dir(tmp_path)
    texts = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        output = tmp_path / f"{name}.tsv"
        run_main(build_related_text, monkeypatch, "--task", "cola", "--data_dir", str(data), "--output", str(output),
                 "--seed", seed)  # fmt: skip
        texts[name] = output.read_text(encoding="utf-8")
    assert texts["a"] == texts["b"] and texts["a"] != texts["c"]
    assert sorted(texts["a"].splitlines()) == sorted(texts["c"].splitlines())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--task", "stsb", "--sources", "stsb"], r"--sources holds the task itself \(stsb\)"),
        (["--task", "stsb", "--sources", "qqp"], r"--sources qqp: no folder for them under .*present: "),
        (["--task", "stsb", "--sources", "foo"], r"--sources: Unknown GLUE task 'foo'"),
        (["--task", "nope"], r"Unknown GLUE task 'nope'"),
    ],
)
def test_bad_sources_are_refused_with_the_fix(tmp_path, monkeypatch, arguments, message):
    data = glue_dir(tmp_path)
    output = tmp_path / "out.tsv"
    with pytest.raises(SystemExit, match=message):
        run_main(build_related_text, monkeypatch, *arguments, "--data_dir", str(data), "--output", str(output))
    assert not output.exists()


@pytest.mark.parametrize("module", [build_related_text, hold_out_glue])
def test_existing_output_is_kept_unless_overwrite(tmp_path, monkeypatch, module):
    data = glue_dir(tmp_path)
    if module is build_related_text:
        target = tmp_path / "out.tsv"
        arguments = ["--task", "stsb", "--output", str(target)]
    else:
        target = tmp_path / "held" / "STS-B" / "dev.tsv"
        arguments = ["--task", "stsb", "--rows", "1", "--output", str(tmp_path / "held")]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("mine\n")
    with pytest.raises(SystemExit, match="exist.*pass --overwrite to replace"):
        run_main(module, monkeypatch, *arguments, "--data_dir", str(data))
    assert target.read_text() == "mine\n"
    run_main(module, monkeypatch, *arguments, "--data_dir", str(data), "--overwrite")
    assert target.read_text() != "mine\n"


@pytest.mark.parametrize(("task", "folder"), [("stsb", "STS-B"), ("cola", "CoLA"), ("mrpc", "MRPC")])
def test_held_out_rows_become_dev_and_the_rest_train(tmp_path, monkeypatch, task, folder):
    data = glue_dir(tmp_path)
    original = load_glue_tsv(task, data, splits=["train"])["train"]
    for name, seed in (("a", "0"), ("b", "0")):
        run_main(hold_out_glue, monkeypatch, "--task", task, "--data_dir", str(data), "--rows", "1", "--seed", seed,
                 "--output", str(tmp_path / name))  # fmt: skip
    split = load_glue_tsv(task, tmp_path / "a", splits=["train", "validation"])
    assert len(split["validation"]) == 1 and len(split["train"]) == len(original) - 1
    key = "sentence" if task == "cola" else "sentence1"
    if task == "mrpc":  # the header keeps its BOM, as GLUE writes it
        assert (tmp_path / "a" / folder / "dev.tsv").read_text(encoding="utf-8").startswith("\ufeffQuality\t")
    pairs = {part: list(zip(split[part][key], split[part]["label"])) for part in ("train", "validation")}
    assert sorted(pairs["train"] + pairs["validation"]) == sorted(zip(original[key], original["label"]))
    assert not set(pairs["validation"]) & set(pairs["train"])
    for name in ("train.tsv", "dev.tsv"):  # the same seed holds out the same rows
        assert (tmp_path / "a" / folder / name).read_text() == (tmp_path / "b" / folder / name).read_text()


@pytest.mark.parametrize("rows", ["0", "3"])
def test_holding_out_none_or_every_row_is_refused(tmp_path, monkeypatch, rows):
    data = glue_dir(tmp_path)
    with pytest.raises(SystemExit, match=rf"--rows {rows}: stsb's train.tsv has 3 rows; hold out between 1 and 2"):
        run_main(hold_out_glue, monkeypatch, "--task", "stsb", "--data_dir", str(data), "--rows", rows, "--output",
                 str(tmp_path / "held"))  # fmt: skip
    assert not (tmp_path / "held").exists()


def test_hold_out_never_writes_into_the_files_it_reads_nor_a_task_without_one_dev_file(tmp_path, monkeypatch):
    data = glue_dir(tmp_path)
    before = (data / "STS-B" / "train.tsv").read_text()
    with pytest.raises(
        SystemExit, match=r"--output .* would write into the GLUE files it reads .*pass another folder"
    ):
        run_main(hold_out_glue, monkeypatch, "--task", "stsb", "--data_dir", str(data), "--rows", "1", "--output",
                 str(data), "--overwrite")  # fmt: skip
    assert (data / "STS-B" / "train.tsv").read_text() == before
    assert (data / "STS-B" / "dev.tsv").read_text().count("\n") == 2
    with pytest.raises(SystemExit, match=r"mnli is scored on dev_matched.tsv, dev_mismatched.tsv, not one dev.tsv"):
        run_main(hold_out_glue, monkeypatch, "--task", "mnli", "--data_dir", str(data), "--output",
                 str(tmp_path / "held"))  # fmt: skip


def test_the_leak_filter_compares_letters_by_default_or_case_and_spaces(tmp_path, monkeypatch):
    # "<.SPX>" against ".SPX": the same sentence to a reader, told apart by spaces-only comparison
    data = glue_dir(tmp_path)
    with open(data / "RTE" / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write("2\tThe index <.SPX> fell.\tMarkets fell.\tentailment\n")
    with open(data / "STS-B" / "dev.tsv", "a", encoding="utf-8") as handle:
        handle.write(_stsb_line(1, "The index .SPX fell.", "Stocks slid.", 3.0) + "\n")
    kept = {}
    for match, option in (("default", []), ("letters", ["--match", "letters"]), ("spaces", ["--match", "spaces"])):
        output = tmp_path / f"{match}.tsv"
        run_main(build_related_text, monkeypatch, "--task", "stsb", "--data_dir", str(data), "--output", str(output),
                 *option)  # fmt: skip
        kept[match] = "The index <.SPX> fell." in output.read_text(encoding="utf-8")
    assert kept == {"default": False, "letters": False, "spaces": True}


def test_the_letters_match_tells_texts_apart_by_their_digits(tmp_path):
    data = glue_dir(tmp_path)
    with open(data / "STS-B" / "dev.tsv", "a", encoding="utf-8") as handle:
        handle.write(_stsb_line(1, "Stocks fell 5 percent.", "Shares slid.", 3.0) + "\n")
    with open(data / "RTE" / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write("2\tStocks fell 7 percent.\tMarkets were down.\tentailment\n")  # another number: kept
        handle.write("3\tstocks fell 5 PERCENT!\tMarkets were down.\tentailment\n")  # the same letters and digits
    rows, counts = build_related_text.related_rows("stsb", data, ["rte"])
    assert rows == [("Paris is the capital of France.", "Paris is in France."),
                    ("Stocks fell 7 percent.", "Markets were down.")]  # fmt: skip
    assert counts == {"rte": {"rows": 2, "left_out_sharing_a_text_with_the_task": 2}}


def test_the_spaces_match_ignores_case_and_repeated_spaces(tmp_path):
    # MRPC's "the  SENATE passed the bill." is STS-B dev's "The senate passed the bill." in other case and spacing
    rows, counts = build_related_text.related_rows("stsb", glue_dir(tmp_path), ["mrpc"], match="spaces")
    assert rows == [("The company said profits rose.", "Profits rose, the company said.")]
    assert counts == {"mrpc": {"rows": 1, "left_out_sharing_a_text_with_the_task": 1}}


@pytest.mark.parametrize(
    "shared",
    ["Lawmakers met.\tThe bill passed.", "Rain is likely today.\tClouds gathered."],
    ids=["dev_sentence2", "test_sentence1"],
)
def test_a_pair_sharing_a_text_with_either_column_of_any_split_of_the_task_is_left_out(tmp_path, shared):
    data = glue_dir(tmp_path)
    with open(data / "RTE" / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write(f"2\t{shared}\tentailment\n")
    rows, counts = build_related_text.related_rows("stsb", data, ["rte"])
    assert rows == [("Paris is the capital of France.", "Paris is in France.")]
    # the new pair, and the fixture's pair holding an STS-B train sentence
    assert counts == {"rte": {"rows": 1, "left_out_sharing_a_text_with_the_task": 2}}


def test_a_pair_with_a_blank_side_is_never_a_row_nor_counted_as_left_out(tmp_path):
    data = glue_dir(tmp_path)
    with open(data / "RTE" / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write("2\tIt rains.\t   \tentailment\n")  # a side of spaces only, blank once stripped
    rows, counts = build_related_text.related_rows("stsb", data, ["rte"])
    assert rows == [("Paris is the capital of France.", "Paris is in France.")]
    assert counts == {"rte": {"rows": 1, "left_out_sharing_a_text_with_the_task": 1}}


def test_no_output_is_written_when_every_source_row_leaks_or_is_blank(tmp_path, monkeypatch):
    data = glue_dir(tmp_path)
    (data / "RTE" / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n"
        "0\tA cat sleeps.\tCats sleep.\tentailment\n"  # an STS-B train sentence
        "1\tIt rains.\t   \tentailment\n",
        encoding="utf-8",
    )
    output = tmp_path / "out" / "stsb.tsv"
    with pytest.raises(SystemExit, match=r"^build_related_text.py: no rows for stsb from rte\.$"):
        run_main(build_related_text, monkeypatch, "--task", "stsb", "--sources", "rte", "--data_dir", str(data),
                 "--output", str(output))  # fmt: skip
    assert not output.parent.exists()  # neither the file, nor its .partial, nor its folder


def test_single_sentence_sources_for_a_pair_task_are_refused_by_name(tmp_path, monkeypatch):
    data = glue_dir(tmp_path)
    with pytest.raises(SystemExit, match=r"--sources sst2 cola: single-sentence tasks give no pairs for stsb; pass "
                                         r"pair tasks \(mrpc rte\)"):  # fmt: skip
        run_main(build_related_text, monkeypatch, "--task", "stsb", "--sources", "sst2", "cola", "--data_dir",
                 str(data), "--output", str(tmp_path / "out.tsv"))  # fmt: skip


def test_a_held_out_row_the_training_split_repeats_is_counted():
    # SST-2's train.tsv repeats 366 lines: 7 of 1,000 held-out rows stood in train.tsv too, unsaid
    kept = ["a film\t1", "dull\t0", "a film\t1"]
    assert hold_out_glue.repeated_rows(kept, ["a film\t1", "fine\t1"]) == 1
    assert hold_out_glue.repeated_rows(kept, ["fine\t1"]) == 0
    # STS-B's, CoLA's and RTE's lines hold an index, a genre or a source beside the text: a text repeated under
    # another index was never counted (STS-B: 14 of 1,000 held-out rows, unsaid)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    positions = hold_out_glue.text_positions("stsb", header)
    assert positions == [7, 8]
    kept = ["0\tmain-news\ta\t2012\t0\tnone\tnone\tA man runs.\tA man is running.\t4.0"]
    held = ["9\tmain-forums\tb\t2014\t3\tnone\tnone\tA man runs.\tA man is running.\t3.8"]
    assert hold_out_glue.repeated_rows(kept, held) == 0 and hold_out_glue.repeated_rows(kept, held, positions) == 1
    assert hold_out_glue.text_positions("cola", None) == [3]  # no header: its fixed layout
    assert hold_out_glue.text_positions("mrpc", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String") == [3, 4]


def _sst2_root(tmp_path: Path, end: str = "") -> Path:
    """A GLUE root holding only SST-2's train.tsv: its header, then 10 rows, sentences s0 ... s9, then `end`."""
    root = tmp_path / "glue"
    (root / "SST-2").mkdir(parents=True)
    lines = "".join(f"s{index}\t{index % 2}\n" for index in range(10))
    (root / "SST-2" / "train.tsv").write_text("sentence\tlabel\n" + lines + end, encoding="utf-8")
    return root


def test_every_training_line_the_last_included_can_be_held_out(tmp_path):
    data = _sst2_root(tmp_path)
    held = set()
    for seed in range(50):
        kept, dev, header = hold_out_glue.hold_out("sst2", data, 3, seed)
        assert header == "sentence\tlabel" and len(kept) == 7 and len(dev) == 3
        held.update(dev)
    assert held == {f"s{index}\t{index % 2}" for index in range(10)}


def test_the_seed_chooses_the_held_out_rows(tmp_path, monkeypatch):
    data = _sst2_root(tmp_path)
    dev = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        run_main(hold_out_glue, monkeypatch, "--task", "sst2", "--data_dir", str(data), "--rows", "3", "--seed", seed,
                 "--output", str(tmp_path / name))  # fmt: skip
        dev[name] = (tmp_path / name / "SST-2" / "dev.tsv").read_text(encoding="utf-8")
    assert dev["a"] == dev["b"] and dev["a"] != dev["c"]


def test_a_blank_line_at_the_end_of_train_is_never_a_row(tmp_path, monkeypatch):
    data = _sst2_root(tmp_path, end="\n")  # a doubled final newline
    rows = sorted(f"s{index}\t{index % 2}" for index in range(10))
    for seed in range(20):
        output = tmp_path / "held"
        run_main(hold_out_glue, monkeypatch, "--task", "sst2", "--data_dir", str(data), "--rows", "3", "--seed",
                 str(seed), "--output", str(output), "--overwrite")  # fmt: skip
        dev = (output / "SST-2" / "dev.tsv").read_text(encoding="utf-8").split("\n")
        train = (output / "SST-2" / "train.tsv").read_text(encoding="utf-8").split("\n")
        assert dev[0] == train[0] == "sentence\tlabel" and dev[-1] == train[-1] == ""
        held, kept = dev[1:-1], train[1:-1]
        assert len(held) == 3 and sorted(held + kept) == rows  # no blank row on either side


def test_main_notes_held_out_rows_whose_text_a_kept_row_repeats_under_another_index(tmp_path, monkeypatch, capsys):
    data = glue_dir(tmp_path)
    output = tmp_path / "held"
    run_main(hold_out_glue, monkeypatch, "--task", "stsb", "--data_dir", str(data), "--rows", "2", "--output",
             str(output))  # fmt: skip
    assert "note:" not in capsys.readouterr().out  # three different texts
    # one text three times, each line with its own index and score: whichever 2 are held out, a kept line repeats them
    lines = [STSB_HEADER] + [_stsb_line(index, "A cat sleeps.", "A dog runs.", score) for index, score in
                             enumerate((1.0, 1.2, 0.8))]  # fmt: skip
    (data / "STS-B" / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_main(hold_out_glue, monkeypatch, "--task", "stsb", "--data_dir", str(data), "--rows", "2", "--output",
             str(output), "--overwrite")  # fmt: skip
    assert "hold_out_glue.py: note: 2 held-out row(s) repeat, word for word," in capsys.readouterr().out
