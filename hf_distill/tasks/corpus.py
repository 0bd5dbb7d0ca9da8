"""A masked-LM corpus: text lines from a file or the Hub, held-out lines, blocks of tokens, and fixed masks.

Packing follows run_mlm.py's `group_texts`: every line is tokenised without special tokens, the ids of each map
batch (1,000 lines) are concatenated with a [SEP] between two lines (as between BERT's sentences), cut into blocks of
`max_seq_length - 2`, and each block is wrapped in [CLS] ... [SEP] (a [SEP] the cut left at a block's edge is
dropped: a block then holds one or two tokens fewer). The batch's remainder shorter than a block is dropped, except
in a batch too short to fill one block (a small corpus or held-out set, or a last batch of a few lines), which is
kept as one shorter block: the collator pads it to its batch's longest block (padding is never masked).
`line_by_line` keeps one (truncated, padded) example per line instead; a warning counts the lines and tokens cut.
Literal special-token text in a line ("[MASK]", "[SEP]") is tokenised as text, not as the special id.

Held-out lines (`--validation_split_size`) are drawn at random (seeded); the training lines keep the corpus's order,
so that a block holds consecutive text, unless `--shuffle_lines` (independent lines stored in some order: tweets
sorted by label) shuffles them, with the held-out draw's permutation.

Which tokens may be masked is decided by the collator alone (every special id of the tokenizer: [CLS], [SEP], [PAD],
[UNK], [MASK]), in training and for the held-out masks alike: the blocks carry no `special_tokens_mask` of their own
(Trainer drops such a column before the training collator sees it, so a held-out set masked with it was scored on
tokens training never masks).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from pathlib import Path

import datasets
import torch
from transformers import DataCollatorForLanguageModeling

from .files import _not_text, _opening, _read_records, _text

__all__ = ["MaskingCollator", "fixed_masks", "load_corpus", "tokenize_corpus"]

HELD_OUT_SEED = 42
_CUT = "_tokens_cut"  # line_by_line's count of each line's tokens past max_seq_length (a column dropped again)
# 5% of bookcorpus is 3.7M lines, each masked in Python and scored by both models: enough lines to score on, and no
# more, when the corpus names no held-out split and --validation_split_size is not given
DEFAULT_HELD_OUT_CAP = 10_000

logger = logging.getLogger(__name__)


def _read_lines(path: Path, text_column: str, encoding: str) -> list[str]:
    if path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".json"):
        records = _read_records(
            path, [text_column], encoding, fix="Pass the file's text column (--text_column), or rename it in the file."
        )
        return [_text(row[text_column], path, line, text_column).strip() for row, line in records]
    if not path.is_file():
        raise ValueError(f"Corpus file {str(path)!r} does not exist.")
    if text_column != "text":  # a plain-text file has no columns: the option named one that was never read
        raise ValueError(
            f"--text_column {text_column!r} with {path.name!r}, a plain-text corpus (one document per line, no "
            "columns). Drop --text_column, or give a CSV, TSV or JSON lines file that has that column."
        )
    try:
        # split on line ends only ("\n", "\r\n", "\r" after universal newlines): str.splitlines also cut at form
        # feeds, U+2028 and, read as latin-1, at a cp1252 ellipsis (0x85), so one document became several
        text = path.read_text(encoding=_opening(encoding))
        return [line.strip() for line in text.split("\n")[: -1 if text.endswith("\n") else None]]
    except UnicodeDecodeError as error:
        raise _not_text(path, encoding, error) from None


def _hub_column(hub: datasets.DatasetDict, split: str, data_args) -> list:
    """The `--text_column` of a Hub dataset's `split`, or a one-line refusal naming the columns it has."""
    column = data_args.text_column
    if split not in hub:
        raise ValueError(
            f"The dataset {data_args.dataset_name!r} has no {split!r} split (it has {list(hub)}). Pass a dataset "
            "with a train split, or your own text with --train_file."
        )
    if column not in hub[split].column_names:
        raise ValueError(
            f"The dataset {data_args.dataset_name!r} has no column {column!r} (--text_column) in its {split} split; "
            f"its columns are {hub[split].column_names}. Pass --text_column with the one holding the text."
        )
    feature = hub[split].features[column]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise ValueError(
            f"The dataset {data_args.dataset_name!r}'s column {column!r} (--text_column) holds {feature}, not text. "
            "Pass --text_column with the column holding the text."
        )
    # stripped as a file's lines are: the held-out lines are compared with the training ones as written
    return [line.strip() if line else line for line in hub[split][column]]


def _load_hub(data_args) -> datasets.DatasetDict:
    """The Hub dataset (or local dataset folder) of `--dataset_name`, or one line saying it is not there."""
    try:
        return datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    except FileNotFoundError as error:  # datasets' DatasetNotFoundError is one too
        raise ValueError(
            f"--dataset_name {data_args.dataset_name!r} could not be loaded ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'not found'}). Check the name, or pass your text with "
            "--train_file."
        ) from None


