"""What the intermediate-layer loss terms read from inside both models: mapped hidden states, and the last layer's
attention probabilities and values, recomputed from its query/key/value projections.

Under SDPA (transformers' default) a model returns no attention weights; switching both models to eager attention for
the whole step would give them up. Instead, forward hooks on the last layer's query, key and value projections keep
their outputs, and the attention probabilities are recomputed from them: ``softmax(Q_h K_h^T / sqrt(d_h) + mask)``,
the same numbers the layer computes (before attention dropout, which a loss must not see), in float32.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = [
    "PROJECTION_NAME",
    "LastLayerTap",
    "attach_projection",
    "layer_pairs",
    "num_heads",
    "num_layers",
    "parse_layer_map",
]

# Projection names of one self-attention block: BERT-like models, then DistilBERT.
_PROJECTIONS = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"))


def num_layers(model: nn.Module) -> int:
    config = model.config
    return getattr(config, "num_hidden_layers", None) or config.n_layers


def num_heads(model: nn.Module) -> int:
    config = model.config
    return getattr(config, "num_attention_heads", None) or config.n_heads


def parse_layer_map(value: str) -> list[tuple[int, int]] | str:
    """`"uniform"`, `"init"`, or explicit ``"s:t,s:t"`` pairs of (student layer, teacher layer), 0-based."""
    if value in ("uniform", "init"):
        return value
    pairs = []
    for item in str(value).replace(" ", "").split(","):
        student, _, teacher = item.partition(":")
        try:
            pairs.append((int(student), int(teacher)))
        except ValueError:
            raise ValueError(
                f"hidden_layer_map must be 'uniform', 'init' or pairs 'student:teacher' such as '0:1,1:3,2:5', got "
                f"{value!r}."
            ) from None
    seen: dict[int, int] = {}
    for student, teacher in pairs:
        if student in seen:  # a repeated pair would weigh twice, a second teacher layer halve the first one's weight
            raise ValueError(
                f"hidden_layer_map {value!r} names student layer {student} twice ({student}:{seen[student]} and "
                f"{student}:{teacher}): each student layer matches one teacher layer. Give each student layer once."
            )
        seen[student] = teacher
    return pairs


def layer_pairs(layer_map: str, student: nn.Module, teacher: nn.Module) -> list[tuple[int, int]]:
    """Pairs of `hidden_states` indices (0 = the embedding output, i + 1 = layer i's output) to match.

    - "uniform" (TinyBERT): the embeddings match each other, student layer i matches teacher layer
      (i + 1) * Lt / Ls - 1 (Lt / Ls must be an integer);
    - "init": the embeddings, and each student layer the teacher layer it was initialised from
      (`config.hf_distill_teacher_layers`, set by `build_student`);
    - the embeddings, and explicit pairs of 0-based layers, validated against both depths.
    """
    parsed = parse_layer_map(layer_map)
    depth_s, depth_t = num_layers(student), num_layers(teacher)
    if parsed == "uniform":
        if depth_t % depth_s:
            raise ValueError(
                f"hidden_layer_map='uniform' needs the teacher's {depth_t} layers to be a multiple of the student's "
                f"{depth_s}. Pass explicit pairs such as '0:1,1:3', or 'init' for a student built from the teacher."
            )
        step = depth_t // depth_s
        return [(0, 0)] + [(i + 1, (i + 1) * step) for i in range(depth_s)]
    if parsed == "init":
        source = getattr(student.config, "hf_distill_teacher_layers", None)
        if not source or len(source) != depth_s:
            raise ValueError(
                "hidden_layer_map='init' needs a student built from the teacher by hf_distill.build_student (its "
                "config records the teacher layers it started from); this one records none. Pass 'uniform' or "
                "explicit pairs such as '0:1,1:3'."
            )
        depth = getattr(student.config, "hf_distill_teacher_num_layers", None)  # recorded since 2026-12-07
        if depth is not None and depth != depth_t:  # a 12-layer teacher's layers 0..11 fit a 24-layer one too
            raise ValueError(
                f"hidden_layer_map='init': the student was built from a {depth}-layer teacher (its layers "
                f"{list(source)}), but this teacher has {depth_t} layers: its layers with those numbers are others. "
                "Pass 'uniform' or explicit pairs such as '0:1,1:3', or distil from the teacher it was built from."
            )
        if not all(0 <= int(t) < depth_t for t in source):
            raise ValueError(
                f"hidden_layer_map='init': the student records teacher layers {list(source)}, but this teacher has "
                f"layers 0..{depth_t - 1}: it was built from another teacher. Pass 'uniform' or explicit pairs such "
                "as '0:1,1:3'."
            )
        return [(0, 0)] + [(i + 1, int(t) + 1) for i, t in enumerate(source)]
    for student_layer, teacher_layer in parsed:
        if not (0 <= student_layer < depth_s and 0 <= teacher_layer < depth_t):
            raise ValueError(
                f"hidden_layer_map pair {student_layer}:{teacher_layer} is out of range: the student has layers "
                f"0..{depth_s - 1} and the teacher 0..{depth_t - 1}."
            )
    return [(0, 0)] + [(s + 1, t + 1) for s, t in parsed]  # the embedding outputs too, as every map


class LastLayerTap:
    """Keeps the last encoder layer's query, key and value projection outputs `(B, L, D)` of every forward.

    Hooks are registered once on the (unwrapped) model; they cost a reference per forward, nothing else.
    """

    def __init__(self, model: nn.Module):
        from .compatibility import is_causal_lm

        self.outputs: dict[str, torch.Tensor] = {}
        self.heads = num_heads(model)
        # a decoder's query attends to its own and earlier positions only (BertLMHeadModel, RobertaForCausalLM)
        self.causal = bool(getattr(getattr(model, "config", None), "is_decoder", False)) or is_causal_lm(model)
        block = _last_attention_block(model)
        self._modules = {role: getattr(block, name) for role, name in zip(("query", "key", "value"), _names_in(block))}
        self._handles = [module.register_forward_hook(self._keep(role)) for role, module in self._modules.items()]

    def check_gradients(self) -> None:
        """Refuses outputs that lost their graph while their projection trains: a forward under reentrant activation
        checkpointing (``use_reentrant=True``) runs the layers without gradients, so the attention and value-relation
        terms would send the student none (and fail backward when they are the only terms)."""
        if not torch.is_grad_enabled():
            return
        for role, output in self.outputs.items():
            trains = any(parameter.requires_grad for parameter in self._modules[role].parameters())
            if trains and not output.requires_grad:
                raise ValueError(
                    f"The student's last-layer {role} projection ran without gradients (activation checkpointing "
                    "with use_reentrant=True), so alpha_attention / alpha_value_relation would not train it: pass "
                    "activation_checkpointing_kwargs={'use_reentrant': False} (transformers' default), or set both "
                    "weights to 0."
                )

    def _keep(self, role: str):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            self.outputs[role] = output

        return hook

    def values(self) -> torch.Tensor:
        """The value projection's output `(B, L, D)` of the last forward."""
        return self.outputs["value"]

    def attention_probabilities(self, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """`(B, H, L, L)` float32 attention probabilities of the last layer, keys outside the mask at 0."""
        return torch.softmax(self._attention_scores(attention_mask), dim=-1)

    def attention_log_probabilities(self, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The log of `attention_probabilities`, taken by log_softmax: finite where a probability rounds to 0."""
        return torch.log_softmax(self._attention_scores(attention_mask), dim=-1)

    def _attention_scores(self, attention_mask: torch.Tensor | None) -> torch.Tensor:
        query, key = self.outputs["query"].float(), self.outputs["key"].float()
        batch, length, width = query.shape
        head = width // self.heads
        query = query.view(batch, length, self.heads, head).transpose(1, 2)  # (B, H, L, d)
        key = key.view(batch, length, self.heads, head).transpose(1, 2)
        scores = query @ key.transpose(-1, -2) / math.sqrt(head)  # (B, H, L, L)
        if attention_mask is not None:
            keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L)
            scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
        if self.causal:
            future = torch.ones(length, length, dtype=torch.bool, device=scores.device).triu(diagonal=1)
            scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
        return scores

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _names_in(block: nn.Module) -> tuple[str, str, str]:
    for names in _PROJECTIONS:
        if all(isinstance(getattr(block, name, None), nn.Linear) for name in names):
            return names
    raise ValueError("no query/key/value projections found")


def _last_attention_block(model: nn.Module) -> nn.Module:
    blocks = []
    for name, module in model.named_modules():
        if "crossattention" in name:  # a decoder's cross-attention: it runs only beside an encoder's outputs
            continue
        try:
            _names_in(module)
        except ValueError:
            continue
        blocks.append(module)
    if not blocks:
        raise ValueError(
            f"alpha_attention / alpha_value_relation need a BERT-like model whose attention has query/key/value (or "
            f"q_lin/k_lin/v_lin) projections; {type(model).__name__} has none. Set both weights to 0."
        )
    return blocks[-1]


# The learned projection lives on the student as a submodule: the optimizer, DDP, mixed precision and checkpoints see
# it like any student weight, and `DistillationTrainer.save_model` leaves it out of the saved student.
PROJECTION_NAME = "hf_distill_hidden_projection"


def attach_projection(student: nn.Module, teacher: nn.Module, args: Any) -> None:
    """Gives a narrower (or wider) student TinyBERT's W_h: a linear map from its width to the teacher's, when
    alpha_hidden > 0 and the widths differ. Equal widths get none."""
    widths = [getattr(getattr(model, "config", None), "hidden_size", None) for model in (student, teacher)]
    if args.alpha_hidden <= 0 or None in widths or widths[0] == widths[1] or hasattr(student, PROJECTION_NAME):
        return
    reference = next(student.parameters())
    with torch.random.fork_rng(devices=[]):  # seeded from args.seed, without moving the caller's random stream
        torch.manual_seed(args.seed)
        projection = nn.Linear(widths[0], widths[1])
    projection = projection.to(device=reference.device, dtype=reference.dtype)
    student.add_module(PROJECTION_NAME, projection)
    student.register_forward_hook(_tie_projection_to_outputs)


def _tie_projection_to_outputs(module: nn.Module, inputs: Any, output: Any) -> Any:
    """Forward hook on the student, in training: adds 0 x (the projection's weights) to its first output tensor.
    The projection runs in the loss, after the forward; DDP with find_unused_parameters (Trainer's default for
    transformers models) marks any weight its forward's outputs do not reach as unused and then fails when that
    weight's gradient arrives ("marked as ready twice"). The tie makes the forward reach it; values and gradients
    are unchanged (the projection's gradient still comes from the hidden-state term alone)."""
    projection = getattr(module, PROJECTION_NAME, None)
    if projection is None or not module.training or not torch.is_grad_enabled() or not isinstance(output, dict):
        return None
    key = next((k for k, v in output.items() if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
    if key is None:
        return None
    tie = sum(parameter.sum() for parameter in projection.parameters())
    output[key] = output[key] + 0.0 * tie.to(output[key].dtype)
    return output
