"""hf_distill.cli.mlm_arguments: the masked-LM script's data arguments, refused or documented before anything runs."""

from __future__ import annotations

import dataclasses

import pytest

from hf_distill.cli.mlm_arguments import MlmDataArguments


@pytest.mark.parametrize("length", [0, 1, 2])
def test_a_block_too_short_for_cls_and_sep_and_a_token_is_refused(tmp_path, length):
    # 1 packed every token into one block past the position embeddings, 2 crashed (a packing step of 0 tokens)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick fox\n" * 4)
    with pytest.raises(ValueError, match=rf"--max_seq_length must be >= 3, got {length}: .*\[CLS\] and \[SEP\]"):
        MlmDataArguments(train_file=str(corpus), validation_split_size=1, max_seq_length=length)
    assert MlmDataArguments(train_file=str(corpus), validation_split_size=1, max_seq_length=3).max_seq_length == 3


def test_the_help_says_which_lines_max_train_samples_keeps_and_that_text_column_reads_hub_datasets():
    helps = {field.name: field.metadata["help"] for field in dataclasses.fields(MlmDataArguments)}
    # the held-out lines are drawn at random; the training lines keep the corpus's order (blocks pack them)
    assert "validation_split_size" in helps["max_train_samples"] and "corpus order" in helps["max_train_samples"]
    assert "shuffle" not in helps["max_train_samples"]
    assert "--dataset_name" in helps["text_column"]


@pytest.mark.parametrize("entry", ["distill_glue", "distill_mlm"])
def test_help_prints_for_each_entry_point(capsys, entry):
    # distill_mlm.py --help crashed ("%o format: an integer is required"): argparse %-formats every help string, and
    # two held a bare "5%" / "80% [MASK]"; the parser's own errors send users to --help
    from hf_distill.cli.arguments import parse_arguments
    from hf_distill.cli.data_arguments import DataArguments

    data_class = MlmDataArguments if entry == "distill_mlm" else DataArguments
    with pytest.raises(SystemExit) as exit_:
        parse_arguments(["--help"], data_class)
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "--teacher_model_name_or_path" in printed and "--temperature" in printed
    if entry == "distill_mlm":
        assert "(80% [MASK], 10% random, 10% kept)" in " ".join(printed.split())  # wrapped to the terminal


def test_a_local_dataset_folder_is_recorded_by_where_it_resolves_never_as_its_path(tmp_path, monkeypatch):
    # --dataset_name may be a saved dataset's folder: the run record (every checkpoint's) wrote it verbatim, a machine
    # path, and a resume that spelt the same folder another way was refused as other settings
    from hf_distill.cli.run_record import run_settings
    from hf_distill.trainer.arguments import DistillationTrainingArguments

    folder = tmp_path / "my_private_corpus"
    folder.mkdir()
    training_args = DistillationTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    monkeypatch.chdir(tmp_path)
    no_model = dataclasses.make_dataclass("NoModel", [])()
    settings = [
        run_settings(no_model, MlmDataArguments(dataset_name=name, validation_split_size=1), training_args)
        for name in (str(folder), "my_private_corpus", "org/hub-dataset")
    ]
    assert settings[0]["dataset_name"] == settings[1]["dataset_name"] and "resolves_to" in settings[0]["dataset_name"]
    assert "my_private_corpus" not in str(settings[0]) and settings[2]["dataset_name"] == "org/hub-dataset"


def test_mlm_probability_defaults_to_bert_s_share_of_masked_tokens(tmp_path):
    from transformers import HfArgumentParser

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick fox\n" * 4)
    (data,) = HfArgumentParser(MlmDataArguments).parse_args_into_dataclasses(
        ["--train_file", str(corpus), "--validation_split_size", "1"]
    )
    assert data.mlm_probability == 0.15


@pytest.mark.parametrize("name", ["max_train_samples", "max_eval_samples", "validation_split_size"])
def test_a_line_count_of_zero_is_refused(tmp_path, name):
    # accepted, --max_train_samples 0 / --max_eval_samples 0 kept every line (`lines[:0 or None]`), and
    # --validation_split_size 0 held out nothing to score on
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick fox\n" * 4)
    counts = {"validation_split_size": 1, name: 0}
    with pytest.raises(ValueError, match=rf"^--{name} must be >= 1, got 0\.$"):
        MlmDataArguments(train_file=str(corpus), **counts)


def test_a_train_file_without_held_out_lines_is_refused(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick fox\n" * 4)
    with pytest.raises(ValueError, match=r"^--train_file needs --validation_file or --validation_split_size N "):
        MlmDataArguments(train_file=str(corpus))
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("a held out line\n")
    assert MlmDataArguments(train_file=str(corpus), validation_file=str(held_out)).validation_file == str(held_out)
