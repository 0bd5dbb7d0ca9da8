"""hf_distill.cli.checks.check_output_dir: what an existing output folder lets a run do (no model loaded)."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from hf_distill.cli.checks import check_output_dir
from hf_distill.publish.model_card import CARD_TAG


def test_an_interrupted_run_is_resumed_from_its_latest_checkpoint_by_step(tmp_path):
    for step in (500, 1000, 90):
        (tmp_path / f"checkpoint-{step}").mkdir()
    with pytest.raises(ValueError, match=r"checkpoint-90, checkpoint-500, checkpoint-1000 of a run") as refused:
        check_output_dir(tmp_path, False, None)
    assert str(refused.value).count("--resume_from_checkpoint") == 1
    assert f"--resume_from_checkpoint {tmp_path / 'checkpoint-1000'} to continue" in str(refused.value)
    check_output_dir(tmp_path, False, str(tmp_path / "checkpoint-1000"))  # resuming it is what the message asks
    check_output_dir(tmp_path, True, None)


def test_the_checkpoint_to_resume_is_the_one_written_last_not_an_earlier_runs_higher_step(tmp_path):
    # an --overwrite_output_dir rerun left an earlier run's checkpoint-1000 beside its own checkpoint-4: the hint
    # named checkpoint-1000
    import os

    for step, written in ((1000, 1_000_000), (4, 2_000_000)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text("{}")
        os.utime(folder / "trainer_state.json", (written, written))
    with pytest.raises(ValueError) as refused:
        check_output_dir(tmp_path, False, None)
    assert f"--resume_from_checkpoint {tmp_path / 'checkpoint-4'} to continue" in str(refused.value)


def test_resuming_never_excuses_overwriting_a_finished_model(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    for name in ("config.json", "model.safetensors", "all_results.json"):
        (tmp_path / name).write_text("{}")
    for resume in (None, True, "elsewhere/checkpoint-5"):
        with pytest.raises(ValueError, match=r"already holds a model \(config\.json, model\.safetensors\)"):
            check_output_dir(tmp_path, False, resume)
    check_output_dir(tmp_path, True, "elsewhere/checkpoint-5")


def test_a_folder_holding_the_users_files_is_refused_unless_overwrite(tmp_path):
    # a project folder given as --output_dir: the run would write among its files, push them, replace its README.md
    (tmp_path / "train.py").write_text("print('mine')\n")
    (tmp_path / "notes").mkdir()
    with pytest.raises(ValueError, match=r"holds files hf-distill did not write \(notes, train\.py\).*--overwrite_"):
        check_output_dir(tmp_path, False, None)
    check_output_dir(tmp_path, True, None)
    check_output_dir(tmp_path / "new", False, None)  # a folder that does not exist yet is the usual case
    for name in "abcdef":
        (tmp_path / name).write_text("")
    with pytest.raises(ValueError, match=r"\(a, b, c, d, e and 3 more\)"):
        check_output_dir(tmp_path, False, None)


def test_the_tools_own_outputs_are_no_reason_to_refuse(tmp_path):
    # an interrupted run resumed, a stopped search run again, a folder that run_results.py marks: all this tool's
    for name in ("checkpoint-4", "teacher", "teacher_cache", "runs", "predict", "teacher_eval", "hp_search", "onnx",
                 ".ipynb_checkpoints", "pytorch_model_fsdp_0", ".3f9c.partial-12"):  # fmt: skip
        (tmp_path / name).mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                 "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                 "chat_template.jinja", "training_args.bin", "trainer_state.json", "train_results.json",
                 "eval_results.json", "hp_search.json", "hp_search.json.partial", "hp_search_study.journal",
                 "run_results.command.json", "related_text.command.json", "search_command.json",
                 "run_results.reproduces.json", "emissions.csv", ".DS_Store", "Thumbs.db"):  # fmt: skip
        (tmp_path / name).write_text("{}")
    check_output_dir(tmp_path, False, str(tmp_path / "checkpoint-4"))
    # a finished run's folder (the side-by-side evaluation left an empty teacher_eval/) rerun with
    # --overwrite_output_dir --push_to_hub: nothing in it is the user's, so nothing is refused
    for name in ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
                 "model-00001-of-00002.safetensors", "pytorch_model.bin", "pytorch_model.bin.index.json",
                 "pytorch_model-00001-of-00002.bin", "all_results.json"):  # fmt: skip
        (tmp_path / name).write_text("{}")
    (tmp_path / "README.md").write_text(f"---\ntags: [{CARD_TAG}]\n---\n")
    check_output_dir(tmp_path, True, None, push=True)


def test_a_readme_that_is_not_an_hf_distill_card_is_never_overwritten(tmp_path):
    from hf_distill.publish.model_card import ModelCardData, render_model_card

    readme = tmp_path / "README.md"
    for text in ("# My project\n", "---\ntags: [bert]\n---\n# A card of another tool\n", "---\n: [\n---\n"):
        readme.write_text(text)
        for overwrite in (False, True):
            with pytest.raises(ValueError, match=r"README\.md is not an hf-distill model card.* Move that README\.md"):
                check_output_dir(tmp_path, overwrite, None)
        assert readme.read_text() == text
    card = ModelCardData(
        teacher="t", student_description="s", task="sst2", dataset="glue", temperature=2.0, alpha_kd=0.5,
        alpha_task=0.5, metric_names=["accuracy"], teacher_metrics={}, student_metrics={}, teacher_parameters=2,
        student_parameters=1, teacher_latency_ms={1: 2.0}, student_latency_ms={1: 1.0}, command="python x",
    )  # fmt: skip
    readme.write_text(render_model_card(card))  # an earlier run's card: replaced like the rest of its outputs
    check_output_dir(tmp_path, False, None)
    check_output_dir(tmp_path, True, None)


def test_a_resume_path_that_holds_no_checkpoint_is_refused_naming_the_ones_there(tmp_path):
    # Trainer found out only after the data, the models and a teacher fine-tune, whose saved teacher then refused
    # the same command's rerun
    from hf_distill.cli.checks import check_checkpoint

    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match=r"checkpoint-99 is not a Trainer checkpoint .* holds checkpoint-4\. Pass"):
        check_checkpoint(str(tmp_path / "checkpoint-99"), tmp_path)
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint true is not a Trainer checkpoint"):
        check_checkpoint("true", tmp_path)  # the parser takes it as text, a folder named "true"
    check_checkpoint(str(tmp_path / "checkpoint-4"), tmp_path)
    check_checkpoint(None, tmp_path)


def test_a_model_folder_without_weights_is_refused_in_one_line(tmp_path):
    from hf_distill.cli.checks import check_model_path

    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"student folder .* holds a config\.json but no weights"):
        check_model_path(str(tmp_path / "student"), "student")
    save_file({"weight": torch.zeros(64)}, tmp_path / "student" / "model.safetensors")
    check_model_path(str(tmp_path / "student"), "student")


def test_a_model_folder_whose_weights_were_cut_off_mid_save_is_refused_in_one_line(tmp_path):
    # a teacher fine-tune killed while saving: the refit refusal sent the user to reuse it, and from_pretrained then
    # failed with safetensors' "Error while deserializing header: incomplete metadata" traceback
    from hf_distill.cli.checks import check_model_path

    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "config.json").write_text("{}")
    weights = tmp_path / "teacher" / "model.safetensors"
    save_file({"weight": torch.zeros(64)}, weights)
    whole = weights.read_bytes()
    for cut in (whole[: len(whole) - 8], whole[:4], b""):
        weights.write_bytes(cut)
        with pytest.raises(ValueError, match=r"teacher folder .*model\.safetensors is not a whole safetensors file "
                                             r".* --overwrite_output_dir"):  # fmt: skip
            check_model_path(str(tmp_path / "teacher"), "teacher")


def test_an_onnx_folder_is_ours_only_as_far_as_it_holds_our_exports(tmp_path):
    # a user's onnx/notes.md passed as ours (the run would push it with the student)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"")
    (tmp_path / "onnx" / "model_int8.onnx.partial").write_bytes(b"")  # an interrupted export's
    check_output_dir(tmp_path, False, None)
    (tmp_path / "onnx" / "notes.md").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files hf-distill did not write \(onnx/notes\.md\)"):
        check_output_dir(tmp_path, False, None)
    file = tmp_path / "file"
    file.mkdir()
    (file / "onnx").write_text("not a folder")  # removing the exports from it crashed after training
    with pytest.raises(ValueError, match=r"did not write \(onnx \(a file where the exports' folder goes\)\)"):
        check_output_dir(file, False, None)


def test_a_push_never_uploads_the_users_files_even_with_overwrite_output_dir(tmp_path):
    # --overwrite_output_dir skipped the check of files hf-distill did not write, and --push_to_hub uploaded them
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".env").write_text("SECRET=1")
    (tmp_path / "all_results.json").write_text("{}")  # an earlier run's: ours
    for overwrite in (True, False):
        with pytest.raises(ValueError, match=r"holds files hf-distill did not write \(\.env, notes\.txt\), and "
                                             r"--push_to_hub would upload them.* move them out of .*, or choose "
                                             r"another --output_dir") as refused:  # fmt: skip
            check_output_dir(tmp_path, overwrite, None, push=True)
        assert "\n" not in str(refused.value)
    check_output_dir(tmp_path, True, None)  # kept local: written among, never published


def test_a_teacher_cache_dir_that_is_the_output_dir_is_refused(tmp_path, monkeypatch):
    # the cache went to <output_dir>/<fingerprint>/, among the outputs, and was pushed with the student
    from types import SimpleNamespace

    from hf_distill.cli.checks import check_teacher_cache_dir

    out = tmp_path / "out"
    (tmp_path / "link").symlink_to(out, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for given in (str(out), f"{out}/", "out", "./out/", str(tmp_path / "link")):
        refusal = (
            r"--teacher_cache_dir .* is --output_dir .*: its caches would lie among the student's outputs.* "
            r"a folder of its own, e\.g\. --teacher_cache_dir .*out/teacher_cache, or leave it unset"
        )
        with pytest.raises(ValueError, match=refusal) as refused:
            check_teacher_cache_dir(
                SimpleNamespace(output_dir=str(out), teacher_cache_dir=given, cache_teacher_logits=True)
            )
        assert "\n" not in str(refused.value)
    for fine in (None, str(out / "teacher_cache"), str(tmp_path / "caches")):
        check_teacher_cache_dir(SimpleNamespace(output_dir=str(out), teacher_cache_dir=fine, cache_teacher_logits=1))
    # no cache is built: nothing would lie among the outputs
    check_teacher_cache_dir(SimpleNamespace(output_dir=str(out), teacher_cache_dir=str(out), cache_teacher_logits=0))


def test_a_push_rerun_into_the_folder_an_earlier_run_wrote_is_not_refused(tmp_path):
    # the push refusal of files hf-distill did not write took an earlier run's own folders for the user's: a teacher
    # cache under another name (--teacher_cache_dir out/logits), run_results' record, codecarbon's emissions.csv
    from hf_distill.cache.store import _METADATA_FILE

    for name in ("all_results.json", "run_results.reproduces.json", "emissions.csv", "model.safetensors"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "logits" / "0f3a9c").mkdir(parents=True)
    (tmp_path / "logits" / "0f3a9c" / _METADATA_FILE).write_text("{}")
    (tmp_path / "checkpoint-500").mkdir()
    (tmp_path / ".0f3a9c.partial-host-1a2b3c4d5e6f-4026531836-77-0a1b2c3d").mkdir()  # a crashed build's (never pushed)
    check_output_dir(tmp_path, True, None, push=True, cache_root=tmp_path / "logits")
    check_output_dir(tmp_path, True, None, push=True)  # the cache's folder known by the metadata file it holds
    (tmp_path / "logs").mkdir()  # not a cache: the user's
    with pytest.raises(ValueError, match=r"did not write \(logs\)"):
        check_output_dir(tmp_path, True, None, push=True, cache_root=tmp_path / "logits")


def test_a_checkpoint_without_a_run_record_is_said_and_resumed(tmp_path, caplog):
    from hf_distill.cli.run_record import RUN_RECORD, check_resumed_settings

    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    with caplog.at_level("WARNING"):  # an older hf-distill's checkpoint, or a plain Trainer's
        check_resumed_settings(str(checkpoint), {"learning_rate": 1e-3}, tmp_path)
    assert f"holds no {RUN_RECORD}" in caplog.text
    (checkpoint / RUN_RECORD).write_text('{"learning_rate": 0.001, "seed": 42}')
    check_resumed_settings(str(checkpoint), {"learning_rate": 1e-3, "seed": 42}, tmp_path)  # the same: resumed
    with pytest.raises(ValueError, match=r"\(seed: 42 then, None now\)"):  # a setting the run no longer has
        check_resumed_settings(str(checkpoint), {"learning_rate": 1e-3}, tmp_path)


def test_report_to_names_are_checked_before_anything_loads(monkeypatch):
    # a typo or an integration not installed was found when the student's Trainer was built, after a teacher fine-tune
    # whose saved teacher then blocked the corrected command
    from types import SimpleNamespace

    from transformers.integrations import integration_utils

    from hf_distill.cli.checks import check_report_to

    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations", lambda: ["tensorboard"])
    with pytest.raises(ValueError, match=r"--report_to tensorbord: no such integration\. Pass one or more .*wandb"):
        check_report_to(SimpleNamespace(report_to=["tensorbord"]))
    with pytest.raises(ValueError, match=r"--report_to wandb: not installed here \(pip install wandb\)"):
        check_report_to(SimpleNamespace(report_to=["tensorboard", "wandb"]))
    args = SimpleNamespace(report_to=["tensorboard, tensorboard"])  # a comma list (a YAML list is joined into one)
    check_report_to(args)
    assert args.report_to == ["tensorboard", "tensorboard"]
    for nothing in ([], None, ["none"]):
        check_report_to(SimpleNamespace(report_to=nothing))


def test_options_the_run_never_reads_are_said(tmp_path, caplog):
    # labels_only with --temperature 4 --alpha_kd 0.9, or a teacher's epochs without --finetune_teacher, ran without a
    # word, and the card's command listed them as if they had trained the student
    from hf_distill.cli.arguments import parse_arguments
    from hf_distill.cli.checks import warn_of_unread_options

    def said(*flags):
        argv = ["--teacher_model_name_or_path", "bert-base-uncased", "--task_name", "sst2", "--output_dir",
                str(tmp_path / "out"), "--use_cpu", "true", "--student_num_layers", "1", *flags]  # fmt: skip
        caplog.clear()
        with caplog.at_level("WARNING"):
            warn_of_unread_options(*parse_arguments(argv)[:3])
        return caplog.text

    text = said("--student_training", "labels_only", "--temperature", "4", "--alpha_kd", "0.9", "--teacher_num_train_"
                "epochs", "5")  # fmt: skip
    assert "never reads --temperature 4.0, --alpha_kd 0.9, --teacher_num_train_epochs 5.0 (--student_training " in text
    assert "labels_only, no --finetune_teacher)" in text
    text = said("--student_training", "recipe", "--temperature", "4", "--alpha_task", "0.3", "--alpha_hidden", "1")
    assert "never reads --alpha_hidden 1.0 (--student_training recipe" in text and "temperature" not in text
    # the recipe takes the model's own, unsmoothed loss; the other trainings smooth it
    text = said("--student_training", "recipe", "--label_smoothing_factor", "0.1")
    assert "never reads --label_smoothing_factor 0.1 (--student_training recipe" in text
    assert said("--student_training", "labels_only", "--label_smoothing_factor", "0.1") == ""
    # the recipe's teacher fit (LabelsTrainer, with the run's arguments) smooths its loss
    assert said("--student_training", "recipe", "--label_smoothing_factor", "0.1", "--finetune_teacher", "true") == ""
    assert (
        said("--temperature", "4", "--alpha_hidden", "1", "--teacher_cache_dir", "x") == ""
    )  # distill reads them all


def test_report_to_leaves_integrations_transformers_cannot_list_to_it(monkeypatch):
    # flyte is never in get_available_reporting_integrations, azure_ml not beside mlflow: both were refused always
    from types import SimpleNamespace

    from transformers.integrations import integration_utils

    from hf_distill.cli.checks import check_report_to

    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations", lambda: [])
    for name in ("flyte", "azure_ml"):
        check_report_to(SimpleNamespace(report_to=[name]))


def test_a_resume_may_move_its_files_train_longer_and_trade_processes_for_accumulation(tmp_path, caplog):
    import json

    from hf_distill.cli.run_record import RUN_RECORD, check_resumed_settings

    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    then = {"data_dir": {"resolves_to": "aaaa"}, "total_train_batch_size": 32, "learning_rate": 1e-3}
    (checkpoint / RUN_RECORD).write_text(json.dumps(then))
    moved = {**then, "data_dir": {"resolves_to": "bbbb"}}  # the same folder at another mount: said, resumed
    with caplog.at_level("WARNING"):
        check_resumed_settings(str(checkpoint), moved, tmp_path, {"data_dir": "/mnt/glue"})
    assert "trained with data_dir at another place than now (data_dir /mnt/glue)" in caplog.text
    with pytest.raises(
        ValueError, match=rf"\(total_train_batch_size: 32 then, 64 now\).* or delete .*{RUN_RECORD} to"
    ):
        check_resumed_settings(str(checkpoint), {**then, "total_train_batch_size": 64}, tmp_path)
    check_resumed_settings(str(checkpoint), dict(then), tmp_path)  # epochs and steps are not compared


def test_unread_options_from_a_config_are_not_said(tmp_path, caplog):
    # run_results.py runs every variant from one config: its temperature is read by some of them, and the labels-only
    # run was told to drop options it could not drop
    from hf_distill.cli.arguments import parse_arguments
    from hf_distill.cli.checks import warn_of_unread_options

    config = tmp_path / "c.yaml"
    config.write_text("temperature: 4.0\nalpha_kd: 0.9\n")
    argv = [str(config), "--teacher_model_name_or_path", "bert-base-uncased", "--task_name", "sst2", "--output_dir",
            str(tmp_path / "out"), "--use_cpu", "true", "--student_num_layers", "1", "--student_training",
            "labels_only"]  # fmt: skip
    with caplog.at_level("WARNING"):
        warn_of_unread_options(*parse_arguments(argv)[:3])
        assert "never reads" not in caplog.text
        warn_of_unread_options(*parse_arguments([*argv, "--alpha-kd=0.8"])[:3])
    assert "never reads --alpha_kd 0.8 (" in caplog.text and "temperature" not in caplog.text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--do_train", "false"], r"--do_train false: this script always trains a student"),
        (["--do_predict", "true"], r"--do_predict: this script writes no predictions on a test split"),
        (["--eval_do_concat_batches", "false"], r"--eval_do_concat_batches false: the metrics are taken over the "),
        (["--prediction_loss_only", "true"], r"--prediction_loss_only: the scores on the card, .* which it drops"),
        (["--batch_eval_metrics", "true"], r"--batch_eval_metrics: the scripts score each evaluation split whole"),
        (["--push_to_hub", "true", "--hub_model_id", "me/x", "--hub_strategy", "checkpoint"],
         r"--hub_strategy checkpoint: the script pushes the student once, at the end"),
        (["--push_to_hub", "true", "--hub_model_id", "me/x", "--hub_strategy", "all_checkpoints"],
         r"--hub_strategy all_checkpoints: the script pushes the student once, at the end"),
    ],
)  # fmt: skip
def test_training_options_the_scripts_never_read_are_refused_before_anything_runs(tmp_path, flags, message):
    # they were accepted without a word: `--do_train false --do_eval true`, the usual way to score a saved model,
    # trained (and with --overwrite_output_dir replaced it); unconcatenated predictions crashed the metrics after
    # training; checkpoints were never pushed
    from hf_distill.cli.checks import check_before_loading

    with pytest.raises(ValueError, match=message):
        check_before_loading(*_sst2_arguments(tmp_path, *flags))
    assert not (tmp_path / "out").exists()
    config = tmp_path / "c.yaml"  # a config's key too
    config.write_text("".join(f"{flag[2:]}: {value}\n" for flag, value in zip(flags[::2], flags[1::2])))
    with pytest.raises(ValueError, match=message):
        check_before_loading(*_sst2_arguments(tmp_path, config=config))


def test_the_training_options_the_scripts_read_as_given_pass(tmp_path):
    from hf_distill.cli.checks import check_unread_training_options

    for flags in (["--do_train", "true", "--do_eval", "false"], ["--hub_strategy", "end"], []):
        check_unread_training_options(_sst2_arguments(tmp_path, *flags)[2])


def _sst2_arguments(tmp_path, *flags, config=None):
    """The three argument dataclasses of a GLUE run (SST-2, a one-layer student, CPU), with `flags` and a config."""
    from hf_distill.cli.arguments import parse_arguments

    argv = ["--teacher_model_name_or_path", "bert-base-uncased", "--task_name", "sst2", "--student_num_layers", "1",
            "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", *flags]  # fmt: skip
    return parse_arguments([str(config), *argv] if config else argv)[:3]


def test_the_evaluation_options_distill_mlm_never_reads_are_not_refused_there(tmp_path):
    # it scores its held-out lines itself, not through Trainer.evaluate: refused, with distill_glue's reasons
    from hf_distill.cli.arguments import parse_arguments
    from hf_distill.cli.checks import check_before_loading
    from hf_distill.cli.mlm_arguments import MlmDataArguments

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick fox\n" * 8)
    base = ["--teacher_model_name_or_path", "bert-base-uncased", "--train_file", str(corpus),
            "--validation_split_size", "2", "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to",
            "none", "--student_num_layers", "1"]  # fmt: skip
    for flags in (["--prediction_loss_only", "true"], ["--batch_eval_metrics", "true"],
                  ["--eval_do_concat_batches", "false"]):  # fmt: skip
        check_before_loading(*parse_arguments([*base, *flags], data_class=MlmDataArguments)[:3])
    with pytest.raises(ValueError, match=r"--do_predict: this script writes no predictions on a test split"):
        check_before_loading(*parse_arguments([*base, "--do_predict", "true"], data_class=MlmDataArguments)[:3])


def test_a_path_an_older_record_kept_as_text_is_compared_by_where_it_resolves(tmp_path):
    # distill_mlm's --dataset_name was recorded as text before it became a path option: resuming such a checkpoint
    # with the same folder was refused as another setting (a path then, "a local path" now)
    import json

    from hf_distill.cli.run_record import RUN_RECORD, _identity, check_resumed_settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / RUN_RECORD).write_text(json.dumps({"dataset_name": str(corpus), "learning_rate": 1e-3}))
    check_resumed_settings(str(checkpoint), {"dataset_name": _identity(str(corpus)), "learning_rate": 1e-3}, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (checkpoint / RUN_RECORD).write_text(json.dumps({"dataset_name": "org/hub-corpus", "learning_rate": 1e-3}))
    with pytest.raises(ValueError, match=r"dataset_name: 'org/hub-corpus' then, a local path now"):
        check_resumed_settings(str(checkpoint), {"dataset_name": _identity(str(other)), "learning_rate": 1e-3},
                               tmp_path)  # fmt: skip


def _resumed(tmp_path, then, now):
    """Resumes, with the settings `now`, a checkpoint whose record holds the settings `then`."""
    import json

    from hf_distill.cli.run_record import RUN_RECORD, check_resumed_settings

    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / RUN_RECORD).write_text(json.dumps(then))
    check_resumed_settings(str(checkpoint), now, tmp_path)


@pytest.mark.parametrize(
    ("option", "then", "now", "shown"),
    [
        ("max_train_samples", "100", "5000", "100 then, 5000 now"),
        ("max_seq_length", "128", "16", "128 then, 16 now"),
        ("warmup_steps", "0", "500", "0.0 then, 500.0 now"),
        ("data_seed", "1", "2", "1 then, 2 now"),
    ],
)
def test_a_resume_with_other_training_rows_or_another_optimisation_is_refused_naming_the_option(
    tmp_path, option, then, now, shown
):
    from hf_distill.cli.run_record import run_settings

    recorded = run_settings(*_sst2_arguments(tmp_path, f"--{option}", then))
    _resumed(tmp_path, recorded, run_settings(*_sst2_arguments(tmp_path, f"--{option}", then)))
    with pytest.raises(ValueError, match=rf"other settings than this run's \({option}: {shown}\): resumed"):
        _resumed(tmp_path, recorded, run_settings(*_sst2_arguments(tmp_path, f"--{option}", now)))


def test_the_batch_a_resume_compares_is_per_device_times_accumulation_times_processes(tmp_path, monkeypatch):
    from hf_distill.cli.run_record import run_settings

    def on(processes, *flags):
        arguments = _sst2_arguments(tmp_path, "--per_device_train_batch_size", "16", *flags)
        monkeypatch.setattr(type(arguments[2]), "world_size", property(lambda self: processes))  # as under a launcher
        return run_settings(*arguments)

    recorded = on(3, "--gradient_accumulation_steps", "2")
    assert recorded["total_train_batch_size"] == 96
    _resumed(tmp_path, recorded, on(1, "--gradient_accumulation_steps", "6"))  # fewer processes, more accumulation
    for now, batch in ((on(1, "--gradient_accumulation_steps", "2"), 32), (on(3), 48)):
        with pytest.raises(ValueError, match=rf"\(total_train_batch_size: 96 then, {batch} now\)"):
            _resumed(tmp_path, recorded, now)


@pytest.mark.parametrize(
    ("option", "then", "now"),
    [
        ("teacher_cache_dir", "caches", "elsewhere/caches"),
        ("teacher_cache_batch_size", "64", "8"),
        ("per_device_eval_batch_size", "64", "8"),
    ],
)
def test_a_resume_may_change_where_the_teacher_cache_lies_and_the_batches_that_train_nothing(
    tmp_path, option, then, now
):
    from hf_distill.cli.run_record import run_settings

    cached = ("--cache_teacher_logits", "true")
    recorded = run_settings(*_sst2_arguments(tmp_path, *cached, f"--{option}", then))
    _resumed(tmp_path, recorded, run_settings(*_sst2_arguments(tmp_path, *cached, f"--{option}", now)))


def test_a_model_folder_with_only_pytorch_model_bin_weights_is_accepted(tmp_path):
    # an older checkpoint (save_pretrained before safetensors, or safe_serialization=False)
    from hf_distill.cli.checks import check_model_path

    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "config.json").write_text("{}")
    torch.save({"weight": torch.zeros(64)}, tmp_path / "teacher" / "pytorch_model.bin")
    check_model_path(str(tmp_path / "teacher"), "teacher")


def test_a_max_seq_length_of_exactly_the_teachers_positions_is_accepted(tmp_path):
    from transformers import BertConfig

    from hf_distill.cli.checks import check_sequence_length

    config = BertConfig(max_position_embeddings=512)  # bert-base-uncased's, and the length runs usually ask for
    check_sequence_length(512, config, "teacher")
    with pytest.raises(
        ValueError, match=r"^--max_seq_length 513 is longer than the teacher's 512 position embeddings"
    ):
        check_sequence_length(513, config, "teacher")


def test_metric_for_best_model_is_accepted_with_or_without_the_eval_prefix():
    # Trainer itself adds "eval_" to a name without it, and users copy names from the logged metrics, which have it
    from types import SimpleNamespace

    from hf_distill.cli.checks import check_metric_for_best_model

    for name in ("eval_accuracy", "accuracy", "eval_loss", "loss"):
        check_metric_for_best_model(SimpleNamespace(metric_for_best_model=name), ["accuracy"])
    with pytest.raises(ValueError, match=r"--metric_for_best_model 'eval_f1' is not a metric"):
        check_metric_for_best_model(SimpleNamespace(metric_for_best_model="eval_f1"), ["accuracy"])


def test_an_output_dir_that_is_the_teachers_folder_by_another_spelling_is_refused(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hf_distill.cli.checks import check_output_is_no_model_read

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    monkeypatch.chdir(tmp_path)
    for output_dir, name in (("teacher", str(teacher)), (str(teacher), "teacher"), ("./teacher/", "teacher")):
        with pytest.raises(ValueError, match=rf"^--output_dir {re.escape(output_dir)} is the teacher's own folder"):
            check_output_is_no_model_read(
                SimpleNamespace(teacher_model_name_or_path=name), SimpleNamespace(output_dir=output_dir)
            )
    check_output_is_no_model_read(
        SimpleNamespace(teacher_model_name_or_path=str(teacher)), SimpleNamespace(output_dir="student")
    )


def test_an_earlier_search_journal_is_refused_for_a_teacher_refit_unless_overwrite(tmp_path):
    pytest.importorskip("optuna")  # --hp_search_trials is refused at parsing without it
    from hf_distill.cli.checks import check_search_plan
    from hf_distill.cli.hp_search import STUDY_FILE

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / STUDY_FILE).write_text("")
    search = ("--hp_search_trials", "2", "--validation_split_size", "4")
    with pytest.raises(ValueError, match=r"out/hp_search_study\.journal holds the trials of an earlier search .* pass "
                                         r"--overwrite_output_dir to start afresh"):  # fmt: skip
        check_search_plan(*_sst2_arguments(tmp_path, *search, "--finetune_teacher", "true"))
    check_search_plan(
        *_sst2_arguments(tmp_path, *search, "--finetune_teacher", "true", "--overwrite_output_dir", "true")
    )
    check_search_plan(*_sst2_arguments(tmp_path, *search))  # a given teacher: the trials resume
