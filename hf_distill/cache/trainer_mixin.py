"""The trainer's side of the teacher cache: load or build it for the training set and attach it as columns.

`DistillationTrainer` mixes this in when `cache_teacher_logits=True`; the cache itself is `store.py` (building,
storing, loading), `fingerprint.py` (its folder name) and `collator.py` (reading it back).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.utils import DistributedType
from torch import nn
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_distill.trainer.compatibility import is_causal_lm
from hf_distill.trainer.model_inputs import select_inputs, unwrap

from .fingerprint import cache_fingerprint, collator_identity, fingerprint_model, fingerprint_rows, value_identity
from .store import (
    CACHE_COLUMNS,
    TeacherCache,
    build_teacher_cache,
    check_deterministic_collator,
    check_keeps_row_order,
    load_teacher_cache,
    quiet_datasets,
)

logger = logging.getLogger(__name__)

__all__ = ["TeacherCacheMixin"]


class TeacherCacheMixin:
    """Methods of `DistillationTrainer` (a `transformers.Trainer`) that attach the teacher cache to its training set.

    Uses the trainer's `_teacher_module`, `_teacher_input_names`, `_cached_train_dataset`, `_cache_length_column`
    and `_teacher_input_columns_kept()`.
    """

    def _refuse_cache_columns(self, dataset: Any = None) -> None:
        """Raises `ValueError` when the training set (or `dataset`) already holds teacher cache columns: an earlier
        cached trainer's `train_dataset`, whose stored outputs are another teacher's (or another run's). Read as this
        teacher's outputs with the cache off, and run again, then duplicated, with it on. This trainer's own attached
        dataset (a second `train()`, a search trial) is the one exception."""
        dataset = self.train_dataset if dataset is None else dataset
        if dataset is None or dataset is self._cached_train_dataset:
            return
        found = [name for name in CACHE_COLUMNS if name in (getattr(dataset, "column_names", None) or ())]
        if found:
            raise ValueError(
                f"train_dataset already holds the teacher cache's columns {found} (an earlier cached trainer's "
                "train_dataset?), whose stored outputs are not this teacher's: pass the dataset without them, "
                f"train_dataset = train_dataset.remove_columns({found})."
            )

    def _check_cacheable(self) -> None:
        check_deterministic_collator(getattr(self.data_collator, "collator", self.data_collator))
        _check_cache_root(self._teacher_cache_root(), given=self.args.teacher_cache_dir is not None)
        if isinstance(self.train_dataset, torch.utils.data.IterableDataset | datasets.IterableDataset):
            raise ValueError(
                "cache_teacher_logits=True needs a train_dataset with a length and random access (a datasets.Dataset "
                f"or a map-style torch Dataset), got {type(self.train_dataset).__name__}: the cache is stored as "
                "columns beside its rows. Set cache_teacher_logits=False for streamed data."
            )
        if self.accelerator.distributed_type == DistributedType.FSDP or (
            self.accelerator.distributed_type == DistributedType.DEEPSPEED
            and self.accelerator.state.deepspeed_plugin.zero_stage == 3
        ):
            raise ValueError(
                "cache_teacher_logits=True is not supported when the teacher is sharded (FSDP, DeepSpeed ZeRO-3): "
                "the cache is built by one process, but a sharded teacher needs every process in each forward. "
                "Set cache_teacher_logits=False, or use DDP or DeepSpeed ZeRO-1/2."
            )
        teacher = _engine_unwrapped(self._teacher_module)
        on_meta = [name for name, tensor in (*teacher.named_parameters(), *teacher.named_buffers()) if tensor.is_meta]
        if on_meta:
            # Their values are elsewhere (accelerate's offload hooks load them for each forward): nothing to hash,
            # and "Cannot copy out of meta tensor" after the checks.
            raise ValueError(
                "cache_teacher_logits=True cannot hash a teacher whose weights are on the meta device (offloaded to "
                f"the CPU or disk by a device_map or accelerate's cpu_offload): {len(on_meta)} of them, the first "
                f"{on_meta[0]!r}. Load the teacher whole on one device (no offloading device_map), or set "
                "cache_teacher_logits=False."
            )

    def prepare_teacher_cache(self) -> TeacherCache:
        """Loads or builds the teacher cache for `self.train_dataset` and adds it to the dataset as columns.

        `train()` calls it (in a hyperparameter_search, each trial at its own settings); call it yourself to build
        the cache ahead of training. Returns the cache (also kept as `self.teacher_cache`).

        Every process computes the fingerprint, at every call: a teacher edited in place since the last one (or
        another collator, precision, k or temperature) gets its own cache. The main process (of each node with
        `save_on_each_node`) builds a missing cache while the others wait, then they load it from disk.
        """
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        source = self.train_dataset
        if source is self._cached_train_dataset:
            # A second train() or a search trial: the fingerprint is taken again, from the rows the cache was
            # attached to (never from rows that already carry it). The teacher's weights may have been edited in
            # place since, the collator, precision, k or temperature changed: each gets its own cache.
            source = self._cache_source_dataset
        self._refuse_cache_columns(source)
        self._check_cacheable()
        if isinstance(source, datasets.Dataset) and source.format["type"] == "custom":
            raise ValueError(
                "cache_teacher_logits=True cannot keep the train_dataset's transform (set_transform / "
                "with_transform): the teacher would see its rows transformed once, the fingerprint would not know the "
                "transform, and a random one would be frozen. Apply it with dataset.map() first, or set "
                "cache_teacher_logits=False."
            )
        dataset = source if isinstance(source, datasets.Dataset) else _to_datasets(source)
        self._refuse_cache_columns(dataset)  # a torch Dataset's rows may hold them too
        if dataset._indices is not None:
            # Shuffled, selected or split: concatenate_datasets would flatten every input, the memory-mapped cache
            # too, writing a second full copy of it into its folder. The rows are flattened in memory instead (their
            # token ids: a few MB for SST-2's 67k sentences), so the cache is attached as it lies on disk.
            with quiet_datasets():
                dataset = dataset.flatten_indices(keep_in_memory=True)
        with self._teacher_input_columns_kept():
            visible = self._remove_unused_columns(dataset, description="Training")
        collator = self.data_collator.collator
        token_level = not self._teacher_output_is_per_example()
        # a causal LM's token outputs are stored at the positions predicting a counted token (`token_mask`)
        next_token = token_level and is_causal_lm(_engine_unwrapped(self._teacher_module))
        check_keeps_row_order(collator, visible, token_level=token_level, next_token=next_token)
        path = self._teacher_cache_root() / cache_fingerprint(
            teacher_hash=fingerprint_model(_engine_unwrapped(self._teacher_module)),
            rows_hash=fingerprint_rows(visible),
            max_length=getattr(self.processing_class, "model_max_length", None),
            precision=str(self.accelerator.mixed_precision),
            collator_name=collator_identity(collator),
            token_level=token_level,
            top_k=self.args.teacher_cache_top_k,
            temperature=self.args.temperature,
            next_token=next_token,
        )
        settings = (path, self.args.train_sampling_strategy, self.args.length_column_name)
        if self.train_dataset is self._cached_train_dataset and settings == self._cached_settings:
            return self.teacher_cache  # the same fingerprint: the attached cache is this teacher's
        local = self.args.save_on_each_node  # nodes without a shared filesystem build one cache each
        is_builder = self.args.local_process_index == 0 if local else self.args.process_index == 0
        cache, error = None, None
        with self.args.main_process_first(local=local, desc="teacher cache"):
            try:
                cache = load_teacher_cache(path, num_rows=len(dataset))
                if cache is None and is_builder:
                    logger.info("Building the teacher cache in %s (%d examples).", path, len(dataset))
                    cache = build_teacher_cache(
                        dataset=visible,
                        collator=collator,
                        run_teacher=self._run_teacher_for_cache,
                        device=self.args.device,
                        batch_size=self.args.resolved_teacher_cache_batch_size,
                        top_k=self.args.teacher_cache_top_k,
                        temperature=self.args.temperature,
                        path=path,
                        length_column=self._length_input_name(),
                        num_workers=self.args.dataloader_num_workers,
                        show_progress=self.is_local_process_zero() and not self.args.disable_tqdm,
                        next_token=next_token,
                    )
                elif cache is not None:
                    logger.info("Using the teacher cache in %s.", path)
            # Raised below, once every process knows whether a builder failed: each one must reach that reduction.
            except BaseException as caught:
                error = caught
        builders_failed = self._count_failed_builders(failed=is_builder and error is not None)
        if error is not None:
            raise error
        if cache is None:
            if builders_failed:
                raise RuntimeError(
                    f"The main process failed to build the teacher cache in {path} (see its error, the cause): this "
                    "process had no cache to load. Fix that error and rerun."
                )
            raise RuntimeError(
                f"The main process did not leave a teacher cache in {path}. With several nodes, either put "
                "teacher_cache_dir on a filesystem every node shares or set save_on_each_node=True."
            )
        with quiet_datasets():
            attached = datasets.concatenate_datasets([dataset, cache.columns], axis=1)
        self._cache_length_column = None
        length_column = self.args.length_column_name
        if self.args.train_sampling_strategy == "group_by_length" and length_column not in attached.column_names:
            # Otherwise LengthGroupedSampler reads every row (cache columns included) just to measure its length.
            lengths = _list_lengths(attached, self._length_input_name())
            if lengths is not None:
                attached = attached.add_column(length_column, lengths)
                self._cache_length_column = length_column
        own = [*cache.column_names, *([self._cache_length_column] if self._cache_length_column else [])]
        user_format = dataset.format  # concatenate_datasets drops it: the user's collator expects it
        if user_format["type"] is not None:
            kept = [column for column in user_format["columns"] or [] if column in attached.column_names]
            # its type and columns, not its options: a dtype=torch.long or device="cuda" would apply to the cached
            # float outputs as well (truncated; moved off the CPU the cache collator reads them on)
            attached = attached.with_format(
                user_format["type"], columns=[*kept, *own], output_all_columns=user_format["output_all_columns"]
            )
        elif attached.format["type"] is None:
            # Cache columns come out as numpy arrays, not Python lists of floats; the rest as the user's collator
            # expects.
            attached = attached.with_format("numpy", columns=cache.column_names, output_all_columns=True)
        self.data_collator.top_k = cache.top_k
        self.data_collator.next_token = next_token
        self.data_collator.drop_columns = (self._cache_length_column,) if self._cache_length_column else ()
        self.teacher_cache = cache
        self._cache_source_dataset = source
        self._cached_settings = settings
        self._cached_train_dataset = attached
        self.train_dataset = attached
        return cache

    def _count_failed_builders(self, *, failed: bool) -> int:
        """How many processes failed to build the cache, summed over every process (0 without others to tell).

        `main_process_first` lets the others through when a builder raises; without this, they found no cache and
        blamed the filesystem. Every process reaches this one reduction (each catches its own error first), so a
        failure anywhere hangs no one.
        """
        if self.args.world_size <= 1:
            return int(failed)
        flag = torch.tensor([int(failed)], device=self.args.device)
        return int(self.accelerator.reduce(flag, reduction="sum").item())

    def _get_train_sampler(self, train_dataset=None):
        return _with_listed_lengths(super()._get_train_sampler(train_dataset))

    def _get_eval_sampler(self, eval_dataset):
        return _with_listed_lengths(super()._get_eval_sampler(eval_dataset))

    @torch.inference_mode()
    def _run_teacher_for_cache(self, batch: dict[str, Any]) -> torch.Tensor:
        # The same placement and precision as the online teacher (teacher_logits), so cached and online agree.
        with self.accelerator.autocast():
            return self._teacher_module(**select_inputs(batch, self._teacher_input_names, keep_labels=False)).logits

    def _teacher_output_is_per_example(self) -> bool:
        """True when the teacher's class says it emits one row of logits per example (read, not run).

        Only then is the cache fingerprint left independent of the temperature and k (raw logits depend on
        neither); any other model is fingerprinted as token-level, which at worst rebuilds a cache needlessly.
        """
        # under any wrapper (`unwrap`): a user's wrapper of a sequence classifier (a calibration) keeps its
        # per-example outputs, and read by its own name it put T and k in the key, a teacher pass per searched T
        name = type(unwrap(self._teacher_module)).__name__
        return name.endswith(("ForSequenceClassification", "ForMultipleChoice"))

    def _teacher_cache_root(self) -> Path:
        if self.args.teacher_cache_dir is not None:
            return Path(self.args.teacher_cache_dir)
        return Path(self.args.output_dir) / "teacher_cache"

    def _length_input_name(self) -> str:
        # The column LengthGroupedSampler measures.
        names = getattr(self.processing_class, "model_input_names", None)
        return names[0] if names else "input_ids"


def _engine_unwrapped(model: nn.Module) -> nn.Module:
    """The teacher under the wrappers an engine placed it in (DDP, DataParallel, FSDP, a DeepSpeed engine), which
    hold its weights unchanged: a cache built on one GPU serves a run on several.

    Not `unwrap`, which goes under any `.module`: a module of the user's that holds the teacher there (a calibration
    wrapper scaling its logits by its own `scale` parameter) changes the outputs, so it is hashed as given.
    """
    while isinstance(getattr(model, "module", None), nn.Module) and _is_engine(model):
        model = model.module
    return model


def _is_engine(model: nn.Module) -> bool:
    if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        return True
    # by name: neither DeepSpeed nor torch.distributed need be importable here
    return any(cls.__name__ in ("DeepSpeedEngine", "FullyShardedDataParallel") for cls in type(model).__mro__)


def _with_listed_lengths(sampler):
    """`LengthGroupedSampler` with its lengths as a Python list.

    Trainer hands it ``dataset["length"]``, which datasets >= 4 returns as a lazy `Column`; the sampler then sorts by
    ``lengths[i]``, one Arrow read per row, at every epoch's start: on an H200 that made length-grouped training
    slower than ungrouped (docs/benchmarks.md). A slice reads the column once, through any indices mapping.
    """
    if isinstance(sampler, LengthGroupedSampler) and not isinstance(sampler.lengths, list):
        listed = sampler.lengths[:]
        sampler.lengths = listed.tolist() if hasattr(listed, "tolist") else list(listed)  # numpy/torch formats
    return sampler


_REREAD_ROWS = 3  # rows read twice to tell a random __getitem__ (augmentation) from a fixed one


def _to_datasets(dataset: Any) -> datasets.Dataset:
    """A map-style dataset of dict rows as a `datasets.Dataset`; columns whose values were tensors (numpy arrays)
    come back as tensors (arrays), the rest as Python lists and numbers, as the collator got them without the cache.
    """
    rows = [dataset[index] for index in range(len(dataset))]
    try:
        converted = datasets.Dataset.from_list([dict(row) for row in rows])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"cache_teacher_logits=True stores the teacher's outputs as columns of the training set, which needs "
            f"rows that are dicts of lists and numbers; converting the {type(dataset).__name__} failed ({error}). "
            "Pass a datasets.Dataset, or set cache_teacher_logits=False."
        ) from error
    _refuse_random_rows(dataset, rows)
    first = rows[0] if rows else {}
    for kind, formatting in ((torch.Tensor, "torch"), (np.ndarray, "numpy")):
        columns = [name for name, value in first.items() if isinstance(value, kind)]
        if columns:
            # One format type per dataset: tensors win over arrays (a collator for tensors takes few arrays).
            return converted.with_format(formatting, columns=columns, output_all_columns=True)
    return converted


def _refuse_random_rows(dataset: Any, rows: list) -> None:
    """Raises `ValueError` when reading a few rows again gives other rows: an augmentation in `__getitem__`, which
    the cache would freeze to one draw for every epoch (as it would a `set_transform`, refused likewise)."""
    for index in range(min(_REREAD_ROWS, len(rows))):
        if value_identity(dataset[index]) != value_identity(rows[index]):
            raise ValueError(
                f"cache_teacher_logits=True cannot cache {type(dataset).__name__}: its __getitem__ returns another "
                f"row each time it is read (row {index} differed when read again; a random augmentation?): "
                "the teacher would see one draw of each row, frozen for every epoch. Apply the augmentation once "
                "(a fixed copy of the data), or set cache_teacher_logits=False."
            )


def _check_cache_root(root: Path, *, given: bool) -> None:
    """Raises `ValueError` when the cache folder is, or lies under, a file: saving would fail only after the whole
    teacher pass."""
    for folder in (root, *root.parents):
        if folder.exists():
            if folder.is_dir():
                return
            where = "is a file" if folder == root else f"lies under {str(folder)!r}, which is a file"
            value = repr(str(root)) if given else f"unset (the default, {str(root)!r})"
            raise ValueError(
                f"teacher_cache_dir {value} {where}: pass a folder (an existing one or a new path) as "
                "teacher_cache_dir, or move that file away."
            )


def _list_lengths(dataset: datasets.Dataset, column: str) -> list[int] | None:
    if column not in dataset.column_names:
        return None
    import pyarrow.compute as pc

    array = dataset.with_format("arrow")[:][column]
    return pc.list_value_length(array).fill_null(0).to_pylist()
