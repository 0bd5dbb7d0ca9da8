"""hf_distill.trainer.columns: which of the training set's columns reach the batch beside the student's own."""

from __future__ import annotations

import pytest
import tiny
import torch
from trainers import make_args
from transformers import default_data_collator

from hf_distill import DistillationTrainer


def test_columns_named_as_the_caches_are_dropped_from_the_training_batch_with_the_cache_off(tmp_path):
    # with cache_teacher_logits off they are another run's outputs (or the user's own): the teacher runs on the batch,
    # and a loss handed them refuses the step. A torch Dataset, which the trainer cannot refuse by its column names.
    rows = [{"input_ids": [5 + i, 6, 7, 8], "labels": i % 3, "teacher_logits": [9.0, -9.0, 0.0]} for i in range(4)]
    trainer = DistillationTrainer(model=tiny.classifier(layers=1, seed=1), teacher_model=tiny.classifier(seed=0),
                                  args=make_args(tmp_path, temperature=2.0, alpha_kd=0.5, alpha_task=0.5),
                                  train_dataset=tiny.ListDataset(rows),
                                  data_collator=default_data_collator)  # fmt: skip
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(batch) == ["input_ids", "labels"]
    without = default_data_collator([{k: v for k, v in row.items() if k != "teacher_logits"} for row in rows])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
        assert loss == pytest.approx(trainer.compute_loss(trainer.model, without).item(), rel=1e-6)
