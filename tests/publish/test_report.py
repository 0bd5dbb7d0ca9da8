"""hf_distill.publish.report: what the publish step leaves in the output folder, and what it counts and pushes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import tiny
import torch
from scripts_under_test import fast_latency
from trainers import make_args
from transformers import AutoModelForSequenceClassification

from hf_distill import DistillationTrainer
from hf_distill.cli.training import train_and_save
from hf_distill.publish.latency import count_parameters, measure_models
from hf_distill.publish.report import ExportFailed, publish_student
from hf_distill.trainer.intermediate import PROJECTION_NAME

CARD = dict(
    teacher="t",
    student_description="s",
    task="sst2",
    dataset="glue",
    temperature=2.0,
    alpha_kd=0.5,
    alpha_task=0.5,
    command="python scripts/distill_glue.py",
)
exports_installed = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime"))


@pytest.fixture(autouse=True)
def _fast_latency(monkeypatch):
    fast_latency(monkeypatch)


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def trained(tmp_path, **overrides) -> DistillationTrainer:
    teacher = tiny.classifier(layers=2, num_labels=2, seed=0)
    student = tiny.classifier(layers=1, num_labels=2, seed=1, **overrides.pop("student", {}))
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=make_args(tmp_path, max_steps=1, **overrides),
        train_dataset=tiny.class_rows(8, num_labels=2),
        data_collator=tiny.collate,
        compute_metrics=accuracy,
    )
    train_and_save(trainer)
    return trainer


def publish(trainer, metrics: dict[str, float] | None = None, **kwargs) -> dict[str, float]:
    rows = tiny.class_rows(6, num_labels=2, seed=3)
    metrics = metrics or {"eval_accuracy": 0.5, "teacher_eval_accuracy": 0.5}
    return publish_student(
        trainer,
        trainer.teacher_model,
        metrics,
        latency_dataset=rows,
        collator=tiny.collate,
        metric_names=["accuracy"],
        card=CARD,
        **kwargs,
    )


def test_a_rerun_leaves_no_results_of_the_earlier_run(tmp_path):
    # an --overwrite_output_dir rerun: the earlier run's export keys and export_error were merged into the new
    # all_results.json by Trainer's save_metrics, and pushed as the new student's
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"eval_accuracy": 0.9, "onnx_int8_eval_accuracy": 0.9, "export_error": "an earlier failure"}
    for name in ("all_results.json", "eval_results.json", "train_results.json"):
        (out / name).write_text(json.dumps(earlier))
    publish(trained(tmp_path))
    for name in ("all_results.json", "eval_results.json"):
        keys = set(json.loads((out / name).read_text()))
        assert not keys & {"onnx_int8_eval_accuracy", "export_error"}, name
    assert json.loads((out / "all_results.json").read_text())["eval_accuracy"] == 0.5
    assert "train_runtime" in json.loads((out / "all_results.json").read_text())  # this run's training is kept


def test_an_earlier_runs_exports_are_never_published_as_this_students(tmp_path):
    # written after training (train_and_save clears them too): publish_student, which library users call on a
    # trainer of their own, must clear them itself
    out = tmp_path / "out"
    trainer = trained(tmp_path)
    (out / "onnx").mkdir()
    for name in ("model.onnx", "model_int8.onnx"):
        (out / "onnx" / name).write_bytes(b"an earlier student")
    (out / "onnx" / "notes.txt").write_text("the user's")  # not this tool's: kept
    publish(trainer)  # this run exports nothing
    assert sorted(path.name for path in (out / "onnx").iterdir()) == ["notes.txt"]
    (out / "onnx" / "notes.txt").unlink()
    (out / "onnx" / "model.onnx").write_bytes(b"an earlier student")
    publish(trainer)
    assert not (out / "onnx").exists()  # emptied of this tool's files: gone


@pytest.mark.skipif(not exports_installed, reason="the export extra is not installed")
def test_each_exported_files_card_row_shows_its_own_scores(tmp_path, monkeypatch):
    # the int8 file's agreement, metric, size and speed are its own, never the float32 file's beside it
    from hf_distill.publish import report

    def scored(student, output_dir, formats, **kwargs):
        scores = {}
        for prefix, agreement, accuracy, size, ms in (
            ("onnx_", 1.0, 0.5, 4e6, 2.0),
            ("onnx_int8_", 0.5, 0.25, 1e6, 1.0),
        ):
            scores |= {
                f"{prefix}agreement": agreement,
                f"{prefix}eval_accuracy": accuracy,
                f"{prefix}size_bytes": size,
            }
            scores |= {f"{prefix}max_abs_logit_diff": 0.1}
            for b in report.LATENCY_BATCH_SIZES:
                scores |= {f"{prefix}latency_ms_batch{b}": ms, f"{prefix}reference_latency_ms_batch{b}": 4.0}
        return scores

    monkeypatch.setattr(report, "export_and_score", scored)
    publish(trained(tmp_path), export_formats=("int8",))
    card = (tmp_path / "out" / "README.md").read_text()
    rows = {line.split(" | ")[0]: line for line in card.splitlines() if line.startswith("| student, ONNX")}
    n = len(report.LATENCY_BATCH_SIZES)
    assert rows == {
        "| student, ONNX fp32": " | ".join(["| student, ONNX fp32", "0.5000", "6/6 (100%)", "4.0 MB", *["2.0"] * n,
                                            *["2.00x"] * n]) + " |",
        "| student, ONNX int8": " | ".join(["| student, ONNX int8", "0.2500", "3/6 (50.00%)", "1.0 MB", *["1.0"] * n,
                                            *["4.00x"] * n]) + " |",
    }  # fmt: skip


@pytest.mark.skipif(not exports_installed, reason="the export extra is not installed")
def test_an_export_run_leaves_only_its_own_exports(tmp_path):
    out = tmp_path / "out"
    (out / "onnx").mkdir(parents=True)
    (out / "onnx" / "model_int8.onnx").write_bytes(b"an earlier student")
    metrics = publish(trained(tmp_path), export_formats=("onnx",))
    assert sorted(path.name for path in (out / "onnx").iterdir()) == ["model.onnx"]
    assert "onnx_size_bytes" in metrics and not any(key.startswith("onnx_int8_") for key in metrics)


@pytest.mark.skipif(not exports_installed, reason="the export extra is not installed")
def test_a_failed_export_leaves_no_unscored_file_says_so_and_pushes_nothing(tmp_path, monkeypatch):
    # It ended as a success (exit 0) and pushed a repo without the asked-for int8 file, the card silent about it.
    import huggingface_hub
    import onnxruntime.quantization

    def broken_quantize(*args, **kwargs):
        raise ValueError("no int8 here")

    def no_push(*args, **kwargs):
        raise AssertionError("pushed a student whose asked-for export failed")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", broken_quantize)
    monkeypatch.setattr(huggingface_hub, "HfApi", no_push)
    out = tmp_path / "out"
    with pytest.raises(ExportFailed, match=r"--export int8 failed: .*no int8 here.*the push to the Hub was skipped"):
        publish(trained(tmp_path), export_formats=("int8",), push_token="token")
    results = json.loads((out / "all_results.json").read_text())
    assert "no int8 here" in results["export_error"]
    # the fp32 file was scored before int8 failed: kept, with its scores and its row on the card
    assert sorted(path.name for path in (out / "onnx").iterdir()) == ["model.onnx"]
    assert "onnx_eval_accuracy" in results and not any(key.startswith("onnx_int8_") for key in results)
    card = (out / "README.md").read_text()
    assert "student, ONNX fp32" in card
    assert "## Export\n\nAn export was asked for and failed" in card and "no int8 here" in card


def test_the_scores_are_saved_before_latency_and_export_run(tmp_path, monkeypatch):
    # an out-of-memory error timing the models lost the side-by-side evaluation (saved only after them)
    import hf_distill.publish.report as report

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("timing")

    monkeypatch.setattr(report, "measure_models", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        publish(trained(tmp_path))
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["eval_accuracy"] == 0.5 and results["teacher_eval_accuracy"] == 0.5


def test_the_card_shows_the_students_and_the_teachers_own_scores(tmp_path):
    from huggingface_hub import ModelCard

    publish(trained(tmp_path), {"eval_accuracy": 0.75, "teacher_eval_accuracy": 0.90})
    text = (tmp_path / "out" / "README.md").read_text()
    rows = [line.split(" | ")[:2] for line in text.splitlines() if line.startswith(("| teacher |", "| student |"))]
    assert rows == [["| teacher", "0.9000"], ["| student", "0.7500"]]
    (result,) = ModelCard(text).data.eval_results  # the model-index holds the student's score
    assert (result.metric_name, result.metric_value) == ("accuracy", 0.75)


def test_the_card_counts_the_student_as_saved_without_its_training_only_projection(tmp_path):
    # alpha_hidden with a narrower student gives it a hidden-state projection that the saved student leaves out
    trainer = trained(tmp_path, alpha_hidden=1.0, student=dict(hidden_size=16, intermediate_size=32))
    assert hasattr(trainer.model, PROJECTION_NAME)
    saved = AutoModelForSequenceClassification.from_pretrained(trainer.args.output_dir)
    rows = tiny.class_rows(4, num_labels=2)
    counted = measure_models(trainer.teacher_model, trainer.model, rows, tiny.collate, trainer.args)
    assert counted["student_parameters"] == count_parameters(saved) == saved.num_parameters()
    assert count_parameters(trainer.teacher_model) == trainer.teacher_model.num_parameters()
    metrics = publish(trained(tmp_path, alpha_hidden=1.0, student=dict(hidden_size=16, intermediate_size=32)))
    assert metrics["student_parameters"] == saved.num_parameters()
    assert f"| {saved.num_parameters():,} |" in (tmp_path / "out" / "README.md").read_text()
    assert hasattr(trainer.model, PROJECTION_NAME)  # still there: counting leaves the student as it was


def test_the_push_uploads_the_student_and_its_records_never_a_runs_working_files():
    from huggingface_hub.utils import filter_repo_objects

    from hf_distill.publish.hub import IGNORE_ON_PUSH

    files = [
        "model.safetensors", "config.json", "tokenizer.json", "README.md", "all_results.json", "hp_search.json",
        "onnx/model.onnx", "checkpoint-5/model.safetensors", "teacher/model.safetensors", "teacher_cache/data.arrow",
        "runs/events.out", "training_args.bin", "hp_search_study.journal", "hp_search_study.journal.lock",
        "hp_search/checkpoint-3/model.safetensors", "hp_search.json.partial", "predict/predictions.tsv",
        "teacher_eval/eval_results.json", "run_results.command.json", "related_text.command.json",
        "search_command.json", "emissions.csv", "run_results.reproduces.json", "x.pt",
        # a crashed teacher cache build's folder, when the cache root is the output folder
        ".0f3a9c.partial-host-1-0a1b/data-00000-of-00001.arrow",
        # a desktop's and a notebook's litter, which the output-folder check lets stand: a notebook's checkpoint copy
        # was published with the student
        ".DS_Store", "onnx/.DS_Store", "Thumbs.db", "onnx/Thumbs.db", ".ipynb_checkpoints/analysis-checkpoint.ipynb",
        "onnx/.ipynb_checkpoints/notes-checkpoint.ipynb",
    ]  # fmt: skip
    kept = list(filter_repo_objects(files, ignore_patterns=IGNORE_ON_PUSH))
    assert kept == ["model.safetensors", "config.json", "tokenizer.json", "README.md", "all_results.json",
                    "hp_search.json", "onnx/model.onnx"]  # fmt: skip


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("engine", [None, "is_fsdp_enabled", "is_deepspeed_enabled"])
def test_the_exports_reference_logits_are_the_float32_students_row_by_row_in_this_process(
    tmp_path, monkeypatch, engine, bf16
):
    # The ONNX file holds the float32 student: its agreement and max logit difference are measured against the same
    # weights in float32, never a bf16 autocast forward (whose rounding would be counted as the export's). And no
    # Trainer: under FSDP or DeepSpeed, even on one process, a new Trainer's evaluation loop prepares the student for
    # the engine again (accelerate 1.15 refuses a model without its optimizer there).
    import torch
    import transformers

    from hf_distill.publish import report

    def no_new_trainer(*args, **kwargs):
        raise AssertionError("the export's reference logits built a Trainer")

    seen = {}

    def scored(model, output_dir, formats, **kwargs):
        seen.update(kwargs)
        return {}

    monkeypatch.setattr(report, "export_and_score", scored)
    monkeypatch.setattr(transformers.Trainer, "__init__", no_new_trainer)
    student = tiny.classifier(layers=1, seed=1).eval()
    rows = tiny.class_rows(11, seed=2)
    args = make_args(tmp_path, per_device_eval_batch_size=4, bf16=bf16)
    trainer = type("Run", (), {"args": args, "compute_metrics": None, **({engine: True} if engine else {})})()
    metrics = {"student_latency_ms_batch1": 1.0, "student_latency_ms_batch32": 2.0}
    assert report._export(trainer, student, ("onnx",), rows, tiny.collate, metrics, ["accuracy"]) == []
    batch = tiny.collate([rows[i] for i in range(len(rows))])
    with torch.no_grad():
        expected = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(torch.from_numpy(seen["torch_logits"]), expected, rtol=1e-5, atol=1e-5)


def test_the_push_leaves_out_a_cache_folder_of_any_name_and_deletes_files_no_longer_the_students(
    tmp_path, monkeypatch
):
    # A --teacher_cache_dir inside output_dir under another name was uploaded whole (the trainer's own push left it
    # out); trainer_state.json names this machine's best checkpoint; an earlier push's ONNX files stayed in the repo
    # beside a student they were not exported from.
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    calls = {}

    class Hub:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            calls["repo"] = repo_id

        def upload_folder(self, *, folder_path, ignore_patterns, delete_patterns, **kwargs):
            files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
            calls["uploaded"] = list(filter_repo_objects(files, ignore_patterns=ignore_patterns))
            calls["deleted"] = list(
                filter_repo_objects(["onnx/model.onnx", "onnx/model_int8.onnx", "trainer_state.json",
                                     "model.safetensors", "README.md", "onnx/model_quantized.onnx",
                                     "onnx/fp16/model.onnx"], allow_patterns=delete_patterns)
            )  # fmt: skip

    monkeypatch.setattr(huggingface_hub, "HfApi", Hub)
    trainer = trained(tmp_path, cache_teacher_logits=True, teacher_cache_dir=str(tmp_path / "out" / "logits"))
    trainer.save_state()
    assert any((tmp_path / "out" / "logits").rglob("*.arrow")) and (tmp_path / "out" / "trainer_state.json").exists()
    # a build killed before it wrote its metadata file leaves a folder no finished-cache pattern names: only the
    # cache folder's own pattern keeps it local
    partial = tmp_path / "out" / "logits" / ".0f3a9c.partial-host-1-0a1b2c3d"
    partial.mkdir()
    (partial / "data-00000-of-00001.arrow").write_bytes(b"rows")
    publish(trainer, push_token="token")
    assert "model.safetensors" in calls["uploaded"] and "README.md" in calls["uploaded"]
    assert not [f for f in calls["uploaded"] if f.startswith("logits/") or f == "trainer_state.json"]
    # only what an earlier run of ours wrote: never the user's own ONNX files in the repo
    assert calls["deleted"] == ["onnx/model.onnx", "onnx/model_int8.onnx", "trainer_state.json"]


def test_the_cards_export_agreement_is_counted_over_the_rows_it_was_measured_on(tmp_path, monkeypatch):
    # the card printed the agreement as a share rounded to 0.1%: 4 of 9,815 rows disagreeing read "100.0%"
    from hf_distill.publish import report

    scores = {"onnx_agreement": 10 / 11, "onnx_max_abs_logit_diff": 0.1, "onnx_size_bytes": 1000,
              "onnx_eval_accuracy": 0.5,
              **{f"onnx_{kind}latency_ms_batch{b}": 1.0 for kind in ("", "reference_") for b in (1, 32)}}  # fmt: skip
    monkeypatch.setattr(report, "export_and_score", lambda *args, **kwargs: dict(scores))
    student = tiny.classifier(layers=1, seed=1).eval()
    trainer = type("Run", (), {"args": make_args(tmp_path), "compute_metrics": None})()
    rows = report._export(trainer, student, ("onnx",), tiny.class_rows(11, seed=2), tiny.collate, {}, ["accuracy"])
    assert rows[0]["rows"] == 11 and rows[0]["agreement"] == 10 / 11
