"""The trainer's side of the teacher cache: load or build it for the training set and attach it as columns.

`DistillationTrainer` mixes this in when `cache_teacher_logits=True`; the cache itself is `store.py` (building,
storing, loading), `fingerprint.py` (its folder name) and `collator.py` (reading it back).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
import torch
from accelerate.utils import DistributedType
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_distill.trainer.model_inputs import select_inputs, unwrap

from .fingerprint import cache_fingerprint, collator_identity, fingerprint_model, fingerprint_rows
from .store import (
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

    def _check_cacheable(self) -> None:
        check_deterministic_collator(getattr(self.data_collator, "collator", self.data_collator))
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

    def prepare_teacher_cache(self) -> TeacherCache:
        """Loads or builds the teacher cache for `self.train_dataset` and adds it to the dataset as columns.

        `train()` calls it (in a hyperparameter_search, each trial at its own settings); call it yourself to build
        the cache ahead of training. Returns the cache (also kept as `self.teacher_cache`).

        Every process computes the fingerprint; the main process (of each node with `save_on_each_node`) builds a
        missing cache while the others wait, then they load it from disk.
        """
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        settings = self._cache_settings()
        source = self.train_dataset
        if source is self._cached_train_dataset:
            if settings == self._cached_settings:
                return self.teacher_cache
            # A trial of hyperparameter_search changed the temperature or k of a token cache: rebuild (or load)
            # the cache for them from the rows it was attached to, never from rows that already carry it.
            source = self._cache_source_dataset
        self._check_cacheable()
        if isinstance(source, datasets.Dataset) and source.format["type"] == "custom":
            raise ValueError(
                "cache_teacher_logits=True cannot keep the train_dataset's transform (set_transform / "
                "with_transform): the teacher would see its rows transformed once, the fingerprint would not know the "
                "transform, and a random one would be frozen. Apply it with dataset.map() first, or set "
                "cache_teacher_logits=False."
            )
        dataset = source if isinstance(source, datasets.Dataset) else _to_datasets(source)
        with self._teacher_input_columns_kept():
            visible = self._remove_unused_columns(dataset, description="Training")
        collator = self.data_collator.collator
        check_keeps_row_order(collator, visible)
        path = self._teacher_cache_root() / cache_fingerprint(
            teacher_hash=fingerprint_model(unwrap(self._teacher_module)),
            rows_hash=fingerprint_rows(visible),
            max_length=getattr(self.processing_class, "model_max_length", None),
            precision=str(self.accelerator.mixed_precision),
            collator_name=collator_identity(collator),
            token_level=not self._teacher_output_is_per_example(),
            top_k=self.args.teacher_cache_top_k,
            temperature=self.args.temperature,
        )
        local = self.args.save_on_each_node  # nodes without a shared filesystem build one cache each
        is_builder = self.args.local_process_index == 0 if local else self.args.process_index == 0
        with self.args.main_process_first(local=local, desc="teacher cache"):
            cache = load_teacher_cache(path, num_rows=len(dataset))
            if cache is None:
                if not is_builder:
                    raise RuntimeError(
                        f"The main process did not leave a teacher cache in {path}. With several nodes, either put "
                        "teacher_cache_dir on a filesystem every node shares or set save_on_each_node=True."
                    )
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
                )
            else:
                logger.info("Using the teacher cache in %s.", path)
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
        self.data_collator.drop_columns = (self._cache_length_column,) if self._cache_length_column else ()
        self.teacher_cache = cache
        self._cache_source_dataset = source
        self._cached_settings = settings
        self._cached_train_dataset = attached
        self.train_dataset = attached
        return cache

    def _cache_settings(self) -> tuple | None:
        """What the stored outputs depend on that a trial may change: a token cache's k and temperature."""
        if self._teacher_output_is_per_example():
            return None
        return (self.args.teacher_cache_top_k, float(self.args.temperature))

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


def _to_datasets(dataset: Any) -> datasets.Dataset:
    """A map-style dataset of dict rows as a `datasets.Dataset` (rows then come back as Python lists and numbers)."""
    try:
        return datasets.Dataset.from_list([dict(dataset[index]) for index in range(len(dataset))])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"cache_teacher_logits=True stores the teacher's outputs as columns of the training set, which needs "
            f"rows that are dicts of lists and numbers; converting the {type(dataset).__name__} failed ({error}). "
            "Pass a datasets.Dataset, or set cache_teacher_logits=False."
        ) from error


def _list_lengths(dataset: datasets.Dataset, column: str) -> list[int] | None:
    if column not in dataset.column_names:
        return None
    import pyarrow.compute as pc

    array = dataset.with_format("arrow")[:][column]
    return pc.list_value_length(array).fill_null(0).to_pylist()
