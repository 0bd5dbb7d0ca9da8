"""A DistilBERT student initialised from a BERT teacher, the way DistilBERT was built from BERT-base.

Sanh et al., 2019, sec. 3: "taking one layer out of two"; the weight mapping is in [`build_distilbert_student`].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

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

from .layers import check_bert_teacher, check_weights_in_memory, layer_prefix, validate_layers

logger = logging.getLogger(__name__)

__all__ = ["DISTILBERT_LAYER_NORM_EPS", "build_distilbert_student", "check_distilbert_teacher"]

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
    bert = check_bert_teacher(teacher)
    check_weights_in_memory(teacher)
    layers = validate_layers(layers, teacher.config.num_hidden_layers)
    check_distilbert_teacher(teacher)
    student_class, head_names = _DISTILBERT_HEADS[type(teacher)]
    config = _distilbert_config(teacher.config, num_layers=len(layers))
    config.hf_distill_teacher_layers = list(layers)  # which teacher layer each student layer starts from
    config.hf_distill_teacher_num_layers = teacher.config.num_hidden_layers  # of a teacher this deep
    student = student_class(config).to(torch.float32)

    teacher_weights = teacher.state_dict()
    bert_prefix = layer_prefix(teacher, bert)[: -len("encoder.layer.")]  # "bert." or ""
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


def check_distilbert_teacher(teacher: PreTrainedModel) -> None:
    """Refuses a BERT teacher that has no DistilBERT counterpart, or whose computation DistilBERT cannot hold."""
    if type(teacher) not in _DISTILBERT_HEADS:
        supported = ", ".join(cls.__name__ for cls in _DISTILBERT_HEADS)
        raise ValueError(
            f"architecture='distilbert' has no DistilBERT counterpart for {type(teacher).__name__}; supported "
            f"teachers: {supported}. Use architecture='bert' to keep the teacher's class."
        )
    if isinstance(teacher, BertForQuestionAnswering) and teacher.config.num_labels != 2:
        # DistilBertForQuestionAnswering's constructor raises on anything but a start and an end logit.
        raise ValueError(
            f"The question-answering teacher has num_labels={teacher.config.num_labels}, but "
            "DistilBertForQuestionAnswering holds exactly 2 (start and end logits). Use architecture='bert' to keep "
            "the teacher's head."
        )
    _distilbert_config(teacher.config, num_layers=1)


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
    # BERT's classification heads use classifier_dropout when set, else hidden_dropout_prob (DistilBERT's token
    # classification head uses `dropout`, the encoder's, so a teacher's separate classifier_dropout is not kept
    # there); its question-answering head applies no dropout at all.
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
        qa_dropout=0.0,
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
