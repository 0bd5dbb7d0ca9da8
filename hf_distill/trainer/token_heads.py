"""Language-model heads run on the counted positions only: the token KL never builds full-vocabulary logits.

With V = 30,522 and a batch of 32 x 128 tokens, full logits are 125 M floats per model (500 MB in float32), and the
KL's softmaxes double or triple that, though in masked-LM distillation only ~15% of the positions count. A forward
pre-hook on each model's output embeddings (the decoder `Linear` that maps hidden states to the vocabulary) keeps
only the counted positions of its input, so the head returns `(N, V)` logits for the N counted positions and
nothing else is ever computed. The hook is on a submodule, so the student is still called through its DDP/FSDP
wrapper. Evaluation and any forward outside `selecting(...)` see the full logits.

A model may compute its logits without calling that module (MobileBERT multiplies by its weight itself): its full
logits are then gathered at the counted positions after the forward (`CountedPositions.gathered`). The chunked loss
(`token_kd_chunk_size`) runs the heads itself, which is exact only when the model does nothing to the head's output
(Gemma 2 soft-caps it, Cohere and Granite scale it). A model whose config names such a change is refused before
training (`compatibility.check_chunkable_heads`: a soft-cap hardly changes the small logits of a fresh model, so the
numbers alone would let it through); for a change no config names, until a pair of heads has been checked, the
models' own code still runs on the first counted position, and `check_head_output` refuses a model whose logits
there are not its head's (a property of the model, checked once, not every step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["CountedPositions", "check_head_output", "chunked_token_sums", "output_head"]

# Counted positions a deferred head still runs on inside the forward, through the model's own code: the loss checks
# the heads it runs itself against the logits the model gave there (`check_head_output`).
PROBED_POSITIONS = 1


def output_head(model: nn.Module) -> nn.Module | None:
    """The module that maps hidden states to vocabulary logits (`get_output_embeddings()`), or None."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if isinstance(head, nn.Module) else None


