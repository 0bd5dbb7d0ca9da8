"""hf_distill.tasks.mlm_metrics.score_masked_lm on a tiny random masked LM."""

from __future__ import annotations

import math

import datasets
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
