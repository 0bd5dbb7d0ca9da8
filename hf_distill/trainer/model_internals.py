"""What the loss terms read from inside both models: the intermediate-layer context (layer pairs, projection,
last-layer taps) and the counted-position selection of the vocabulary heads."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from hf_distill import losses
from hf_distill.cache.store import TOPK_INDICES_COLUMN

from .intermediate import PROJECTION_NAME, LastLayerTap, layer_pairs, num_heads
from .model_inputs import unwrap
from .token_heads import check_head_output, output_head

__all__ = ["NOT_SELECTING", "ModelInternalsMixin"]

NOT_SELECTING = contextlib.nullcontext()


class ModelInternalsMixin:
    """Methods of `DistillationTrainer`; uses its `args`, `_loss_terms`, `_teacher_module`, `_counted_positions` and
    the tap attributes set in its `__init__`."""

    def _last_layer_taps(self, model: nn.Module):
        """The (student, teacher) `LastLayerTap`s, registered once per student object (model_init builds new ones)."""
        student = unwrap(model)
        if self._student_tap is None or self._student_tap_owner is not student:
            if self._student_tap is not None:
                self._student_tap.remove()
            self._student_tap, self._student_tap_owner = LastLayerTap(student), student
        if self._teacher_tap is None:
            self._teacher_tap = LastLayerTap(unwrap(self._teacher_module))
        return self._student_tap, self._teacher_tap

    def _intermediate_context(self, model: nn.Module) -> dict[str, Any]:
        """The layer pairs, projection and taps the intermediate-layer terms read (empty when none is on)."""
        extra: dict[str, Any] = {}
        student = unwrap(model)
        if self.args.alpha_hidden > 0:
            if self._hidden_pairs is None or self._hidden_pairs[0] is not student:  # model_init builds new students
                teacher = unwrap(self._teacher_module)  # under DeepSpeed the engine's `.config` is its own dict
                self._hidden_pairs = (student, layer_pairs(self.args.hidden_layer_map, student, teacher))
            extra["hidden_pairs"] = self._hidden_pairs[1]
            extra["projection"] = getattr(student, PROJECTION_NAME, None)
        if any(term.needs_last_layer for term, _ in self._loss_terms):
            extra["student_tap"], extra["teacher_tap"] = self._last_layer_taps(model)
            extra["value_relation_heads"] = self.args.value_relation_heads or num_heads(unwrap(self._teacher_module))
        return extra

    def _position_selector(self, model: nn.Module, inputs: dict[str, Any], cached: dict[str, Any]):
        """`CountedPositions.selecting(mask)` when both models have vocabulary heads and the teacher runs online, or
        the student has one and the teacher's token-level top-k comes from the cache (its positions are gathered by
        the same mask, `_teacher_targets`), else a context that does nothing."""
        if not self.args.token_kd_gather_positions or not isinstance(inputs.get("input_ids"), torch.Tensor):
            return NOT_SELECTING
        if cached and TOPK_INDICES_COLUMN not in cached:  # cached (B, C) logits: a sequence head, nothing to gather
            return NOT_SELECTING
        if cached and self.args.n_gpu > 1:
            # torch.nn.DataParallel: its replicas share the head's hook, each with a part of the batch against the
            # whole batch's mask. Online, the hooks are refused there (`check_hooks_under_data_parallel`); cached,
            # the student keeps its full logits, as it did before its head was gathered
            return NOT_SELECTING
        student_head, teacher_head = output_head(unwrap(model)), output_head(unwrap(self._teacher_module))
        if student_head is None or (teacher_head is None and not cached):
            return NOT_SELECTING
        if self._counted_student_head is not None and self._counted_student_head is not student_head:
            # model_init built a new student: the old one's head (and its hook) is let go, not kept alive
            self._counted_positions.detach(self._counted_student_head)
        self._counted_student_head = student_head
        self._counted_positions.attach(student_head)
        if not cached:  # the cache runs no teacher head
            self._counted_positions.attach(teacher_head)
        ids = inputs["input_ids"]
        mask = losses.token_mask(
            inputs.get("labels"),
            inputs.get("attention_mask"),
            ids.shape,
            ids.device,
            next_token=self.counts_next_token(),
        )
        defer = self.args.token_kd_chunk_size is not None and not cached  # chunks run both heads: online only
        probe = defer and not {id(student_head), id(teacher_head)} <= self._counted_positions.checked
        return self._counted_positions.selecting(mask, defer=defer, probe=probe)

    def _chunked_heads(self, model: nn.Module, student_logits: torch.Tensor, teacher_logits: torch.Tensor):
        """What `LossContext.chunked_sums` needs when the heads were deferred: both heads, their kept inputs. Heads
        not checked yet are checked against the logits their models' own code gave at the first counted position
        (`(k, V)`; k = 0 once checked, or when the micro-batch counts no position)."""
        student_head, teacher_head = output_head(unwrap(model)), output_head(unwrap(self._teacher_module))
        chunked = {
            "student_head": student_head,
            "teacher_head": teacher_head,
            "student_head_input": self._counted_positions.take(student_head),
            "teacher_head_input": self._counted_positions.take(teacher_head),
            "chunk_size": self.args.token_kd_chunk_size,
            "autocast": self._counted_positions.autocast_of(student_head),
        }
        if student_logits.shape[0] > 0:  # probed (see _position_selector)
            probed = (("student", student_head, student_logits), ("teacher", teacher_head, teacher_logits))
            for role, head, logits in probed:
                check_head_output(head, chunked[f"{role}_head_input"], logits, role=role,
                                  autocast=self._counted_positions.autocast_of(head))  # fmt: skip
            self._counted_positions.checked |= {id(student_head), id(teacher_head)}
        return chunked
