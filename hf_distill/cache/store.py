"""The teacher-output cache: the teacher runs once over the training set, its outputs travel with each example.

The cache is a set of extra columns of the training dataset, so shuffling, length grouping, DDP sharding,
gradient accumulation and resume need nothing special: whatever order the sampler picks, each example brings its own
teacher outputs. [`TeacherCacheCollator`] (`collator.py`) moves them from the examples into the batch.

What is stored per example (``CACHE_FORMAT_VERSION`` 1):

- class and regression heads: ``teacher_logits``, the C raw logits (float32; C = 1 for regression);
- token heads: for each counted position (labels != -100 when the batch has token labels, else attention mask 1),
  the k largest ``log_softmax(teacher_logits / T)`` values (``teacher_topk_log_probs``, float32) and their class
  indices (``teacher_topk_indices``, int32), flattened: exactly 2k numbers (8k bytes) per counted token.

A cache lives in ``<teacher_cache_dir>/<fingerprint>/``; the fingerprint hashes everything the stored outputs depend
on (see `fingerprint.py`), so a stale cache is never read: a changed teacher, dataset, tokenisation or setting
simply gets a new folder.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

from hf_distill.losses.masks import token_mask

from .fingerprint import CACHE_FORMAT_VERSION, is_list_array

logger = logging.getLogger(__name__)

__all__ = [
    "CACHE_COLUMNS",
    "CACHE_FORMAT_VERSION",
    "LOGITS_COLUMN",
    "TOPK_INDICES_COLUMN",
    "TOPK_LOG_PROBS_COLUMN",
    "TeacherCache",
    "build_teacher_cache",
    "check_deterministic_collator",
    "load_teacher_cache",
    "quiet_datasets",
]

LOGITS_COLUMN = "teacher_logits"
TOPK_LOG_PROBS_COLUMN = "teacher_topk_log_probs"
TOPK_INDICES_COLUMN = "teacher_topk_indices"
CACHE_COLUMNS = (LOGITS_COLUMN, TOPK_LOG_PROBS_COLUMN, TOPK_INDICES_COLUMN)
_METADATA_FILE = "hf_distill_teacher_cache.json"


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


def _probe_rows(dataset: datasets.Dataset, length_column: str = "input_ids") -> list[int]:
    """Row indices for the collator probes, chosen from the lengths of every row (a dataset sorted by length starts
    with rows of one length), an odd number where the dataset allows (a collator applying one fixed permutation of
    an even number of rows, half a rotation, commutes with both order probes):

    - a length that two rows share, x, and one or three others, as `[x, y, x']` or `[x, y, z, w, x']`: the equal
      lengths apart, at both ends, so that no probe's order is already sorted or grouped, and a collator sorting by
      length (either way, stable or not) or grouping equal lengths moves a row;
    - every row a length of its own: 5 or 3 of them (a sort moves one; grouping moves nothing in such a dataset);
    - one length: the first rows (sorting and grouping move nothing there).
    """
    lengths = _row_lengths(dataset, length_column).tolist()
    first: dict[int, int] = {}  # length -> its first row, in the order the lengths appear
    second: dict[int, int] = {}  # length -> its second row
    for index, length in enumerate(lengths):
        if length not in first:
            first[length] = index
        elif length not in second:
            second[length] = index
        if len(first) >= 4 and second:
            break
    if len(first) >= 2 and second:
        repeated = min(second, key=first.__getitem__)  # the repeated length whose first row comes first
        others = [index for length, index in first.items() if length != repeated]
        return [first[repeated], *others[: 3 if len(others) >= 3 else 1], second[repeated]]
    if len(first) >= 3:
        picked = list(first.values())
        return picked[: 5 if len(picked) >= 5 else 3]
    count = len(lengths)
    return list(range(count if count <= 2 else min(5, count if count % 2 else count - 1)))


def check_keeps_row_order(
    collator: Any, dataset: datasets.Dataset, *, token_level: bool = False, next_token: bool = False
) -> None:
    """Raises `ValueError`, before the teacher pass, when `collator` cannot be used with a cache of per-row outputs.

    - It returns a batch's rows in another order than it was given them (a collator sorting by length for packed
      sequences), found by collating a few rows of different lengths forwards, backwards and rotated: the cache stacks
      each row's stored outputs in the order the rows come, so they would go to other rows' inputs.
    - It returns another number of rows than it was given (a packing collator such as DataCollatorWithFlattening,
      one that drops or splits rows): stored outputs would have no row, or another row's.
    - `token_level`: which positions of a row count (labels other than -100, else the attention mask) changes with
      the row it is padded beside (labels padded with another value than -100, no attention mask): the positions
      stored for a row would not be the positions its training batches count.
    """
    indices = _probe_rows(dataset)
    count = len(indices)
    if count < 2:
        return
    rows = [dataset[index] for index in indices]
    # each call gets its own copies: a collator may edit its rows (labels = [row.pop("labels") ...])
    forwards = collator(copy.deepcopy(rows))
    ids = forwards.get("input_ids") if hasattr(forwards, "get") else None
    if isinstance(ids, torch.Tensor) and ids.dim() > 0 and ids.shape[0] != count:
        raise ValueError(
            f"cache_teacher_logits=True: the data collator ({type(collator).__name__}) turned {count} rows into a "
            f"batch of {ids.shape[0]} (input_ids {tuple(ids.shape)}): it packs, drops or splits rows, so teacher "
            "outputs stored per row would have no row, or another row's. Use a collator that keeps one batch row per "
            "example (e.g. DataCollatorWithPadding), or set cache_teacher_logits=False."
        )
    probes = (
        ("reversed", rows[::-1], lambda value: value.flip(0)),
        ("rotated by one", rows[1:] + rows[:1], lambda value: value.roll(-1, dims=0)),
    )
    for how, probe, expected in probes:
        collated = collator(copy.deepcopy(probe))
        for key, value in forwards.items():
            other = collated.get(key) if hasattr(collated, "get") else None
            if not isinstance(value, torch.Tensor) or not isinstance(other, torch.Tensor) or value.dim() == 0:
                continue
            if value.shape[0] != count or other.shape != value.shape:
                continue
            # NaN labels (a transfer set's rows without a label) equal themselves here
            if not torch.allclose(other.float(), expected(value).float(), rtol=0, atol=0, equal_nan=True):
                raise ValueError(
                    f"cache_teacher_logits=True: the data collator does not keep the order of the rows it is given "
                    f"(or changes them at random): collating {count} rows and the same rows {how} gave {key!r} in "
                    "another order, so teacher outputs stored per row would go to other rows. Keep the rows' order "
                    "in the collator, or set cache_teacher_logits=False."
                )
    if token_level:
        _check_counts_ignore_padding(collator, rows, forwards, next_token)


def _counted_per_row(batch: Any, next_token: bool) -> list[int] | None:
    reference = batch.get("input_ids", batch.get("attention_mask", batch.get("labels")))
    if not isinstance(reference, torch.Tensor) or reference.dim() != 2:
        return None
    mask = token_mask(
        batch.get("labels"), batch.get("attention_mask"), reference.shape, reference.device, next_token=next_token
    )
    return mask.sum(dim=1).tolist()


def _check_counts_ignore_padding(collator: Any, rows: list, together: Any, next_token: bool = False) -> None:
    """Refuses a token-level cache whose rows' counted positions depend on the padding: each row alone against the
    same rows collated together (`together`, padded to the longest)."""
    together = _counted_per_row(together, next_token)
    alone = [_counted_per_row(collator(copy.deepcopy([row])), next_token) for row in rows]
    if together is None or None in alone:
        return
    alone = [counts[0] for counts in alone]
    if together != alone:
        raise ValueError(
            f"cache_teacher_logits=True: which positions of a row count changes with its padding: {len(rows)} rows "
            f"collated alone count {alone} positions, collated together {together}. Padded positions count when the "
            "collator pads labels with another value than -100 and the batch has no attention_mask to tell them: pad "
            "labels with -100 (DataCollatorForTokenClassification's label_pad_token_id) or give an attention_mask, "
            "or set cache_teacher_logits=False."
        )


# ---- building and loading ------------------------------------------------------------------------------------------


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
    next_token: bool = False,
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
        next_token (`bool`): a causal LM: token outputs are stored at the positions predicting a counted token.
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
            if logits.dim() == 0 or logits.shape[0] != len(rows):
                raise ValueError(
                    f"The teacher gave logits of shape {tuple(logits.shape)} for a batch of {len(rows)} rows: one row "
                    "of outputs per example is needed to store them per example. Use a collator that keeps one batch "
                    "row per example, or set cache_teacher_logits=False."
                )
            token_level = logits.dim() == 3
            if not token_level:
                values = logits.float().cpu().numpy()  # (B, C)
                for row, value in zip(rows, values):
                    logits_rows[row] = value
                continue
            k = min(top_k, logits.shape[-1])
            mask = token_mask(
                batch.get("labels"), batch.get("attention_mask"), logits.shape, logits.device, next_token=next_token
            )
            mask = mask.to(logits.device)  # (B, L); a teacher spread by a device_map returns its logits elsewhere
            # Only the stored positions: a float32 softmax over padding and -100 positions too is a (B, L, V) copy
            # of the logits, mostly thrown away. Each position's softmax is its own, so the values are the same.
            counted = logits[mask]  # (N, V): row by row, position by position, the order rows are stored in
            log_probs = torch.log_softmax(counted.float() / temperature, dim=-1)  # (N, V)
            top_values, top_indices = log_probs.topk(k, dim=-1)  # (N, k)
            per_row = mask.sum(dim=1).tolist()
            top_values, top_indices = top_values.cpu().split(per_row), top_indices.to(torch.int32).cpu().split(per_row)
            for row, values, indices in zip(rows, top_values, top_indices):
                log_prob_rows[row] = values.reshape(-1).numpy()  # (n * k,)
                index_rows[row] = indices.reshape(-1).numpy()
    if token_level is None:
        raise ValueError("The training dataset is empty: there is nothing to cache. Pass a non-empty train_dataset.")
    if token_level:
        # Each column's rows are let go once it is built: a large cache is never held three times over.
        log_probs_column = _large_list(log_prob_rows, np.float32)
        log_prob_rows = None
        indices_column = _large_list(index_rows, np.int32)
        index_rows = None
        table = pa.table({TOPK_LOG_PROBS_COLUMN: log_probs_column, TOPK_INDICES_COLUMN: indices_column})
    else:
        flat = np.stack(logits_rows).astype(np.float32)  # (N, C)
        table = pa.table({LOGITS_COLUMN: pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])})
    columns = datasets.Dataset(datasets.table.InMemoryTable(table))
    with quiet_datasets():
        _save_atomically(columns, path, {"format": CACHE_FORMAT_VERSION, "rows": len(dataset), "top_k": k})
    stored = load_teacher_cache(path, num_rows=len(dataset))
    if stored is None:
        raise RuntimeError(
            f"The teacher cache just written to {path} cannot be read back (see the warning above): check the disk "
            "(space, a filesystem every process shares) or pass another teacher_cache_dir."
        )
    return TeacherCache(
        columns=stored.columns,
        path=path,
        top_k=k,
        built=True,
        seconds=time.perf_counter() - start,
    )


def load_teacher_cache(path: Path, *, num_rows: int) -> TeacherCache | None:
    """The complete cache in `path`, memory-mapped; `None` when there is none (or an incomplete or foreign one)."""
    start = time.perf_counter()
    if not (Path(path) / _METADATA_FILE).is_file():
        return None
    metadata = _read_metadata(path)
    if metadata is None:
        logger.warning("Ignoring the teacher cache in %s: its completion file is unreadable (cut short?).", path)
        return None
    if metadata.get("format") != CACHE_FORMAT_VERSION or metadata.get("rows") != num_rows:
        logger.warning("Ignoring the teacher cache in %s: it was written for another format or dataset.", path)
        return None
    columns = _read_columns(path, metadata)
    if columns is None:
        logger.warning(
            "Ignoring the teacher cache in %s: its data files are unreadable or short of rows (cut short?).", path
        )
        return None
    return TeacherCache(
        columns=columns, path=Path(path), top_k=metadata["top_k"], built=False, seconds=time.perf_counter() - start
    )


def _read_metadata(path: Path) -> dict | None:
    """The completion file's contents; None when it is missing or unreadable (empty or cut short by a power loss)."""
    try:
        metadata = json.loads((Path(path) / _METADATA_FILE).read_text())
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return metadata if isinstance(metadata, dict) else None


