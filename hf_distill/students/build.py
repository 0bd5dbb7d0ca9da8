"""Build a student from a BERT teacher: pick teacher layers, then copy their weights into a shallower model.

Two student architectures:

- ``"bert"``: the teacher's own class with fewer layers ([`build_bert_student`]). Built from every teacher layer it
  is the teacher, logit for logit.
- ``"distilbert"``: a DistilBERT model initialised as DistilBERT itself was (Sanh et al., 2019, sec. 3: "taking one
  layer out of two" of BERT-base; [`build_distilbert_student`]).

Which teacher layers (`select_layers`, `validate_layers`) is `layers.py`; the DistilBERT weight mapping is
`distilbert.py`. Students are always created in float32 on the CPU: they are the weights being trained
(master weights), whatever dtype or device the teacher runs in.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Literal

import torch
from transformers import BertModel, PreTrainedModel

from .distilbert import build_distilbert_student, check_distilbert_teacher
from .layers import check_bert_teacher, check_weights_in_memory, layer_prefix, select_layers, validate_layers

logger = logging.getLogger(__name__)

__all__ = [
    "build_bert_student",
    "build_distilbert_student",
    "build_student",
    "check_buildable",
    "select_layers",
    "validate_layers",
]


def build_bert_student(teacher: PreTrainedModel, layers: Sequence[int]) -> PreTrainedModel:
    """A student of the teacher's own class, with the teacher's layers `layers` and everything else copied.

    Embeddings, pooler and task head are copied unchanged; student layer ``i`` is teacher layer ``layers[i]``. The
    config (labels, `problem_type`, dropout...) is the teacher's with ``num_hidden_layers = len(layers)`` and
    ``dtype = float32``. With every layer, the student's outputs equal the teacher's (in eval mode).

    Args:
        teacher ([`~transformers.PreTrainedModel`]): a BERT model (`BertModel` or a `BertFor*` task model).
        layers (`Sequence[int]`): strictly increasing teacher layer indices.

    Returns:
        [`~transformers.PreTrainedModel`]: a float32 model of `type(teacher)` on the CPU, in training mode.
    """
    bert = check_bert_teacher(teacher)
    check_weights_in_memory(teacher)
    layers = validate_layers(layers, teacher.config.num_hidden_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    config.dtype = torch.float32
    # Which teacher layer each student layer starts from (hidden_layer_map="init" pairs them); replaces the record a
    # teacher that was itself built by hf-distill carries in its config.
    config.hf_distill_teacher_layers = list(layers)
    config.hf_distill_teacher_num_layers = teacher.config.num_hidden_layers  # "init" pairs with this depth only
    if type(teacher) is BertModel:  # a bare encoder may have been built without its pooler
        student = BertModel(config, add_pooling_layer=teacher.pooler is not None).to(torch.float32)
    else:
        student = type(teacher)(config).to(torch.float32)

    prefix = layer_prefix(teacher, bert)
    state_dict = {}
    for name, tensor in teacher.state_dict().items():
        if not name.startswith(prefix):
            state_dict[name] = tensor
            continue
        teacher_index, rest = name[len(prefix) :].split(".", 1)
        if int(teacher_index) in layers:
            state_dict[f"{prefix}{layers.index(int(teacher_index))}.{rest}"] = tensor
    # strict=True: every student weight must come from the teacher; load_state_dict casts to float32 on copy.
    student.load_state_dict(state_dict, strict=True)
    logger.info("Built a %d-layer %s student from teacher layers %s.", len(layers), type(student).__name__, layers)
    return student


def build_student(
    teacher: PreTrainedModel,
    *,
    num_layers: int | None = None,
    layers: Sequence[int] | None = None,
    architecture: Literal["bert", "distilbert"] = "bert",
) -> PreTrainedModel:
    """Build a float32 student from a BERT teacher, by layer count or by explicit layers.

    Args:
        teacher ([`~transformers.PreTrainedModel`]): a BERT model (`BertModel` or a `BertFor*` task model). It is
            only read.
        num_layers (`int`, *optional*): student depth; the teacher layers come from [`select_layers`].
        layers (`Sequence[int]`, *optional*): explicit teacher layers, strictly increasing. Exactly one of
            `num_layers` and `layers` must be given.
        architecture (`"bert"` or `"distilbert"`): the teacher's own class ([`build_bert_student`]) or DistilBERT
            ([`build_distilbert_student`]).

    Returns:
        [`~transformers.PreTrainedModel`]: the student, float32, on the CPU.
    """
    if (num_layers is None) == (layers is None):
        raise ValueError(
            f"Pass exactly one of num_layers and layers, got num_layers={num_layers!r} and layers={layers!r}: "
            "num_layers=6 picks evenly spread teacher layers, layers=[0, 2, 4] picks them yourself."
        )
    if architecture not in ("bert", "distilbert"):
        raise ValueError(f"architecture must be 'bert' or 'distilbert', got {architecture!r}.")
    check_bert_teacher(teacher)
    if num_layers is not None:
        layers = select_layers(teacher.config.num_hidden_layers, num_layers)
    layers = validate_layers(layers, teacher.config.num_hidden_layers)  # once: a generator is read only once
    # Each builder records the layers in the student's config (`hf_distill_teacher_layers`).
    return build_bert_student(teacher, layers) if architecture == "bert" else build_distilbert_student(teacher, layers)


def check_buildable(teacher: PreTrainedModel, architecture: Literal["bert", "distilbert"] = "bert") -> None:
    """Raises the error [`build_student`] would raise for this teacher and architecture, without building anything:
    the scripts call it before a teacher's fine-tune, which a refusal at build time would waste."""
    if architecture not in ("bert", "distilbert"):
        raise ValueError(f"architecture must be 'bert' or 'distilbert', got {architecture!r}.")
    check_bert_teacher(teacher)
    if architecture == "distilbert":
        check_distilbert_teacher(teacher)
