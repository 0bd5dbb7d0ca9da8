"""hf_distill.cli.arguments: what a YAML config and the command line set, and what they refuse."""

from __future__ import annotations

import pytest

from hf_distill.cli.arguments import parse_arguments


def parsed(tmp_path, *flags, config: str | None = None, config_name: str = "c.yaml"):
    argv = ["--teacher_model_name_or_path", "bert-base-uncased", "--task_name", "sst2", "--output_dir",
            str(tmp_path / "out"), "--use_cpu", "true", *flags]  # fmt: skip
    if config is not None:
        path = tmp_path / config_name
        path.write_text(config)
        argv = [str(path), *argv]
    return parse_arguments(argv)


@pytest.mark.parametrize("layers", ["0,3", "0, 3", "0 3", " 0  3 "])
def test_student_layers_split_on_commas_and_spaces(tmp_path, layers):
    # the spaces were dropped first: "0 3" built a one-layer student from layer 3, "0 2 4" from layer 24
    assert parsed(tmp_path, "--student_layers", layers)[0].student_layers == [0, 3]


def test_a_yaml_list_for_a_comma_separated_option_means_its_items(tmp_path):
    # refused with "e.g. student_layers: 0", a fix that built a one-layer student (and "export: onnx" dropped int8)
    model_args, data_args, _, _ = parsed(tmp_path, config="student_layers: [0, 3]\nexport: [onnx, int8]\n")
    assert model_args.student_layers == [0, 3] and data_args.export == "onnx,int8"


def test_a_misspelled_token_option_never_prints_its_value(tmp_path):
    with pytest.raises(ValueError) as refused:
        parsed(tmp_path, "--student_num_layers", "1", "--hub-tokn", "hf_SECRETVALUE", "--hub_tokenz=hf_OTHER")
    assert "SECRET" not in str(refused.value) and "OTHER" not in str(refused.value)
    assert "'--hub-tokn', '<redacted>', '--hub_tokenz=<redacted>'" in str(refused.value)


def test_a_config_after_the_flags_is_said_to_go_first(tmp_path):
    config = tmp_path / "late.yaml"
    config.write_text("student_num_layers: 1\n")
    with pytest.raises(ValueError, match=r"late\.yaml.*: a config file goes first, before the flags\.$"):
        parsed(tmp_path, "--student_num_layers", "1", str(config))


def test_an_architecture_for_a_ready_student_is_refused(tmp_path):
    # it was ignored: the BERT student was loaded as it was, and the card's command named distilbert
    with pytest.raises(ValueError, match=r"--student_architecture distilbert builds a student .* drop"):
        parsed(tmp_path, "--student_model_name_or_path", "prajjwal1/bert-tiny", "--student_architecture", "distilbert")


@pytest.mark.parametrize("flag", ["--teacher_num_train_epochs", "--teacher_learning_rate"])
def test_a_teacher_fine_tune_that_trains_nothing_is_refused(tmp_path, flag):
    # the new head stayed random, and the student was distilled from it, exit 0
    with pytest.raises(ValueError, match=rf"{flag} 0(\.0)? .*new head untrained"):
        parsed(tmp_path, "--student_num_layers", "1", "--finetune_teacher", "true", flag, "0")


def test_a_ready_student_by_flag_replaces_the_configs_way_to_build_one(tmp_path):
    # configs/mlm/*.yaml set student_architecture: distilbert; a --student_model_name_or_path given by flag was then
    # refused, with a fix ("drop --student_architecture") the user could not apply without editing the config
    from hf_distill.cli.mlm_arguments import MlmDataArguments

    config = tmp_path / "mlm.yaml"
    config.write_text("student_num_layers: 6\nstudent_architecture: distilbert\n")
    (tmp_path / "corpus.txt").write_text("a line\n")
    argv = [str(config), "--teacher_model_name_or_path", "bert-base-uncased", "--train_file",
            str(tmp_path / "corpus.txt"), "--validation_split_size", "1", "--output_dir", str(tmp_path / "out"),
            "--use_cpu", "true"]  # fmt: skip
    model_args = parse_arguments([*argv, "--student_model_name_or_path", "my/student"], MlmDataArguments)[0]
    assert model_args.student_architecture == "bert" and model_args.student_num_layers is None
    built = parse_arguments([*argv, "--student_num_layers", "3"], MlmDataArguments)[0]
    assert built.student_architecture == "distilbert"  # a student built by flag keeps the config's architecture