def _read_columns(path: Path, metadata: dict) -> datasets.Dataset | None:
    """The stored columns, memory-mapped; None when the data files are unreadable or hold another number of rows
    than the completion file says (an .arrow file cut at a record batch's end still reads, short of rows)."""
    try:
        columns = datasets.load_from_disk(str(path))
    except (OSError, ValueError, pa.lib.ArrowException):  # ArrowInvalid: an empty or truncated .arrow file
        return None
    return columns if len(columns) == metadata.get("rows") else None


def _complete(path: Path) -> bool:
    """Whether `path` holds a cache that can be read: its completion file and its data, every row of it."""
    metadata = _read_metadata(path)
    return metadata is not None and _read_columns(path, metadata) is not None


def _synced(folder: Path) -> None:
    """Flushes every file of `folder`, and the folder, to disk: renamed into place after a power loss, a folder whose
    files were still in the page cache would look complete and hold empty files."""
    for file in [*folder.rglob("*"), folder]:
        if file.is_file() or file == folder:
            with contextlib.suppress(OSError):  # a filesystem without fsync on folders
                descriptor = os.open(file, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)


def _save_atomically(columns: datasets.Dataset, path: Path, metadata: dict) -> None:
    # Written beside the final folder, then renamed: a crash mid-write never leaves a folder that looks complete.
    path.parent.mkdir(parents=True, exist_ok=True)
    # host, boot, pid namespace, process and a random part: builders on several nodes of one filesystem often share
    # a pid (see _builder)
    partial = path.parent / f".{path.name}.partial-{_builder()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _remove_abandoned_builds(path)
    try:
        _write_and_rename(columns, partial, path, metadata)
    except BaseException:
        # A failed save, metadata write or flush (a full disk, an interrupt) left the build folder behind: while this
        # process lives no sweep takes it for abandoned, nor ever one on another machine. (Gone once renamed.)
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _write_and_rename(columns: datasets.Dataset, partial: Path, path: Path, metadata: dict) -> None:
    columns.save_to_disk(str(partial))
    (partial / _METADATA_FILE).write_text(json.dumps(metadata))
    _synced(partial)
    try:
        partial.rename(path)
        return
    except OSError:
        if _complete(path):  # another process finished the same cache first: theirs is identical
            shutil.rmtree(partial, ignore_errors=True)
            return
    # A folder without a readable completion file or data (a copy cut short, a deleted metadata file) is in the way,
    # and a rename onto it fails for ever: moved aside, deleted, and ours put in its place (a builder that completed
    # it in the meantime wrote the same outputs).
    aside = path.parent / f".{path.name}.incomplete-{uuid.uuid4().hex[:8]}"
    with contextlib.suppress(OSError):
        path.rename(aside)
    shutil.rmtree(aside, ignore_errors=True)
    try:
        partial.rename(path)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not _complete(path):
            raise


