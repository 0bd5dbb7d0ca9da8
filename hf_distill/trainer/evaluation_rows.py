"""Evaluation and prediction over every row, whatever `dataloader_drop_last` says for training."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch.utils.data import SequentialSampler
from transformers.trainer_utils import has_length

__all__ = ["EveryEvaluationRowMixin"]


class EveryEvaluationRowMixin:
    """For a `Trainer` whose evaluation and predictions must cover every row.

    transformers 5 applies `dataloader_drop_last` to evaluation and prediction as well as to training: SST-2's 872
    dev rows in batches of 128 would be scored on 768 (a score over another set of rows than the one reported), and
    predictions would come back shorter than the rows they are matched to. Training still drops its last batch when
    asked.
    """

    def get_eval_dataloader(self, eval_dataset: Any = None):
        with keeping_the_last_batch(self.args):
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset: Any):
        with keeping_the_last_batch(self.args):
            return super().get_test_dataloader(test_dataset)

    def _get_eval_sampler(self, eval_dataset: Any):
        # transformers 5 groups evaluation and prediction by length too under train_sampling_strategy=
        # "group_by_length": the scores are the same, but predictions[i] is no longer row i of the dataset
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_eval_sampler(eval_dataset)
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None  # as for the other strategies


@contextlib.contextmanager
def keeping_the_last_batch(args: Any) -> Iterator[None]:
    """`args.dataloader_drop_last` off while the block builds a dataloader, then as it was."""
    dropping = args.dataloader_drop_last
    args.dataloader_drop_last = False
    try:
        yield
    finally:
        args.dataloader_drop_last = dropping
