"""GLUE metrics computed locally, with the keys and values of the Hub's ``evaluate.load("glue", task)``.

``evaluate.load("glue", ...)`` downloads its script from the Hub and fails offline. The formulas are the same
scikit-learn / SciPy calls that script makes, so results are interchangeable: accuracy; binary F1 of class 1
(MRPC, QQP); Matthews correlation (CoLA); Pearson and Spearman correlation (STS-B).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction

from .glue import GLUE_TASKS, normalize_task_name

__all__ = ["GlueMetric", "compute_metrics_fn", "custom_metrics_fn", "glue_metric", "main_metric"]


class GlueMetric:
    """One GLUE task's metric, with the `compute(predictions=..., references=...)` interface of `evaluate`.

    Args:
        task (`str`): a GLUE task name.
    """

    def __init__(self, task: str):
        self.task = normalize_task_name(task)
        self.metric_names = GLUE_TASKS[self.task].metric_names

    def compute(self, *, predictions, references) -> dict[str, float]:
        """Score predictions against references.

        Args:
            predictions (array-like of shape `(N,)`): predicted class ids, or predicted scores for STS-B.
            references (array-like of shape `(N,)`): gold class ids, or gold scores for STS-B.

        Returns:
            `dict[str, float]`: the task's metrics as Python floats, e.g. ``{"accuracy": ..., "f1": ...}``.
        """
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        if predictions.shape != references.shape or predictions.ndim != 1:
            raise ValueError(
                f"predictions and references must be 1-D and the same length, got shapes {predictions.shape} and "
                f"{references.shape}. Take the argmax of class logits (or squeeze regression outputs) first."
            )
        if predictions.size == 0:
            raise ValueError("predictions is empty: there is nothing to score.")
        results = {}
        for name in self.metric_names:
            if name == "accuracy":
                results[name] = float((predictions == references).mean())
            elif name == "f1":
                results[name] = float(f1_score(y_true=references, y_pred=predictions))
            elif name == "matthews_correlation":
                results[name] = float(matthews_corrcoef(references, predictions))
            elif name == "pearson":
                results[name] = float(pearsonr(predictions, references)[0])
            elif name == "spearmanr":
                results[name] = float(spearmanr(predictions, references)[0])
        return results


def glue_metric(task: str) -> GlueMetric:
    """The metric of a GLUE task, a drop-in for ``evaluate.load("glue", task)`` that needs no network."""
    return GlueMetric(task)


def main_metric(task: str) -> str:
    """The one metric to select checkpoints by (``metric_for_best_model``): F1 for MRPC and QQP, Pearson for STS-B,
    Matthews correlation for CoLA, accuracy for the rest."""
    return GLUE_TASKS[normalize_task_name(task)].main_metric


def compute_metrics_fn(task: str, is_regression: bool | None = None) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for [`~transformers.Trainer`] that scores a GLUE task.

    Args:
        task (`str`): a GLUE task name.
        is_regression (`bool`, *optional*): whether predictions are scores (squeezed) rather than class logits
            (arg-maxed). Defaults to the task's own kind (only STS-B is a regression).

    Returns:
        `Callable[[EvalPrediction], dict[str, float]]`: maps the Trainer's predictions, logits of shape `(N, C)` or
        `(N, 1)`, and label ids `(N,)` to the task's metrics.
    """
    metric = glue_metric(task)
    if is_regression is None:
        is_regression = GLUE_TASKS[metric.task].is_regression

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        # Models asked for hidden states return a tuple; the logits come first.
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        logits = np.asarray(logits)
        predictions = _regression_scores(logits) if is_regression else _predicted_classes(logits, task)
        return metric.compute(predictions=predictions, references=eval_prediction.label_ids)

    return compute_metrics


def _predicted_classes(logits: Any, what: str) -> np.ndarray:
    """(N, C) class logits -> (N,) predicted classes; one logit per row refused (its argmax is always class 0, so
    a one-output head scored as a classifier read as a model that always says 0)."""
    logits = np.asarray(logits)
    if logits.ndim == 2 and logits.shape[-1] == 1:
        raise ValueError(
            f"{what} is a classification task, but the model gives one logit per row (logits of shape {logits.shape}):"
            " its argmax is always 0. Give a head with one output per class (num_labels), or score it as a regression."
        )
    return np.argmax(logits, axis=-1)


def _regression_scores(logits: Any) -> np.ndarray:
    """(N, 1) or (N,) outputs -> (N,) scores; more than one output per row refused (flattened, N x k scores met N
    labels in a scipy error far from the cause)."""
    logits = np.asarray(logits)
    if logits.ndim == 2 and logits.shape[-1] != 1:
        raise ValueError(
            f"A regression is scored on one output per row, but the model gives {logits.shape[-1]} (logits of shape "
            f"{logits.shape}). Give a one-output head (num_labels=1), or score it as a classification."
        )
    return logits.reshape(-1)


def custom_metrics_fn(is_regression: bool):
    """Accuracy and macro-F1 for your own classification data; Pearson and Spearman for regression."""

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions
        if isinstance(logits, (tuple, list)):  # hidden states too: the logits come first (as compute_metrics_fn)
            logits = logits[0]
        logits = np.asarray(logits)
        if is_regression:
            scores = _regression_scores(logits)
            return {
                "pearson": float(pearsonr(scores, prediction.label_ids)[0]),
                "spearmanr": float(spearmanr(scores, prediction.label_ids)[0]),
            }
        predicted = _predicted_classes(logits, "Your data")
        return {
            "accuracy": float(accuracy_score(prediction.label_ids, predicted)),
            "f1_macro": float(f1_score(prediction.label_ids, predicted, average="macro")),
        }

    return compute_metrics
