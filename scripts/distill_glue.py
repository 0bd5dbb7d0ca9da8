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

import logging
from pathlib import Path

from datasets import concatenate_datasets
from transformers import DataCollatorWithPadding

from hf_distill.cli.arguments import parse_arguments
from hf_distill.cli.checks import check_before_loading, check_metric_for_best_model
from hf_distill.cli.entry import run_entry_point, script_argv, setup_logging
from hf_distill.cli.hp_search import apply_settings, run_hp_search
from hf_distill.cli.models import load_models, ready_models, teacher_label_names
from hf_distill.cli.training import make_trainer, script_training_defaults, train_and_save
from hf_distill.cli.transfer import (
    build_transfer_set,
    check_mlm_augmenter,
    check_unlabeled_file,
    embedding_table,
    pseudo_label,
    warn_of_evaluation_rows,
)
from hf_distill.publish.evaluation import evaluate_side_by_side
from hf_distill.publish.model_card import describe_student, intermediate_terms, scored_rows, search_settings_note
from hf_distill.publish.report import publish_student
from hf_distill.tasks.loading import HP_VALIDATION, limit_and_tokenize, load_data
from hf_distill.tasks.metrics import compute_metrics_fn, custom_metrics_fn, main_metric
from hf_distill.trainer.teacher import gather_for_main_process, placed_teacher

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "offline" / "demo.yaml"


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv, command = script_argv("distill_glue.py", argv, DEMO_CONFIG)
    model_args, data_args, training_args, _ = parse_arguments(argv)
    setup_logging()
    push_token = check_before_loading(model_args, data_args, training_args)  # refusals that cost nothing

    # ---- data, transfer set and models: every mismatch is refused before any training ----
    label_order = None if data_args.task_name else teacher_label_names(model_args)  # your own files' string labels
    raw, label_names, text_columns, eval_splits, metric_names = load_data(data_args, label_order)
    check_unlabeled_file(data_args, text_columns)  # its first row: before any model loads
    check_metric_for_best_model(training_args, metric_names)
    regression = label_names is None
    num_labels = 1 if regression else len(label_names)
    models = load_models(
        model_args,
        training_args,
        num_labels,
        label_names,
        max_seq_length=data_args.max_seq_length,
        student_training=data_args.student_training,
        text_pairs=len(text_columns) == 2,
    )
    mlm = check_mlm_augmenter(data_args, model_args, models.tokenizer, device=training_args.device)
    raw["train"], transfer = build_transfer_set(
        raw["train"],
        data_args,
        text_columns,
        regression=regression,
        seed=training_args.seed,
        mask_token=models.tokenizer.mask_token,
        mlm=mlm,
        neighbours=embedding_table(data_args, models.teacher, models.tokenizer),
    )
    del mlm  # the masked LM has filled in its words: not held (on the GPU) through training
    if transfer.rows is not None:
        raw["transfer"] = transfer.rows
    split_rows = len(raw[eval_splits[0]])  # before --max_eval_samples cuts it (in place)
    tokenized, eval_datasets = limit_and_tokenize(raw, data_args, models.tokenizer, text_columns, eval_splits)
    if transfer.rows is not None:  # against the rows scored: after --max_eval_samples
        warn_of_evaluation_rows(transfer.rows, raw, eval_splits, text_columns)
    script_training_defaults(training_args)
    collator = DataCollatorWithPadding(models.tokenizer, pad_to_multiple_of=training_args.pad_to_multiple_of)
    task_metrics = compute_metrics_fn(data_args.task_name) if data_args.task_name else None
    compute_metrics = task_metrics or custom_metrics_fn(regression)
    labelled = tokenized["train"]
    models = ready_models(models, labelled, collator, model_args, training_args)  # the teacher fits labelled rows

    # ---- what the student trains on: labelled rows, plus the transfer set (soft or hard targets) ----
    train_dataset = labelled
    if "transfer" in tokenized:  # built for distill and pseudo_labels only
        rows = tokenized["transfer"]
        if data_args.student_training == "pseudo_labels":
            rows = pseudo_label(models.teacher, rows, collator, training_args, regression=regression)
        train_dataset = concatenate_datasets([labelled.cast_column("labels", rows.features["labels"]), rows])
    used_transfer = len(train_dataset) > len(labelled)
    counts = dict(
        train_labelled_examples=len(labelled),
        train_unlabeled_examples=transfer.unlabeled if used_transfer else 0,
        train_augmented_examples=transfer.augmented if used_transfer else 0,
    )
    # the labelled rows a search scores its trials on, held out of train beside --max_train_samples' N: they choose
    # the settings, never train, and are counted apart
    searched_rows = len(tokenized[HP_VALIDATION]) if data_args.hp_search_trials else 0
    trainer_kwargs = dict(processing_class=models.tokenizer, data_collator=collator, compute_metrics=compute_metrics)
    settings_note = ""
    if data_args.hp_search_trials:
        objective = f"eval_{main_metric(data_args.task_name)}" if data_args.task_name else f"eval_{metric_names[0]}"
        search_rows = tokenized[HP_VALIDATION]  # held out of train by load_data, never an evaluation split
        best = run_hp_search(
            student=models.student,
            teacher=models.teacher,
            training_args=training_args,
            train_dataset=train_dataset,
            search_dataset=search_rows,
            objective_metric=objective,
            n_trials=data_args.hp_search_trials,
            restart=data_args.overwrite_output_dir,
            train_rows={key.split("_")[1]: value for key, value in counts.items()},
            **trainer_kwargs,
        )
        if data_args.hp_search_only:  # no final student: hp_search.json holds the trials and the best settings
            logging.getLogger("distill_glue").info("--hp_search_only: the search is done and no student trained.")
            return {f"best_{objective}": best.report["best"][objective], **best}
        apply_settings(training_args, best)
        training_args.validate_distillation()
        # a resumed journal may hold more trials than asked for now: the card counts those the choice was made from
        settings_note = search_settings_note(
            best, trials=len(best.report["trials"]), rows=len(search_rows), regression=regression
        )

    # ---- distil, then score student and teacher on the same data ----
    first_eval = eval_datasets[eval_splits[0]]
    trainer = make_trainer(
        data_args.student_training,
        models.student,
        models.teacher,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=first_eval,
        **trainer_kwargs,
    )
    train_and_save(trainer)
    # Under FSDP or DeepSpeed the trainer holds the teacher sharded: scored in place, then both models gathered
    # whole (by every rank) for what the main process alone runs next (latency, export).
    teacher = placed_teacher(trainer, models.teacher)
    metrics = evaluate_side_by_side(trainer, teacher, eval_datasets, collator, compute_metrics)
    teacher, student = gather_for_main_process(trainer, teacher)

    # ---- publish: results, card, push (main process only) ----
    if not trainer.is_world_process_zero():
        return metrics
    metrics.update(
        train_examples=len(train_dataset),
        **counts,
        search_held_out_examples=searched_rows,
        eval_examples=len(first_eval),
        world_size=training_args.world_size,
    )
    distilled = data_args.student_training == "distill"
    card = dict(
        teacher=model_args.teacher_card_name,
        student_description=describe_student(student, model_args, models.layers, data_args.student_training),
        task=data_args.task_name or Path(data_args.train_file).name,
        dataset="glue" if data_args.task_name else Path(data_args.train_file).name,
        hub_dataset=bool(data_args.task_name),  # your own file is never named as a Hub dataset
        temperature=training_args.temperature,
        alpha_kd=training_args.alpha_kd,
        alpha_task=training_args.alpha_task,
        alpha_cos=training_args.alpha_cos if distilled else 0.0,
        intermediate_terms=intermediate_terms(training_args, distilled=distilled),
        hidden_layer_map=training_args.hidden_layer_map,
        command=command,
        base_model=model_args.base_model_hub_id,
        train_examples={key.split("_")[1]: value for key, value in counts.items()},
        transfer_description=transfer.describe(data_args) if used_transfer else "none",
        settings_note=settings_note,
        search_held_out_examples=searched_rows,
        student_training=data_args.student_training,
        regression=regression,
        teacher_dtype=str(next(teacher.parameters()).dtype).removeprefix("torch."),
        language="en" if data_args.task_name else None,  # GLUE is English; your own file's language is not known
        **scored_rows(
            data_args,
            len(first_eval),
            chosen_on_it=training_args.load_best_model_at_end,
            split_rows=split_rows,
        ),
    )
    return publish_student(
        trainer,
        teacher,
        metrics,
        student=student,
        latency_dataset=first_eval,
        collator=collator,
        metric_names=metric_names,
        card=card,
        push_token=push_token,
        export_formats=tuple(data_args.export.split(",")) if data_args.export else (),
        # an earlier search's record stays local: its trials did not choose this student's settings
        not_pushed=() if data_args.hp_search_trials else ("hp_search.json",),
    )


if __name__ == "__main__":
    run_entry_point(main, "distill_glue.py")
