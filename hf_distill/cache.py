"""The teacher-output cache: the teacher runs once over the training set, its outputs travel with each example.

The cache is a set of extra columns of the training dataset, so shuffling, length grouping, DDP sharding,
gradient accumulation and resume need nothing special: whatever order the sampler picks, each example brings its own
teacher outputs. [`TeacherCacheCollator`] moves them from the examples into the batch.

What is stored per example (``CACHE_FORMAT_VERSION`` 1):

- class and regression heads: ``teacher_logits``, the C raw logits (float32; C = 1 for regression);
- token heads: for each counted position (labels != -100 when the batch has token labels, else attention mask 1),
  the k largest ``log_softmax(teacher_logits / T)`` values (``teacher_topk_log_probs``, float32) and their class
  indices (``teacher_topk_indices``, int32), flattened: exactly 2k numbers (8k bytes) per counted token.

A cache lives in ``<teacher_cache_dir>/<fingerprint>/``; the fingerprint hashes everything the stored outputs depend
on (see [`cache_fingerprint`]), so a stale cache is never read: a changed teacher, dataset, tokenisation or setting
simply gets a new folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_COLUMNS",
    "CACHE_FORMAT_VERSION",
    "LOGITS_COLUMN",
    "TOPK_INDICES_COLUMN",
    "TOPK_LOG_PROBS_COLUMN",
    "TeacherCache",
    "TeacherCacheCollator",
    "build_teacher_cache",
    "cache_fingerprint",
    "check_deterministic_collator",
    "fingerprint_model",
    "fingerprint_rows",
    "load_teacher_cache",
    "quiet_datasets",
    "token_mask",
]

CACHE_FORMAT_VERSION = 1
LOGITS_COLUMN = "teacher_logits"
TOPK_LOG_PROBS_COLUMN = "teacher_topk_log_probs"
TOPK_INDICES_COLUMN = "teacher_topk_indices"
CACHE_COLUMNS = (LOGITS_COLUMN, TOPK_LOG_PROBS_COLUMN, TOPK_INDICES_COLUMN)
_METADATA_FILE = "hf_distill_teacher_cache.json"
_HASH_ROWS = 10_000  # rows hashed per Arrow slice: bounded memory on large datasets


@dataclass
class TeacherCache:
    """A built or loaded cache.

    Attributes:
        columns (`datasets.Dataset`): the cache columns, row i for training example i.
        path (`Path`): the folder it is stored in.
        top_k (`int` or `None`): k for token-level caches, `None` for logits.
        built (`bool`): True when this process ran the teacher to build it, False when it was loaded.
        seconds (`float`): time spent building or loading it.
    """

    columns: datasets.Dataset
    path: Path
    top_k: int | None
    built: bool
    seconds: float

    @property
    def column_names(self) -> list[str]:
        return list(self.columns.column_names)

    def nbytes(self) -> int:
        """Bytes of stored teacher outputs (Arrow buffers, without the per-row offsets)."""
        return sum(_leaf_values(self.columns.data.column(name)).nbytes for name in self.column_names)


# ---- what makes a collator unfit for a cache -----------------------------------------------------------------------


def check_deterministic_collator(collator: Any) -> None:
    """Raises `ValueError` for collators that change the inputs at random, where a cached teacher would be wrong.

    Masked language modelling picks different tokens to mask every time an example is collated, so the teacher's
    outputs on one epoch's masked inputs say nothing about the next epoch's.
    """
    name = type(collator).__name__
    random_masking = getattr(collator, "mlm_probability", None) is not None and getattr(collator, "mlm", True)
    random_permutation = getattr(collator, "plm_probability", None) is not None
    if random_masking or random_permutation or "WholeWordMask" in name:
        raise ValueError(
            f"cache_teacher_logits=True cannot be used with {name}: it masks different tokens at random each time "
            "an example is collated, so teacher outputs cached once would not match the inputs the student sees. "
            "Set cache_teacher_logits=False to run the teacher on every batch."
        )


# ---- fingerprints --------------------------------------------------------------------------------------------------


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
    if _is_list(array):
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


# ---- building and loading ------------------------------------------------------------------------------------------


def token_mask(
    labels: torch.Tensor | None, attention_mask: torch.Tensor | None, shape: Sequence[int], device: torch.device
) -> torch.Tensor:
    """`(B, L)` bool: the positions whose token-level distillation counts.

    Labels != -100 when the batch has token labels, else attention mask 1, else every position. The cache stores
    outputs at exactly these positions, and the trainer averages over exactly these, so both use this function.
    """
    if isinstance(labels, torch.Tensor) and labels.dim() >= 2:
        return labels.ne(-100)
    if isinstance(attention_mask, torch.Tensor):
        return attention_mask.bool()
    return torch.ones(tuple(shape[:2]), dtype=torch.bool, device=device)


def build_teacher_cache(
    *,
    dataset: datasets.Dataset,
    collator: Callable[[list[dict]], dict[str, Any]],
    run_teacher: Callable[[dict[str, Any]], torch.Tensor],
    device: torch.device,
    batch_size: int,
    top_k: int,
    temperature: float,
    path: Path,
    length_column: str = "input_ids",
    num_workers: int = 0,
    show_progress: bool = True,
) -> TeacherCache:
    """Runs the teacher once over `dataset` and saves its outputs in `path` (written elsewhere, then renamed).

    Args:
        dataset (`datasets.Dataset`): the rows exactly as the training collator would receive them.
        collator: the training data collator (deterministic).
        run_teacher: maps a collated batch (on `device`) to the teacher's logits `(B, C)` or `(B, L, V)`; called
            under `torch.inference_mode()`.
        batch_size (`int`): examples per teacher forward.
        top_k (`int`): classes kept per counted position for token logits (capped at V).
        temperature (`float`): T of the stored token log-probabilities.
        path (`Path`): the cache folder (its name is the fingerprint).
        length_column (`str`): the column whose list lengths order the examples (less padding per batch).
    """
    start = time.perf_counter()
    lengths = _row_lengths(dataset, length_column)
    # Longest first: the first batch shows at once whether the largest one fits in memory.
    order = np.argsort(-lengths, kind="stable")
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    # Its own generator: a DataLoader draws a seed when iterated, and drawing it from the global RNG would change the
    # shuffling of the training that follows (a cached run would then not see the batches an online run sees).
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collator,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    logits_rows: list[np.ndarray | None] = [None] * len(dataset)
    log_prob_rows: list[np.ndarray | None] = [None] * len(dataset)
    index_rows: list[np.ndarray | None] = [None] * len(dataset)
    token_level = None
    k = None
    progress = _progress(loader, len(batches), show_progress)
    with torch.inference_mode():
        for batch, rows in zip(progress, batches):  # the bar first, so that it reaches 100%
            batch = {key: _to(value, device) for key, value in batch.items()}
            logits = run_teacher(batch)
            token_level = logits.dim() == 3
            if not token_level:
                values = logits.float().cpu().numpy()  # (B, C)
                for row, value in zip(rows, values):
                    logits_rows[row] = value
                continue
            k = min(top_k, logits.shape[-1])
            log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, L, V)
            top_values, top_indices = log_probs.topk(k, dim=-1)  # (B, L, k)
            mask = token_mask(batch.get("labels"), batch.get("attention_mask"), logits.shape, logits.device)
            top_values, top_indices, mask = top_values.cpu(), top_indices.to(torch.int32).cpu(), mask.cpu()
            for position, row in enumerate(rows):
                counted = mask[position]  # (L,)
                log_prob_rows[row] = top_values[position][counted].reshape(-1).numpy()  # (n * k,)
                index_rows[row] = top_indices[position][counted].reshape(-1).numpy()
    if token_level is None:
        raise ValueError("The training dataset is empty: there is nothing to cache. Pass a non-empty train_dataset.")
    if token_level:
        table = pa.table(
            {
                TOPK_LOG_PROBS_COLUMN: _large_list(log_prob_rows, np.float32),
                TOPK_INDICES_COLUMN: _large_list(index_rows, np.int32),
            }
        )
    else:
        flat = np.stack(logits_rows).astype(np.float32)  # (N, C)
        table = pa.table({LOGITS_COLUMN: pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])})
    columns = datasets.Dataset(datasets.table.InMemoryTable(table))
    with quiet_datasets():
        _save_atomically(columns, path, {"format": CACHE_FORMAT_VERSION, "rows": len(dataset), "top_k": k})
    return TeacherCache(
        columns=load_teacher_cache(path, num_rows=len(dataset)).columns,
        path=path,
        top_k=k,
        built=True,
        seconds=time.perf_counter() - start,
    )


def load_teacher_cache(path: Path, *, num_rows: int) -> TeacherCache | None:
    """The complete cache in `path`, memory-mapped; `None` when there is none (or an incomplete or foreign one)."""
    start = time.perf_counter()
    metadata_file = Path(path) / _METADATA_FILE
    if not metadata_file.is_file():
        return None
    metadata = json.loads(metadata_file.read_text())
    if metadata.get("format") != CACHE_FORMAT_VERSION or metadata.get("rows") != num_rows:
        logger.warning("Ignoring the teacher cache in %s: it was written for another format or dataset.", path)
        return None
    columns = datasets.load_from_disk(str(path))
    return TeacherCache(
        columns=columns, path=Path(path), top_k=metadata["top_k"], built=False, seconds=time.perf_counter() - start
    )


def _save_atomically(columns: datasets.Dataset, path: Path, metadata: dict) -> None:
    # Written beside the final folder, then renamed: a crash mid-write never leaves a folder that looks complete.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    columns.save_to_disk(str(partial))
    (partial / _METADATA_FILE).write_text(json.dumps(metadata))
    try:
        partial.rename(path)
    except OSError:  # another process finished the same cache first: theirs is identical
        shutil.rmtree(partial, ignore_errors=True)
        if not (path / _METADATA_FILE).is_file():
            raise


def _row_lengths(dataset: datasets.Dataset, column: str) -> np.ndarray:
    if column not in dataset.column_names:
        return np.zeros(len(dataset), dtype=np.int64)  # no token column: keep the dataset's order
    array = dataset.with_format("arrow")[:][column].combine_chunks()
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        return np.zeros(len(dataset), dtype=np.int64)
    return np.asarray(pa.compute.list_value_length(array).fill_null(0), dtype=np.int64)


def _large_list(rows: list[np.ndarray | None], dtype: type) -> pa.Array:
    # int64 offsets: a large token-level cache holds more than 2**31 numbers.
    sizes = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    values = np.concatenate(rows).astype(dtype) if rows else np.zeros(0, dtype=dtype)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))


def _is_list(array: pa.Array) -> bool:
    kind = array.type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _leaf_values(array: pa.ChunkedArray) -> pa.Array:
    array = array.combine_chunks()
    while _is_list(array):
        array = array.flatten()
    return array


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silences `datasets`' own progress bars (saving, flattening) for a moment: the cache has its own."""
    was_enabled = not datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.utils.enable_progress_bars()


