"""hf_distill.tasks.mlm_metrics.score_masked_lm on a tiny random masked LM."""

from __future__ import annotations

import math

import datasets
import pytest
import tiny
from transformers import DataCollatorForTokenClassification

from hf_distill.tasks.mlm_metrics import MLM_METRICS, score_masked_lm


def test_masks_with_no_masked_position_score_nan_not_a_perfect_model(tmp_path):
    # a mean over nothing read as loss 0, perplexity 1
    model = tiny.masked_lm(layers=1)
    collator = DataCollatorForTokenClassification(tiny.tokenizer(tmp_path / "tok"))
    rows = {"input_ids": [[2, 10, 11, 3]], "attention_mask": [[1, 1, 1, 1]], "labels": [[-100] * 4]}
    scores = score_masked_lm(model, datasets.Dataset.from_dict(rows), collator)
    assert scores["masked_positions"] == 0
    assert all(math.isnan(scores[name]) for name in MLM_METRICS)
    rows["labels"] = [[-100, 10, -100, -100]]
    scores = score_masked_lm(model, datasets.Dataset.from_dict(rows), collator)
    assert scores["masked_positions"] == 1 and scores["loss"] > 0 and scores["perplexity"] > 1


def test_perplexity_is_exp_of_the_loss_however_large(tmp_path):
    # it was capped at exp(50) without a word: a loss of 60 nats read as perplexity 5.2e21, not 1.1e26
    import torch

    model = tiny.masked_lm(layers=1)
    collator = DataCollatorForTokenClassification(tiny.tokenizer(tmp_path / "tok"))
    rows = datasets.Dataset.from_dict(
        {"input_ids": [[2, 10, 11, 3]], "attention_mask": [[1, 1, 1, 1]], "labels": [[-100, 10, -100, -100]]}
    )
    for scale, finite in ((60.0, True), (1000.0, False)):
        with torch.no_grad():  # the decoder's bias: every other token far likelier than token 10
            model.cls.predictions.bias.fill_(scale)
            model.cls.predictions.bias[10] = 0.0
        scores = score_masked_lm(model, rows, collator)
        assert scores["loss"] > scale - 5
        assert scores["perplexity"] == (math.exp(scores["loss"]) if finite else math.inf)


def test_a_nan_loss_reads_as_a_nan_perplexity_not_an_infinite_one(tmp_path):
    import torch

    model = tiny.masked_lm(layers=1)
    with torch.no_grad():
        model.cls.predictions.bias.fill_(float("nan"))
    collator = DataCollatorForTokenClassification(tiny.tokenizer(tmp_path / "tok"))
    rows = datasets.Dataset.from_dict(
        {"input_ids": [[2, 10, 11, 3]], "attention_mask": [[1, 1, 1, 1]], "labels": [[-100, 10, -100, -100]]}
    )
    scores = score_masked_lm(model, rows, collator)
    assert math.isnan(scores["loss"]) and math.isnan(scores["perplexity"])


def test_scores_are_exact_batched_eval_mode_means_over_the_masked_positions(tmp_path):
    import torch

    model = tiny.masked_lm(layers=2, dropout=0.1)  # dropout: scoring in train mode would give other, varying scores
    with torch.no_grad():  # the decoder's bias ranks token 50 first, then 51..54, far above the rest (60 included)
        model.cls.predictions.bias.zero_()
        for rank, token in enumerate((50, 51, 52, 53, 54)):
            model.cls.predictions.bias[token] = 12.0 - rank
    collator = DataCollatorForTokenClassification(tiny.tokenizer(tmp_path / "tok"))
    generator = torch.Generator().manual_seed(5)
    cycle = (50, 51, 52, 53, 54, 60)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for length in (12, 7, 16, 5):  # rows of different lengths: the shorter are padded in a batch of 4
        ids = torch.randint(5, tiny.VOCAB_SIZE, (length,), generator=generator).tolist()
        labels = [-100] * length
        for k, position in enumerate(range(1, length, 3)):
            labels[position] = cycle[(length + k) % len(cycle)]
            ids[position] = 4  # [MASK]
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * length)
        rows["labels"].append(labels)
    targets = [label for row in rows["labels"] for label in row if label != -100]
    assert targets == [50, 51, 52, 53, 51, 52, 54, 60, 50, 51, 52, 60, 50]  # 13 positions: three 50s, two 60s
    data = datasets.Dataset.from_dict(rows)

    model.eval()  # the reference: each row alone (no padding), in float64
    losses = []
    with torch.no_grad():
        for ids, labels in zip(rows["input_ids"], rows["labels"]):
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
            labels = torch.tensor(labels)
            masked = labels.ne(-100)
            losses += torch.nn.functional.cross_entropy(logits[masked], labels[masked], reduction="none").tolist()
    loss = sum(losses) / len(losses)

    for batch_size in (4, 1):  # batches of 4 rows pad; rows alone hold fewer than 5 masked positions
        for training in (True, False):
            model.train(training)
            scores = score_masked_lm(model, data, collator, batch_size=batch_size)
            assert model.training is training
            assert scores == score_masked_lm(model, data, collator, batch_size=batch_size)
            assert scores["masked_positions"] == 13
            assert scores["top1_accuracy"] == 3 / 13 and scores["top5_accuracy"] == 11 / 13
            assert scores["loss"] == pytest.approx(loss, rel=0, abs=1e-5)  # padding attended: 6e-5 off
            assert scores["perplexity"] == math.exp(scores["loss"])
