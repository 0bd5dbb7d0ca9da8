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

import copy
import dataclasses
import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
)

from hf_distill import DistillationTrainer
from hf_distill.compatibility import check_distillable, check_tokenizers
from hf_distill.data_files import load_custom_files
from hf_distill.distributed import end_distributed
from hf_distill.glue import GLUE_TASKS, load_glue_hub, load_glue_tsv, tokenize_dataset
from hf_distill.hub import check_can_push, push_folder, take_token_out_of_arguments
from hf_distill.latency import count_parameters, measure_latency_ms
from hf_distill.metrics import compute_metrics_fn
from hf_distill.model_card import ModelCardData, format_table, render_model_card, sanitize_command
from hf_distill.script_arguments import parse_arguments
from hf_distill.student import build_student, select_layers, validate_layers

logger = logging.getLogger("distill_glue")

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "offline" / "demo.yaml"
HELD_OUT_SEED = 42  # the held-out split of --validation_split_size never moves with --seed
LATENCY_BATCH_SIZES = (1, 32)


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


# ---- checks ---------------------------------------------------------------------------------------------------


def check_output_dir(output_dir: Path, overwrite: bool, resume_from_checkpoint) -> None:
    """Refuses an output_dir that already holds a model, unless --overwrite_output_dir (as run_glue does)."""
    if overwrite or resume_from_checkpoint or not output_dir.is_dir():
        return
    found = [
        name for name in ("config.json", "model.safetensors", "pytorch_model.bin") if (output_dir / name).exists()
    ]
    if found:
        raise ValueError(
            f"Output directory {output_dir} already holds a model ({', '.join(found)}); refusing to overwrite it. "
            "Pass --overwrite_output_dir to replace it, or choose another --output_dir."
        )


def check_model_path(name_or_path: str, role: str) -> None:
    """A name that looks like a local path must exist; anything else is taken for a Hub id.

    Local-looking: starts with ".", "/" or "~", has more than one "/", ends with "/", or its first part is a folder
    here (`outputs/teacher` when ./outputs exists, a typo of a local folder, not the Hub's `outputs` namespace).
    """
    path = Path(name_or_path).expanduser()
    first_part = name_or_path.split("/", 1)[0]
    looks_local = (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or name_or_path.endswith("/")
        or ("/" in name_or_path and Path(first_part).is_dir())
    )
    if looks_local and not path.exists():
        raise ValueError(
            f"The {role} path {name_or_path!r} does not exist (looked in {path.absolute().parent}). Pass an "
            "existing model folder or a Hub id such as 'bert-base-uncased'."
        )
    if path.exists() and not (path / "config.json").exists():
        raise ValueError(f"The {role} folder {name_or_path!r} has no config.json: it is not a saved model.")


def check_teacher_head(config, num_labels: int, model_args) -> None:
    if model_args.finetune_teacher:
        return
    architectures = config.architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise ValueError(
            f"The teacher {model_args.teacher_model_name_or_path!r} is not fine-tuned for classification "
            f"(architectures={architectures}): its head would be random. Pass --finetune_teacher to fine-tune it on "
            "the task first, or give a teacher fine-tuned on this task."
        )
    if config.num_labels != num_labels:
        raise ValueError(
            f"The teacher has num_labels={config.num_labels} but the task has {num_labels} labels: it was fine-tuned "
            "on another task. Give a teacher fine-tuned on this task, or pass --finetune_teacher."
        )


def hub_kwargs(model_args) -> dict:
    return {
        "trust_remote_code": model_args.trust_remote_code,
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
    }


# ---- data -----------------------------------------------------------------------------------------------------


