"""The training set's columns: Trainer keeps only the student's forward arguments, but the teacher and the cache
need theirs too."""

from __future__ import annotations

import contextlib
from typing import Any

import datasets

from hf_distill.cache.store import CACHE_COLUMNS

__all__ = ["TeacherColumnsMixin"]


class TeacherColumnsMixin:
    """Methods of `DistillationTrainer`; uses its `_teacher_input_names` and `_cache_length_column`."""

    @contextlib.contextmanager
    def _teacher_input_columns_kept(self):
        """Keeps, for the training set only, the columns the teacher reads and those the cache added.

        Trainer keeps only the student's forward arguments: a DistilBERT student would drop the `token_type_ids`
        its BERT teacher needs for sentence pairs, and the cache columns would be dropped too.
        """
        self._set_signature_columns_if_needed()
        saved = self._signature_columns
        extra = list(self._teacher_input_names or ())
        if self.args.cache_teacher_logits:  # off, cache columns are another run's: never passed on to the loss
            extra += list(CACHE_COLUMNS)
        if self._cache_length_column:
            extra.append(self._cache_length_column)
        self._signature_columns = list(dict.fromkeys(saved + extra))
        try:
            yield
        finally:
            self._signature_columns = saved

    def _remove_unused_columns(self, dataset: datasets.Dataset, description: str | None = None) -> datasets.Dataset:
        if description != "Training":
            return super()._remove_unused_columns(dataset, description=description)
        with self._teacher_input_columns_kept():
            return super()._remove_unused_columns(dataset, description=description)

    def _get_collator_with_removed_columns(self, data_collator: Any, description: str | None = None) -> Any:
        if description != "Training":
            return super()._get_collator_with_removed_columns(data_collator, description=description)
        with self._teacher_input_columns_kept():
            return super()._get_collator_with_removed_columns(data_collator, description=description)
