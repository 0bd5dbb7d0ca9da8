"""The student and the teacher scored side by side, on the same evaluation data with the same metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from transformers import Trainer

__all__ = ["evaluate_side_by_side", "predict_in_order"]


def predict_in_order(model: Any, dataset: Any, collator: Any, args: Any):
    """`model`'s raw predictions on `dataset`, row i at index i.

    `Trainer.predict` alone does not promise that: with ``train_sampling_strategy="group_by_length"`` transformers 5
    also length-groups the *evaluation* sampler, so predictions come back in a shuffled order. Metrics survive that
    (labels travel in the same order); anything matched to rows by position (pseudo-labels, agreement with an
    exported model) does not.
    """
    ordered = dataclasses.replace(
        args,
        output_dir=str(Path(args.output_dir) / "predict"),
        train_sampling_strategy="random",
        report_to="none",
    )
    return Trainer(model=model, args=ordered, data_collator=collator).predict(dataset).predictions


def evaluate_side_by_side(
    trainer: Trainer, teacher: Any, eval_datasets: dict[str, Any], collator: Any, compute_metrics: Any
) -> dict[str, float]:
    """Evaluates the trained student (`trainer`) and the teacher on every evaluation split.

    Returns the student's metrics under ``eval_*`` and the teacher's under ``teacher_eval_*``; MNLI's mismatched
    split takes the ``_mm`` suffix.
    """
    args = trainer.args
    teacher_evaluator = Trainer(
        model=teacher,
        args=dataclasses.replace(args, output_dir=str(Path(args.output_dir) / "teacher_eval"), report_to="none"),
        data_collator=collator,
        compute_metrics=compute_metrics,
    )
    metrics: dict[str, float] = {}
    for split, dataset in eval_datasets.items():
        suffix = "_mm" if split == "validation_mismatched" else ""
        for prefix, evaluator in (("eval", trainer), ("teacher_eval", teacher_evaluator)):
            result = evaluator.evaluate(eval_dataset=dataset, metric_key_prefix=prefix)
            metrics.update({f"{key}{suffix}": value for key, value in result.items()})
    return metrics