def _progress(iterable: Any, total: int, show: bool) -> Iterator:
    if not show:
        return iter(iterable)
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, total=total, desc="Teacher cache", unit="batch"))


# ---- reading it back -----------------------------------------------------------------------------------------------


class TeacherCacheCollator:
    """Wraps a data collator: collates the inputs as before, then adds the examples' cached teacher outputs.

    Adds `teacher_logits` `(B, C)` float32, or `teacher_topk_log_probs` `(B, L, k)` float32 and
    `teacher_topk_indices` `(B, L, k)` int64 laid out at the batch's counted positions (zeros elsewhere, never
    read). Examples without cache columns (evaluation) pass through untouched.

    Args:
        collator: the user's data collator.
        top_k (`int`, *optional*): k of a token-level cache.
        drop_columns (`Sequence[str]`): other columns added for the trainer's own use (a length column), removed
            before the user's collator sees the examples.
    """

    def __init__(self, collator: Callable, *, top_k: int | None = None, drop_columns: Sequence[str] = ()):
        self.collator = collator
        self.top_k = top_k
        self.drop_columns = tuple(drop_columns)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features or not any(name in features[0] for name in CACHE_COLUMNS):
            return self.collator(features)
        hidden = set(CACHE_COLUMNS) | set(self.drop_columns)
        batch = self.collator([{key: value for key, value in row.items() if key not in hidden} for row in features])
        if LOGITS_COLUMN in features[0]:
            batch[LOGITS_COLUMN] = torch.as_tensor(np.stack([np.asarray(row[LOGITS_COLUMN]) for row in features]))
            batch[LOGITS_COLUMN] = batch[LOGITS_COLUMN].float()
            return batch
        return self._add_topk(batch, features)

    def _add_topk(self, batch: dict[str, Any], features: list[dict[str, Any]]) -> dict[str, Any]:
        k = self.top_k
        if k is None:
            raise ValueError("TeacherCacheCollator needs top_k to read a token-level teacher cache.")
        reference = batch.get("input_ids", batch.get("attention_mask", batch.get("labels")))
        mask = token_mask(batch.get("labels"), batch.get("attention_mask"), reference.shape, reference.device)
        log_probs = [np.asarray(row[TOPK_LOG_PROBS_COLUMN], dtype=np.float32) for row in features]
        indices = [np.asarray(row[TOPK_INDICES_COLUMN], dtype=np.int64) for row in features]
        # Checked here on the CPU, where it costs nothing, not in compute_loss where it would stall the GPU.
        counted = mask.sum(dim=1).tolist()
        stored = [len(row) // k for row in indices]
        if counted != stored:
            raise ValueError(
                f"The teacher cache holds {stored} counted positions for this batch's examples but the collated "
                f"batch has {counted}: the collator changes which positions count from one call to the next, or the "
                "data changed under the cache. Set cache_teacher_logits=False."
            )
        dense_log_probs = torch.zeros(*mask.shape, k, dtype=torch.float32)  # (B, L, k)
        dense_indices = torch.zeros(*mask.shape, k, dtype=torch.long)
        # Boolean indexing walks the batch row by row, position by position: the order the cache stored them in.
        dense_log_probs[mask] = torch.from_numpy(np.concatenate(log_probs)).view(-1, k)
        dense_indices[mask] = torch.from_numpy(np.concatenate(indices)).view(-1, k)
        batch[TOPK_LOG_PROBS_COLUMN] = dense_log_probs
        batch[TOPK_INDICES_COLUMN] = dense_indices
        return batch
