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

import dataclasses
import importlib.util
import logging
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoTokenizer, DataCollatorWithPadding, Trainer

from hf_distill import DistillationTrainer
from hf_distill.compatibility import check_distillable, check_hidden_sizes, check_tokenizers
from hf_distill.distributed import end_distributed
from hf_distill.glue import tokenize_dataset
from hf_distill.hub import check_can_push, push_folder, take_token_out_of_arguments
from hf_distill.latency import LATENCY_BATCH_SIZES, latency_device, measure_models
from hf_distill.metrics import compute_metrics_fn, custom_metrics_fn
from hf_distill.model_card import (
    ModelCardData,
    describe_student,
    format_table,
    render_model_card,
    sanitize_command,
)
from hf_distill.model_loading import finetune_teacher, hub_kwargs, load_student, load_teacher
from hf_distill.script_arguments import parse_arguments
from hf_distill.script_checks import check_model_path, check_output_dir, check_teacher_head
from hf_distill.student import build_student, select_layers, validate_layers
from hf_distill.task_data import load_data

logger = logging.getLogger("distill_glue")

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "offline" / "demo.yaml"


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = sanitize_command(["python", "scripts/distill_glue.py", *(argv or [str(DEMO_CONFIG)])])
    model_args, data_args, training_args, _ = parse_arguments(argv or [str(DEMO_CONFIG)])
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()

    # ---- refusals that cost nothing, before any data or model is loaded ----
    output_dir = Path(training_args.output_dir)
    check_output_dir(output_dir, data_args.overwrite_output_dir, training_args.resume_from_checkpoint)
    push, training_args.push_to_hub = training_args.push_to_hub, False  # we push once, at the end, with the card
    token = take_token_out_of_arguments(training_args)
    if push:
        token = check_can_push(token)
    check_model_path(model_args.teacher_model_name_or_path, "teacher")
    if model_args.student_model_name_or_path:
        check_model_path(model_args.student_model_name_or_path, "student")

    # ---- data ----
    raw, label_names, text_columns, eval_splits, metric_names = load_data(data_args)
    num_labels = 1 if label_names is None else len(label_names)

    # ---- models: every mismatch is refused before any training ----
    # Seed before loading: a fine-tuned teacher's (or a Hub student's) new head is initialised here, long before
    # the first Trainer seeds; unseeded, a rerun with the same --seed refits a different teacher.
    transformers.set_seed(training_args.seed)
    teacher_config = AutoConfig.from_pretrained(model_args.teacher_model_name_or_path, **hub_kwargs(model_args))
    check_teacher_head(teacher_config, num_labels, model_args)
    if model_args.student_num_layers is not None:
        layers = select_layers(teacher_config.num_hidden_layers, model_args.student_num_layers)
    elif model_args.student_layers is not None:
        layers = validate_layers(model_args.student_layers, teacher_config.num_hidden_layers)
    else:
        layers = None
    tokenizer = AutoTokenizer.from_pretrained(model_args.teacher_model_name_or_path, **hub_kwargs(model_args))
    teacher = load_teacher(model_args, training_args, num_labels, label_names)
    student = None
    if model_args.student_model_name_or_path:
        student = load_student(model_args, num_labels, label_names)
        check_distillable(student, teacher)
        if training_args.alpha_cos > 0:  # refused now, not after a teacher fine-tune
            check_hidden_sizes(student, teacher)
        student_tokenizer = AutoTokenizer.from_pretrained(
            model_args.student_model_name_or_path, **hub_kwargs(model_args)
        )
        check_tokenizers(student_tokenizer, tokenizer)

    for split, limit in [("train", data_args.max_train_samples)] + [
        (s, data_args.max_eval_samples) for s in eval_splits
    ]:
        if limit is not None:
            raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
    tokenized = tokenize_dataset(raw, tokenizer, text_columns, max_length=data_args.max_seq_length)
    train_dataset = tokenized["train"]
    eval_datasets = {split: tokenized[split] for split in eval_splits}
    mixed = training_args.fp16 or training_args.bf16
    if training_args.ddp_find_unused_parameters is None:  # all student weights are used: no extra DDP walk
        training_args.ddp_find_unused_parameters = False
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if mixed else None)  # tensor cores want x8
    compute_metrics = (
        compute_metrics_fn(data_args.task_name) if data_args.task_name else custom_metrics_fn(label_names is None)
    )

    if model_args.finetune_teacher:
        teacher = finetune_teacher(teacher, tokenizer, train_dataset, collator, model_args, training_args)
    if student is None:
        student = build_student(teacher.float(), layers=layers, architecture=model_args.student_architecture)
        student.config.id2label, student.config.label2id = teacher.config.id2label, teacher.config.label2id
        student.config.problem_type = teacher.config.problem_type
    if training_args.bf16:
        teacher = teacher.to(torch.bfloat16)  # stored in the dtype it runs in (REFERENCES.md, speed)

    # ---- distil ----
    first_eval = eval_datasets[eval_splits[0]]
    common = dict(
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=first_eval,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
    )
    if data_args.student_training == "labels_only":  # baseline: the same student, no teacher
        trainer = Trainer(model=student, **common)
    else:
        trainer_class = recipe_trainer_class() if data_args.student_training == "recipe" else DistillationTrainer
        trainer = trainer_class(model=student, teacher_model=teacher, **common)
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    # ---- evaluate student and teacher on the same data ----
    metrics: dict[str, float] = {}
    teacher_evaluator = Trainer(
        model=teacher,
        args=dataclasses.replace(training_args, output_dir=str(output_dir / "teacher_eval"), report_to="none"),
        data_collator=collator,
        compute_metrics=compute_metrics,
    )
    for split in eval_splits:
        suffix = "_mm" if split == "validation_mismatched" else ""
        for prefix, evaluator in (("eval", trainer), ("teacher_eval", teacher_evaluator)):
            result = evaluator.evaluate(eval_dataset=eval_datasets[split], metric_key_prefix=prefix)
            metrics.update({f"{key}{suffix}": value for key, value in result.items()})

    if trainer.is_world_process_zero():
        metrics.update(measure_models(teacher, trainer.model, first_eval, collator, training_args))
        metrics.update(
            train_examples=len(train_dataset), eval_examples=len(first_eval), world_size=training_args.world_size
        )
        trainer.save_metrics("eval", metrics)
        card = ModelCardData(
            teacher=model_args.teacher_model_name_or_path,
            student_description=describe_student(trainer.model, model_args, layers, data_args.student_training),
            task=data_args.task_name or Path(data_args.train_file).name,
            dataset="glue" if data_args.task_name else Path(data_args.train_file).name,
            temperature=training_args.temperature,
            alpha_kd=training_args.alpha_kd,
            alpha_task=training_args.alpha_task,
            alpha_cos=training_args.alpha_cos if data_args.student_training == "distill" else 0.0,
            metric_names=metric_names,
            teacher_metrics={m: metrics[f"teacher_eval_{m}"] for m in metric_names if f"teacher_eval_{m}" in metrics},
            student_metrics={m: metrics[f"eval_{m}"] for m in metric_names if f"eval_{m}" in metrics},
            teacher_parameters=int(metrics["teacher_parameters"]),
            student_parameters=int(metrics["student_parameters"]),
            teacher_latency_ms={b: metrics[f"teacher_latency_ms_batch{b}"] for b in LATENCY_BATCH_SIZES},
            student_latency_ms={b: metrics[f"student_latency_ms_batch{b}"] for b in LATENCY_BATCH_SIZES},
            command=command,
            base_model=model_args.teacher_hub_id,
            latency_device=latency_device(training_args),
        )
        (output_dir / "README.md").write_text(render_model_card(card))
        print("\n" + format_table(card) + "\n", flush=True)
        if push:
            url = push_folder(output_dir, training_args.hub_model_id or output_dir.name, token)
            logger.info("Pushed the student to %s", url)
    return metrics


# ---- the copied recipe, the baseline -------------------------------------------------------------------------------


def recipe_trainer_class():
    """The copied Trainer-subclass recipe, kept in benchmarks/ as the baseline (not part of the library)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe.py"
    spec = importlib.util.spec_from_file_location("hf_distill_benchmarks_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RecipeDistillationTrainer


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # bad input: one clear line, no traceback, nothing half-written
        print(f"distill_glue.py: error: {error}", file=sys.stderr)
        end_distributed()
        sys.exit(2)
    # Not in a `finally`: after an unexpected error a collective may still be pending, and tearing the group down
    # then can block; the launcher ends the other ranks instead.
    end_distributed()
