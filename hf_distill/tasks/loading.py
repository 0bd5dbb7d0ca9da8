"""The script's data: a GLUE task (official TSVs or the Hub) or your own files, and rows held out of train."""

from __future__ import annotations

from .files import load_custom_files
from .glue import GLUE_TASKS, load_glue_hub, load_glue_tsv, tokenize_dataset

__all__ = ["HELD_OUT_SEED", "HP_VALIDATION", "hold_out", "limit_and_tokenize", "load_data"]

HELD_OUT_SEED = 42  # the held-out split of --validation_split_size never moves with --seed
HP_VALIDATION = "hp_validation"  # the rows a hyperparameter search scores its trials on


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
            # Tune on rows held out of train, never on dev. A hyperparameter search scores its trials on them
            # ("hp_validation") and the final student on dev; otherwise they replace the evaluation splits.
            held = hold_out(raw, data_args.validation_split_size, stratify=task.label_names is not None)
            if getattr(data_args, "hp_search_trials", None):
                raw["train"], raw[HP_VALIDATION] = held["train"], held["validation"]
            else:
                raw = held
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
    if getattr(data_args, "hp_search_trials", None):
        # The search's own rows, held out of what is left of train: never the evaluation split the final student
        # is reported on (the validation file, or the rows held out just above).
        held = hold_out(raw, data_args.validation_split_size, stratify=label_names is not None)
        raw["train"], raw[HP_VALIDATION] = held["train"], held["validation"]
    metric_names = ["pearson", "spearmanr"] if label_names is None else ["accuracy", "f1_macro"]
    return raw, label_names, tuple(data_args.text_column), ["validation"], metric_names


def hold_out(raw, size: int, *, stratify: bool):
    """Splits `size` rows off the training split as the evaluation split ("validation"), with a fixed seed."""
    if size >= len(raw["train"]):
        raise ValueError(
            f"--validation_split_size {size} leaves no training rows: train has {len(raw['train']):,} at this point. "
            "Pass a smaller --validation_split_size."
        )
    split = raw["train"].train_test_split(
        test_size=size, seed=HELD_OUT_SEED, stratify_by_column="label" if stratify else None
    )
    return type(raw)({"train": split["train"], "validation": split["test"]})


def limit_and_tokenize(raw, data_args, tokenizer, text_columns, eval_splits):
    """Cuts the evaluation splits to `--max_eval_samples`, then tokenises every split.

    `raw["train"]` must already hold the labelled rows only (see `hf_distill.cli.transfer`). Returns the tokenised
    splits (train, "transfer" and "hp_validation" when present) and a dict of evaluation split -> tokenised dataset.
    """
    for split in eval_splits:
        if data_args.max_eval_samples is not None:
            raw[split] = raw[split].select(range(min(data_args.max_eval_samples, len(raw[split]))))
    tokenized = tokenize_dataset(raw, tokenizer, text_columns, max_length=data_args.max_seq_length)
    return tokenized, {split: tokenized[split] for split in eval_splits}
