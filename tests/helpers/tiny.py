"""Tiny random BERTs, a tiny tokenizer and toy datasets, built in-process (no network, no files but tmp)."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertTokenizerFast,
)

VOCAB_SIZE = 96


def bert_config(*, layers: int = 2, num_labels: int = 3, dropout: float = 0.0, **overrides) -> BertConfig:
    values = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    values.update(overrides)
    return BertConfig(**values)


def classifier(*, layers: int = 2, num_labels: int = 3, seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(bert_config(layers=layers, num_labels=num_labels, **overrides))


def token_classifier(
    *, layers: int = 2, num_labels: int = 5, seed: int = 0, **overrides
) -> BertForTokenClassification:
    torch.manual_seed(seed)
    return BertForTokenClassification(bert_config(layers=layers, num_labels=num_labels, **overrides))


def masked_lm(*, layers: int = 2, seed: int = 0, **overrides) -> BertForMaskedLM:
    torch.manual_seed(seed)
    return BertForMaskedLM(bert_config(layers=layers, **overrides))


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def class_rows(n: int, *, num_labels: int = 3, seed: int = 0, regression: bool = False) -> ListDataset:
    """Variable-length sequences (4..16 tokens) with class (or float) labels."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(4, 17, (1,), generator=generator))
        ids = torch.randint(5, VOCAB_SIZE, (length,), generator=generator).tolist()
        if regression:
            label = float(torch.rand((), generator=generator) * 5)
        else:
            label = int(torch.randint(0, num_labels, (1,), generator=generator))
        rows.append({"input_ids": ids, "labels": label})
    return ListDataset(rows)


def token_rows(n: int, *, num_labels: int = 5, seed: int = 0, ignored_fraction: float = 0.3) -> ListDataset:
    """Variable-length sequences with per-token labels, some positions -100 (sub-words, special tokens)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(3, 17, (1,), generator=generator))
        ids = torch.randint(5, VOCAB_SIZE, (length,), generator=generator).tolist()
        labels = torch.randint(0, num_labels, (length,), generator=generator)
        labels[torch.rand(length, generator=generator) < ignored_fraction] = -100
        rows.append({"input_ids": ids, "labels": labels.tolist()})
    return ListDataset(rows)


def mlm_rows(n: int, *, seed: int = 3, mask_seed: int | None = None, probability: float = 0.25) -> ListDataset:
    """Masked-LM rows of `class_rows(n, seed=seed)`: each label is the row's own token at ~`probability` of the
    positions (uneven per row, the first always), -100 elsewhere; the positions drawn with `mask_seed` (default
    `seed`)."""
    generator = torch.Generator().manual_seed(seed if mask_seed is None else mask_seed)
    rows = []
    for row in class_rows(n, seed=seed).rows:
        ids = torch.tensor(row["input_ids"])
        chosen = torch.rand(len(ids), generator=generator) < probability
        chosen[0] = True  # every row counts at least one position
        rows.append({"input_ids": ids.tolist(), "labels": torch.where(chosen, ids, -100).tolist()})
    return ListDataset(rows)


def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Pads to the longest row of the batch (so micro-batches are padded unevenly); token labels pad with -100."""
    longest = max(len(row["input_ids"]) for row in rows)
    input_ids = torch.zeros(len(rows), longest, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
        attention_mask[i, : len(row["input_ids"])] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "labels" in rows[0]:
        first = rows[0]["labels"]
        if isinstance(first, list):
            labels = torch.full((len(rows), longest), -100, dtype=torch.long)
            for i, row in enumerate(rows):
                labels[i, : len(row["labels"])] = torch.tensor(row["labels"])
        elif isinstance(first, float):
            labels = torch.tensor([row["labels"] for row in rows], dtype=torch.float32)
        else:
            labels = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        batch["labels"] = labels
    return batch


def tokenizer(directory: Path, *, extra_words: tuple[str, ...] = ()) -> BertTokenizerFast:
    """A WordPiece tokenizer whose vocabulary fits VOCAB_SIZE: special tokens, characters and a few words."""
    directory.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    characters = list(string.ascii_lowercase) + list(string.digits) + list(".,!?'%:-")
    pieces = ["##" + c for c in string.ascii_lowercase]
    words = ["the", "quick", *extra_words]
    vocab = list(dict.fromkeys(specials + characters + pieces + words))[:VOCAB_SIZE]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
