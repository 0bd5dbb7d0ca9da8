"""Hard pseudo-labels must belong to their rows: transfer rows are matched to the teacher's predictions by position."""

from __future__ import annotations

import datasets
import pytest
import tiny
import torch
from transformers import TrainingArguments

from hf_distill.cli.transfer import pseudo_label, teacher_logits_in_order
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


def test_regression_pseudo_labels_are_each_rows_own_teacher_prediction(tmp_path):
    teacher = tiny.classifier(layers=1, num_labels=1, seed=1, initializer_range=0.5).eval()
    transfer = rows(24).cast_column("labels", datasets.Value("float32"))
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, use_cpu=True, report_to="none")
    labelled = pseudo_label(teacher, transfer, tiny.collate, args, regression=True)
    with torch.no_grad():
        expected = [float(teacher(input_ids=torch.tensor([ids])).logits) for ids in transfer["input_ids"]]
    assert labelled["labels"] == pytest.approx(expected, abs=1e-5)
    assert labelled.features["labels"] == datasets.Value("float32")
    assert max(expected) - min(expected) > 1e-3  # the rows do get different targets


def test_the_teacher_pass_is_sorted_by_length_and_needs_one_row_of_logits_per_example(tmp_path):
    teacher = tiny.classifier(layers=1, seed=0).eval()
    seen = []  # the padded width of each batch the teacher sees
    teacher.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    transfer = rows(40)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2, use_cpu=True, report_to="none")
    logits = teacher_logits_in_order(teacher, transfer.remove_columns("labels"), tiny.collate, args)
    assert logits.shape == (40, 3) and len(seen) == 5  # batches of 4 x the eval batch
    assert seen == sorted(seen, reverse=True) and seen[0] > seen[-1]  # longest first: less padding per batch
    token_teacher = tiny.token_classifier(layers=1).eval()
    with pytest.raises(ValueError, match=r"one row of logits per example.*shape \(8, \d+, 5\).*--student_training"):
        teacher_logits_in_order(token_teacher, transfer.remove_columns("labels"), tiny.collate, args)
