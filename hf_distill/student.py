"""Build a student from a BERT teacher: pick teacher layers, then copy their weights into a shallower model.

Two student architectures:

- ``"bert"``: the teacher's own class with fewer layers ([`build_bert_student`]). Built from every teacher layer it
  is the teacher, logit for logit.
- ``"distilbert"``: a DistilBERT model initialised as DistilBERT itself was (Sanh et al., 2019, sec. 3: "taking one
  layer out of two" of BERT-base; [`build_distilbert_student`]).

Students are always created in float32 on the CPU: they are the weights being trained (master weights), whatever
dtype or device the teacher runs in.
"""

from __future__ import annotations

import copy
import logging
import numbers
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from transformers import (
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
    PreTrainedModel,
)
from transformers.activations import ACT2FN

logger = logging.getLogger(__name__)

__all__ = ["build_bert_student", "build_distilbert_student", "build_student", "select_layers", "validate_layers"]

# DistilBERT's LayerNorms are built with a literal eps=1e-12 (modeling_distilbert.py), not from the config.
DISTILBERT_LAYER_NORM_EPS = 1e-12

# Teacher class -> (DistilBERT class, head weights: teacher name -> student name). BertModel's pooler has no
# DistilBERT counterpart and is dropped; BERT's MLM decoder weight is tied to the word embeddings, as DistilBERT's
# vocab_projector is, so both names map.
_DISTILBERT_HEADS: dict[type, tuple[type, dict[str, str]]] = {
    BertForSequenceClassification: (
        DistilBertForSequenceClassification,
        {"bert.pooler.dense": "pre_classifier", "classifier": "classifier"},
    ),
    BertForTokenClassification: (DistilBertForTokenClassification, {"classifier": "classifier"}),
    BertForQuestionAnswering: (DistilBertForQuestionAnswering, {"qa_outputs": "qa_outputs"}),
    BertForMaskedLM: (
        DistilBertForMaskedLM,
        {
            "cls.predictions.transform.dense": "vocab_transform",
            "cls.predictions.transform.LayerNorm": "vocab_layer_norm",
            "cls.predictions.decoder": "vocab_projector",
        },
    ),
    BertModel: (DistilBertModel, {}),
}

