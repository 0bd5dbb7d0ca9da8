"""Which inputs each model gets: a DistilBERT student takes no `token_type_ids` while its BERT teacher needs them."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

__all__ = ["accepted_inputs", "select_inputs", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DeepSpeed engine or DDP wrapper (their `.module`)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def accepted_inputs(model: nn.Module) -> frozenset[str] | None:
    """Named inputs of `model.forward`, or None when it names none (then everything is passed).

    `**kwargs` is ignored: DistilBERT's forward takes `**kwargs` (attention options) but no `token_type_ids`. A
    wrapper that hands its `**kwargs` on to the model `get_base_model()` returns (peft's models) accepts that model's
    inputs too: a LoRA-tuned BERT needs its `token_type_ids`.
    """
    parameters = inspect.signature(model.forward).parameters.values()
    named = frozenset(
        p.name for p in parameters if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    )
    passes_on = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    base = model.get_base_model() if passes_on and callable(getattr(model, "get_base_model", None)) else None
    if isinstance(base, nn.Module) and base is not model:
        named |= accepted_inputs(base) or frozenset()
    return named or None


def select_inputs(inputs: dict[str, Any], accepted: frozenset[str] | None, *, keep_labels: bool) -> dict[str, Any]:
    # A DistilBERT student takes no token_type_ids while its BERT teacher needs them for sentence pairs:
    # each model gets what its forward accepts.
    return {
        key: value
        for key, value in inputs.items()
        if (keep_labels or key != "labels") and (accepted is None or key in accepted)
    }
