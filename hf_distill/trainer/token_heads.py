"""Language-model heads run on the counted positions only: the token KL never builds full-vocabulary logits.

With V = 30,522 and a batch of 32 x 128 tokens, full logits are 125 M floats per model (500 MB in float32), and the
KL's softmaxes double or triple that, though in masked-LM distillation only ~15% of the positions count. A forward
pre-hook on each model's output embeddings (the decoder `Linear` that maps hidden states to the vocabulary) keeps
only the counted positions of its input, so the head returns `(N, V)` logits for the N counted positions and
nothing else is ever computed. The hook is on a submodule, so the student is still called through its DDP/FSDP
wrapper. Evaluation and any forward outside `selecting(...)` see the full logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["CountedPositions", "output_head"]


def output_head(model: nn.Module) -> nn.Module | None:
    """The module that maps hidden states to vocabulary logits (`get_output_embeddings()`), or None."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if isinstance(head, nn.Module) else None


class CountedPositions:
    """Selects the counted positions `(B, L)` of the input of one or more output heads while `selecting` is active."""

    def __init__(self):
        self._mask: torch.Tensor | None = None
        self._handles = []
        self._heads: list[nn.Module] = []

    def attach(self, head: nn.Module) -> None:
        if any(head is known for known in self._heads):
            return
        self._heads.append(head)
        self._handles.append(head.register_forward_pre_hook(self._select))

    def _select(self, module: nn.Module, args: tuple) -> tuple | None:
        if self._mask is None:
            return None
        hidden = args[0]  # (B, L, D)
        if hidden.dim() != 3 or hidden.shape[:2] != self._mask.shape:
            raise ValueError(
                f"the output head got hidden states of shape {tuple(hidden.shape)} but the counted-position mask has "
                f"shape {tuple(self._mask.shape)}; set token_kd_gather_positions=False for this model."
            )
        return (hidden[self._mask], *args[1:])  # (N, D)

    @contextlib.contextmanager
    def selecting(self, mask: torch.Tensor) -> Iterator[None]:
        self._mask = mask.bool()
        try:
            yield
        finally:
            self._mask = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._heads = [], []