@pytest.mark.parametrize("token", ["-token", "--HF_TOKEN", "--Hub-Token=hf_SECRETVALUE", "--api-key"])
def test_an_unknown_argument_that_may_hold_a_secret_never_prints_it(tmp_path, token):
    extra = [token] if "=" in token else [token, "hf_SECRETVALUE"]
    with pytest.raises(ValueError) as refused:
        parsed(tmp_path, "--student_num_layers", "1", *extra)
    assert "SECRET" not in str(refused.value) and "<redacted>" in str(refused.value)


def test_the_cards_base_model_is_the_checkpoint_the_students_weights_come_from(tmp_path):
    # a ready student's card named the teacher as base_model: the Hub's model tree showed it as the weights' source
    assert parsed(tmp_path, "--student_num_layers", "2")[0].base_model_hub_id == "bert-base-uncased"  # its layers
    ready = parsed(tmp_path, "--student_model_name_or_path", "google/bert_uncased_L-4_H-256_A-4")[0]
    assert ready.base_model_hub_id == "google/bert_uncased_L-4_H-256_A-4"
    (tmp_path / "student").mkdir()
    local = parsed(tmp_path, "--student_model_name_or_path", str(tmp_path / "student"))[0]
    assert local.base_model_hub_id is None  # a folder of this machine is never Hub metadata


def test_a_teacher_an_earlier_run_fine_tuned_is_named_on_the_card_by_the_model_it_came_from(tmp_path):
    import json

    teacher = tmp_path / "run" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "hf_distill_teacher.json").write_text(
        json.dumps({"teacher": "bert-base-uncased", "hub_id": "bert-base-uncased"})
    )
    flags = ["--student_num_layers", "2", "--teacher_model_name_or_path", str(teacher)]
    model_args = parsed(tmp_path, *flags)[0]
    assert model_args.teacher_card_name == "bert-base-uncased" and model_args.base_model_hub_id == "bert-base-uncased"
    assert model_args.teacher_display_name == "teacher"  # messages about the folder still name the folder


def test_yaml_numbers_are_read_as_yaml_1_2_reads_them(tmp_path):
    # YAML 1.1: `seed: 042` was octal 34, `hidden_layer_map: 1:3` the base-60 number 63, `model_revision: 1.10` the
    # number 1.1 (another revision), `max_steps: 1e4` reached argparse as "10000.0" (a usage dump)
    config = "seed: 042\nhidden_layer_map: '1:3'\nmodel_revision: 1.10\nmax_steps: 1e4\nlearning_rate: 5e-5\n"
    model_args, _, training_args, _ = parsed(tmp_path, "--student_num_layers", "1", config=config)
    assert (training_args.seed, training_args.max_steps, training_args.learning_rate) == (42, 10000, 5e-5)
    assert model_args.model_revision == "1.10"
    _, _, training_args, _ = parsed(
        tmp_path, "--student_num_layers", "1", config="hidden_layer_map: 1:3\nalpha_hidden: 1.0\n"
    )
    assert training_args.hidden_layer_map == "1:3"
    with pytest.raises(ValueError, match=r"'max_steps' in .*c\.yaml is 1000\.5, but max_steps takes a whole number"):
        parsed(tmp_path, "--student_num_layers", "1", config="max_steps: 1000.5\n")