def load_corpus(data_args) -> datasets.DatasetDict:
    """`train` and `validation` splits with one column, ``text``; empty lines dropped. The validation Dataset's
    `split` is ``"train"`` when its lines were held out of the training split (`--validation_split_size`, or a Hub
    dataset without a validation split), else ``"validation"``."""
    if data_args.dataset_name:
        hub = _load_hub(data_args)
        names = ["train"]
        if "validation" in hub and data_args.validation_split_size is None:
            names.append("validation")
        splits = {name: _hub_column(hub, name, data_args) for name in names}
    else:
        splits = {"train": _read_lines(Path(data_args.train_file), data_args.text_column, data_args.file_encoding)}
        if data_args.validation_file:
            path = Path(data_args.validation_file)
            splits["validation"] = _read_lines(path, data_args.text_column, data_args.file_encoding)
    splits = {name: [line for line in lines if line and line.strip()] for name, lines in splits.items()}
    if not splits["train"]:
        raise ValueError("The corpus holds no text: every line is empty. Pass a file with text in it.")
    if "validation" not in splits:
        size = data_args.validation_split_size
        if size is None:  # a Hub dataset without a validation split: 5% of its lines, at most DEFAULT_HELD_OUT_CAP
            size = max(1, min(len(splits["train"]) // 20, DEFAULT_HELD_OUT_CAP))
            logger.info("Holding out %d of the corpus's %d lines to score on (--validation_split_size).", size,
                        len(splits["train"]))  # fmt: skip
        if size >= len(splits["train"]):
            raise ValueError(
                f"--validation_split_size {size} leaves no training text: the corpus has {len(splits['train'])} lines."
            )
        lines = splits["train"]
        order = list(range(len(lines)))
        random.Random(HELD_OUT_SEED).shuffle(order)
        drawn = order[:size]
        held_out = [lines[index] for index in drawn]  # in the draw's order: --max_eval_samples keeps a random few
        # The training lines stay in corpus order: blocks pack consecutive lines, and a shuffled corpus made every
        # block a string of unrelated sentences (a book's, a document's context lost). A line the corpus repeats (a
        # retweet, a boilerplate sentence) is held out or trained on, never both: its copies left in train would be
        # scored as held-out text the student has seen.
        seen, taken = set(held_out), set(drawn)
        kept = order[size:] if getattr(data_args, "shuffle_lines", False) else range(len(lines))
        train = [lines[index] for index in kept if index not in taken and lines[index] not in seen]
        if len(train) < len(lines) - size:
            logger.info(
                "Dropped %d training line(s) that repeat a held-out line, so the held-out lines stay unseen.",
                len(lines) - size - len(train),
            )
        if not train:
            raise ValueError(
                f"--validation_split_size {size} leaves no training text: every other line of the corpus repeats a "
                "held-out one. Pass a smaller --validation_split_size or a corpus with more distinct lines."
            )
        splits = {"train": train, "validation": held_out}
        held_out_of = "train"
    else:
        held_out_of = "validation"
        if getattr(data_args, "shuffle_lines", False):
            splits["train"] = list(splits["train"])
            random.Random(HELD_OUT_SEED).shuffle(splits["train"])
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    # each Dataset's `split` names the corpus split its lines came from: the card's held-out split
    origins = {"train": "train", "validation": held_out_of}
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"text": lines[: limits[name] or None]}, split=origins[name])
            for name, lines in splits.items()
        }
    )


