"""The teacher cache's fingerprint: a hash of everything the stored teacher outputs depend on.

A cache folder is named by [`cache_fingerprint`] of the teacher's weights and config ([`fingerprint_model`]), the
training rows' content ([`fingerprint_rows`]), the tokenisation length, the teacher's precision, the collator and,
for token heads, k and the temperature. A changed input gets a new folder; a stale cache is never read.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch import nn

__all__ = ["CACHE_FORMAT_VERSION", "cache_fingerprint", "fingerprint_model", "fingerprint_rows", "is_list_array"]

CACHE_FORMAT_VERSION = 1
_HASH_ROWS = 10_000  # rows hashed per Arrow slice: bounded memory on large datasets


def fingerprint_model(model: nn.Module) -> str:
    """sha256 of a model's class, config and every state_dict tensor (name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    digest.update(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        # Where it was loaded from and which library wrote it do not change its outputs.
        skipped = {"_name_or_path", "transformers_version", "_commit_hash"}
        values = {key: value for key, value in config.to_dict().items() if key not in skipped}
        digest.update(json.dumps(values, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fingerprint_rows(dataset: datasets.Dataset) -> str:
    """sha256 of every value of every column, in row order, independent of how the Arrow data is chunked or sliced.

    This is the content the collator (and so the teacher) sees: token ids, masks, token types, labels. Hashing the
    content rather than `datasets`' own `_fingerprint` means a re-tokenised dataset with identical rows keeps its
    cache, and one with a single changed token does not.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(sorted(dataset.column_names)).encode())
    arrow = dataset.with_format("arrow")
    for start in range(0, len(dataset), _HASH_ROWS):
        table = arrow[start : start + _HASH_ROWS]
        for name in sorted(dataset.column_names):
            _hash_array(digest, table.column(name).combine_chunks())
    digest.update(str(len(dataset)).encode())
    return digest.hexdigest()


def cache_fingerprint(
    *,
    teacher_hash: str,
    rows_hash: str,
    max_length: int | None,
    precision: str,
    collator_name: str,
    token_level: bool,
    top_k: int | None = None,
    temperature: float | None = None,
) -> str:
    """The cache folder's name: a sha256 of everything the stored outputs depend on.

    Class and regression caches store raw logits, which depend neither on the temperature nor on k; token caches
    store top-k log-probabilities at the temperature, so both are part of their fingerprint.
    """
    parts = {
        "format": CACHE_FORMAT_VERSION,
        "teacher": teacher_hash,
        "rows": rows_hash,
        "max_length": max_length,
        "precision": precision,
        "collator": collator_name,
        "token_level": token_level,
    }
    if token_level:
        parts.update(top_k=top_k, temperature=float(temperature))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _hash_array(digest: Any, array: pa.Array) -> None:
    if array.null_count:
        digest.update(np.asarray(array.is_null()).tobytes())
    if is_list_array(array):
        # Lengths then values: [[1, 2], [3]] and [[1], [2, 3]] differ. flatten() respects slicing offsets.
        lengths = pa.compute.list_value_length(array).fill_null(0)
        digest.update(np.asarray(lengths, dtype=np.int64).tobytes())
        _hash_array(digest, array.flatten())
    elif pa.types.is_integer(array.type) or pa.types.is_boolean(array.type):
        # int32 and int64 ids reach the teacher as the same tokens.
        digest.update(np.asarray(array.fill_null(0), dtype=np.int64).tobytes())
    elif pa.types.is_floating(array.type):
        digest.update(np.asarray(array.fill_null(0), dtype=np.float64).tobytes())
    else:  # strings and anything else a custom collator might read
        digest.update(json.dumps(array.to_pylist(), default=str).encode())


def is_list_array(array: pa.Array) -> bool:
    kind = array.type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
