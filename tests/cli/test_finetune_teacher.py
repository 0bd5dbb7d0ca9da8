"""The fine-tuned teacher the scripts distil from: the trained model itself, or, when the engine left it sharded, the
one saved under <output_dir>/teacher, read back whole in the teacher's own class.

Under FSDP the Trainer leaves the trained teacher's parameters as DTensor shards, which build_student cannot copy
(a GPU run of `accelerate launch --config_file configs/accelerate/fsdp.yaml` failed so, 2026-12-04). No engine
shards on a CPU, so the read-back is driven here by declaring the trained teacher sharded.
"""

from __future__ import annotations

import types

import pytest
import tiny
import torch
from transformers import TrainingArguments

from hf_distill import LabelsTrainer
from hf_distill.cli import models
from hf_distill.cli.paths import recorded_teacher
from hf_distill.students import build_student

MODEL_ARGS = types.SimpleNamespace(
    teacher_num_train_epochs=1,
    teacher_learning_rate=1e-2,
    trust_remote_code=False,
    teacher_card_name="bert-base-uncased",
    teacher_hub_id="bert-base-uncased",
)


def finetune(tmp_path, monkeypatch, teacher, rows, **arguments):
    trainers: list[LabelsTrainer] = []

    class RecordingTrainer(LabelsTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    monkeypatch.setattr(models, "LabelsTrainer", RecordingTrainer)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, use_cpu=True, report_to="none", disable_tqdm=True,
        save_strategy="no", seed=0, **arguments,
    )  # fmt: skip
    finetuned = models.finetune_teacher(teacher, None, rows, tiny.collate, MODEL_ARGS, args)
    return finetuned, trainers[0].model


def test_an_unsharded_teacher_is_the_trained_model_itself(tmp_path, monkeypatch):
    teacher = tiny.classifier(layers=2, seed=0)
    before = {name: tensor.clone() for name, tensor in teacher.state_dict().items()}
    finetuned, trained = finetune(tmp_path, monkeypatch, teacher, tiny.class_rows(32, seed=3))
    assert finetuned is trained and not models.is_sharded(finetuned)
    assert (tmp_path / "teacher" / "model.safetensors").exists()
    assert any(not torch.equal(finetuned.state_dict()[name], before[name]) for name in before)  # it did train
    # the model it was fine-tuned from, for the cards of later runs reading the folder
    record = recorded_teacher(str(tmp_path / "teacher"))
    assert record == {"teacher": "bert-base-uncased", "hub_id": "bert-base-uncased"}


@pytest.mark.parametrize("head", ["classifier", "masked_lm"])
def test_a_sharded_teacher_is_read_back_whole_in_its_own_class(tmp_path, monkeypatch, head):
    monkeypatch.setattr(models, "is_sharded", lambda model: True)
    if head == "classifier":
        teacher, rows = tiny.classifier(layers=2, seed=0), tiny.class_rows(32, seed=3)
    else:  # distill_mlm --finetune_teacher passes a BertForMaskedLM: it must not come back as a classifier
        teacher, rows = tiny.masked_lm(layers=2, seed=0), tiny.token_rows(32, num_labels=tiny.VOCAB_SIZE, seed=3)
    teacher_class = type(teacher)
    finetuned, trained = finetune(tmp_path, monkeypatch, teacher, rows)
    assert finetuned is not trained and type(finetuned) is teacher_class
    trained_state, state = trained.state_dict(), finetuned.state_dict()
    assert state.keys() == trained_state.keys()
    for name, tensor in state.items():
        assert type(tensor) is torch.Tensor and tensor.dtype == trained_state[name].dtype, name
        assert torch.equal(tensor, trained_state[name]), f"{name} differs from the trained teacher"
    student = build_student(finetuned, layers=[1])
    assert type(student) is teacher_class
    torch.testing.assert_close(
        student.bert.encoder.layer[0].output.dense.weight, state["bert.encoder.layer.1.output.dense.weight"]
    )


