"""Hard pseudo-labels must belong to their rows: transfer rows are matched to the teacher's predictions by position."""

from __future__ import annotations

import shutil
import sys

import datasets
import pytest
import tiny
import torch
from processes import HELPERS, run_checked
from transformers import TrainingArguments

from hf_distill.cli.transfer import pseudo_label, teacher_logits_in_order

SCRIPT = HELPERS / "ddp_pseudo_labels.py"


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


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_two_ranks_each_label_their_share_and_gather_every_row_in_order(tmp_path):
    run_checked(["torchrun", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path / "ddp")], cwd=tmp_path)
    run_checked([sys.executable, str(SCRIPT), str(tmp_path / "single")], cwd=tmp_path)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    single = torch.load(tmp_path / "single" / "rank0.pt", weights_only=True)
    assert single["world_size"] == 1 and single["rows_seen"] == 41
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert sorted(rank["rows_seen"] for rank in ranks) == [20, 21]  # each rank ran the teacher on its share only
    # Rows differ enough that a misordered gather could not pass the comparison below.
    assert (single["logits"] - single["logits"].roll(1, dims=0)).abs().max() > 1e-2
    for rank in ranks:  # every rank holds every row's logits, in the rows' order (batches differ: float noise only)
        torch.testing.assert_close(rank["logits"], single["logits"], rtol=1e-4, atol=1e-5)
        assert torch.equal(rank["logits"].argmax(-1), single["logits"].argmax(-1))


def test_a_teacher_handed_over_in_train_mode_labels_as_in_eval_mode(tmp_path):
    # Trainer.train leaves a fine-tuned teacher in train mode: with its dropout on, 28 of 40 labels were other labels
    rows = tiny.class_rows(40, seed=11).rows
    transfer = datasets.Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows],
                                           "attention_mask": [[1] * len(r["input_ids"]) for r in rows],
                                           "labels": [-100] * 40})  # fmt: skip
    teacher = tiny.classifier(layers=1, seed=0, initializer_range=0.5)
    for module in teacher.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    teacher.eval()
    with torch.no_grad():
        expected = [int(teacher(input_ids=torch.tensor([ids])).logits.argmax(-1)) for ids in transfer["input_ids"]]
    teacher.train()
    args = TrainingArguments(output_dir=str(tmp_path / "o"), per_device_eval_batch_size=8, use_cpu=True,
                             report_to="none", disable_tqdm=True)  # fmt: skip
    assert pseudo_label(teacher, transfer, tiny.collate, args, regression=False)["labels"] == expected
