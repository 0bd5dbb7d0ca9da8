"""Masked-LM scores of one model on fixed masks: loss, perplexity, top-1 and top-5 accuracy at the masked positions."""

from __future__ import annotations

import math
import sys

import datasets
import torch
from torch import nn

__all__ = ["MLM_METRICS", "score_masked_lm"]

MLM_METRICS = ("loss", "perplexity", "top1_accuracy", "top5_accuracy")
_LARGEST_EXPONENT = math.log(sys.float_info.max)  # about 709.78: exp of more overflows


@torch.inference_mode()
def score_masked_lm(model: nn.Module, dataset: datasets.Dataset, collator, *, batch_size: int = 64) -> dict:
    """Scores `model` on `dataset` (rows with ``input_ids``, ``attention_mask`` and ``labels``, -100 where nothing
    is masked; see `corpus.fixed_masks`), batched by `collator` (padding labels with -100).

    Returns:
        `dict`: ``loss`` (mean cross-entropy over the masked positions), ``perplexity`` (exp of it),
        ``top1_accuracy`` and ``top5_accuracy`` (the original token among the model's 1 or 5 most likely), and
        ``masked_positions`` (how many were scored). With no masked position every score is NaN (`corpus.fixed_masks`
        refuses such masks).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, hits1, hits5, count = 0.0, 0, 0, 0
    try:
        for start in range(0, len(dataset), batch_size):
            rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = {k: v.to(device) for k, v in collator(rows).items()}
            labels = batch.pop("labels")
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            counted = labels.ne(-100)  # (B, L)
            picked, targets = logits[counted], labels[counted]  # (N, V), (N,)
            total += float(nn.functional.cross_entropy(picked, targets, reduction="sum"))
            top = picked.topk(min(5, picked.shape[-1]), dim=-1).indices  # (N, 5)
            hits1 += int(top[:, 0].eq(targets).sum())
            hits5 += int(top.eq(targets[:, None]).any(dim=-1).sum())
            count += int(counted.sum())
    finally:
        model.train(was_training)
    if count == 0:  # nothing scored: NaN, never the perfect score (loss 0, perplexity 1) a mean over nothing gave
        return {**dict.fromkeys(MLM_METRICS, math.nan), "masked_positions": 0}
    loss = total / count
    return {
        "loss": loss,
        # exp(loss), inf past float range (a silent cap at exp(50) stated a wrong, finite perplexity)
        "perplexity": math.inf if loss >= _LARGEST_EXPONENT else math.exp(loss),  # NaN stays NaN
        "top1_accuracy": hits1 / count,
        "top5_accuracy": hits5 / count,
        "masked_positions": count,
    }