def test_a_sharded_teacher_without_full_weights_on_disk_is_an_error_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "is_sharded", lambda model: True)
    # SHARDED_STATE_DICT writes none
    monkeypatch.setattr(LabelsTrainer, "save_model", lambda self, *args, **kwargs: None)
    with pytest.raises(ValueError, match=r"holds no full weights .*FULL_STATE_DICT.*zero3_save_16bit_model: true"):
        finetune(tmp_path, monkeypatch, tiny.classifier(layers=2, seed=0), tiny.class_rows(16, seed=3))


@pytest.mark.parametrize(("scheduler", "kwargs"), [("reduce_lr_on_plateau", {"patience": 0}), ("greedy", {})])
def test_a_schedule_that_steps_on_evaluations_leaves_the_teachers_fine_tune_on_a_linear_one(
    tmp_path, monkeypatch, scheduler, kwargs
):
    # The student's run evaluates each epoch; the teacher's fine-tune has no eval set, and transformers refuses these
    # schedules without one ("requires an eval strategy"): the run crashed after loading its data.
    finetuned, trained = finetune(
        tmp_path, monkeypatch, tiny.classifier(layers=2, seed=0), tiny.class_rows(16, seed=3),
        eval_strategy="epoch", lr_scheduler_type=scheduler, lr_scheduler_kwargs=kwargs,
    )  # fmt: skip
    assert finetuned is trained and (tmp_path / "teacher" / "model.safetensors").exists()


def zero3_environment(port: int) -> dict[str, str]:
    """What `accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml` sets for one CPU process."""
    import os

    return {
        **os.environ, "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
        "ACCELERATE_DEEPSPEED_ZERO3_INIT": "true", "ACCELERATE_MIXED_PRECISION": "no", "DS_ACCELERATOR": "cpu",
        "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
    }  # fmt: skip


_ZERO3_BUILD = """
import json, sys
from hf_distill import build_student
from hf_distill.cli.arguments import parse_arguments
from hf_distill.cli.models import load_teacher
from transformers.integrations import is_deepspeed_zero3_enabled

model_args, _, training_args, _ = parse_arguments(sys.argv[1:])
assert is_deepspeed_zero3_enabled()
teacher = load_teacher(model_args, training_args, 2, ["negative", "positive"])
assert is_deepspeed_zero3_enabled()  # put back after the load: the trainers' engines still partition
weight = teacher.bert.embeddings.word_embeddings.weight
student = build_student(teacher, layers=[0, 2], architecture="distilbert")
print(json.dumps({"teacher": list(weight.shape), "student": list(student.get_input_embeddings().weight.shape)}))
"""


