"""Hard pseudo-labels must belong to their rows: transfer rows are matched to the teacher's predictions by position."""

from __future__ import annotations

import datasets
import tiny
import torch
from transformers import TrainingArguments

from hf_distill.cli.transfer import pseudo_label
from hf_distill.publish.evaluation import predict_in_order


def rows(n: int) -> datasets.Dataset:
    data = tiny.class_rows(n, seed=11).rows  # lengths 4..16: a length-grouped sampler reorders them
    return datasets.Dataset.from_dict(
        {
            "input_ids": [row["input_ids"] for row in data],
            "attention_mask": [[1] * len(row["input_ids"]) for row in data],
            "labels": [-100] * n,
        }
    )


def test_pseudo_labels_match_each_rows_own_teacher_prediction_even_with_length_grouping(tmp_path):
    teacher = tiny.classifier(layers=1, seed=0, initializer_range=0.5).eval()
    transfer = rows(40)
    args = TrainingArguments(
        output_dir=str(tmp_path), train_sampling_strategy="group_by_length", per_device_eval_batch_size=8,
        use_cpu=True, report_to="none", disable_tqdm=True,
    )  # fmt: skip
    labelled = pseudo_label(teacher, transfer, tiny.collate, args, regression=False)
    with torch.no_grad():
        expected = [int(teacher(input_ids=torch.tensor([ids])).logits.argmax(-1)) for ids in transfer["input_ids"]]
    assert labelled["labels"] == expected
    assert len(set(expected)) > 1  # the check can fail: the teacher does not predict one class everywhere
    logits = predict_in_order(teacher, transfer.remove_columns("labels"), tiny.collate, args)
    assert logits.argmax(-1).tolist() == expected
