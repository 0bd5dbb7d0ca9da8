"""Reading the teacher cache back: the collator that moves each example's cached teacher outputs into the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from hf_distill.losses.masks import token_mask

from .store import CACHE_COLUMNS, LOGITS_COLUMN, TOPK_INDICES_COLUMN, TOPK_LOG_PROBS_COLUMN

__all__ = ["TeacherCacheCollator"]


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
        next_token (`bool`): a causal LM's cache, whose positions are those predicting a counted token.
    """

    def __init__(
        self,
        collator: Callable,
        *,
        top_k: int | None = None,
        drop_columns: Sequence[str] = (),
        next_token: bool = False,
    ):
        self.collator = collator
        self.top_k = top_k
        self.drop_columns = tuple(drop_columns)
        self.next_token = next_token  # a causal LM's positions (`token_mask`), as the cache was built with

    @property
    def tokenizer(self) -> Any:
        """The wrapped collator's tokenizer: Trainer saves it with the model when no processing_class was given (with
        the cache on, a student passed only `DataCollatorWithPadding(tokenizer)` was saved without one)."""
        return getattr(self.collator, "tokenizer", None)

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
            raise ValueError(
                "TeacherCacheCollator needs top_k (the k its token-level teacher cache was built with) to read that "
                "cache, got None: pass top_k=cache.top_k (the TeacherCache that prepare_teacher_cache() returns) or "
                "set collator.top_k before collating."
            )
        reference = batch.get("input_ids", batch.get("attention_mask", batch.get("labels")))
        mask = token_mask(
            batch.get("labels"), batch.get("attention_mask"), reference.shape, reference.device,
            next_token=self.next_token,
        )  # fmt: skip
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