def test_under_zero3_a_teacher_a_student_is_built_from_is_loaded_whole(tmp_path):
    # accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml, no --finetune_teacher: zero.Init left
    # the teacher in empty partitions and build_student failed inside torch (a size mismatch from shape [0])
    import json
    import subprocess
    import sys

    pytest.importorskip("deepspeed")
    teacher = tiny.classifier(layers=4, num_labels=2)
    teacher.save_pretrained(tmp_path / "teacher")
    env = zero3_environment(port=29531)
    arguments = ["--task_name", "sst2", "--teacher_model_name_or_path", str(tmp_path / "teacher"), "--output_dir",
                 str(tmp_path / "out"), "--finetune_teacher", "false", "--cache_teacher_logits", "false",
                 "--use_cpu", "true", "--report_to", "none", "--student_layers", "0,2"]  # fmt: skip
    result = subprocess.run([sys.executable, "-c", _ZERO3_BUILD, *arguments], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    shapes = json.loads(result.stdout.strip().splitlines()[-1])
    assert shapes == {"teacher": [tiny.VOCAB_SIZE, 32], "student": [tiny.VOCAB_SIZE, 32]}


_ZERO3_OUTSIDE = """
import json, sys
from transformers import AutoTokenizer
from hf_distill.cli.arguments import parse_arguments
from hf_distill.cli.models import load_teacher
from hf_distill.cli.transfer import check_mlm_augmenter

model_args, data_args, training_args, _ = parse_arguments(sys.argv[1:])
shapes = {}
for outside in (False, True):
    teacher = load_teacher(model_args, training_args, 2, ["negative", "positive"], outside_trainer=outside)
    shapes[str(outside)] = list(teacher.bert.embeddings.word_embeddings.weight.shape)
tokenizer = AutoTokenizer.from_pretrained(model_args.teacher_model_name_or_path)
mlm, _ = check_mlm_augmenter(data_args, model_args, tokenizer)
shapes["mlm"] = list(mlm.get_input_embeddings().weight.shape)
print(json.dumps(shapes))
"""


def test_under_zero3_a_teacher_or_masked_lm_run_outside_the_trainer_is_loaded_whole(tmp_path):
    # a given student kept the teacher in ZeRO-3's empty partitions, which only DistillationTrainer's engine gathers:
    # pseudo-labels and --augment mlm failed with "'weight' must be 2-D" before training, labels_only after it
    import json
    import subprocess
    import sys

    pytest.importorskip("deepspeed")
    for folder, model in (("teacher", tiny.classifier(layers=2, num_labels=2)), ("mlm", tiny.masked_lm(layers=1))):
        model.save_pretrained(tmp_path / folder)
        tiny.tokenizer(tmp_path / folder)
    tiny.classifier(layers=1, num_labels=2).save_pretrained(tmp_path / "student")
    env = zero3_environment(port=29532)
    arguments = ["--task_name", "sst2", "--teacher_model_name_or_path", str(tmp_path / "teacher"), "--output_dir",
                 str(tmp_path / "out"), "--finetune_teacher", "false", "--cache_teacher_logits", "false",
                 "--use_cpu", "true", "--report_to", "none", "--student_model_name_or_path", str(tmp_path / "student"),
                 "--augment", "mlm", "--augment_mlm_model", str(tmp_path / "mlm"),
                 "--augment_copies", "1"]  # fmt: skip
    result = subprocess.run([sys.executable, "-c", _ZERO3_OUTSIDE, *arguments], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    shapes = json.loads(result.stdout.strip().splitlines()[-1])
    # distilled by DistillationTrainer: partitioned, its engine gathers them; run outside it: whole
    assert shapes == {"False": [0], "True": [tiny.VOCAB_SIZE, 32], "mlm": [tiny.VOCAB_SIZE, 32]}


def test_eval_on_start_does_not_stop_the_teachers_fine_tune_which_has_no_eval_set(tmp_path, monkeypatch):
    # the student's run may evaluate before its first step; the teacher's fine-tune, with no eval set, failed as it
    # started (after the models had loaded)
    finetuned, trained = finetune(
        tmp_path, monkeypatch, tiny.classifier(layers=2, seed=0), tiny.class_rows(16, seed=3),
        eval_strategy="epoch", eval_on_start=True,
    )  # fmt: skip
    assert finetuned is trained and (tmp_path / "teacher" / "model.safetensors").exists()


def test_the_teachers_fine_tune_runs_its_own_epochs_whatever_the_students_max_steps(tmp_path, monkeypatch):
    # --max_steps is the student's budget: carried into the teacher's fine-tune, it cut --teacher_num_train_epochs
    steps = []
    original = LabelsTrainer.train

    def recording(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        steps.append(self.state.global_step)
        return output

    monkeypatch.setattr(LabelsTrainer, "train", recording)
    finetune(tmp_path, monkeypatch, tiny.classifier(layers=1, seed=0), tiny.class_rows(32, seed=3), max_steps=1)
    assert steps == [4]  # 1 teacher epoch of 32 rows in batches of 8
