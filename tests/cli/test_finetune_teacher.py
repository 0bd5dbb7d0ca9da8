"""The fine-tuned teacher the scripts distil from is the one saved under <output_dir>/teacher, read back whole.

Under FSDP the Trainer leaves the trained teacher's parameters as DTensor shards, which build_student cannot copy
(a GPU run of `accelerate launch --config_file configs/accelerate/fsdp.yaml` failed so, 2026-12-04). Reading the
saved teacher back gives plain tensors on every engine; on one process it must equal the trained model bit for bit.
"""

from __future__ import annotations

import types

import tiny
import torch
from transformers import Trainer, TrainingArguments

from hf_distill.cli import models
from hf_distill.students import build_student


def test_the_fine_tuned_teacher_is_read_back_whole_and_equals_the_trained_one(tmp_path, monkeypatch):
    trainers: list[Trainer] = []

    class RecordingTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    monkeypatch.setattr(models, "Trainer", RecordingTrainer)
    teacher = tiny.classifier(layers=2, seed=0)
    before = {name: tensor.clone() for name, tensor in teacher.state_dict().items()}
    model_args = types.SimpleNamespace(teacher_num_train_epochs=1, teacher_learning_rate=1e-2, trust_remote_code=False)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, use_cpu=True, report_to="none", disable_tqdm=True,
        save_strategy="no", seed=0,
    )  # fmt: skip
    finetuned = models.finetune_teacher(teacher, None, tiny.class_rows(32, seed=3), tiny.collate, model_args, args)

    trained = trainers[0].model
    assert finetuned is not trained  # read back from <output_dir>/teacher, not the engine's (maybe sharded) model
    assert (tmp_path / "teacher" / "model.safetensors").exists()
    trained_state, state = trained.state_dict(), finetuned.state_dict()
    assert state.keys() == trained_state.keys()
    for name, tensor in state.items():
        assert type(tensor) is torch.Tensor and tensor.dtype == trained_state[name].dtype, name
        assert torch.equal(tensor, trained_state[name]), f"{name} differs from the trained teacher"
    assert any(not torch.equal(state[name], before[name]) for name in before)  # it did train
    student = build_student(finetuned, layers=[1])
    assert torch.equal(
        student.bert.encoder.layer[0].output.dense.weight, state["bert.encoder.layer.1.output.dense.weight"]
    )