def load_data(data_args):
    """Returns (DatasetDict, label names or None, text columns, evaluation splits, metric names)."""
    if data_args.task_name:
        task = GLUE_TASKS[data_args.task_name]
        eval_splits = ["validation_matched", "validation_mismatched"] if task.name == "mnli" else ["validation"]
        if data_args.data_dir is not None:
            raw = load_glue_tsv(task.name, data_args.data_dir, splits=["train", *eval_splits])
        else:
            hub = load_glue_hub(task.name)
            raw = type(hub)({split: hub[split] for split in ["train", *eval_splits]})
        if data_args.validation_split_size is not None:
            # Tune on rows held out of train, never on dev: the held-out rows replace the evaluation splits.
            raw = hold_out(raw, data_args.validation_split_size, stratify=task.label_names is not None)
            eval_splits = ["validation"]
        label_names = list(task.label_names) if task.label_names else None
        return raw, label_names, task.text_columns, eval_splits, list(task.metric_names)
    raw, label_names = load_custom_files(
        data_args.train_file,
        data_args.validation_file,
        data_args.text_column,
        data_args.label_column,
        encoding=data_args.file_encoding,
    )
    if data_args.validation_file is None:
        raw = hold_out(raw, data_args.validation_split_size, stratify=label_names is not None)
    metric_names = ["pearson", "spearmanr"] if label_names is None else ["accuracy", "f1_macro"]
    return raw, label_names, tuple(data_args.text_column), ["validation"], metric_names


def hold_out(raw, size: int, *, stratify: bool):
    """Splits `size` rows off the training split as the evaluation split ("validation"), with a fixed seed."""
    if size >= len(raw["train"]):
        raise ValueError(f"validation_split_size={size} leaves no training rows: train has {len(raw['train'])}.")
    split = raw["train"].train_test_split(
        test_size=size, seed=HELD_OUT_SEED, stratify_by_column="label" if stratify else None
    )
    return type(raw)({"train": split["train"], "validation": split["test"]})


