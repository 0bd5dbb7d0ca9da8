"""The last step of every entry point, on the main process: measure, write the results and the card, push."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import Trainer

from .hub import push_folder
from .latency import LATENCY_BATCH_SIZES, latency_device, measure_models
from .model_card import ModelCardData, format_table, render_model_card

__all__ = ["publish_student"]

logger = logging.getLogger(__name__)


def publish_student(
    trainer: Trainer,
    teacher: Any,
    metrics: dict[str, float],
    *,
    latency_dataset: Any,
    collator: Any,
    metric_names: list[str],
    card: dict[str, Any],
    push_token: str | None = None,
) -> dict[str, float]:
    """Adds parameter counts and latencies to `metrics`, saves them (`all_results.json`, `eval_results.json`), writes
    the model card (README.md), prints the teacher-vs-student table and, with `push_token`, pushes the folder.

    Args:
        trainer: the trainer that trained the student (its `args.output_dir` is the folder published).
        teacher: the teacher model, measured beside the student.
        metrics: ``eval_*`` and ``teacher_eval_*`` metrics (`evaluate_side_by_side`).
        latency_dataset: rows the latency is measured on.
        metric_names: the metrics the card's table shows, e.g. ``["accuracy", "f1"]``.
        card: the rest of [`ModelCardData`]'s fields (teacher, task, dataset, loss weights, command...).
        push_token: a Hub token to push with; None keeps the outputs local.
    """
    args = trainer.args
    metrics.update(measure_models(teacher, trainer.model, latency_dataset, collator, args))
    trainer.save_metrics("eval", metrics)
    data = ModelCardData(
        metric_names=metric_names,
        teacher_metrics={m: metrics[f"teacher_eval_{m}"] for m in metric_names if f"teacher_eval_{m}" in metrics},
        student_metrics={m: metrics[f"eval_{m}"] for m in metric_names if f"eval_{m}" in metrics},
        teacher_parameters=int(metrics["teacher_parameters"]),
        student_parameters=int(metrics["student_parameters"]),
        teacher_latency_ms={b: metrics[f"teacher_latency_ms_batch{b}"] for b in LATENCY_BATCH_SIZES},
        student_latency_ms={b: metrics[f"student_latency_ms_batch{b}"] for b in LATENCY_BATCH_SIZES},
        latency_device=latency_device(args),
        **card,
    )
    output_dir = Path(args.output_dir)
    (output_dir / "README.md").write_text(render_model_card(data))
    print("\n" + format_table(data) + "\n", flush=True)
    if push_token is not None:
        url = push_folder(output_dir, args.hub_model_id or output_dir.name, push_token)
        logger.info("Pushed the student to %s", url)
    return metrics
