"""scripts/distill_glue.py with wrong values of every kind, as a new user would type them: each fails before any
training with one line naming the problem, the value and the fix, no traceback, and leaves an existing output folder
untouched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from test_distill_glue import GLUE_DIR, ROOT, FakeHub, common_flags, needs_glue, refuse, save_teacher


@pytest.fixture
def teacher_folder(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp("models") / "teacher", num_labels=2)


def sst2(tmp_path, teacher, *extra):
    return common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR), *extra)


def write_config(tmp_path, values: dict | str):
    path = tmp_path / "config.yaml"
    path.write_text(values if isinstance(values, str) else yaml.safe_dump(values))
    return str(path)


@needs_glue
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max_seq_length", "4096"], r"--max_seq_length 4096 is longer than the teacher's 128 position embeddings.*"
                                       r"--max_seq_length 128 or less"),
        (["--per_device_train_batch_size", "0"], r"--per_device_train_batch_size must be >= 1, got 0"),
        (["--per_device_eval_batch_size", "0"], r"--per_device_eval_batch_size must be >= 1, got 0"),
        (["--gradient_accumulation_steps", "0"], r"--gradient_accumulation_steps must be >= 1, got 0"),
        (["--num_train_epochs", "0"], r"--num_train_epochs must be > 0 \(or --max_steps > 0\), got 0"),
        (["--learning_rate", "0"], r"--learning_rate must be > 0, got 0"),
        (["--max_train_samples", "0"], r"max_train_samples must be >= 1, got 0"),
        (["--temperature", "-1"], r"temperature must be > 0, got -1"),
        (["--alpha_kd", "0", "--alpha_task", "0"], r"every loss weight .* is 0"),
        (["--student_training", "teacher"], r"student_training must be one of 'distill'.*got 'teacher'"),
        # trained (and fine-tuned a teacher, which then refused the rerun) before failing at the first evaluation
        (["--metric_for_best_model", "f1", "--load_best_model_at_end", "true", "--eval_strategy", "steps",
          "--save_strategy", "steps"],
         r"--metric_for_best_model 'f1' is not a metric this run's evaluation computes \(loss, accuracy\): pass one"),
        # ran as labels only, and its card said it trained on pseudo-labelled transfer rows
        (["--student_training", "pseudo_labels"], r"no transfer set was asked for.*--student_training labels_only"),
    ],
)  # fmt: skip
def test_bad_option_values(tmp_path, teacher_folder, flags, message):
    refuse(tmp_path, [*sst2(tmp_path, teacher_folder, "--student_num_layers", "1"), *flags], message)


def test_a_yaml_number_without_a_dot_inside_a_mapping_is_a_number(tmp_path):
    # `min_lr: 1e-6` reached the scheduler as the text "1e-6" (YAML 1.1) and crashed it once training had started
    from hf_distill.cli.arguments import parse_arguments

    config = write_config(tmp_path, "lr_scheduler_type: cosine_with_min_lr\nlr_scheduler_kwargs: {min_lr: 1e-6}\n"
                                    "learning_rate: 5e-5\nstudent_num_layers: 1\n")  # fmt: skip
    argv = [config, "--teacher_model_name_or_path", "bert-base-uncased", "--task_name", "sst2", "--output_dir",
            str(tmp_path / "out"), "--use_cpu", "true"]  # fmt: skip
    training_args = parse_arguments(argv)[2]
    assert training_args.lr_scheduler_kwargs == {"min_lr": 1e-6} and training_args.learning_rate == 5e-5


def test_a_configs_overwrite_stays_with_its_own_output_folder(tmp_path):
    # configs/offline/demo.yaml sets overwrite_output_dir for outputs/demo; a user's --output_dir holding a finished
    # student was overwritten by `distill_glue.py configs/offline/demo.yaml --output_dir my_student`
    from hf_distill.cli.arguments import parse_arguments

    demo = str(ROOT / "configs" / "offline" / "demo.yaml")
    assert parse_arguments([demo])[1].overwrite_output_dir
    for flags in (["--output_dir", str(tmp_path)], [f"--output-dir={tmp_path}"]):
        assert not parse_arguments([demo, *flags])[1].overwrite_output_dir
    asked = parse_arguments([demo, "--output_dir", str(tmp_path), "--overwrite_output_dir", "true"])[1]
    assert asked.overwrite_output_dir


@needs_glue
def test_bad_yaml_files_name_the_option_and_the_fix(tmp_path, teacher_folder):
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1")
    listed = write_config(tmp_path, {"temperature": [1, 2]})
    expected = (
        r"'temperature' in .*config\.yaml is a list \(\[1, 2\]\), but temperature takes one value of type float\."
    )
    refuse(tmp_path, [listed, *flags], expected + r" Give a single value, e\.g\. temperature: 1")
    broken = write_config(tmp_path, "temperature: 2\n  alpha_kd: [0.5\n")
    refuse(tmp_path, [broken, *flags], r"config\.yaml is not valid YAML at line \d+, column \d+")
    scalar = write_config(tmp_path, "just a string\n")
    refuse(tmp_path, [scalar, *flags], r"must hold a mapping of option: value, got str")
    refuse(tmp_path, [str(tmp_path / "missing.yaml"), *flags], r"missing\.yaml does not exist")


@needs_glue
def test_bad_output_folders(tmp_path, teacher_folder):
    as_file = tmp_path / "out"
    as_file.write_text("not a folder")
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1")
    refuse(tmp_path, flags, r"--output_dir .*out is a file, not a folder")
    as_file.unlink()
    (tmp_path / "out" / "checkpoint-30").mkdir(parents=True)  # an interrupted run: checkpoints, no results
    refuse(
        tmp_path, flags, r"holds checkpoint-30 of a run that did not finish.*--resume_from_checkpoint .*checkpoint-30"
    )
    # a search-only run leaves its fine-tuned teacher and no student: refitting would replace its trials' teacher
    shutil.rmtree(tmp_path / "out" / "checkpoint-30")
    shutil.copytree(teacher_folder, tmp_path / "out" / "teacher")
    refuse(
        tmp_path,
        [*flags, "--finetune_teacher", "true"],
        r"--finetune_teacher would replace the teacher already fine-tuned in .*out/teacher\. Pass "
        r"--teacher_model_name_or_path .*out/teacher --finetune_teacher false to reuse it",
    )


def test_a_teacher_refit_beside_a_saved_teacher_is_refused_only_without_overwrite(tmp_path, teacher_folder):
    # --overwrite_output_dir is the refit the refusal offers: it must then pass
    from hf_distill.cli.arguments import parse_arguments
    from hf_distill.cli.checks import check_before_loading

    shutil.copytree(teacher_folder, tmp_path / "out" / "teacher")
    flags = [*common_flags(tmp_path, teacher_folder, "--task_name", "sst2", "--student_num_layers", "1"),
             "--finetune_teacher", "true"]  # fmt: skip
    with pytest.raises(ValueError, match=r"--finetune_teacher would replace the teacher already fine-tuned in "):
        check_before_loading(*parse_arguments(flags)[:3])
    check_before_loading(*parse_arguments([*flags, "--overwrite_output_dir", "true"])[:3])


@needs_glue
def test_bad_models(tmp_path, teacher_folder):
    refuse(tmp_path, sst2(tmp_path, teacher_folder, "--student_num_layers", "9"), r"more than the teacher's 4 layers")
    not_a_model = tmp_path / "folder"
    not_a_model.mkdir()
    flags = common_flags(tmp_path, not_a_model, "--task_name", "sst2", "--data_dir", str(GLUE_DIR),
                         "--student_num_layers", "1")  # fmt: skip
    refuse(tmp_path, flags, r"has no config\.json: it is not a saved model")


@needs_glue
def test_a_refusal_is_one_line_on_stderr_exit_2_and_no_traceback(tmp_path, teacher_folder):
    command = [sys.executable, str(ROOT / "scripts" / "distill_glue.py"),
               *sst2(tmp_path, teacher_folder, "--student_num_layers", "1", "--max_seq_length", "4096")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("distill_glue.py: error:")]
    assert len(lines) == 1 and "--max_seq_length 4096" in lines[0]


@needs_glue
def test_the_teacher_cache_with_fsdp_is_refused_before_anything_loads(tmp_path, teacher_folder, monkeypatch):
    # What `accelerate launch --config_file configs/accelerate/fsdp.yaml` sets; Trainer refused it only when training
    # began, after the teacher's fine-tune.
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1", "--cache_teacher_logits", "true")
    refuse(tmp_path, flags, r"--cache_teacher_logits true with FSDP: .* Pass --cache_teacher_logits false")


@needs_glue
def test_a_distilbert_student_under_a_bert_layer_wrap_policy_is_refused_before_anything_loads(
    tmp_path, teacher_folder, monkeypatch
):
    # configs/accelerate/fsdp.yaml wraps BertLayer, which a DistilBERT student lacks (TransformerBlock): Accelerate
    # failed when preparing the student, after the teacher's fine-tune
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "BertLayer")
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1", "--cache_teacher_logits", "false")
    refuse(tmp_path, [*flags, "--student_architecture", "distilbert"],
           r"--student_architecture distilbert under FSDP: the wrap policy names BertLayer, .* TransformerBlock.*"
           r"--fsdp_transformer_layer_cls_to_wrap TransformerBlock")  # fmt: skip
    from hf_distill.cli import checks

    model_args = type("ModelArgs", (), {"student_architecture": "distilbert", "student_model_name_or_path": None})
    training_args = type("Args", (), {"fsdp": None, "fsdp_config": {}})()
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "TransformerBlock")
    checks.check_fsdp_wrap(model_args, training_args)  # the student's own layer class: fine
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "BertLayer,TransformerBlock")  # Accelerate wants every one
    with pytest.raises(ValueError, match=r"the wrap policy names BertLayer, which a DistilBERT student lacks"):
        checks.check_fsdp_wrap(model_args, training_args)
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "BertLayer")
    for policy in ("SIZE_BASED_WRAP", "NO_WRAP"):  # the launcher sets the classes even so, and they are unused
        monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", policy)
        checks.check_fsdp_wrap(model_args, training_args)
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
    for name in ("ACCELERATE_USE_FSDP", "FSDP_AUTO_WRAP_POLICY", "FSDP_TRANSFORMER_CLS_TO_WRAP"):
        monkeypatch.delenv(name)
    by_arguments = type("Args", (), {"fsdp": "full_shard auto_wrap",  # --fsdp: transformers wraps by class
                                     "fsdp_config": {"transformer_layer_cls_to_wrap": ["BertLayer"]}})()  # fmt: skip
    with pytest.raises(ValueError, match=r"the wrap policy names BertLayer"):
        checks.check_fsdp_wrap(model_args, by_arguments)
    model_args.student_architecture = "bert"
    checks.check_fsdp_wrap(model_args, by_arguments)  # a BERT student: fine


def test_sharding_engines_are_read_from_the_launcher_and_the_arguments(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    from hf_distill.cli.checks import check_cache_engine, sharding_engine

    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(name, raising=False)
    plain = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert sharding_engine(plain) is None
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert sharding_engine(plain) is None  # ZeRO-1/2 replicate the teacher: the cache works
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert sharding_engine(plain) == "DeepSpeed ZeRO-3"
    with pytest.raises(ValueError, match=r"with DeepSpeed ZeRO-3: .* Pass --cache_teacher_logits false"):
        check_cache_engine(type("Args", (), {"cache_teacher_logits": True, "fsdp": None})())
    check_cache_engine(type("Args", (), {"cache_teacher_logits": False, "fsdp": None})())  # online teacher: fine
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED")
    monkeypatch.delenv("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    for stage, expected in ((2, None), (3, "DeepSpeed ZeRO-3")):  # a plugin built from a deepspeed_config_file
        args = type("Args", (), {"fsdp": None, "deepspeed_plugin": type("Plugin", (), {"zero_stage": stage})()})()
        assert sharding_engine(args) == expected


@needs_glue
def test_a_run_that_splits_batches_over_ranks_is_refused_before_anything_loads(tmp_path, teacher_folder, monkeypatch):
    # What `accelerate launch` sets for a config with a context-parallel size; the trainers refused it only once
    # built, after the teacher's fine-tune (and without the check a single process dies in torch.distributed's setup)
    monkeypatch.setenv("ACCELERATE_USE_PARALLELISM_CONFIG", "true")
    monkeypatch.setenv("PARALLELISM_CONFIG_CP_SIZE", "2")
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1", "--finetune_teacher", "true")
    expected = r"^This run's trainers .* over ranks \(cp_size=2 from PARALLELISM_CONFIG_CP_SIZE, from the accelerate"
    refuse(tmp_path, flags, expected + r" config's parallelism_config_cp_size\).*data parallelism only")


def test_planned_batch_splits_are_read_from_the_arguments_the_launcher_and_deepspeed(tmp_path, monkeypatch):
    from accelerate import ParallelismConfig
    from transformers import TrainingArguments

    from hf_distill.trainer.batch_counts import check_planned_data_parallel_only, planned_batch_splits

    def sizes(args):
        return {name: size for name, (size, _) in planned_batch_splits(args).items()}

    monkeypatch.delenv("ACCELERATE_USE_PARALLELISM_CONFIG", raising=False)
    for name in ("TP", "CP", "SP", "DP_REPLICATE", "DP_SHARD"):
        monkeypatch.delenv(f"PARALLELISM_CONFIG_{name}_SIZE", raising=False)
    plain = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert sizes(plain) == {"tp_size": 1, "cp_size": 1, "sp_size": 1}
    check_planned_data_parallel_only(plain)  # data parallel only: nothing to refuse
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SIZE", "4")
    for flag in ("false", "1"):  # Accelerator builds the config only for "true"
        monkeypatch.setenv("ACCELERATE_USE_PARALLELISM_CONFIG", flag)
        assert sizes(plain)["sp_size"] == 1
    monkeypatch.setenv("ACCELERATE_USE_PARALLELISM_CONFIG", "True")
    assert sizes(plain) == {"tp_size": 1, "cp_size": 1, "sp_size": 4}
    with pytest.raises(ValueError, match=r"\(sp_size=4 from PARALLELISM_CONFIG_SP_SIZE.*set those sizes to 1"):
        check_planned_data_parallel_only(plain)
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SIZE", "two")
    with pytest.raises(ValueError, match=r"PARALLELISM_CONFIG_SP_SIZE='two' is not a whole number"):
        planned_batch_splits(plain)
    monkeypatch.setenv("PARALLELISM_CONFIG_SP_SIZE", "4")
    # a parallelism_config given to TrainingArguments (library use) wins over the environment
    args = type("Args", (), {"parallelism_config": ParallelismConfig(tp_size=2, sp_size=1)})()
    assert sizes(args) == {"tp_size": 2, "cp_size": 1, "sp_size": 1}
    monkeypatch.delenv("ACCELERATE_USE_PARALLELISM_CONFIG")
    # DeepSpeed's tensor parallel size, from --deepspeed or from the plugin accelerate launch hands over
    config = {"tensor_parallel": {"autotp_size": 2}}
    deepspeed = type("HfDeepSpeedConfig", (), {"config": config})()
    for args in (
        type("Args", (), {"hf_deepspeed_config": deepspeed})(),
        type("Args", (), {"deepspeed_plugin": type("Plugin", (), {"hf_ds_config": deepspeed})()})(),
    ):
        with pytest.raises(ValueError, match=r"\(tp_size=2 from the DeepSpeed config's tensor_parallel.autotp_size\)"):
            check_planned_data_parallel_only(args)
        for harmless in ({"zero_optimization": {"stage": 2}}, {"tensor_parallel": None}):  # ZeRO shards states only
            deepspeed.config = harmless
            assert sizes(args) == {"tp_size": 1, "cp_size": 1, "sp_size": 1}
        deepspeed.config = {"tensor_parallel": {"autotp_size": "auto"}}
        with pytest.raises(ValueError, match=r"autotp_size='auto' is not a whole number"):
            planned_batch_splits(args)
        deepspeed.config = config


@needs_glue
def test_a_teacher_whose_labels_are_the_tasks_in_another_order_is_refused(tmp_path, teacher_folder, caplog):
    # SST-2's ids are negative = 0, positive = 1: a teacher saved the other way round would teach the opposite class
    from transformers import AutoConfig

    from hf_distill.cli.arguments import parse_arguments
    from hf_distill.cli.checks import check_teacher_head

    config = json.loads((teacher_folder / "config.json").read_text())
    swapped = tmp_path / "swapped"
    shutil.copytree(teacher_folder, swapped)
    config.update(id2label={"0": "POSITIVE", "1": "NEGATIVE"}, label2id={"POSITIVE": 0, "NEGATIVE": 1})
    (swapped / "config.json").write_text(json.dumps(config))
    flags = sst2(tmp_path, swapped, "--student_num_layers", "1")
    refuse(
        tmp_path,
        flags,
        r"orders its labels \{0: 'POSITIVE', 1: 'NEGATIVE'\}, the task \{0: 'negative', 1: 'positive'\}.*"
        r"--finetune_teacher",
    )
    # named otherwise: the names cannot tell the order, so it is said, not refused
    config.update(id2label={"0": "bad", "1": "good"}, label2id={"bad": 0, "good": 1})
    (swapped / "config.json").write_text(json.dumps(config))
    model_args, *_ = parse_arguments(flags)
    with caplog.at_level("WARNING"):
        check_teacher_head(AutoConfig.from_pretrained(swapped), 2, model_args, ("negative", "positive"))
    assert "names its labels {0: 'bad', 1: 'good'} and the task {0: 'negative', 1: 'positive'}" in caplog.text
    check_teacher_head(AutoConfig.from_pretrained(teacher_folder), 2, model_args, ("negative", "positive"))  # LABEL_i
    # the task's names in its order, capitalised (distilbert-base-uncased-finetuned-sst-2-english's): accepted, unsaid
    config.update(id2label={"0": "NEGATIVE", "1": "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    (swapped / "config.json").write_text(json.dumps(config))
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_teacher_head(AutoConfig.from_pretrained(swapped), 2, model_args, ("negative", "positive"))
    assert "names its labels" not in caplog.text


@needs_glue
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--hub_model_id", "my run"], r"^--push_to_hub: 'my run' \(--hub_model_id\) is not a valid Hub repo id\. "),
        (["--hub_model_id", "out/sst2/final"], r"'out/sst2/final' \(--hub_model_id\) is not a valid Hub repo id"),
        (["--output_dir", "my run"], r"'my run' \(--output_dir's name, as no --hub_model_id was given\) is not a"),
    ],
)
def test_a_hub_repo_id_the_hub_would_refuse_is_refused_before_training(
    tmp_path, teacher_folder, monkeypatch, flags, message
):
    # found only after training before, when the push created the repo (the token and the Hub were fine)
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    (tmp_path / "work").mkdir()
    flags = [*sst2(tmp_path, teacher_folder, "--student_num_layers", "1", "--push_to_hub", "true"), *flags]
    flags += ["--hub_token", "hf_" + "t" * 34]
    if "--output_dir" in flags[-4:]:
        flags[-3] = str(tmp_path / "work" / flags[-3])
    refuse(tmp_path, flags, message + r".*Nothing was trained; pass --hub_model_id NAME or NAMESPACE/NAME")


@needs_glue
@pytest.mark.parametrize("revision", ["my branch", "v1..2", "a//b", "exp/", "x.lock", "a:b", "what?", ".hidden"])
def test_a_hub_revision_git_would_refuse_as_a_branch_is_refused_before_training(
    tmp_path, teacher_folder, monkeypatch, revision
):
    # the push creates the branch after training, where git's ref rules refused it
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1", "--push_to_hub", "true", "--hub_model_id",
                 "me/student", "--hub_revision", revision, "--hub_token", "hf_" + "t" * 34)  # fmt: skip
    refuse(tmp_path, flags, r"^--hub_revision '.*' is not a branch name git accepts .*Nothing was trained")


def test_hub_revisions_git_accepts_pass():
    from hf_distill.publish.hub import check_revision

    for revision in (None, "main", "experiment-2", "v1.0", "runs/sst2/seed-42", "refs/pr/3"):
        check_revision(revision)


@needs_glue
def test_an_output_folder_holding_the_users_files_is_refused(tmp_path, teacher_folder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.py").write_text("print('mine')\n")
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1")
    refuse(tmp_path, flags, r"out holds files hf-distill did not write \(train\.py\).* pass --overwrite_output_dir")
    (out / "README.md").write_text("# My project\n")
    for overwrite in ([], ["--overwrite_output_dir", "true"]):  # the card would replace it: refused even so
        refuse(tmp_path, [*flags, *overwrite], r"out/README\.md is not an hf-distill model card.* Move that README")
    assert (out / "README.md").read_text() == "# My project\n"


@needs_glue
def test_a_push_into_a_folder_holding_the_users_files_is_refused_even_with_overwrite(
    tmp_path, teacher_folder, monkeypatch
):
    # --overwrite_output_dir --push_to_hub trained, then uploaded the user's .env and notes.txt with the student
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    (out / ".env").write_text("SECRET=1\n")
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1", "--overwrite_output_dir", "true",
                 "--push_to_hub", "true", "--hub_model_id", "me/student", "--hub_token", "hf_" + "t" * 34)  # fmt: skip
    refuse(tmp_path, flags, r"out holds files hf-distill did not write \(\.env, notes\.txt\), and --push_to_hub would "
           r"upload them")  # fmt: skip
    assert FakeHub.calls == []  # refused before the Hub was asked


@needs_glue
@pytest.mark.parametrize("trailing", ["", "/"])
def test_a_teacher_cache_dir_that_is_the_output_dir_is_refused_before_training(tmp_path, teacher_folder, trailing):
    # the cache went into <output_dir>/<fingerprint>/ and was pushed with the student: every row's teacher logits
    flags = sst2(tmp_path, teacher_folder, "--student_num_layers", "1", "--cache_teacher_logits", "true",
                 "--teacher_cache_dir", str(tmp_path / "out") + trailing)  # fmt: skip
    refuse(tmp_path, flags, r"--teacher_cache_dir .*out/? is --output_dir .*: its caches would lie among the "
           r"student's outputs.* a folder of its own, e\.g\. --teacher_cache_dir .*out/teacher_cache, or leave it "
           r"unset")  # fmt: skip