def custom_metrics_fn(is_regression: bool):
    """Accuracy and macro-F1 for your own classification data; Pearson and Spearman for regression."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        if is_regression:
            scores = np.asarray(logits).reshape(-1)
            return {
                "pearson": float(pearsonr(scores, prediction.label_ids)[0]),
                "spearmanr": float(spearmanr(scores, prediction.label_ids)[0]),
            }
        predicted = np.asarray(logits).argmax(-1)
        return {
            "accuracy": float(accuracy_score(prediction.label_ids, predicted)),
            "f1_macro": float(f1_score(prediction.label_ids, predicted, average="macro")),
        }

    return compute_metrics


# ---- models ---------------------------------------------------------------------------------------------------


def _label_kwargs(num_labels: int, label_names: list[str] | None) -> dict:
    if label_names is None:
        return {"num_labels": 1, "problem_type": "regression"}
    return {
        "num_labels": num_labels,
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: index for index, name in enumerate(label_names)},
    }


def load_teacher(model_args, training_args, num_labels: int, label_names):
    # Fine-tuning needs fp32 master weights; a teacher only run is loaded in the dtype it runs in.
    dtype = torch.bfloat16 if training_args.bf16 and not model_args.finetune_teacher else torch.float32
    kwargs = _label_kwargs(num_labels, label_names) if model_args.finetune_teacher else {}
    teacher = AutoModelForSequenceClassification.from_pretrained(
        model_args.teacher_model_name_or_path, dtype=dtype, **kwargs, **hub_kwargs(model_args)
    )
    if not model_args.finetune_teacher and label_names is not None:
        teacher.config.id2label = dict(enumerate(label_names))
        teacher.config.label2id = {name: index for index, name in enumerate(label_names)}
    return teacher


def load_student(model_args, num_labels: int, label_names):
    config = AutoConfig.from_pretrained(model_args.student_model_name_or_path, **hub_kwargs(model_args))
    is_classifier = any(name.endswith("ForSequenceClassification") for name in config.architectures or [])
    if is_classifier and config.num_labels != num_labels:
        raise ValueError(
            f"The student {model_args.student_model_name_or_path!r} has num_labels={config.num_labels} but the task "
            f"has {num_labels}. Give a student without a classification head, or one with {num_labels} labels."
        )
    # Always fp32: transformers 5 loads a checkpoint's own dtype, and an fp16 student trains badly (REFERENCES.md).
    return AutoModelForSequenceClassification.from_pretrained(
        model_args.student_model_name_or_path,
        dtype=torch.float32,
        **_label_kwargs(num_labels, label_names),
        **hub_kwargs(model_args),
    )


def finetune_teacher(teacher, tokenizer, train_dataset, collator, model_args, training_args):
    """Fine-tunes a pretrained teacher on the task (plain Trainer) and saves it under <output_dir>/teacher."""
    teacher_dir = Path(training_args.output_dir) / "teacher"
    args = dataclasses.replace(
        training_args,
        output_dir=str(teacher_dir),
        num_train_epochs=model_args.teacher_num_train_epochs,
        learning_rate=model_args.teacher_learning_rate,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        report_to="none",
        max_steps=-1,
    )
    logger.info("Fine-tuning the teacher on the task for %s epochs", args.num_train_epochs)
    trainer = Trainer(
        model=teacher, args=args, train_dataset=train_dataset, data_collator=collator, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    return trainer.model


def describe_student(student, model_args, layers, training: str) -> str:
    name = type(student).__name__
    how = {"labels_only": " Trained on the labels alone (no teacher): a baseline.", "recipe": " Trained with the "
           "copied blog recipe (benchmarks/recipe.py): a baseline."}.get(training, "")  # fmt: skip
    return _describe_init(name, student, model_args, layers) + how


def _describe_init(name, student, model_args, layers) -> str:
    depth = getattr(student.config, "num_hidden_layers", None) or getattr(student.config, "n_layers", None)
    if model_args.student_model_name_or_path:
        return f"`{name}` ({depth} layers) loaded from `{model_args.student_model_name_or_path}`."
    text = f"`{name}`, {depth} layers initialised from teacher layers {list(layers)}"
    if model_args.student_architecture == "distilbert":
        return text + " mapped into DistilBERT (token-type embedding 0 folded into the position embeddings)."
    return text + "; embeddings, pooler and classification head copied from the teacher."


def _latency_dtype(training_args) -> torch.dtype:
    if training_args.device.type == "cuda" and (training_args.bf16 or training_args.fp16):
        return torch.bfloat16 if training_args.bf16 else torch.float16
    return torch.float32


def latency_device(training_args) -> str:
    """Where measure_models timed the models, in words, for the model card."""
    device = training_args.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type.upper()
    dtype = str(_latency_dtype(training_args)).removeprefix("torch.")
    return f"{'a' if device.type == 'cpu' else 'one'} {name}, {dtype}"


@torch.inference_mode()
def measure_models(teacher, student, dataset, collator, training_args) -> dict[str, float]:
    """Parameter counts and median forward latency of both models on real examples, same device and dtype."""
    device = training_args.device
    dtype = _latency_dtype(training_args)
    models = {"teacher": teacher, "student": student}
    results: dict[str, float] = {f"{role}_parameters": count_parameters(model) for role, model in models.items()}
    for role, model in models.items():
        measured = copy.deepcopy(model).to(device=device, dtype=dtype)
        names = _forward_names(measured)
        for batch_size in LATENCY_BATCH_SIZES:
            rows = [dataset[i % len(dataset)] for i in range(batch_size)]
            features = [{k: v for k, v in row.items() if k != "labels"} for row in rows]
            batch = {k: v.to(device) for k, v in collator(features).items() if k in names}
            results[f"{role}_latency_ms_batch{batch_size}"] = measure_latency_ms(measured, batch)
        del measured
    for batch_size in LATENCY_BATCH_SIZES:
        results[f"speedup_batch{batch_size}"] = (
            results[f"teacher_latency_ms_batch{batch_size}"] / results[f"student_latency_ms_batch{batch_size}"]
        )
    return results


def recipe_trainer_class():
    """The copied Trainer-subclass recipe, kept in benchmarks/ as the baseline (not part of the library)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe.py"
    spec = importlib.util.spec_from_file_location("hf_distill_benchmarks_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RecipeDistillationTrainer


def _forward_names(model) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


if __name__ == "__main__":
    try:
        main()
    except ValueError as error:  # bad input: one clear line, no traceback, nothing half-written
        print(f"distill_glue.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        end_distributed()