class CountedPositions:
    """Selects the counted positions `(B, L)` of the input of one or more output heads while `selecting` is active.

    With `deferring`, the heads compute nothing at all inside the forward: each keeps its selected input `(N, D)` in
    `kept[head]` and gets an empty batch, and the loss runs the heads itself, chunk by chunk (`chunked_token_sums`).
    """

    def __init__(self):
        self._mask: torch.Tensor | None = None
        self._defer = False
        self.kept: dict[int, torch.Tensor] = {}
        # (device type, dtype) of the autocast the deferred heads would have run under in the forward, else None
        self.kept_autocast: dict[int, tuple[str, torch.dtype] | None] = {}
        self._handles = []
        self._heads: list[nn.Module] = []
        self._called: set[int] = set()  # the heads whose hook ran in this `selecting`: their forward called them
        self._probe = False
        self.checked: set[int] = set()  # the heads `check_head_output` found giving their model's logits

    def attach(self, head: nn.Module) -> None:
        if any(head is known for known in self._heads):
            return
        self._heads.append(head)
        self._handles.append(head.register_forward_pre_hook(self._select))

    def detach(self, head: nn.Module) -> None:
        """Removes `head`'s hook and forgets it (a student a new hyperparameter-search trial replaced)."""
        for index, known in enumerate(self._heads):
            if known is head:
                self._handles.pop(index).remove()
                self._heads.pop(index)
                self.checked.discard(id(head))
                return

    def _select(self, module: nn.Module, args: tuple) -> tuple | None:
        if self._mask is None:
            return None
        hidden = args[0]  # (B, L, D)
        if hidden.dim() != 3 or hidden.shape[:2] != self._mask.shape:
            raise ValueError(
                f"the output head got hidden states of shape {tuple(hidden.shape)} but the counted-position mask has "
                f"shape {tuple(self._mask.shape)}; set token_kd_gather_positions=False for this model."
            )
        selected = hidden[self._mask.to(hidden.device)]  # (N, D); a teacher spread by device_map: its own device
        self._called.add(id(module))
        if self._defer:
            self.kept[id(module)] = selected
            device = hidden.device.type
            enabled = torch.is_autocast_enabled(device)
            self.kept_autocast[id(module)] = (device, torch.get_autocast_dtype(device)) if enabled else None
            # the loss runs the head over all the positions, in chunks; while `probe`, the model's own code runs on
            # the first one (what the loss checks the heads against)
            return (selected[: PROBED_POSITIONS if self._probe else 0], *args[1:])
        return (selected, *args[1:])

    def gathered(self, head: nn.Module, logits: torch.Tensor, role: str) -> torch.Tensor:
        """`logits`, the output of a forward inside `selecting`, at the counted positions `(N, V)`: as the model gave
        them when it called `head`; else (a model that computes its logits from the head's weights without calling
        it) its full `(B, L, V)` logits, gathered here. Under `defer` the loss needs the head's input, which such a
        model never gives: refused."""
        if id(head) in self._called:
            return logits
        if self._defer:
            raise ValueError(
                f"token_kd_chunk_size runs the {role}'s output head ({type(head).__name__}) on the counted positions "
                f"itself, but the {role}'s forward never calls that module (it computes its logits another way, as "
                "MobileBERT does): unset token_kd_chunk_size for this model."
            )
        if logits.dim() != 3 or logits.shape[:2] != self._mask.shape:
            raise ValueError(
                f"the {role}'s logits have shape {tuple(logits.shape)}, not (B, L, V) for the counted-position mask "
                f"of shape {tuple(self._mask.shape)}; set token_kd_gather_positions=False for this model."
            )
        return logits[self._mask.to(logits.device)]  # (N, V)

    def at_counted(self, values: torch.Tensor) -> torch.Tensor:
        """`values` `(B, L, ...)` at the counted positions of the current `selecting`, `(N, ...)`: the teacher cache's
        top-k beside a student head that ran on those positions only."""
        return values[self._mask.to(values.device)]

    def take(self, head: nn.Module) -> torch.Tensor:
        """The kept input of `head` from the last deferred forward, forgotten here: it holds that step's graph."""
        return self.kept.pop(id(head))

    def autocast_of(self, head: nn.Module) -> tuple[str, torch.dtype] | None:
        """The autocast (device type, dtype) `head` ran under in the last deferred forward, None for none."""
        return self.kept_autocast.get(id(head))

    @contextlib.contextmanager
    def selecting(self, mask: torch.Tensor, *, defer: bool = False, probe: bool = False) -> Iterator[None]:
        self._mask, self._defer, self._probe = mask.bool(), defer, probe
        self.kept, self.kept_autocast, self._called = {}, {}, set()
        try:
            yield
        finally:
            self._mask, self._defer, self._probe = None, False, False

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._heads, self.checked = [], [], set()


def _under(autocast: tuple[str, torch.dtype] | None):
    return torch.autocast(autocast[0], dtype=autocast[1]) if autocast else contextlib.nullcontext()


