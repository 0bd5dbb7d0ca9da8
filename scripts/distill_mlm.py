#!/usr/bin/env python
"""Make your own DistilBERT: general (masked-LM) distillation of a BERT teacher over a text corpus.

    python scripts/distill_mlm.py configs/mlm/tiny_demo.yaml          # offline, minutes on a CPU
    accelerate launch scripts/distill_mlm.py configs/mlm/bert_base_uncased.yaml

The loss is DistilBERT's (Sanh et al., 2019): alpha_kd * T^2 * KL over the masked positions + alpha_task * the
student's MLM cross-entropy + alpha_cos * cosine between the last hidden states (5 / 2 / 1, T = 2 in the configs).
Both models' vocabulary heads run on the masked positions only: no (B, L, V) logits are built. Outputs in
--output_dir: the student (`AutoModelForMaskedLM`, `pipeline("fill-mask")`), its tokenizer, all_results.json with
the student's and the teacher's masked-LM loss, perplexity and top-1/top-5 accuracy on the same fixed masks,
parameter counts and latencies, and a model card. The student then feeds scripts/distill_glue.py as
--student_model_name_or_path.
"""

from __future__ import annotations

from pathlib import Path

from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

from hf_distill.cli.arguments import parse_arguments
from hf_distill.cli.checks import check_before_loading
from hf_distill.cli.entry import run_entry_point, script_argv, setup_logging
from hf_distill.cli.mlm_arguments import MlmDataArguments, check_mlm_training_arguments
from hf_distill.cli.mlm_models import fitting_multiple, load_mlm_models, rank_mask_seed, ready_mlm_models
from hf_distill.cli.training import script_training_defaults, train_and_save
from hf_distill.publish.model_card import (
    corpus_card_name,
    describe_student,
    intermediate_terms,
    public_name,
    scored_lines,
)
from hf_distill.publish.report import publish_student
from hf_distill.tasks.corpus import MaskingCollator, fixed_masks, load_corpus, tokenize_corpus
from hf_distill.tasks.mlm_metrics import MLM_METRICS, score_masked_lm
from hf_distill.trainer import DistillationTrainer
from hf_distill.trainer.teacher import gather_for_main_process

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mlm" / "tiny_demo.yaml"


def main(argv: list[str] | None = None) -> dict[str, float]:
    argv, command = script_argv("distill_mlm.py", argv, DEMO_CONFIG)
    model_args, data_args, training_args, _ = parse_arguments(argv, data_class=MlmDataArguments)
    setup_logging()
    push_token = check_before_loading(model_args, data_args, training_args)  # refusals that cost nothing
    check_mlm_training_arguments(training_args)

    # ---- corpus and models: every mismatch is refused before any training ----
    raw = load_corpus(data_args)
    models = load_mlm_models(model_args, training_args, max_seq_length=data_args.max_seq_length)
    blocks = tokenize_corpus(
        raw, models.tokenizer, max_seq_length=data_args.max_seq_length, line_by_line=data_args.line_by_line
    )
    script_training_defaults(training_args)
    masking = MaskingCollator(
        models.tokenizer,
        mlm_probability=data_args.mlm_probability,
        pad_to_multiple_of=fitting_multiple(training_args.pad_to_multiple_of, data_args.max_seq_length, models),
        seed=rank_mask_seed(training_args),  # each rank its own masks (they masked the same positions)
    )
    held_out = fixed_masks(blocks["validation"], masking, seed=data_args.eval_mask_seed)  # the same for both
    models = ready_mlm_models(models, blocks["train"], masking, model_args, training_args)

    # ---- distil, then score teacher and student on the same masked positions ----
    trainer = DistillationTrainer(
        model=models.student,
        teacher_model=models.teacher,
        args=training_args,
        train_dataset=blocks["train"],
        processing_class=models.tokenizer,
        data_collator=masking,
    )
    train_and_save(trainer)
    padded = DataCollatorForTokenClassification(models.tokenizer)  # pads labels with -100
    metrics: dict[str, float] = {}
    for prefix, model in (("eval", trainer.model), ("teacher_eval", models.teacher)):
        # both under the run's autocast: a bf16 run stores the teacher in bf16, and a float32 student scored
        # without it would be compared at another precision
        with trainer.accelerator.autocast():
            scores = score_masked_lm(model, held_out, padded, batch_size=training_args.per_device_eval_batch_size)
        metrics.update({f"{prefix}_{key}": value for key, value in scores.items()})

    # a sharded teacher or student (FSDP, ZeRO-3) is gathered whole by every rank: the main process alone measures
    # them next, and a sharded forward there would wait forever for the other ranks' shards
    teacher, student = gather_for_main_process(trainer, models.teacher)

    # ---- publish: results, card, push (main process only) ----
    if not trainer.is_world_process_zero():
        return metrics
    corpus, hub_dataset = corpus_card_name(data_args.dataset_name, data_args.train_file)
    metrics.update(train_blocks=len(blocks["train"]), eval_blocks=len(held_out), world_size=training_args.world_size)
    card = dict(
        teacher=model_args.teacher_card_name,
        student_description=describe_student(student, model_args, models.layers, "distill"),
        task=corpus,
        dataset=corpus,
        hub_dataset=hub_dataset,  # a corpus file or folder is never named as a Hub dataset
        dataset_config=data_args.dataset_config_name,
        # the held-out lines: the corpus's validation split (or file), or lines held out of train
        **scored_lines(str(raw["validation"].split), len(raw["validation"]), data_args.max_eval_samples),
        # scored on the user's --validation_file, not on the corpus's own split: named as such
        evaluation_set=f"{public_name(data_args.validation_file)} evaluation set" if data_args.validation_file else "",
        temperature=training_args.temperature,
        alpha_kd=training_args.alpha_kd,
        alpha_task=training_args.alpha_task,
        alpha_cos=training_args.alpha_cos,
        intermediate_terms=intermediate_terms(training_args),
        hidden_layer_map=training_args.hidden_layer_map,
        command=command,
        base_model=model_args.base_model_hub_id,
        pipeline_tag="fill-mask",
        language=None,  # a corpus's language is not known here
        teacher_role="over the masked-LM objective (task-agnostic, as DistilBERT), on the corpus",
        kd_target=f"over the vocabulary at the {data_args.mlm_probability:.0%} masked positions (80/10/10)",
        teacher_dtype=str(next(teacher.parameters()).dtype).removeprefix("torch."),
    )
    return publish_student(
        trainer,
        teacher,
        metrics,
        student=student,
        latency_dataset=held_out.remove_columns("labels"),
        collator=DataCollatorWithPadding(models.tokenizer),
        metric_names=list(MLM_METRICS),
        card=card,
        push_token=push_token,
        not_pushed=("hp_search.json",),  # an earlier distill_glue search's record, in the folder: not this student's
    )


if __name__ == "__main__":
    run_entry_point(main, "distill_mlm.py")