def test_a_yaml_key_given_twice_is_refused(tmp_path):
    # the last one won without a word: learning_rate 1e-3 ... learning_rate 5e-5 trained at 5e-5
    config = "learning_rate: 1.0e-3\nnum_train_epochs: 3\nlearning_rate: 5.0e-5\n"
    twice = r"not valid YAML at line 3, .*the key 'learning_rate' is given twice \(lines 1 and 3\); keep one"
    with pytest.raises(ValueError, match=twice):
        parsed(tmp_path, "--student_num_layers", "1", config=config)


def test_a_yaml_boolean_for_a_number_is_refused_without_advice_to_quote_it(tmp_path):
    # `max_train_samples: yes` was told to write `max_train_samples: "no"`, which its int type refuses too
    boolean = r"'max_train_samples' in .* is the YAML boolean true .*takes a value of type int \| None: give a value "
    with pytest.raises(ValueError, match=boolean + r"of that type, e\.g\. max_train_samples: 1\.$"):
        parsed(tmp_path, "--student_num_layers", "1", config="max_train_samples: yes\n")
    with pytest.raises(ValueError, match=r'quote the text you mean, e\.g\. eval_strategy: "no"'):
        parsed(tmp_path, "--student_num_layers", "1", config="eval_strategy: no\n")


def test_a_home_relative_path_is_expanded_in_yaml_and_in_flag_equals_value(tmp_path, monkeypatch):
    # `data_dir: ~/glue` (or --data_dir=~/glue, which no shell expands) looked for a folder named "~"
    monkeypatch.setenv("HOME", str(tmp_path))
    _, data_args, training_args, _ = parsed(
        tmp_path, "--student_num_layers", "1", "--teacher_cache_dir=~/cache", config="data_dir: ~/glue\n"
    )
    assert data_args.data_dir == str(tmp_path / "glue") and training_args.teacher_cache_dir == str(tmp_path / "cache")
    _, data_args, _, _ = parsed(
        tmp_path, "--student_num_layers", "1", "--data-dir", "~/other", "--max_train_samples", "7"
    )
    assert data_args.data_dir == str(tmp_path / "other") and data_args.max_train_samples == 7
    # the models' paths too: a later --teacher_model_name_or_path replaces parsed()'s bert-base-uncased
    (tmp_path / "t").mkdir()
    (tmp_path / "s").mkdir()
    model_args = parsed(tmp_path, "--teacher_model_name_or_path=~/t", "--student_model_name_or_path=~/s")[0]
    assert model_args.teacher_model_name_or_path == str(tmp_path / "t")
    assert model_args.student_model_name_or_path == str(tmp_path / "s")
    flags = ["--teacher_model_name_or_path", "bert-base-uncased", "--train_file=~/own.csv", "--text_column", "text",
             "--validation_split_size", "2", "--output_dir", str(tmp_path / "o"), "--use_cpu", "true",
             "--student_num_layers", "1"]  # fmt: skip
    assert parse_arguments(flags)[1].train_file == str(tmp_path / "own.csv")


def test_a_yml_config_is_read_as_a_yaml_one(tmp_path):
    config = "student_num_layers: 2\nlearning_rate: 1.0e-4\n"
    model_args, _, training_args, config_path = parsed(tmp_path, config=config, config_name="c.yml")
    assert config_path == str(tmp_path / "c.yml")
    assert (model_args.student_num_layers, training_args.learning_rate) == (2, 1e-4)


def test_a_yaml_null_or_empty_value_leaves_the_option_unset(tmp_path):
    # passed on as the text "None": a teacher cache folder named None, a Hub repository named None
    config = "student_num_layers: 2\nteacher_cache_dir: null\nhub_model_id:\n"
    _, _, training_args, _ = parsed(tmp_path, config=config)
    assert training_args.teacher_cache_dir is None and training_args.hub_model_id is None


def test_a_student_as_deep_as_the_teacher_starts_from_every_teacher_layer(tmp_path):
    from hf_distill.cli.models import student_layers

    assert student_layers(parsed(tmp_path, "--student_num_layers", "4")[0], 4) == [0, 1, 2, 3]