def check_head_output(
    head: nn.Module,
    head_input: torch.Tensor,
    logits: torch.Tensor,
    *,
    role: str,
    autocast: tuple[str, torch.dtype] | None = None,
) -> None:
    """Refuses a model whose logits are not its output head's: the chunked loss runs `head` itself, and would skip
    whatever the model does after it (Gemma 2's final_logit_softcapping, Cohere's logit_scale, Granite's
    logits_scaling; a DeBERTa-v2 head whose output embeddings are a hidden-to-hidden layer).

    Args:
        head_input (`torch.Tensor` of shape `(N, D)`): the head's kept input at the counted positions.
        logits (`torch.Tensor` of shape `(k, V)`): the model's own logits at the first k of them (`PROBED_POSITIONS`).
    """
    probed = logits.shape[0]
    if probed == 0:
        return  # no counted position in this micro-batch
    with torch.no_grad(), _under(autocast):
        dtype = next(head.parameters()).dtype
        mine = head(head_input[:probed] if autocast else head_input[:probed].to(dtype))
    if mine.shape == logits.shape:
        gap = (mine.float() - logits.float()).abs().max()
        scale = logits.float().abs().max().clamp(min=1.0)
        # the same rows through the same head: equal up to the kernels' rounding, at most an ulp or two of the
        # logits' dtype (bf16: 2**-8)
        tolerance = 1e-4 if torch.finfo(logits.dtype).bits >= 32 else 3e-2
        if gap <= tolerance * scale:
            return
        found = f"differ by up to {gap.item():.4g} at the first counted position"
    else:
        found = f"have shape {tuple(logits.shape)}, the head's output {tuple(mine.shape)}"
    raise ValueError(
        f"token_kd_chunk_size runs the {role}'s output head ({type(head).__name__}) itself, but the {role}'s logits "
        f"are not that head's output: they {found} (the model transforms them after the head, e.g. a soft-cap or a "
        "scale). Unset token_kd_chunk_size for this model."
    )


def chunked_token_sums(
    *,
    student_head: nn.Module,
    teacher_head: nn.Module,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    chunk_size: int,
    label_smoothing: float = 0.0,
    autocast: tuple[str, torch.dtype] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The token KD and cross-entropy *sums* over N counted positions, the vocabulary heads run `chunk_size` positions
    at a time under activation checkpointing: at most one chunk's `(chunk, V)` logits exist, in the forward and in
    the backward (which recomputes them), so the peak no longer grows with N.

    Args:
        student_hidden, teacher_hidden (`torch.Tensor` of shape `(N, D)`): the heads' inputs at the counted positions.
        labels (`torch.Tensor` of shape `(N,)`, *optional*): the targets there (-100: none).
        label_smoothing (`float`): the cross-entropy's label smoothing (`label_smoothing_factor`).
        autocast (`(device type, dtype)`, *optional*): the autocast the heads ran under in the forward
            (`CountedPositions.autocast_of`): they run under it again here, as they would have undeferred (a bf16
            teacher head fed CUDA autocast's float32 layer-norm output would otherwise fail).
    """
    from torch.utils.checkpoint import checkpoint

    from hf_distill import losses

    from .loss_terms import task_sum  # the task term's one definition (loss_terms imports this module lazily)

    teacher_dtype = next(teacher_head.parameters()).dtype

    def sums(student_chunk, teacher_chunk, label_chunk):
        with _under(autocast):
            student_logits = student_head(student_chunk)  # (c, V)
            with torch.no_grad():
                # without autocast, a half-precision teacher's head takes its own dtype
                teacher_logits = teacher_head(teacher_chunk if autocast else teacher_chunk.to(teacher_dtype))
        kd = losses.class_kl_divergence(
            student_logits=student_logits, teacher_logits=teacher_logits, temperature=temperature, reduction="sum"
        )
        if label_chunk is None:
            return kd, kd.new_zeros(())
        return kd, task_sum(student_logits, label_chunk, "class", label_smoothing=label_smoothing)

    kd_total = student_hidden.new_zeros((), dtype=torch.float32)
    ce_total = kd_total.clone()
    # With no counted position (a micro-batch the collator masked nothing in) one empty chunk still runs: the sums
    # are then zeros that reach the student's head, so backward has a graph and DDP sees the head's (zero) gradient.
    for start in range(0, max(student_hidden.shape[0], 1), chunk_size):
        stop = start + chunk_size
        label_chunk = None if labels is None else labels[start:stop]
        kd, ce = checkpoint(
            sums, student_hidden[start:stop], teacher_hidden[start:stop].detach(), label_chunk, use_reentrant=False
        )
        kd_total, ce_total = kd_total + kd, ce_total + ce
    return kd_total, ce_total
