#!/usr/bin/env python
"""Distil a BERT teacher into a small student on a GLUE task (or your own data), and publish it.

    accelerate launch scripts/distill_glue.py configs/glue/sst2.yaml [--flag value ...]
    torchrun --nproc_per_node 2 scripts/distill_glue.py CONFIG.yaml
    python scripts/distill_glue.py                 # the offline demo: configs/offline/demo.yaml

A YAML file sets values, flags override it; every TrainingArguments flag works. Outputs in --output_dir: the
student and its tokenizer, all_results.json / eval_results.json (student and teacher metrics, parameter counts,
latencies) and a Hub model card (README.md); --push_to_hub uploads them.
"""

from __future__ import annotations

from pathlib import Path

from transformers import DataCollatorWithPadding

from hf_distill.cli.arguments import parse_arguments
from hf_distill.cli.checks import check_before_loading
from hf_distill.cli.entry import run_entry_point, script_argv, setup_logging
from hf_distill.cli.models import load_models, ready_models
from hf_distill.cli.training import make_trainer, train_and_save
from hf_distill.publish.evaluation import evaluate_side_by_side
from hf_distill.publish.model_card import describe_student
from hf_distill.publish.report import publish_student
from hf_distill.tasks.loading import limit_and_tokenize, load_data
from hf_distill.tasks.metrics import compute_metrics_fn, custom_metrics_fn

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "offline" / "demo.yaml"


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv, command = script_argv("distill_glue.py", argv, DEMO_CONFIG)
    model_args, data_args, training_args, _ = parse_arguments(argv)
    setup_logging()
    push_token = check_before_loading(model_args, data_args, training_args)  # refusals that cost nothing

    # ---- data and models: every mismatch is refused before any training ----
    raw, label_names, text_columns, eval_splits, metric_names = load_data(data_args)
    models = load_models(model_args, training_args, 1 if label_names is None else len(label_names), label_names)
    train_dataset, eval_datasets = limit_and_tokenize(raw, data_args, models.tokenizer, text_columns, eval_splits)
    if training_args.ddp_find_unused_parameters is None:  # all student weights are used: no extra DDP walk
        training_args.ddp_find_unused_parameters = False
    collator = DataCollatorWithPadding(models.tokenizer, pad_to_multiple_of=training_args.pad_to_multiple_of)
    task_metrics = compute_metrics_fn(data_args.task_name) if data_args.task_name else None
    compute_metrics = task_metrics or custom_metrics_fn(label_names is None)
    models = ready_models(models, train_dataset, collator, model_args, training_args)

    # ---- distil, then score student and teacher on the same data ----
    first_eval = eval_datasets[eval_splits[0]]
    trainer = make_trainer(
        data_args.student_training,
        models.student,
        models.teacher,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=first_eval,
        processing_class=models.tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
    )
    train_and_save(trainer)
    metrics = evaluate_side_by_side(trainer, models.teacher, eval_datasets, collator, compute_metrics)

    # ---- publish: results, card, push (main process only) ----
    if not trainer.is_world_process_zero():
        return metrics
    metrics.update(
        train_examples=len(train_dataset), eval_examples=len(first_eval), world_size=training_args.world_size
    )
    distilled = data_args.student_training == "distill"
    card = dict(
        teacher=model_args.teacher_model_name_or_path,
        student_description=describe_student(trainer.model, model_args, models.layers, data_args.student_training),
        task=data_args.task_name or Path(data_args.train_file).name,
        dataset="glue" if data_args.task_name else Path(data_args.train_file).name,
        temperature=training_args.temperature,
        alpha_kd=training_args.alpha_kd,
        alpha_task=training_args.alpha_task,
        alpha_cos=training_args.alpha_cos if distilled else 0.0,
        command=command,
        base_model=model_args.teacher_hub_id,
    )
    return publish_student(
        trainer,
        models.teacher,
        metrics,
        latency_dataset=first_eval,
        collator=collator,
        metric_names=metric_names,
        card=card,
        push_token=push_token,
    )


if __name__ == "__main__":
    run_entry_point(main, "distill_glue.py")