_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def _boot_id() -> str | None:
    """This boot of this machine (Linux: a random id drawn at boot, the host's own inside containers); None where
    there is none to read."""
    try:
        text = Path(_BOOT_ID_FILE).read_text()
    except OSError:
        return None
    digits = "".join(character for character in text.strip().lower() if character in "0123456789abcdef")
    return digits[:12] if len(digits) >= 12 else None


def _builder() -> str:
    """Who builds, beside the pid: the host, this boot of it and its pid namespace.

    Machines of one hostname (cloned nodes, Kubernetes pods on the host network take the node's) can share a cache
    folder, and every Linux host numbers its initial pid namespace alike: the boot id tells the machines apart, the
    pid namespace the containers of one machine (each numbers its processes from 1). A pid is only checked among the
    builders of this boot and namespace, never a live build of another machine or container.
    """
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux
        namespace = 0
    return f"{socket.gethostname()}-{_boot_id() or 'noboot'}-{namespace}"


def _remove_abandoned_builds(path: Path) -> None:
    """Deletes build folders of `path` that crashed builders of this machine, boot and pid namespace left (their
    process is gone).

    Only what is proven abandoned: without a boot id to tell this machine from another of its name nothing is
    deleted, nor a folder named in the older format (host and pid namespace alone), which may be another machine's.
    """
    if _boot_id() is None:
        return
    prefix = f".{path.name}.partial-{_builder()}-"
    for folder in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid, _, rest = folder.name[len(prefix) :].partition("-")
        # <pid>-<8 hex digits>: the whole name ours, not a longer identity that starts like it
        if not (pid.isdigit() and len(rest) == 8 and all(c in "0123456789abcdef" for c in rest)):
            continue
        if int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


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
    # copy=False: the rows are already of `dtype`, and a second copy of every value would be held at once
    values = np.concatenate(rows).astype(dtype, copy=False) if rows else np.zeros(0, dtype=dtype)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(values))


def _leaf_values(array: pa.ChunkedArray) -> pa.Array:
    array = array.combine_chunks()
    while is_list_array(array):
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