def tokenize_corpus(raw: datasets.DatasetDict, tokenizer, *, max_seq_length: int, line_by_line: bool):
    """Token blocks (``input_ids``, ``attention_mask``, and ``token_type_ids`` when the tokenizer makes them)."""
    if line_by_line:

        def encode(batch):
            # split_special_tokens: a literal "[MASK]" or "[SEP]" in the text is text, not the special id (an
            # unlabelled [MASK] for the model, or a false sentence boundary)
            # the lengths alone (verbose=False: transformers' "longer than the maximum" warning is for inputs
            # that are not cut, and these are)
            whole = tokenizer(
                batch["text"], split_special_tokens=True, verbose=False, return_attention_mask=False,
                return_token_type_ids=False,
            )  # fmt: skip
            cut = tokenizer(batch["text"], truncation=True, max_length=max_seq_length, split_special_tokens=True)
            return {**cut, _CUT: [len(a) - len(b) for a, b in zip(whole["input_ids"], cut["input_ids"])]}

        encoded = raw.map(encode, batched=True, remove_columns=["text"])
        for name, split in encoded.items():
            dropped = [count for count in split[_CUT] if count]
            if dropped:
                logger.warning(
                    "%d of the %d %s lines are longer than --max_seq_length %d tokens and were cut (%d tokens "
                    "dropped, %.1f%% of the split's): drop --line_by_line to pack the text into blocks instead, or "
                    "raise --max_seq_length.",
                    len(dropped), len(split), name, max_seq_length, sum(dropped),
                    100 * sum(dropped) / (sum(dropped) + sum(map(len, split["input_ids"]))),
                )  # fmt: skip
        return encoded.remove_columns(_CUT)

    body = max_seq_length - 2  # room for [CLS] and [SEP]
    first, last = tokenizer.cls_token_id, tokenizer.sep_token_id
    wrap = first is not None and last is not None  # BERT-style [CLS] ... [SEP]; other tokenizers: the block alone
    # between two lines, as between BERT's two sentences (RoBERTa's packing marks documents alike): without it one
    # line's last word runs into the next one's first, and the student learns to predict across unrelated text
    boundary = last if last is not None else tokenizer.eos_token_id

    def pack(batch):
        ids = []
        for text in batch["text"]:
            tokens = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            if ids and tokens and boundary is not None:
                ids.append(boundary)
            ids.extend(tokens)
        blocks = [ids[start : start + body] for start in range(0, len(ids) - body + 1, body)] or [ids]
        # a boundary at a block's edge would sit beside its own [CLS] or [SEP]: dropped there
        blocks = [block[block[:1] == [boundary] :] for block in blocks]
        blocks = [block[: len(block) - (block[-1:] == [boundary])] for block in blocks]
        encoded = [[first, *block, last] if wrap else block for block in blocks if block]
        return {"input_ids": encoded, "attention_mask": [[1] * len(block) for block in encoded]}

    return raw.map(pack, batched=True, batch_size=1000, remove_columns=["text"])


class MaskingCollator(DataCollatorForLanguageModeling):
    """`DataCollatorForLanguageModeling` whose `seed` holds in any process: its generator is seeded with `seed` (plus
    the DataLoader worker's id in a worker, as transformers does).

    transformers 5.25 refuses a seeded collator in any process not named "MainProcess" outside a DataLoader worker,
    so a run started by `notebook_launcher` or `torch.multiprocessing.spawn` (processes named "SpawnProcess-N")
    failed at its first batch, after its models had loaded."""

    def create_rng(self, return_tensors=None):
        worker = torch.utils.data.get_worker_info()
        self.generator = self.get_generator(self.seed + (worker.id if worker is not None else 0), return_tensors)
        self._generator_pid = os.getpid()


def fixed_masks(dataset: datasets.Dataset, collator, *, seed: int) -> datasets.Dataset:
    """`dataset` masked once by `collator` (a `DataCollatorForLanguageModeling`) under `seed`: teacher and student are
    then scored on exactly the same masked positions, whatever the training's seed.

    Refuses masks with no masked position at all (a held-out set of a few tokens, or none): both models would then
    score on nothing, and read as perfect (loss 0, perplexity 1)."""
    # masked as in training: without a row's own special_tokens_mask (Trainer drops it there), and without padding
    # to a multiple (the draws run over the padded shape: a bf16 run's multiple of 8 gave other masks for one seed)
    rows = [{k: v for k, v in dataset[i].items() if k != "special_tokens_mask"} for i in range(len(dataset))]
    # and under `seed`, not the collator's own (a training collator's per-rank seed would give each rank other masks)
    collator = dataclasses.replace(collator, pad_to_multiple_of=None, seed=None)
    # the CPU generator alone, put back after: torch.manual_seed also reseeded every CUDA generator of the caller
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        columns = {"input_ids": [], "attention_mask": [], "labels": []}
        for start in range(0, len(rows), 256):
            batch = collator([dict(row) for row in rows[start : start + 256]])
            for i in range(batch["input_ids"].shape[0]):
                real = batch["attention_mask"][i].bool()  # the row's tokens, wherever the tokenizer pads
                columns["input_ids"].append(batch["input_ids"][i][real].tolist())
                columns["attention_mask"].append([1] * int(real.sum()))
                columns["labels"].append(batch["labels"][i][real].tolist())
    if not any(label != -100 for labels in columns["labels"] for label in labels):
        maskable = sum(_maskable_tokens(row, collator.tokenizer) for row in rows)
        raise ValueError(
            f"The held-out set has no masked position ({len(rows)} block(s), {maskable} maskable token(s), "
            f"--mlm_probability {collator.mlm_probability}, mask seed {seed}): teacher and student would be scored on "
            "nothing. Hold out more text: a larger --validation_split_size or --max_eval_samples, or a longer "
            "--validation_file."
        )
    return datasets.Dataset.from_dict(columns)


def _maskable_tokens(row: dict, tokenizer) -> int:
    """How many of `row`'s tokens the collator may mask: all but its special tokens."""
    special = tokenizer.get_special_tokens_mask(row["input_ids"], already_has_special_tokens=True)
    return len(special) - sum(special)
