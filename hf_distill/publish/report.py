"""The last step of every entry point, on the main process: measure, write the results and the card, push."""

from __future__ import annotations

import copy
import inspect
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer

from hf_distill.trainer.model_inputs import unwrap

from .export import ExportError, _failure_names, export_and_score, onnx_runtime, remove_exports
from .hub import cache_folder_patterns, hub_repo_id, push_folder
from .latency import LATENCY_BATCH_SIZES, latency_device, measure_models
from .model_card import ModelCardData, environment, format_deployment_table, format_table, render_model_card

__all__ = ["ExportFailed", "publish_student"]


class ExportFailed(RuntimeError):
    """An asked-for export failed after training: the student, its results and card are saved, nothing is pushed."""


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
    export_formats: tuple[str, ...] = (),
    student: Any = None,
    not_pushed: tuple[str, ...] = (),
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
        export_formats: "onnx" and/or "int8": the student exported, re-scored on `latency_dataset` with onnxruntime
            and timed (keys prefixed ``onnx_`` / ``onnx_int8_``). A failed export keeps the student and its results
            (and a format scored before the failure), records ``export_error`` (results and card), logs what failed
            and removes the failed format's file; then nothing is pushed and `ExportFailed` is raised. Any export
            file already in the folder (an earlier run's) is removed first, with or without `export_formats`: it was
            not exported from this student.
        student: the student measured and exported; None: `trainer.model` (give a whole copy of one an engine
            sharded, `gather_whole`).
        not_pushed: files of the folder this run did not write that the push leaves local (push patterns), e.g.
            an earlier search's ``hp_search.json`` when this run did not search.
    """
    args = trainer.args
    student = trainer.model if student is None else student
    output_dir = Path(args.output_dir)
    remove_exports(output_dir)
    trainer.save_metrics("eval", metrics)  # the scores first: a failure timing or exporting (memory) keeps them
    metrics.update(measure_models(teacher, student, latency_dataset, collator, args))
    deployment = []
    if export_formats:
        deployment = _export(trainer, student, export_formats, latency_dataset, collator, metrics, metric_names)
    trainer.save_metrics("eval", metrics)
    hardware, versions = environment(args.device)
    data = ModelCardData(
        metric_names=metric_names,
        teacher_metrics={m: metrics[f"teacher_eval_{m}"] for m in metric_names if f"teacher_eval_{m}" in metrics},
        student_metrics={m: metrics[f"eval_{m}"] for m in metric_names if f"eval_{m}" in metrics},
        teacher_parameters=int(metrics["teacher_parameters"]),
        student_parameters=int(metrics["student_parameters"]),
        teacher_latency_ms={b: metrics[f"teacher_latency_ms_batch{b}"] for b in LATENCY_BATCH_SIZES},
        student_latency_ms={b: metrics[f"student_latency_ms_batch{b}"] for b in LATENCY_BATCH_SIZES},
        latency_device=latency_device(args),
        deployment_rows=deployment,
        hardware=hardware,
        library_versions=versions,
        export_error=metrics.get("export_error", ""),
        resumed=bool(getattr(args, "resume_from_checkpoint", None)),
        **card,
    )
    (output_dir / "README.md").write_text(render_model_card(data))
    deployment_table = format_deployment_table(data)
    print("\n" + format_table(data) + ("\n\n" + deployment_table if deployment_table else "") + "\n", flush=True)
    if "export_error" in metrics:  # asked for and failed: no push without it, and the run does not end as a success
        pushed = "; the push to the Hub was skipped" if push_token is not None else ""
        raise ExportFailed(
            f"--export {','.join(export_formats)} failed: {metrics['export_error']}. The trained student, its results "
            f"and its card are in {output_dir}{pushed}. Fix the cause and rerun, or rerun without --export."
        )
    if push_token is not None:
        url = push_folder(
            output_dir,
            hub_repo_id(args),
            push_token,
            private=args.hub_private_repo,
            revision=args.hub_revision,
            # the teacher cache kept in output_dir under another name (--teacher_cache_dir)
            not_pushed=(*not_pushed, *_cache_patterns(trainer)),
        )
        logger.info("Pushed the student to %s", url)
    return metrics


def _cache_patterns(trainer) -> list[str]:
    root = getattr(trainer, "_teacher_cache_root", None)
    return cache_folder_patterns(trainer.args.output_dir, root() if root is not None else None)


def _export(trainer, student, formats, dataset, collator, metrics, metric_names) -> list[dict[str, Any]]:
    """Exports and re-scores the student; returns the card's deployment rows (those of the formats scored)."""
    output_dir = trainer.args.output_dir
    try:
        # what the exports are checked and timed against, made inside the failure handling too: a failure here
        # (memory for the copy, a collator error) is the export's, recorded as such, with the student kept
        with _failure_names(",".join(formats), "preparing the PyTorch student it is checked against", output_dir):
            names = set(inspect.signature(unwrap(student).forward).parameters)
            batches = {}
            for batch_size in LATENCY_BATCH_SIZES:
                rows = [
                    {k: v for k, v in dataset[i % len(dataset)].items() if k != "labels"} for i in range(batch_size)
                ]
                batches[batch_size] = {k: v for k, v in collator(rows).items() if k in names}
            # The ONNX file holds the float32 student run on the CPU: its agreement and logit difference are measured
            # against those same weights there, in this process alone. Never under the run's half-precision autocast
            # (its rounding would count as the export's) or a GPU's TF32; and no Trainer: under an engine (even on one
            # process) its evaluation loop would prepare the student for the engine again, and with several ranks
            # split the rows. Each file's speed-up is against this copy, timed in blocks in turns with the file.
            on_cpu = copy.deepcopy(unwrap(student)).to(device="cpu", dtype=torch.float32).eval()
            eval_batch = trainer.args.per_device_eval_batch_size
            torch_logits = _predict_here(on_cpu, dataset, collator, names, batch_size=eval_batch)
        scores = export_and_score(
            unwrap(student),
            output_dir,
            formats,
            dataset=dataset,
            collator=collator,
            compute_metrics=trainer.compute_metrics,
            torch_logits=torch_logits,
            latency_batches=batches,
            reference_model=on_cpu,
        )
    except ExportError as error:  # the trained student and its results are kept; say what failed
        logger.error("Export failed, the trained student is kept: %s", error)
        metrics["export_error"] = str(error)
        scores = getattr(error, "scores", {})  # the formats scored before the failure (int8's fp32 file): kept
        if not scores:
            return []
    metrics.update(scores)
    runtime = onnx_runtime()
    rows = []
    for label, prefix in (("ONNX fp32", "onnx_"), ("ONNX int8", "onnx_int8_")):
        if f"{prefix}size_bytes" not in scores:
            continue
        rows.append(
            {
                "name": f"student, {label}",
                "metrics": {m: scores[f"{prefix}eval_{m}"] for m in metric_names if f"{prefix}eval_{m}" in scores},
                "agreement": scores.get(f"{prefix}agreement"),
                "rows": len(dataset),  # what the agreement is a share of: the card counts them
                "max_abs_diff": scores.get(f"{prefix}max_abs_logit_diff"),
                "size_bytes": scores[f"{prefix}size_bytes"],
                "latency_ms": {b: scores[f"{prefix}latency_ms_batch{b}"] for b in LATENCY_BATCH_SIZES},
                "pytorch_cpu_latency_ms": {
                    b: scores[f"{prefix}reference_latency_ms_batch{b}"] for b in LATENCY_BATCH_SIZES
                },
                "runtime": runtime,
            }
        )
    return rows


@torch.no_grad()
def _predict_here(model, dataset, collator, names, *, batch_size: int) -> np.ndarray:
    """`model`'s logits on every row of `dataset`, in order, in this process alone (no Trainer, no collective), where
    the model is, in its dtype."""
    device = next(model.parameters()).device
    logits = []
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = {k: v.to(device) for k, v in collator(rows).items() if k in names and k != "labels"}
        logits.append(model(**batch).logits.float().cpu())
    return torch.cat(logits).numpy()