# One BERT encoder layer -> one DistilBERT TransformerBlock. Both are post-LayerNorm blocks computing
# LN(x + Attn(x)) then LN(h + W2 act(W1 h)), so the weights carry over one to one.
_DISTILBERT_LAYER_NAMES = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def select_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Teacher layers to initialise a student of `num_student_layers` layers from, spread evenly.

    Student layer ``i`` takes teacher layer ``i * (L - 1) / (N - 1)`` rounded to the nearest integer, ties to the
    lower layer, for a teacher of ``L`` layers and ``N > 1`` student layers. The bottom and top teacher layers are
    always kept: the bottom one was trained on the embeddings the student starts from, the top one produced the
    representations the copied head was trained on. This reproduces DistilBERT's initialisation exactly:
    12 -> 6 gives ``[0, 2, 4, 7, 9, 11]`` (``2.2, 4.4, 6.6, 8.8`` rounded); 6 -> 3 gives ``[0, 2, 5]`` (``2.5`` ties
    down). ``N = 1`` gives ``[0]``; ``N = L`` gives every layer. Pass explicit `layers` to [`build_student`] for
    any other choice (e.g. ``[0, 2, 4]``, every other layer from the bottom).

    Args:
        num_teacher_layers (`int`): L, the number of encoder layers of the teacher (>= 1).
        num_student_layers (`int`): N, the number of student layers, in ``[1, L]``.

    Returns:
        `list[int]`: N strictly increasing teacher layer indices in ``[0, L - 1]``.
    """
    num_teacher_layers = _check_int("num_teacher_layers", num_teacher_layers)
    num_student_layers = _check_int("num_student_layers", num_student_layers)
    if num_teacher_layers < 1:
        raise ValueError(f"num_teacher_layers must be >= 1, got {num_teacher_layers}.")
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"num_student_layers must be in [1, {num_teacher_layers}] (the teacher's layer count), got "
            f"{num_student_layers}: a student initialised from the teacher cannot have more layers than it."
        )
    if num_student_layers == 1:
        return [0]
    span, gaps = num_teacher_layers - 1, num_student_layers - 1
    # Integer arithmetic for round-half-down of i * span / gaps: ceil(2 * i * span / (2 * gaps) - 1/2), exact
    # where floats would make 2.5 a coin toss.
    return [(2 * i * span + gaps - 1) // (2 * gaps) for i in range(num_student_layers)]


def validate_layers(layers: Sequence[int], num_teacher_layers: int) -> list[int]:
    """Check an explicit list of teacher layers and return it as a list.

    Args:
        layers (`Sequence[int]`): teacher layer indices, one per student layer, bottom first.
        num_teacher_layers (`int`): L, the teacher's number of encoder layers.

    Returns:
        `list[int]`: `layers`, checked non-empty, strictly increasing and each in ``[0, L - 1]``.
    """
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise ValueError(f"layers must be a list of teacher layer indices such as [0, 2, 4], got {layers!r}.")
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: pass at least one teacher layer index, e.g. [0].")
    layers = [_check_int(f"layers[{position}]", layer) for position, layer in enumerate(layers)]
    for position, layer in enumerate(layers):
        if not 0 <= layer < num_teacher_layers:
            raise ValueError(
                f"layers[{position}] = {layer} is out of range: the teacher has {num_teacher_layers} layers, so "
                f"indices must be in [0, {num_teacher_layers - 1}]."
            )
    for position in range(1, len(layers)):
        if layers[position] <= layers[position - 1]:
            raise ValueError(
                f"layers must be strictly increasing (student layer i copies teacher layer layers[i], bottom first), "
                f"got {layers}: layers[{position}] = {layers[position]} follows {layers[position - 1]}. Sort the "
                "list and remove duplicates."
            )
    return layers


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
    bert = _check_bert_teacher(teacher)
    layers = validate_layers(layers, teacher.config.num_hidden_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    config.dtype = torch.float32
    student = type(teacher)(config).to(torch.float32)

    layer_prefix = _layer_prefix(teacher, bert)
    state_dict = {}
    for name, tensor in teacher.state_dict().items():
        if not name.startswith(layer_prefix):
            state_dict[name] = tensor
            continue
        teacher_index, rest = name[len(layer_prefix) :].split(".", 1)
        if int(teacher_index) in layers:
            state_dict[f"{layer_prefix}{layers.index(int(teacher_index))}.{rest}"] = tensor
    # strict=True: every student weight must come from the teacher; load_state_dict casts to float32 on copy.
    student.load_state_dict(state_dict, strict=True)
    logger.info("Built a %d-layer %s student from teacher layers %s.", len(layers), type(student).__name__, layers)
    return student


def build_distilbert_student(teacher: PreTrainedModel, layers: Sequence[int]) -> PreTrainedModel:
    """A DistilBERT student initialised from a BERT teacher, the way DistilBERT was built from BERT-base.

    The mapping, for teacher heads `BertForSequenceClassification`, `BertForTokenClassification`,
    `BertForQuestionAnswering`, `BertForMaskedLM` and `BertModel` (giving the `DistilBertFor*` / `DistilBertModel`
    counterpart):

    - word and position embeddings and the embedding LayerNorm are copied. DistilBERT has no token types, so the
      teacher's token-type row 0 is added to every position embedding: ``word + type_0 + position`` is then computed
      exactly for single-segment inputs (all `token_type_ids` 0). Folding into the positions rather than the words
      keeps the word embeddings, and so a tied MLM output projection, identical to the teacher's. Sentence-pair
      inputs lose the segment signal of their second segment, as in DistilBERT.
    - each chosen encoder layer maps one to one (query/key/value/output -> q/k/v/out_lin, the two LayerNorms ->
      sa_layer_norm/output_layer_norm, intermediate/output dense -> ffn.lin1/lin2), with the teacher's activation.
    - sequence classification: BERT's pooler dense -> ``pre_classifier``, classifier -> ``classifier``. DistilBERT
      applies ReLU where BERT's pooler applies tanh, so the logits differ from the teacher's even with every
      layer; the encoder's hidden states do not. The other heads carry over exactly.

    Refuses teachers DistilBERT cannot reproduce: ``layer_norm_eps != 1e-12`` (DistilBERT hardcodes it in every
    LayerNorm, and a patched eps would not survive `save_pretrained`), a decoder/cross-attention config, or a
    `hidden_act` that is not an activation name.

    Args:
        teacher ([`~transformers.PreTrainedModel`]): a BERT model, one of the classes above.
        layers (`Sequence[int]`): strictly increasing teacher layer indices.

    Returns:
        [`~transformers.PreTrainedModel`]: a float32 `DistilBert*` model on the CPU, in training mode.
    """
    bert = _check_bert_teacher(teacher)
    layers = validate_layers(layers, teacher.config.num_hidden_layers)
    if type(teacher) not in _DISTILBERT_HEADS:
        supported = ", ".join(cls.__name__ for cls in _DISTILBERT_HEADS)
        raise ValueError(
            f"architecture='distilbert' has no DistilBERT counterpart for {type(teacher).__name__}; supported "
            f"teachers: {supported}. Use architecture='bert' to keep the teacher's class."
        )
    student_class, head_names = _DISTILBERT_HEADS[type(teacher)]
    config = _distilbert_config(teacher.config, num_layers=len(layers))
    student = student_class(config).to(torch.float32)

    teacher_weights = teacher.state_dict()
    bert_prefix = _layer_prefix(teacher, bert)[: -len("encoder.layer.")]  # "bert." or ""
    distil_prefix = "distilbert." if student_class is not DistilBertModel else ""

    def take(teacher_name: str) -> torch.Tensor:
        return teacher_weights[teacher_name].detach().to(device="cpu", dtype=torch.float32)

    state_dict = {
        f"{distil_prefix}embeddings.word_embeddings.weight": take(f"{bert_prefix}embeddings.word_embeddings.weight"),
        f"{distil_prefix}embeddings.position_embeddings.weight": take(
            f"{bert_prefix}embeddings.position_embeddings.weight"
        )
        + take(f"{bert_prefix}embeddings.token_type_embeddings.weight")[0],  # (P, D) + (D,)
    }
    for suffix in ("weight", "bias"):
        embedding_norm = f"embeddings.LayerNorm.{suffix}"
        state_dict[f"{distil_prefix}{embedding_norm}"] = take(f"{bert_prefix}{embedding_norm}")
        for student_index, teacher_index in enumerate(layers):
            for bert_name, distil_name in _DISTILBERT_LAYER_NAMES.items():
                state_dict[f"{distil_prefix}transformer.layer.{student_index}.{distil_name}.{suffix}"] = take(
                    f"{bert_prefix}encoder.layer.{teacher_index}.{bert_name}.{suffix}"
                )
        for bert_name, distil_name in head_names.items():
            state_dict[f"{distil_name}.{suffix}"] = take(f"{bert_name}.{suffix}")
    if student_class is DistilBertForMaskedLM and config.tie_word_embeddings:
        # Tied: vocab_projector.weight *is* the word embedding matrix; give load_state_dict the same tensor twice.
        state_dict["vocab_projector.weight"] = state_dict["distilbert.embeddings.word_embeddings.weight"]
    student.load_state_dict(state_dict, strict=True)
    logger.info("Built a %d-layer %s student from teacher layers %s.", len(layers), student_class.__name__, layers)
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
    _check_bert_teacher(teacher)
    if num_layers is not None:
        layers = select_layers(teacher.config.num_hidden_layers, num_layers)
    if architecture == "bert":
        return build_bert_student(teacher, layers)
    return build_distilbert_student(teacher, layers)


def _check_bert_teacher(teacher: PreTrainedModel) -> BertModel:
    base = getattr(teacher, "base_model", None)
    if not isinstance(teacher, PreTrainedModel) or not isinstance(base, BertModel):
        model_type = getattr(getattr(teacher, "config", None), "model_type", None)
        raise ValueError(
            f"The teacher must be a BERT model (transformers BertModel or a BertFor* task model with a `bert` "
            f"encoder), got {type(teacher).__name__} (model_type {model_type!r}). Other architectures name and lay "
            "out their layers differently; load a BERT checkpoint such as bert-base-uncased as the teacher."
        )
    return base


def _layer_prefix(teacher: PreTrainedModel, bert: BertModel) -> str:
    # State-dict names of the encoder layers: "bert.encoder.layer." on task models, "encoder.layer." on BertModel.
    return "encoder.layer." if bert is teacher else f"{teacher.base_model_prefix}.encoder.layer."


def _distilbert_config(bert_config, *, num_layers: int) -> DistilBertConfig:
    if bert_config.layer_norm_eps != DISTILBERT_LAYER_NORM_EPS:
        raise ValueError(
            f"The teacher's layer_norm_eps is {bert_config.layer_norm_eps}, but DistilBERT hardcodes eps=1e-12 in "
            "every LayerNorm, so a DistilBERT student would not compute what the teacher computes. Use "
            "architecture='bert' for this teacher."
        )
    if bert_config.is_decoder or bert_config.add_cross_attention:
        raise ValueError(
            "The teacher is configured as a decoder (is_decoder or add_cross_attention is True); DistilBERT is a "
            "bidirectional encoder only. Use architecture='bert' for this teacher."
        )
    if not isinstance(bert_config.hidden_act, str) or bert_config.hidden_act not in ACT2FN:
        raise ValueError(
            f"The teacher's hidden_act {bert_config.hidden_act!r} is not an activation name DistilBERT's config can "
            "hold (e.g. 'gelu'). Use architecture='bert' for this teacher."
        )
    # BERT's heads use classifier_dropout when set, else hidden_dropout_prob.
    head_dropout = bert_config.classifier_dropout
    if head_dropout is None:
        head_dropout = bert_config.hidden_dropout_prob
    return DistilBertConfig(
        vocab_size=bert_config.vocab_size,
        max_position_embeddings=bert_config.max_position_embeddings,
        sinusoidal_pos_embds=False,  # the position table is copied from the teacher, not generated
        n_layers=num_layers,
        n_heads=bert_config.num_attention_heads,
        dim=bert_config.hidden_size,
        hidden_dim=bert_config.intermediate_size,
        dropout=bert_config.hidden_dropout_prob,
        attention_dropout=bert_config.attention_probs_dropout_prob,
        activation=bert_config.hidden_act,
        initializer_range=bert_config.initializer_range,
        qa_dropout=head_dropout,
        seq_classif_dropout=head_dropout,
        pad_token_id=bert_config.pad_token_id,
        bos_token_id=bert_config.bos_token_id,
        eos_token_id=bert_config.eos_token_id,
        tie_word_embeddings=bert_config.tie_word_embeddings,
        id2label=dict(bert_config.id2label),
        label2id=dict(bert_config.label2id),
        problem_type=bert_config.problem_type,
        dtype=torch.float32,
        attn_implementation=bert_config._attn_implementation,
    )


def _check_int(name: str, value) -> int:
    # numbers.Integral admits numpy integers; bool is an int subclass but never a layer count.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    return int(value)
