"""The student and the teacher scored side by side, on the same evaluation data with the same metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import EvalPrediction, Trainer
from transformers.trainer_pt_utils import nested_concat
from transformers.trainer_utils import speed_metrics

from ..trainer.evaluation_rows import keeping_the_last_batch
from ..trainer.labels_trainer import LabelsTrainer
from ..trainer.model_inputs import unwrap
from ..trainer.teacher import is_engine_wrapped

__all__ = ["evaluate_side_by_side"]

logger = logging.getLogger(__name__)


def evaluate_side_by_side(
    trainer: Trainer, teacher: Any, eval_datasets: dict[str, Any], collator: Any, compute_metrics: Any
) -> dict[str, float]:
    """Evaluates the trained student (`trainer`) and the teacher on every evaluation split.

    Returns the student's metrics under ``eval_*`` and the teacher's under ``teacher_eval_*``; MNLI's mismatched
    split takes the ``_mm`` suffix. Both are scored on every row, whatever `dataloader_drop_last` says for training
    and whichever trainer trained the student (the copied recipe's plain Trainer would drop the last batch). Every
    rank must call it. Under FSDP or DeepSpeed the teacher (sharded by the trainer, or whole when the student
    trained without it) is scored where it is, by `evaluate_in_place`: a new Trainer would prepare it for the engine
    again.
    """
    args = trainer.args
    engine = getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)
    in_place = engine or is_engine_wrapped(teacher)
    if in_place and not is_engine_wrapped(teacher):
        teacher = teacher.to(args.device)
    # An evaluator only: it trains nothing, saves nothing, pushes nothing (the run's eval_strategy without an
    # eval_dataset is refused by Trainer, after training), and never casts the teacher in place (below)
    teacher_args = dataclasses.replace(
        args,
        output_dir=str(Path(args.output_dir) / "teacher_eval"),
        report_to="none",
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        lr_scheduler_type="linear",  # reduce_lr_on_plateau and greedy need an eval strategy; it trains nothing
        push_to_hub=False,
        bf16_full_eval=False,
        fp16_full_eval=False,
    )
    if args.bf16_full_eval or args.fp16_full_eval:
        logger.info(
            "Scoring the student and the teacher under the run's autocast, not --bf16_full_eval/--fp16_full_eval: "
            "those cast a model to half precision in place, and the student is exported and pushed afterwards."
        )
    # LabelsTrainer, not a plain Trainer: transformers 5 multiplies a plain Trainer's eval loss by the number of
    # processes for a model whose forward takes **kwargs (BERT's), though its cross-entropy mean divided by none.
    teacher_evaluator = LabelsTrainer(
        model=unwrap(teacher) if in_place else teacher,
        args=teacher_args,
        data_collator=collator,
        compute_metrics=compute_metrics,
    )
    metrics: dict[str, float] = {}
    for split, dataset in eval_datasets.items():
        suffix = "_mm" if split == "validation_mismatched" else ""
        for evaluator in (trainer, teacher_evaluator):
            _forget_eval_dataloader(evaluator)
        # the rows the teacher's LabelsTrainer scores: all of them; the student in its own precision, with the same
        # metrics (a trainer built without compute_metrics, or with others, scored the two on different ones)
        with (
            keeping_the_last_batch(trainer.args),
            _in_stored_precision(trainer.args),
            _scored_by(trainer, compute_metrics),
        ):
            result = trainer.evaluate(eval_dataset=dataset, metric_key_prefix="eval")
        if in_place:
            scored = evaluate_in_place(teacher_evaluator, teacher, dataset, metric_key_prefix="teacher_eval")
        else:
            scored = teacher_evaluator.evaluate(eval_dataset=dataset, metric_key_prefix="teacher_eval")
        scored.pop("epoch", None)  # the teacher evaluator's 0 would replace the student's
        result.update(scored)
        if suffix and "epoch" in metrics:  # the training's epoch, said once, not again as "epoch_mm"
            result.pop("epoch", None)
        metrics.update({f"{key}{suffix}": value for key, value in result.items()})
    _remove_if_empty(Path(teacher_args.output_dir))
    return metrics


def _remove_if_empty(folder: Path) -> None:
    """The teacher evaluator's output folder, which Trainer makes and nothing fills: not left in every run's output."""
    with contextlib.suppress(OSError):  # not empty (something wrote there), or gone: left as it is
        folder.rmdir()


@contextlib.contextmanager
def _scored_by(trainer: Trainer, compute_metrics: Any) -> Iterator[None]:
    """`trainer.compute_metrics` set to `compute_metrics` for the block, as the teacher's evaluator has it."""
    saved = trainer.compute_metrics
    trainer.compute_metrics = compute_metrics
    try:
        yield
    finally:
        trainer.compute_metrics = saved


@contextlib.contextmanager
def _in_stored_precision(args: Any) -> Iterator[None]:
    """`bf16_full_eval` and `fp16_full_eval` off for the block: Trainer's evaluation would cast the trained student to
    half precision in place, and the float32 weights it then exports and pushes would be lost."""
    saved = args.bf16_full_eval, args.fp16_full_eval
    args.bf16_full_eval = args.fp16_full_eval = False
    try:
        yield
    finally:
        args.bf16_full_eval, args.fp16_full_eval = saved


def _forget_eval_dataloader(evaluator: Trainer) -> None:
    """Drops the evaluation dataloader a Trainer keeps under ``dataloader_persistent_workers``: transformers keys it
    "eval" for every dataset passed in and hands it back whatever dataset is asked for next, so MNLI's mismatched split
    was scored on the matched rows, and a recipe student that evaluated while training kept a dataloader that drops
    the last batch."""
    cached = getattr(evaluator, "_eval_dataloaders", None)
    if isinstance(cached, dict):
        cached.pop("eval", None)


@torch.no_grad()
def evaluate_in_place(evaluator: Trainer, model: Any, dataset: Any, metric_key_prefix: str) -> dict[str, float]:
    """`evaluator.evaluate(dataset)` with `model` run as it is, for a model an engine already sharded.

    A plain Trainer would hand such a model to ``accelerator.prepare`` again, which accelerate < 1.16 refuses under
    FSDP2 without an optimizer (seen on a GPU: "a model and optimizer must be passed together") and which would put a
    DeepSpeed engine inside another. The rest is `evaluator`'s: its dataloader (the columns its model's forward
    takes, split over the ranks), its autocast, its compute_metrics, on predictions gathered from every rank without
    the rows the last batch repeats. Every rank must call it.
    """
    start = time.time()
    accelerator = evaluator.accelerator
    was_training = model.training
    model.eval()
    losses = predictions = labels = None
    batches = 0
    try:
        for batch in evaluator.get_eval_dataloader(dataset):
            batch = evaluator._prepare_inputs(batch)
            label_names = [name for name in evaluator.label_names if name in batch]
            label = batch[label_names[0]] if label_names else None  # before compute_loss, which may pop it
            with accelerator.autocast():
                if label_names:  # the evaluator's own loss, as its prediction_step takes it (label smoothing too)
                    loss, output = evaluator.compute_loss(model, batch, return_outputs=True)
                else:
                    loss, output = None, model(**batch)
            batches += 1
            # a tuple output starts with the loss when the model was given the labels (a label smoother pops them)
            _, logits = _loss_and_logits(output, has_labels=bool(label_names) and label_names[0] in batch)
            if loss is not None:
                loss = loss.detach().float().reshape(1).repeat(len(logits))
                losses = _append(losses, accelerator.gather_for_metrics(loss))
            logits = accelerator.pad_across_processes(logits.detach().float(), dim=1, pad_index=-100)
            predictions = _append(predictions, accelerator.gather_for_metrics(logits))
            if label is not None:
                label = accelerator.pad_across_processes(label, dim=1, pad_index=-100)
                labels = _append(labels, accelerator.gather_for_metrics(label))
    finally:
        model.train(was_training)
    metrics: dict[str, float] = {}
    if evaluator.compute_metrics is not None and predictions is not None and labels is not None:
        computed = evaluator.compute_metrics(EvalPrediction(predictions=predictions.numpy(), label_ids=labels.numpy()))
        metrics.update({f"{metric_key_prefix}_{key}": value for key, value in computed.items()})
    if losses is not None:
        finite = torch.isfinite(losses)
        if evaluator.args.logging_nan_inf_filter and finite.any():  # as Trainer's evaluation loop leaves them out
            losses = losses[finite]
        metrics[f"{metric_key_prefix}_loss"] = losses.mean().item()
    num_samples = 0 if predictions is None else len(predictions)
    metrics.update(speed_metrics(metric_key_prefix, start, num_samples=num_samples, num_steps=batches))
    return metrics


def _loss_and_logits(output: Any, has_labels: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(loss or None, logits) of a forward's output: a `ModelOutput`/dict, or the tuple of a model built with
    `return_dict=False` (loss first when labels were passed, as transformers orders it)."""
    if isinstance(output, dict):
        return output.get("loss"), output["logits"]
    if has_labels and len(output) > 1:
        return output[0], output[1]
    return None, output[0]


def _append(gathered: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
    new = new.cpu()
    return new if gathered is None else nested_concat(gathered, new, padding_index=-100)
