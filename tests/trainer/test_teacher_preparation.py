"""`prepare_teacher`: the dtype the frozen teacher's weights are kept in, for each precision a one-device run uses."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import tiny
import torch
from accelerate.utils import DistributedType
from trainers import make_trainer

from hf_distill.trainer.teacher import prepare_teacher


def test_a_bf16_stored_teacher_runs_in_float32_in_a_run_without_bf16(tmp_path):
    # transformers 5 loads a checkpoint in the dtype it was stored in: a bf16 one stayed bf16 in an fp32 run
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5).to(torch.bfloat16)
    batch = tiny.collate(list(tiny.class_rows(8, seed=5)))
    with torch.no_grad():  # the stored bf16 weights, run in float32
        expected = copy.deepcopy(teacher).float()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    trainer = make_trainer(tmp_path, tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(8), max_steps=1)
    assert all(p.dtype == torch.float32 for p in trainer.teacher_model.parameters())
    torch.testing.assert_close(trainer.teacher_logits(batch), expected.logits, rtol=0, atol=0)


@pytest.mark.parametrize("bf16, dtype", [(False, torch.float32), (True, torch.bfloat16)], ids=["fp32", "bf16"])
def test_a_teacher_mapped_whole_onto_one_device_is_cast_as_any_other(tmp_path, bf16, dtype):
    # from_pretrained(..., device_map="cpu") sets hf_device_map = {"": "cpu"}: only a map over several devices keeps
    # the teacher where it is
    teacher = tiny.classifier(layers=2, seed=0).half()
    teacher.hf_device_map = {"": "cpu"}
    trainer = make_trainer(tmp_path, tiny.classifier(layers=1, seed=1), teacher, tiny.class_rows(8), bf16=bf16)
    assert all(p.dtype == dtype for p in trainer.teacher_model.parameters())


def test_an_fp16_run_keeps_the_teachers_weights_in_float32():
    # fp16 weights risk overflow: autocast runs the matmuls in fp16. fp16 needs a GPU here, so the accelerator is
    # faked with what prepare_teacher reads of it.
    accelerator = SimpleNamespace(
        distributed_type=DistributedType.NO, mixed_precision="fp16", device=torch.device("cpu")
    )
    teacher = prepare_teacher(tiny.classifier(layers=2, seed=0), accelerator)
    assert all(p.dtype == torch.float32 for p in teacher.parameters())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