def test_a_yaml_list_of_report_to_integrations_is_joined(tmp_path):
    # refused with "Unknown command-line argument(s) ['wandb']": the parser takes one string
    _, _, training_args, _ = parsed(tmp_path, "--student_num_layers", "1", config="report_to: [tensorboard, wandb]\n")
    assert training_args.report_to == ["tensorboard,wandb"]  # split into its names by check_report_to


def test_yaml_merge_keys_still_merge():
    # the duplicate-key check read `<<` as a key and failed: "could not determine a constructor for ...merge"
    import yaml

    from hf_distill.cli.arguments import _ConfigLoader

    text = "base: &b {min_lr: 1e-6, warmup: 2}\nkwargs:\n  <<: *b\n  warmup: 3\n"
    assert yaml.load(text, Loader=_ConfigLoader)["kwargs"] == {"min_lr": 1e-6, "warmup": 3}


def test_a_value_the_parser_refuses_is_one_line_naming_the_config_it_came_from(tmp_path):
    # argparse printed the usage of every option (155 lines) and exited, the error itself on the last line
    with pytest.raises(ValueError, match=r"^argument --seed: invalid int value: 'abc': see --help for the options\.$"):
        parsed(tmp_path, "--student_num_layers", "1", "--seed", "abc")
    in_config = r"invalid int value: 'abc' \(the value of 'seed' in \S*c\.yaml\): see --help"
    with pytest.raises(ValueError, match=in_config):
        parsed(tmp_path, "--student_num_layers", "1", config="seed: abc\n")
    # a config's bad value that the command line replaces is never parsed (it was refused, named as the flag's)
    assert parsed(tmp_path, "--student_num_layers", "1", "--seed", "1", config="seed: abc\n")[2].seed == 1
    with pytest.raises(ValueError) as ambiguous:  # a prefix of several options, quoted with a secret as its value
        parsed(tmp_path, "--student_num_layers", "1", "--hub=hf_SECRETVALUE")
    assert "ambiguous option: --hub could match" in str(ambiguous.value) and "SECRET" not in str(ambiguous.value)


def test_a_hub_token_given_as_a_yaml_list_is_never_printed(tmp_path):
    with pytest.raises(ValueError, match=r"'hub_token' in \S* is a list \(<redacted>\)") as refused:
        parsed(tmp_path, "--student_num_layers", "1", config="hub_token: [hf_SECRETVALUE]\n")
    assert "SECRET" not in str(refused.value)


def test_resume_from_checkpoint_false_is_told_to_remove_the_key_not_to_quote_it(tmp_path):
    # quoted as advised, "false" became a checkpoint folder's name, which check_checkpoint then refused
    with pytest.raises(ValueError, match="remove the key to start afresh, or give the checkpoint folder") as refused:
        parsed(tmp_path, "--student_num_layers", "1", config="resume_from_checkpoint: false\n")
    assert "quote the text" not in str(refused.value)


def test_the_items_of_a_yaml_list_are_read_as_a_single_value_is(tmp_path):
    # `text_column: [no, 1.10]` became the columns "False" and "1.1": a YAML boolean in a list is refused as a
    # single one is, and a number is the text as written
    with pytest.raises(ValueError, match=r"'text_column' in \S* holds the YAML boolean false .*e\.g\. \"no\""):
        parsed(tmp_path, "--student_num_layers", "1", config="text_column: [sentence, no]\n")
    config = tmp_path / "own.yaml"
    config.write_text("text_column: [sentence, 1.10]\n")
    flags = ["--teacher_model_name_or_path", "bert-base-uncased", "--train_file", str(tmp_path / "t.csv"),
             "--validation_split_size", "2", "--output_dir", str(tmp_path / "o"), "--use_cpu", "true",
             "--student_num_layers", "1"]  # fmt: skip
    _, data_args, _, _ = parse_arguments([str(config), *flags])
    assert data_args.text_column == ["sentence", "1.10"]
