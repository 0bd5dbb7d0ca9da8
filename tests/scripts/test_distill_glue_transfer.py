"""scripts/distill_glue.py with a transfer set (unlabelled rows, augmentation), the pseudo-label baseline and the
hyperparameter search, on tiny BERTs and real GLUE rows; and every refusal of those options."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import shlex
from pathlib import Path

import pytest
import tiny
from test_distill_glue import GLUE_DIR, common_flags, distill_glue, needs_glue, read_results, refuse, save_teacher
from transformers import BertForMaskedLM, BertModel

from hf_distill.cache.fingerprint import fingerprint_rows
from hf_distill.publish.report import ExportFailed
from hf_distill.tasks.augment import augment_dataset


@pytest.fixture
def teacher_folder(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp("models") / "teacher", num_labels=2)


def sst2_flags(tmp_path, teacher, *extra):
    return common_flags(tmp_path, teacher, "--task_name", "sst2", "--data_dir", str(GLUE_DIR), "--student_num_layers",
                        "1", *extra)  # fmt: skip


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@needs_glue
def test_unlabeled_train_rows_join_the_transfer_set_and_the_card_says_so(tmp_path, teacher_folder):
    distill_glue.main(sst2_flags(tmp_path, teacher_folder, "--unlabeled_train_rows", "64", "--logging_steps", "1"))
    out = tmp_path / "out"
    results = read_results(out)
    assert results["train_labelled_examples"] == 48 and results["search_held_out_examples"] == 0  # no search
    assert results["train_unlabeled_examples"] == 64 and results["train_augmented_examples"] == 0
    assert results["train_examples"] == 112
    card = (out / "README.md").read_text()
    assert "64 rows of the task's training split with labels dropped" in card and "48 labelled" in card
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    task_terms = [entry["loss_task"] for entry in history if "loss_task" in entry]
    assert task_terms and all(math.isfinite(value) and value > 0 for value in task_terms)


@needs_glue
def test_baselines_stay_on_the_labelled_rows_and_pseudo_labels_use_the_transfer_rows(
    tmp_path, teacher_folder, monkeypatch, caplog
):
    import hf_distill.cli.transfer as transfer_step

    built = []
    monkeypatch.setattr(transfer_step, "augment_dataset", lambda rows, **kw: built.append(kw["copies"]) or rows)
    for training in ("labels_only", "pseudo_labels"):
        flags = sst2_flags(tmp_path / training, teacher_folder, "--unlabeled_train_rows", "32")
        augment = ["--augment", "mask", "--augment_copies", "2"] if training == "labels_only" else []
        with caplog.at_level(logging.WARNING, logger="hf_distill.cli.transfer"):
            distill_glue.main([*flags, *augment, "--student_training", training])
        if training == "labels_only":  # the transfer set it would not train on was built, augmentation and all
            assert not built
            assert (
                "--student_training labels_only trains on the labelled rows alone: the transfer set "
                "(--unlabeled_train_rows 32, --augment mask --augment_copies 2) is not built"
            ) in caplog.text
        results = read_results(tmp_path / training / "out")
        assert results["train_labelled_examples"] == 48
        expected = 48 if training == "labels_only" else 80
        assert results["train_examples"] == expected
        assert results["train_unlabeled_examples"] == expected - 48


@needs_glue
def test_unlabeled_file_and_augmented_pairs_with_a_masked_lm(tmp_path):
    teacher = save_teacher(tmp_path / "teacher", num_labels=2)
    mlm = BertForMaskedLM(tiny.bert_config(layers=1, max_position_embeddings=128))
    mlm.save_pretrained(tmp_path / "mlm")
    tiny.tokenizer(tmp_path / "mlm_tok").save_pretrained(tmp_path / "mlm")
    rows = [["a fine day .", "it was fine .", "1"], ["the quick fox", "a fox", "0"], ["so it goes", "it went", "1"]]
    unlabeled = write_csv(tmp_path / "pairs.csv", ["#1 String", "#2 String", "Quality"], rows)
    flags = common_flags(tmp_path, teacher, "--task_name", "mrpc", "--data_dir", str(GLUE_DIR), "--student_num_layers",
                         "1", "--max_train_samples", "16", "--unlabeled_file", str(unlabeled),
                         "--unlabeled_text_column", "#1 String", "#2 String", "--augment", "mlm", "--augment_copies",
                         "2", "--augment_probability", "0.5",
                         "--augment_mlm_model", str(tmp_path / "mlm"))  # fmt: skip
    distill_glue.main(flags)
    results = read_results(tmp_path / "out")
    assert results["train_labelled_examples"] == 16
    # up to 2 copies of each of the 16 pairs: one identical to its pair, or to the other copy, is dropped
    augmented = results["train_augmented_examples"]
    assert results["train_unlabeled_examples"] == 3 and 0 < augmented <= 32
    assert results["train_examples"] == 16 + 3 + augmented
    card = (tmp_path / "out" / "README.md").read_text()
    assert (
        f"{augmented:,} augmented copies of the labelled rows (up to 2 per row, those identical to their row or to "
        "one another dropped; --augment mlm, p = 0.5"
    ) in card


@needs_glue
def test_augmented_copies_with_the_teachers_embedding_neighbours(tmp_path, teacher_folder):
    flags = sst2_flags(tmp_path, teacher_folder, "--augment", "embedding", "--augment_copies", "2",
                       "--augment_probability", "0.5", "--augment_keep_duplicates", "true")  # fmt: skip
    distill_glue.main(flags)  # every copy kept: exactly K per row
    results = read_results(tmp_path / "out")
    assert results["train_labelled_examples"] == 48 and results["train_augmented_examples"] == 96
    card = (tmp_path / "out" / "README.md").read_text()
    assert (
        "2 augmented copies of each labelled row (--augment embedding, p = 0.5, each replaced word one of its 15 "
        in card
    )


@needs_glue
def test_hp_search_scores_trials_on_held_out_rows_trains_the_best_and_resumes(tmp_path, teacher_folder):
    pytest.importorskip("optuna")
    flags = sst2_flags(tmp_path, teacher_folder, "--hp_search_trials", "2", "--validation_split_size", "16",
                       "--finetune_teacher", "true", "--teacher_num_train_epochs", "1")  # fmt: skip
    distill_glue.main(flags)
    out = tmp_path / "out"
    report = json.loads((out / "hp_search.json").read_text())
    assert len(report["trials"]) == 2 and "never dev" in report["scored_on"]
    best = report["best"]
    results = read_results(out)
    assert results["eval_examples"] == 32  # the final student is scored on dev (max_eval_samples), not the 16 rows
    card = (out / "README.md").read_text()
    assert "chosen by 2 optuna trials on 16 training rows held out" in card
    assert f"T = {best['temperature']}" in card
    # the trials read the labels of 16 rows beyond the 48 labelled ones (--max_train_samples): stated, apart
    assert results["train_labelled_examples"] == 48 and results["search_held_out_examples"] == 16
    assert "- **Search rows**: 16 labelled rows held out of the training data" in card
    # Resumed with one more trial: the teacher the first run fit and saved, loaded from its folder, fingerprints as
    # the one in memory did, so the two finished trials are kept and not run again.
    flags = sst2_flags(tmp_path, out / "teacher", "--hp_search_trials", "3", "--validation_split_size", "16",
                       "--overwrite_output_dir", "true")  # fmt: skip
    distill_glue.main(flags)
    resumed = json.loads((out / "hp_search.json").read_text())
    assert resumed["resumed_after_trials"] == 2 and resumed["trials"][:2] == report["trials"]
    assert len(resumed["trials"]) == 3 and "chosen by 3 optuna trials" in (out / "README.md").read_text()


@pytest.mark.parametrize("validation_file", [True, False], ids=["with-validation-file", "split-only"])
def test_hp_search_on_your_own_files_scores_trials_on_other_rows_than_the_final_evaluation(
    tmp_path, teacher_folder, validation_file
):
    pytest.importorskip("optuna")
    rows = [[f"{'good fun' if i % 2 else 'bad sad'} {i}", "pos" if i % 2 else "neg"] for i in range(60)]
    train = write_csv(tmp_path / "train.csv", ["text", "label"], rows)
    flags = common_flags(tmp_path, teacher_folder, "--train_file", str(train), "--text_column", "text",
                         "--student_num_layers", "1", "--hp_search_trials", "1",
                         "--validation_split_size", "10")  # fmt: skip
    at = flags.index("--max_train_samples")
    del flags[at : at + 2]
    if validation_file:
        flags += ["--validation_file", str(write_csv(tmp_path / "dev.csv", ["text", "label"], rows[:20]))]
    distill_glue.main(flags)
    report = json.loads((tmp_path / "out" / "hp_search.json").read_text())
    results = read_results(tmp_path / "out")
    assert report["scored_on_rows"] == 10
    # the final student is scored on the validation file (20 rows), or on 10 other held-out rows; it trains on the rest
    assert results["eval_examples"] == (20 if validation_file else 10)
    assert results["train_labelled_examples"] == (50 if validation_file else 40)
    assert results["search_held_out_examples"] == 10
    # the card names what the student was scored on: the validation file, or the rows held out of the training file
    card = (tmp_path / "out" / "README.md").read_text()
    scored = "dev.csv evaluation set" if validation_file else "10 rows held out of train.csv (never trained on)"
    assert f"Evaluated on the same {scored}" in card and "train.csv evaluation set" not in card


def test_refuses_validation_split_size_beside_a_validation_file_without_a_search(tmp_path, teacher_folder):
    rows = [["good fun", "pos"], ["bad sad", "neg"]] * 4
    train = write_csv(tmp_path / "train.csv", ["text", "label"], rows)
    dev = write_csv(tmp_path / "dev.csv", ["text", "label"], rows)
    flags = common_flags(tmp_path, teacher_folder, "--train_file", str(train), "--text_column", "text",
                         "--validation_file", str(dev), "--validation_split_size", "2",
                         "--student_num_layers", "1")  # fmt: skip
    refuse(tmp_path, flags, r"--validation_split_size 2 would hold rows out of train for evaluation, but "
           r"--validation_file 'dev\.csv' is the evaluation split: drop one of them")  # fmt: skip


@needs_glue
def test_hp_search_only_keeps_every_trial_and_trains_no_final_student(tmp_path, teacher_folder):
    pytest.importorskip("optuna")
    flags = sst2_flags(tmp_path, teacher_folder, "--hp_search_trials", "2", "--validation_split_size", "16",
                       "--unlabeled_train_rows", "8", "--hp_search_only", "true")  # fmt: skip
    returned = distill_glue.main(flags)
    out = tmp_path / "out"
    report = json.loads((out / "hp_search.json").read_text())
    assert len(report["trials"]) == 2
    assert report["train_rows"] == {"labelled": 48, "unlabeled": 8, "augmented": 0}  # what every trial trained on
    assert returned["best_eval_accuracy"] == report["best"]["eval_accuracy"]
    assert returned["alpha_kd"] == report["best"]["alpha_kd"]
    # nothing that would pass for a trained student: no results, no weights, no card
    assert not (out / "all_results.json").exists() and not (out / "model.safetensors").exists()
    assert not (out / "README.md").exists()


def test_augmentation_seed_changes_the_rows_and_so_the_cache_fingerprint():
    import datasets

    rows = datasets.Dataset.from_dict({"sentence": ["a fine and quick day for it"] * 4, "label": [0, 1, 0, 1]})
    prints = {
        seed: fingerprint_rows(augment_dataset(rows, text_columns=["sentence"], method="mask", copies=2,
                                               probability=0.5, seed=seed, mask_token="[MASK]"))
        for seed in (1, 1, 2)
    }  # fmt: skip
    assert len(set(prints.values())) == 2  # same seed, same rows and cache; another seed, a new cache


# ---- refusals, before any training, writing nothing ----------------------------------------------------------------


@needs_glue
def test_refuses_bad_unlabelled_files(tmp_path, teacher_folder, monkeypatch):
    flags = sst2_flags(tmp_path, teacher_folder, "--finetune_teacher", "true")  # refused before the fine-tune
    # and before any model loads (the teacher, a masked LM, the embedding table): the file's first row tells
    monkeypatch.setattr(distill_glue, "load_models", lambda *args, **kwargs: pytest.fail("models loaded first"))
    refuse(
        tmp_path, [*flags, "--unlabeled_file", str(tmp_path / "none.csv")], r"--unlabeled_file .*none\.csv.* does not"
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("sentence\n")
    refuse(tmp_path, [*flags, "--unlabeled_file", str(empty)], r"empty\.csv holds no examples")
    wrong = write_csv(tmp_path / "wrong.csv", ["text", "stars"], [["fine", "5"]])
    refuse(tmp_path, [*flags, "--unlabeled_file", str(wrong)], r"wrong\.csv: missing column\(s\) \['sentence'\]; the "
           r"columns present are \['text', 'stars'\]")  # fmt: skip


SEARCH_ONLY = ["--hp_search_trials", "2", "--validation_split_size", "16", "--hp_search_only", "true"]


@needs_glue
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--unlabeled_train_rows", "100000"],
            r"--unlabeled_train_rows 100000 asks for more rows .* pass --unlabeled_train_rows 67301 or fewer",
        ),
        (["--augment", "mask", "--augment_copies", "-1"], r"--augment_copies must be an integer >= 0, got -1"),
        (
            ["--augment", "mask", "--augment_probability", "1.5"],
            r"--augment_probability must be in \[0, 1\], got 1\.5",
        ),
        (
            ["--augment", "shuffle"],
            r"--augment must be one of none, mask, ngram, mask_ngram, mlm, embedding, got 'shuffle'",
        ),
        (["--augment", "mlm"], r"--augment mlm needs --augment_mlm_model"),
        (["--hp_search_trials", "3"], r"--hp_search_trials 3 needs --validation_split_size"),
        (["--hp_search_only", "true"], r"--hp_search_only stops after the search, but --hp_search_trials was not"),
        (
            [*SEARCH_ONLY, "--export", "onnx"],
            r"--hp_search_only trains no student, so --export onnx would export nothing",
        ),
        (
            [*SEARCH_ONLY, "--push_to_hub", "true", "--hub_model_id", "me/student"],
            r"--hp_search_only trains no student, so --push_to_hub would push nothing",
        ),
        (
            ["--student_training", "labels_only", "--hp_search_trials", "2", "--validation_split_size", "16"],
            r"--hp_search_trials 2 searches DistillationTrainer's settings .* --student_training 'labels_only' "
            r"trains another way",
        ),
        (
            ["--augment_mlm_model", "some/mlm"],
            r"--augment_mlm_model 'some/mlm' is used only by --augment mlm, but --augment is 'none'",
        ),
        (["--max_unlabeled_samples", "5"], r"--max_unlabeled_samples 5 applies to the rows of --unlabeled_file"),
        (  # every copy identical to its row, so dropped: pseudo-labels crashed after the teacher's fine-tune
            [*"--augment mask --augment_copies 2 --augment_probability 0 --student_training pseudo_labels".split()],
            r"--augment mask --augment_copies 2 --augment_probability 0.0 made no copy that differs from its row "
            r"among the 48 labelled rows .*--augment_keep_duplicates true",
        ),
        (["--unlabeled_text_column", "text"], r"--unlabeled_text_column \['text'\] applies to the rows of"),
    ],
)
def test_refuses_bad_transfer_options(tmp_path, teacher_folder, extra, message):
    # with --finetune_teacher: refused before the fine-tune, which would write <output_dir>/teacher
    refuse(tmp_path, [*sst2_flags(tmp_path, teacher_folder, "--finetune_teacher", "true"), *extra], message)


@needs_glue
def test_the_warning_of_transfer_rows_repeating_dev_rows_counts_the_rows_scored(tmp_path, teacher_folder, caplog):
    # it counted the whole dev split before --max_eval_samples cut it: rows never scored were said to inflate scores
    with open(GLUE_DIR / "SST-2" / "dev.tsv", newline="") as handle:
        dev = [row["sentence"] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    unlabelled = write_csv(tmp_path / "unlabelled.csv", ["sentence"], [[text] for text in dev[:5] + dev[100:110]])
    with caplog.at_level(logging.WARNING, logger="hf_distill.cli.transfer"):
        distill_glue.main(sst2_flags(tmp_path, teacher_folder, "--unlabeled_file", str(unlabelled)))
    assert "5 of the 15 transfer rows repeat the text of a row it is evaluated or searched on (validation: 5)" in (
        caplog.text
    )


@needs_glue
def test_refuses_unlabeled_train_rows_when_every_training_row_is_labelled(tmp_path, teacher_folder):
    flags = sst2_flags(tmp_path, teacher_folder, "--unlabeled_train_rows", "10")
    at = flags.index("--max_train_samples")
    del flags[at : at + 2]  # all of train labelled: the fix is --max_train_samples (said before the data loads)
    refuse(tmp_path, flags, r"without --max_train_samples every training row is labelled and none is left: pass "
           r"--max_train_samples N below the training split's size")  # fmt: skip


@needs_glue
def test_refuses_unlabeled_text_columns_that_do_not_match_the_tasks(tmp_path, teacher_folder):
    one = write_csv(tmp_path / "one.csv", ["text"], [["a fine day"]])
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "mrpc", "--data_dir", str(GLUE_DIR),
                         "--student_num_layers", "1", "--unlabeled_file", str(one),
                         "--unlabeled_text_column", "text")  # fmt: skip
    refuse(tmp_path, flags, r"--unlabeled_text_column text names 1 column\(s\), but the task's text is 2 column\(s\) "
           r"\(sentence1, sentence2\): pass 2 column name\(s\) of one\.csv")  # fmt: skip
    two = write_csv(tmp_path / "two.csv", ["a", "b"], [["x", "y"]])
    flags = sst2_flags(tmp_path, teacher_folder, "--unlabeled_file", str(two), "--unlabeled_text_column", "a", "b")
    refuse(tmp_path, flags, r"--unlabeled_text_column a b names 2 column\(s\), but the task's text is 1 column")
    # the labelled files' loader refused a repeated column; the unlabelled one paired each text with itself
    flags = common_flags(tmp_path, teacher_folder, "--task_name", "mrpc", "--data_dir", str(GLUE_DIR),
                         "--student_num_layers", "1", "--unlabeled_file", str(one),
                         "--unlabeled_text_column", "text", "text")  # fmt: skip
    refuse(tmp_path, flags, r"The unlabelled file's text columns \(--unlabeled_text_column\) name 'text' twice: .*"
           r"Pass the two different columns of one\.csv")  # fmt: skip


@needs_glue
def test_refuses_mask_augmentation_when_the_teacher_tokenizer_has_no_mask_token(tmp_path):
    teacher = save_teacher(tmp_path / "models" / "teacher", num_labels=2)
    tokenizer = tiny.tokenizer(tmp_path / "models" / "tok")
    tokenizer.mask_token = None
    tokenizer.save_pretrained(teacher)
    flags = sst2_flags(tmp_path, teacher, "--augment", "mask", "--augment_copies", "2")
    refuse(tmp_path, flags, r"--augment mask masks words with the teacher tokenizer's mask token, and this teacher's "
           r"tokenizer has none: use --augment ngram")  # fmt: skip


def test_refuses_unlabeled_train_rows_with_your_own_files(tmp_path, teacher_folder):
    train = write_csv(tmp_path / "train.csv", ["text", "label"], [["fine", "1"], ["bad", "0"], ["ok", "1"]])
    flags = common_flags(tmp_path, teacher_folder, "--train_file", str(train), "--text_column", "text",
                         "--validation_split_size", "1", "--unlabeled_train_rows", "1",
                         "--student_num_layers", "1")  # fmt: skip
    refuse(tmp_path, flags, r"--unlabeled_train_rows 1 takes rows of a GLUE task's training split, but --train_file")


@needs_glue
def test_refuses_hp_search_without_optuna_naming_the_extra(tmp_path, teacher_folder, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    flags = sst2_flags(tmp_path, teacher_folder, "--hp_search_trials", "2", "--validation_split_size", "16")
    refuse(tmp_path, flags, r"needs optuna, which is not installed\. Install the 'search' extra")


@needs_glue
def test_refuses_a_masked_lm_with_another_vocabulary_or_no_mask_token(tmp_path, teacher_folder):
    other = tmp_path / "models" / "other_mlm"
    BertForMaskedLM(tiny.bert_config(layers=1)).save_pretrained(other)
    tiny.tokenizer(tmp_path / "models" / "tok", extra_words=("zebra",)).save_pretrained(other)
    flags = sst2_flags(tmp_path, teacher_folder, "--augment", "mlm", "--augment_mlm_model", str(other))
    refuse(tmp_path, flags, r"has a vocabulary of .* that differs from the teacher's")
    no_mask = tmp_path / "models" / "no_mask"
    BertForMaskedLM(tiny.bert_config(layers=1)).save_pretrained(no_mask)
    tokenizer = tiny.tokenizer(tmp_path / "models" / "tok2")
    tokenizer.mask_token = None
    tokenizer.save_pretrained(no_mask)
    flags = sst2_flags(tmp_path, teacher_folder, "--augment", "mlm", "--augment_mlm_model", str(no_mask))
    refuse(tmp_path, flags, r"has a tokenizer without a mask token")


@needs_glue
def test_refuses_a_masked_lm_that_is_missing_or_has_no_masked_lm_head_before_the_teachers_fine_tune(
    tmp_path, teacher_folder
):
    # a typo'd folder reached from_pretrained (a traceback); a BertModel (the teacher base itself) or a classifier
    # passed every check and filled in words from a randomly initialised head
    finetune = ["--finetune_teacher", "true"]
    missing = str(tmp_path / "nowhere") + "/"
    flags = sst2_flags(tmp_path, teacher_folder, "--augment", "mlm", "--augment_mlm_model", missing, *finetune)
    refuse(tmp_path, flags, r"--augment_mlm_model path '.*nowhere/' does not exist")
    for name, model in (("bare", BertModel(tiny.bert_config(layers=1))), ("classifier", tiny.classifier(layers=1))):
        folder = tmp_path / "models" / name
        model.save_pretrained(folder)
        tiny.tokenizer(tmp_path / "models" / f"{name}_tok").save_pretrained(folder)
        flags = sst2_flags(tmp_path, teacher_folder, "--augment", "mlm", "--augment_mlm_model", str(folder), *finetune)
        refuse(tmp_path, flags, rf"--augment_mlm_model '.*{name}' has no trained masked-LM head \(.*cls\.predictions")


@needs_glue
def test_refuses_search_plans_that_cannot_work_before_the_teachers_fine_tune(tmp_path, teacher_folder):
    search = ["--hp_search_trials", "2", "--validation_split_size", "16", "--finetune_teacher", "true"]
    # --max_steps overrides the searched epochs: the trials trained alike and reported epochs they never ran
    refuse(tmp_path, sst2_flags(tmp_path, teacher_folder, *search, "--max_steps", "5"),
           r"--hp_search_trials searches num_train_epochs .* --max_steps 5 overrides.*Drop --max_steps")  # fmt: skip
    # the trials score once, after training: a schedule that steps on evaluations has none to step on
    for scheduler in ("reduce_lr_on_plateau", "greedy"):
        flags = [*search, "--lr_scheduler_type", scheduler, "--eval_strategy", "epoch"]
        refuse(tmp_path, sst2_flags(tmp_path, teacher_folder, *flags),
               rf"--lr_scheduler_type {scheduler} steps on evaluations .* --hp_search_trials .* linear")  # fmt: skip
    # an earlier search's journal, scored with another teacher: found only after the fine-tune had written one
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "hp_search_study.journal").write_text("{}\n")
    refuse(tmp_path, sst2_flags(tmp_path, teacher_folder, *search),
           r"hp_search_study\.journal holds the trials of an earlier search .* --overwrite_output_dir")  # fmt: skip


@needs_glue
def test_card_and_recorded_command_hold_no_machine_path(tmp_path):
    teacher = save_teacher(tmp_path / "my-teacher", num_labels=2)
    distill_glue.main(sst2_flags(tmp_path, teacher, "--unlabeled_train_rows", "16"))
    card = (tmp_path / "out" / "README.md").read_text()
    assert str(tmp_path) not in card and "/tmp" not in card
    assert "`my-teacher`" in card  # a local teacher is named by its folder's name
    assert "--data_dir ../shared/data/glue" in card  # beside the repository: relative to it


# ---- export (the script's side; the library's is tests/publish/test_export.py) -------------------------------------


@needs_glue
def test_export_onnx_and_int8_rescored_in_results_and_card(tmp_path, teacher_folder):
    pytest.importorskip("onnxruntime")
    distill_glue.main(sst2_flags(tmp_path, teacher_folder, "--export", "onnx,int8"))
    out = tmp_path / "out"
    results = read_results(out)
    assert (out / "onnx" / "model.onnx").is_file() and (out / "onnx" / "model_int8.onnx").is_file()
    assert results["onnx_agreement"] == 1.0
    assert results["onnx_eval_accuracy"] == pytest.approx(results["eval_accuracy"])
    assert 0 <= results["onnx_int8_agreement"] <= 1 and results["onnx_int8_size_bytes"] < results["onnx_size_bytes"]
    for key in ("onnx_latency_ms_batch1", "onnx_latency_ms_batch32", "onnx_int8_latency_ms_batch1"):
        assert results[key] > 0
    card = (out / "README.md").read_text()
    assert "| student, ONNX fp32 |" in card and "| student, ONNX int8 |" in card
    rows = results["eval_examples"]  # the agreement counted over the rows scored
    assert f"| {rows:,}/{rows:,} (100%) |" in card.split("| student, ONNX fp32 |")[1].splitlines()[0]
    # each file timed in turns with the float32 PyTorch student on this CPU: the speed-ups divide by that timing
    speedup = results["onnx_reference_latency_ms_batch1"] / results["onnx_latency_ms_batch1"]
    assert f" {speedup:.2f}x |" in card.split("| student, ONNX fp32 |")[1].splitlines()[0]
    int8_speedup = results["onnx_int8_reference_latency_ms_batch1"] / results["onnx_int8_latency_ms_batch1"]
    assert f" {int8_speedup:.2f}x |" in card.split("| student, ONNX int8 |")[1].splitlines()[0]
    assert "timed in blocks in turns with the file's" in card and "run with onnxruntime " in card
    from hf_distill.publish.latency import cpu_model

    assert f"on {cpu_model()} CPU, " in card and " threads, on the same evaluation set" in card


@needs_glue
def test_an_export_from_a_half_precision_run_is_compared_with_the_student_on_the_cpu(tmp_path, teacher_folder,
                                                                                      monkeypatch):  # fmt: skip
    # a GPU run times its students in bf16 on the GPU; onnxruntime runs on the CPU in float32: the card's speed-up
    # must compare like with like (the run's dtype is faked: there is no GPU here)
    pytest.importorskip("onnxruntime")
    import torch

    from hf_distill.publish import latency, report

    monkeypatch.setattr(latency, "latency_dtype", lambda args: torch.bfloat16)  # the run's models timed in bf16
    copies = []
    original = report.export_and_score
    monkeypatch.setattr(
        report, "export_and_score", lambda *a, **k: copies.append(k["reference_model"]) or original(*a, **k)
    )
    distill_glue.main(sst2_flags(tmp_path, teacher_folder, "--export", "onnx"))
    assert {p.dtype for p in copies[0].parameters()} == {torch.float32} and copies[0].device.type == "cpu"
    results = read_results(tmp_path / "out")
    speedups = [results[f"onnx_reference_latency_ms_batch{b}"] / results[f"onnx_latency_ms_batch{b}"] for b in (1, 32)]
    row = (tmp_path / "out" / "README.md").read_text().split("| student, ONNX fp32 |")[1].splitlines()[0]
    assert row.endswith(f" {speedups[0]:.2f}x | {speedups[1]:.2f}x |")


@needs_glue
def test_export_failure_keeps_the_student_and_says_what_failed(tmp_path, teacher_folder, monkeypatch):
    pytest.importorskip("onnxruntime")
    import torch.onnx

    def broken(*args, **kwargs):
        raise RuntimeError("no exporter today")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportFailed, match=r"--export onnx failed"):  # not a success: the asked-for file is missing
        distill_glue.main(sst2_flags(tmp_path, teacher_folder, "--export", "onnx"))
    results = read_results(tmp_path / "out")
    assert "onnx" in results["export_error"] and "no exporter today" in results["export_error"]
    assert (tmp_path / "out" / "model.safetensors").is_file() and "eval_accuracy" in results
    # before the exporter: the float32 CPU copy the files are checked against failed outside the export's handling
    # (no export_error, no card, a traceback)
    from hf_distill.publish import report

    monkeypatch.setattr(report, "_predict_here", lambda *args, **kwargs: broken())
    with pytest.raises(ExportFailed, match=r"--export onnx failed"):
        distill_glue.main(sst2_flags(tmp_path, teacher_folder, "--export", "onnx", "--overwrite_output_dir", "true"))
    error = read_results(tmp_path / "out")["export_error"]
    assert "failed while preparing the PyTorch student it is checked against" in error and "no exporter" in error
    assert (
        f"An export was asked for and failed (no file of the format that failed is in this folder): {error}"
        in (tmp_path / "out" / "README.md").read_text()
    )


@needs_glue
def test_refuses_an_unknown_export_format(tmp_path, teacher_folder):
    refuse(tmp_path, sst2_flags(tmp_path, teacher_folder, "--export", "tflite"), r"Unknown export format.*'tflite'")


@needs_glue
def test_intermediate_terms_from_flags_reach_the_trainer_and_the_card(tmp_path, teacher_folder):
    # uniform: the 1-layer student's layer matches the teacher's last (a student layer built from teacher layer 0
    # with "init" would match its source exactly at the first step, and its loss be 0 there)
    flags = sst2_flags(tmp_path, teacher_folder, "--alpha_hidden", "0.5", "--hidden_layer_map", "uniform",
                       "--alpha_attention", "0.2", "--alpha_value_relation", "0.1",
                       "--logging_steps", "1")  # fmt: skip
    distill_glue.main(flags)
    out = tmp_path / "out"
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    entry = next(e for e in history if "loss" in e)
    assert entry["loss_hidden"] > 0 and entry["loss_attention"] > 0 and entry["loss_value_relation"] > 0
    card = (out / "README.md").read_text()
    assert "+ 0.5 * hidden + 0.2 * attention + 0.1 * value_relation" in card and "layer map `uniform`" in card


@needs_glue
def test_refuses_intermediate_terms_with_the_cache_and_bad_layer_maps(tmp_path, teacher_folder):
    flags = sst2_flags(tmp_path, teacher_folder)
    refuse(tmp_path, [*flags, "--alpha_hidden", "1", "--cache_teacher_logits", "true"], r"alpha_hidden=1\.0 needs")
    refuse(tmp_path, [*flags, "--alpha_hidden", "1", "--hidden_layer_map", "0:9"], r"pair 0:9 is out of range")
    # the student is built only after a teacher fine-tune: refused before it, from the layers it will be built from
    finetune = [*flags, "--finetune_teacher", "true", "--teacher_num_train_epochs", "1", "--alpha_hidden", "1"]
    refuse(tmp_path, [*finetune, "--hidden_layer_map", "0:9"], r"pair 0:9 is out of range")
    refuse(tmp_path, [*finetune, "--student_num_layers", "3"], r"'uniform' needs the teacher's 4 layers to be a")


@needs_glue
def test_card_is_valid_hub_metadata_with_an_evaluation_widget_versions_and_hardware(tmp_path, teacher_folder):
    from huggingface_hub import ModelCard

    distill_glue.main(sst2_flags(tmp_path, teacher_folder))
    out = tmp_path / "out"
    card = ModelCard.load(out / "README.md")
    results = read_results(out)
    (accuracy,) = [r for r in card.data.eval_results if r.metric_type == "accuracy"]
    assert accuracy.metric_value == pytest.approx(results["eval_accuracy"], abs=1e-6)
    assert accuracy.dataset_config == "sst2" and accuracy.task_type == "text-classification"
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    assert "base_model" not in card.data.to_dict()  # a local teacher has no Hub id to name
    text = card.text
    assert "pypi.org" not in text and "torch 2." in text and "transformers 5." in text and "threads" in text


def test_a_data_folder_linked_beside_the_repository_is_named_relative_to_it(tmp_path):
    from hf_distill.publish.model_card import sanitize_command

    (tmp_path / "repo").mkdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "glue").mkdir(parents=True)
    (tmp_path / "shared").symlink_to(elsewhere)  # ../shared is a link, as a CI checkout may lay it out
    command = sanitize_command(
        ["python", "run.py", "--data_dir", str(tmp_path / "shared" / "glue")], root=tmp_path / "repo"
    )
    assert command == "python run.py --data_dir ../shared/glue"


@pytest.mark.parametrize(
    "flags",
    [
        ["--hub_token", "SECRET"],
        ["--hub-token", "SECRET"],  # the parser takes the dashed spelling too
        ["--hub_token=SECRET"],
        ["--hub-token=SECRET"],
        ["--hub_tok", "SECRET"],  # and any unique prefix of the option
        ["--hub-t=SECRET"],
    ],
)
def test_every_spelling_the_parser_takes_for_the_token_is_redacted(flags):
    from hf_distill.cli.arguments import parse_arguments
    from hf_distill.publish.model_card import sanitize_command

    # each spelling really reaches hub_token (so a card would otherwise publish it)
    *_, training_args, _ = parse_arguments(
        [
            "--teacher_model_name_or_path",
            "t",
            "--task_name",
            "sst2",
            "--student_num_layers",
            "1",
            "--output_dir",
            "o",
            *flags,
        ]
    )
    assert training_args.hub_token == "SECRET"
    command = sanitize_command(["python", "run.py", *flags, "--hub_model_id", "me/student"])
    assert "SECRET" not in command and "<redacted>" in command and command.endswith("--hub_model_id me/student")


def test_a_path_given_with_equals_is_named_relative_to_the_repository(tmp_path):
    from hf_distill.publish.model_card import sanitize_command

    (tmp_path / "repo").mkdir()
    command = sanitize_command(
        ["python", "run.py", f"--data_dir={tmp_path}/shared/glue", f"--output_dir={tmp_path}/repo/out", "--x=a=b"],
        root=tmp_path / "repo",
    )
    assert command == "python run.py --data_dir=../shared/glue --output_dir=out --x=a=b"


def test_a_relative_path_climbing_out_of_the_repository_names_no_folder_of_this_machine(tmp_path, monkeypatch):
    # "--data_dir ../../home/alice/private/glue" was published as typed
    from hf_distill.publish.model_card import sanitize_command

    repo = tmp_path / "home" / "alice" / "repo"
    repo.mkdir(parents=True)
    monkeypatch.chdir(repo)
    argv = ["python", "run.py", "--data_dir", "../../../bob/private/glue", "--train_file", "./data/../data/t.csv",
            "--teacher_model_name_or_path", "google/bert_uncased_L-4_H-256_A-4", "--x", "../shared/glue"]  # fmt: skip
    command = sanitize_command(argv, root=repo)
    assert command == (
        "python run.py --data_dir glue --train_file data/t.csv --teacher_model_name_or_path "
        "google/bert_uncased_L-4_H-256_A-4 --x ../shared/glue"
    )
    # values that merely hold a "/../" are not paths: untouched
    kept = ["python", "run.py", "--run_name", "ablation/../v2", "--lr_scheduler_kwargs", '{"note": "a/../b"}']
    assert sanitize_command(kept, root=repo) == shlex.join(kept)
