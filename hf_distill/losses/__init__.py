"""Distillation objectives as pure functions of tensors, split by what they compare.

- `logits.py`: the two models' outputs (class KL, masked token KL, top-k token KL, regression MSE);
- `hidden_states.py`: their hidden states (DistilBERT's cosine, TinyBERT's MSE);
- `attention.py`: their self-attention (MiniLM's attention KL, MiniLM/MiniLMv2's value-relation KL);
- `masks.py`: which token positions count.

Every function is keyword-only, computes in float32 (float64 if given float64) whatever the dtype of its inputs
(half-precision logits lose too much in a softmax over a large vocabulary), and reduces with either ``"mean"``
(the loss of this batch alone) or ``"sum"`` (the numerator of an average taken over a larger batch, e.g. the whole
gradient-accumulated batch across every rank, which is how [`DistillationTrainer`] makes gradient accumulation
exact).
"""

from .attention import attention_kl, value_relation_kl
from .hidden_states import hidden_state_cosine, hidden_state_mse
from .logits import (
    class_kl_divergence,
    kl_divergence_per_row,
    regression_mse,
    token_kl_divergence,
    token_topk_kl_divergence,
)
from .masks import token_mask

__all__ = [
    "attention_kl",
    "class_kl_divergence",
    "hidden_state_cosine",
    "hidden_state_mse",
    "kl_divergence_per_row",
    "regression_mse",
    "token_kl_divergence",
    "token_mask",
    "token_topk_kl_divergence",
    "value_relation_kl",
]
