"""Can this teacher be distilled into this student? Checks run when a trainer or the script is built.

A teacher and a student must read the same tokens (vocabulary and tokenizer) and produce comparable outputs (the
same number of labels and the same kind of head); a mismatch is refused before any training, naming both values.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from torch import nn

from .loss_terms import active_terms
from .token_heads import output_head

logger = logging.getLogger(__name__)

__all__ = [
    "check_chunkable_heads",
    "check_distillable",
    "check_hidden_sizes",
    "check_hooks_under_data_parallel",
    "check_task_term",
    "check_tokenizers",
    "check_vocabulary_fits",
    "config_label_names",
    "is_causal_lm",
    "is_regression",
]

# Texts both tokenizers must encode identically: words, casing, punctuation, digits, accents, a sentence pair.
_TOKENIZER_PROBES = (
    ("The quick brown fox jumps over the lazy dog.", None),
    ("Distillation keeps 97% of BERT's accuracy — naïvely?", "Yes: 40% smaller, 60% faster!"),
)


def is_regression(model: nn.Module) -> bool:
    """True when `model`'s head is a regression head (`problem_type == "regression"`, or a single output)."""
    config = getattr(model, "config", None)
    if config is None:
        return False
    problem_type = getattr(config, "problem_type", None)
    return problem_type == "regression" or (
        problem_type is None and getattr(config, "num_labels", 2) == 1 and _is_sequence_classifier(model)
    )


def check_hidden_sizes(student: nn.Module, teacher: nn.Module) -> None:
    """Raises `ValueError` when the cosine loss (alpha_cos > 0) cannot compare the two models' hidden states."""
    sizes = [getattr(getattr(model, "config", None), "hidden_size", None) for model in (student, teacher)]
    if None in sizes:
        return  # plain nn.Modules: shapes are checked on the first batch
    if sizes[0] != sizes[1]:
        raise ValueError(
            f"alpha_cos > 0 compares hidden states, but the student's hidden_size is {sizes[0]} and the teacher's "
            f"{sizes[1]}. Build the student from the teacher (same width, fewer layers), or set alpha_cos=0."
        )


def check_distillable(student: nn.Module, teacher: nn.Module) -> None:
    """Raises `ValueError` when `teacher` cannot be distilled into `student`."""
    student_config = getattr(student, "config", None)
    teacher_config = getattr(teacher, "config", None)
    if student_config is None or teacher_config is None:
        return  # plain nn.Modules: shapes are checked on the first batch
    for config, model, role in ((student_config, student, "student"), (teacher_config, teacher, "teacher")):
        if getattr(config, "is_encoder_decoder", False):  # failed inside the model at the first step
            raise ValueError(
                f"The {role} ({type(model).__name__}) is an encoder-decoder model, whose forward needs decoder inputs "
                "that DistillationTrainer does not build. Distil an encoder (sequence or token classifier, masked "
                "LM) or a decoder-only causal LM."
            )
    _check_heads(student, teacher)
    for config, role in ((student_config, "student"), (teacher_config, "teacher")):
        if getattr(config, "problem_type", None) == "multi_label_classification":
            raise ValueError(
                f"The {role} has problem_type='multi_label_classification', which DistillationTrainer does not "
                "distil (its KL assumes one softmax over the classes). Use single-label classification."
            )
    student_vocab = getattr(student_config, "vocab_size", None)
    teacher_vocab = getattr(teacher_config, "vocab_size", None)
    if student_vocab is not None and teacher_vocab is not None and student_vocab != teacher_vocab:
        raise ValueError(
            f"The student's vocabulary has {student_vocab} tokens but the teacher's has {teacher_vocab}: the teacher "
            "would read different tokens than the student. Build the student from the teacher's tokenizer (if both "
            "use one tokenizer and a table is only padded, rounded up for speed, resize the other to match: "
            "model.resize_token_embeddings(n))."
        )
    student_regression, teacher_regression = is_regression(student), is_regression(teacher)
    if student_regression != teacher_regression:
        heads = {True: "a regression head", False: "a classification head"}
        raise ValueError(
            f"The student has {heads[student_regression]} but the teacher has {heads[teacher_regression]}: "
            "set the same num_labels and problem_type on both models."
        )
    student_labels = getattr(student_config, "num_labels", None)
    teacher_labels = getattr(teacher_config, "num_labels", None)
    if _has_label_head(student) and _has_label_head(teacher) and student_labels != teacher_labels:
        raise ValueError(
            f"The student has num_labels={student_labels} but the teacher has num_labels={teacher_labels}: their "
            "outputs cannot be compared. Load the student with the teacher's num_labels (and id2label)."
        )
    for model, role in ((student, "student"), (teacher, "teacher")):
        if type(model).__name__.endswith("ForTokenClassification") and getattr(model.config, "num_labels", 2) < 2:
            raise ValueError(
                f"The {role} is a token classifier with num_labels={model.config.num_labels}: the token KL is a "
                "softmax over each position's labels, and over one logit it is always 0 (nothing would be "
                "distilled). Give both models num_labels >= 2."
            )
    if _has_label_head(student) and _has_label_head(teacher):
        _check_label_names(student_config, teacher_config)


def config_label_names(config) -> list[str] | None:
    """The labels' names in id order, or None when they are transformers' defaults (LABEL_0...): nothing to compare."""
    id2label = getattr(config, "id2label", None) or {}
    count = getattr(config, "num_labels", len(id2label))
    names = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(count)]
    return None if all(name == f"LABEL_{i}" for i, name in enumerate(names)) else names


def _check_label_names(student_config, teacher_config) -> None:
    """The student's class i must be the teacher's class i: the same names in another order would teach every
    positive as a negative. Names that differ are said (they may be the same classes, renamed)."""
    student_names, teacher_names = config_label_names(student_config), config_label_names(teacher_config)
    if student_names is None or teacher_names is None:
        return
    student_lower, teacher_lower = [n.lower() for n in student_names], [n.lower() for n in teacher_names]
    if student_lower == teacher_lower:  # NEG/POS and neg/pos: the same classes
        return
    student_order, teacher_order = dict(enumerate(student_names)), dict(enumerate(teacher_names))
    if sorted(student_lower) == sorted(teacher_lower):
        raise ValueError(
            f"The student orders its labels {student_order} and the teacher {teacher_order}: the teacher's logits "
            "would teach the student the wrong classes. Load the student with the teacher's id2label and label2id "
            "(and a head in that order)."
        )
    logger.warning(
        "The student names its labels %s and the teacher %s: they are taken to be the same classes in this order.",
        student_order,
        teacher_order,
    )


def check_hooks_under_data_parallel(teacher: nn.Module, args: Any) -> None:
    """Refuses the forward hooks' terms under one process driving several GPUs (`torch.nn.DataParallel`, which
    Trainer uses when a script is run without a launcher on a machine with several visible GPUs): its replicas
    share the hooks, which see each replica's part of the batch, not the whole batch the loss counts."""
    if args.n_gpu <= 1:
        return
    hooked = [term.name for term, _ in active_terms(args) if term.needs_last_layer]
    # cached, the student's head keeps its full logits under DataParallel (`_position_selector`): nothing to refuse
    online_heads = output_head(teacher) is not None and not args.cache_teacher_logits
    if online_heads and (args.token_kd_gather_positions or args.token_kd_chunk_size):
        hooked.append("token heads' counted positions (token_kd_gather_positions / token_kd_chunk_size)")
    if hooked:
        raise ValueError(
            f"DistillationTrainer: this process drives {args.n_gpu} GPUs (torch.nn.DataParallel), whose replicas "
            f"break the hooks of {', '.join(hooked)}: launch one process per GPU (torchrun or accelerate launch), "
            "make one GPU visible (CUDA_VISIBLE_DEVICES=0), or turn those off."
        )


# Config attributes of models that transform their logits after the output head, and the values that leave them
# unchanged: a soft-cap (Gemma 2 and 3, RecurrentGemma's logits_soft_cap, xLSTM's output_logit_soft_cap) is on
# whenever set; a scale or multiplier (Cohere's logit_scale, Granite's logits_scaling, Falcon-H1's
# lm_head_multiplier) unless it is 1.
_SOFT_CAPS = ("final_logit_softcapping", "softcap", "logits_soft_cap", "output_logit_soft_cap")
_SCALES = ("logit_scale", "logits_scaling", "lm_head_multiplier", "output_multiplier")
# Model types whose config carries one of those names but whose forward never applies it to the logits after the
# head (MPT's logit_scale is read by nothing in transformers' MPT).
_NOT_APPLIED = {"mpt": {"logit_scale"}}


def _logit_transforms(model: nn.Module) -> list[str]:
    """The `name=value` of each setting of `model`'s config that transforms its logits after its output head."""
    config = getattr(model, "config", None)
    if config is None:
        return []
    configs = [config]
    text_config = config.get_text_config() if callable(getattr(config, "get_text_config", None)) else None
    if text_config is not None and text_config is not config:
        configs.append(text_config)
    found = []
    for settings in configs:
        skipped = _NOT_APPLIED.get(getattr(settings, "model_type", None), set())
        for name in (*_SOFT_CAPS, *_SCALES):
            # a property (MiniCPM3's logits_scaling, hidden_size / dim_model_base) is derived for the model's own
            # code, which scales the hidden states before the head with it: not a setting of the logits
            if name in skipped or isinstance(getattr(type(settings), name, None), property):
                continue
            value = getattr(settings, name, None)
            if name in _SOFT_CAPS and value is not None:
                found.append(f"{name}={value}")
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and value != 1:
                found.append(f"{name}={value}")
    return list(dict.fromkeys(found))


def check_chunkable_heads(student: nn.Module, teacher: nn.Module, args: Any) -> None:
    """Refuses `token_kd_chunk_size` for a model whose config says it transforms its logits after its output head:
    the chunked loss runs the heads itself and would skip the transform. Read from the config, before training: the
    first step's numeric check (`check_head_output`) cannot see a soft-cap while the logits are still small (a cap of
    30 changes a logit of 0.5 by 1e-4), and they grow as the model trains. (With the teacher's outputs cached the
    arguments refuse a chunk size, before any student is checked.)"""
    if getattr(args, "token_kd_chunk_size", None) is None:
        return
    for model, role in ((student, "student"), (teacher, "teacher")):
        if output_head(model) is None:
            continue
        transforms = _logit_transforms(model)
        if transforms:
            raise ValueError(
                f"token_kd_chunk_size={args.token_kd_chunk_size} runs the {role}'s output head itself, but the "
                f"{role} ({type(model).__name__}) transforms its logits after that head ({', '.join(transforms)}), "
                "which the chunked loss would skip. Unset token_kd_chunk_size for this model."
            )


def is_causal_lm(model: nn.Module) -> bool:
    """Whether `model` is a causal LM (`*ForCausalLM`, `GPT2LMHeadModel`...): its logits at position i predict the
    token at i + 1. Read from its class and the classes above it: FSDP2's `fully_shard` renames a model's class in
    place (`FSDPGPT2LMHeadModel`, a subclass of the model's own), and a user's subclass of a causal LM is one too."""
    return _is_causal_lm_class(type(model))


@functools.cache  # evaluation asks once per batch
def _is_causal_lm_class(cls: type) -> bool:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    for name in (klass.__name__ for klass in cls.__mro__):  # the nearest class the maps or the name tell
        if name in MODEL_FOR_MASKED_LM_MAPPING_NAMES.values():  # XLMWithLMHeadModel is in both maps, and unshifted
            return False
        if name.endswith("ForCausalLM") or name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
            return True
    return False


def check_task_term(student: nn.Module, alpha_task: float) -> None:
    """Refuses the task term for a causal-LM student, whose labels it would score unshifted."""
    if alpha_task > 0 and is_causal_lm(student):
        raise ValueError(
            f"The student ({type(student).__name__}) is a causal LM, whose logits at each position predict the next "
            f"token, but the task term (alpha_task={alpha_task}) scores each position against its own label: it would "
            "train the student to copy its input. Set alpha_task=0 (the token KL compares the two models position by "
            "position, which holds for causal LMs), or distil an encoder (masked LM, token or sequence classifier)."
        )


def check_tokenizers(student_tokenizer: Any, teacher_tokenizer: Any) -> None:
    """Raises `ValueError` when both tokenizers are known and encode the same texts differently."""
    if student_tokenizer is None or teacher_tokenizer is None or student_tokenizer is teacher_tokenizer:
        return
    student_tokenizer, teacher_tokenizer = _text_tokenizer(student_tokenizer), _text_tokenizer(teacher_tokenizer)
    if not all(callable(getattr(t, "get_vocab", None)) for t in (student_tokenizer, teacher_tokenizer)):
        return  # image processors and the like (callable too, on images): nothing to compare
    for text, text_pair in _TOKENIZER_PROBES:
        student_ids = student_tokenizer(text, text_pair)["input_ids"]
        teacher_ids = teacher_tokenizer(text, text_pair)["input_ids"]
        if list(student_ids) != list(teacher_ids):
            raise ValueError(
                "The student's and the teacher's tokenizers encode the same text differently, so the teacher would "
                f"read garbage. For {text!r} the student's gives {list(student_ids)[:12]}... and the teacher's "
                f"{list(teacher_ids)[:12]}.... Use the teacher's tokenizer for the student."
            )


def _text_tokenizer(processor: Any) -> Any:
    """A tokenizer itself, or the one a multimodal processor holds (compared by it)."""
    if callable(getattr(processor, "get_vocab", None)):
        return processor
    return getattr(processor, "tokenizer", processor)


def check_vocabulary_fits(tokenizer: Any, config: Any, who: str = "teacher") -> None:
    """Raises `ValueError` when `tokenizer` makes ids past the model's embedding table (`config.vocab_size`): added
    tokens without resized embeddings. Such an id failed only when a text held it, or, in masked-LM training, when
    the collator's random replacement (drawn from the whole tokenizer) picked one, at some random step."""
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is None or not callable(tokenizer):
        return
    size = len(tokenizer)
    if size > vocab_size:
        added = [token for token, index in tokenizer.get_vocab().items() if index >= vocab_size]
        raise ValueError(
            f"The {who}'s tokenizer has {size} tokens but the {who}'s embedding table holds {vocab_size} "
            f"(config.vocab_size): ids {vocab_size}..{size - 1} (e.g. {sorted(added)[:3]}) would index past it. "
            f"Save the {who} after model.resize_token_embeddings(len(tokenizer)), or use the tokenizer it was "
            "trained with."
        )
    if size < vocab_size // 2:
        raise ValueError(
            f"The {who}'s tokenizer has {size} tokens but the {who}'s embedding table holds {vocab_size}: it is not "
            f"the tokenizer the {who} was trained with (a folder without tokenizer files gives one of the special "
            f"tokens alone, and every word becomes [UNK]). Save the tokenizer beside the {who} "
            "(tokenizer.save_pretrained(folder)), or pass a folder that holds it."
        )


# Heads by what their logits hold, read from the class name (a peft wrapper's too: PeftModelForSequenceClassification).
_PER_EXAMPLE = ("ForSequenceClassification", "ForMultipleChoice", "ForNextSentencePrediction")
_PER_TOKEN = ("ForTokenClassification", "ForMaskedLM", "ForCausalLM", "LMHeadModel")
_OTHER_OUTPUTS = {"ForQuestionAnswering": "start_logits and end_logits", "ForPreTraining": "pre-training outputs"}


def _head_kind(model: nn.Module) -> str | None:
    """ "example", "token", what the model gives instead of one `logits` output, or None (a class not known here)."""
    name = type(model).__name__
    if name.endswith(_PER_EXAMPLE):
        return "example"
    if name.endswith(_PER_TOKEN):
        return "token"
    other = next((outputs for suffix, outputs in _OTHER_OUTPUTS.items() if name.endswith(suffix)), None)
    if other is None and name in _bare_model_names():
        other = "hidden states only (a base model without a head)"
    return other


@functools.cache
def _bare_model_names() -> frozenset[str]:
    """The classes of transformers' base models (no head): a name or a tuple of names per model type."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return frozenset(
        n for names in MODEL_MAPPING_NAMES.values() for n in ((names,) if isinstance(names, str) else names)
    )


def _check_heads(student: nn.Module, teacher: nn.Module) -> None:
    """Refuses, before any teacher pass, heads whose logits cannot be compared: a head without one `logits` output
    (failed at the first step), or a per-example head with a per-token one (refused at the first step, after the
    teacher cache was built)."""
    kinds = {"student": _head_kind(student), "teacher": _head_kind(teacher)}
    models = {"student": student, "teacher": teacher}
    for role, kind in kinds.items():
        if kind not in (None, "example", "token"):
            raise ValueError(
                f"The {role} ({type(models[role]).__name__}) has no single logits output (it gives {kind}), which "
                "DistillationTrainer's losses compare. Distil a sequence or token classifier, or a masked or causal "
                "LM, into one of the same kind."
            )
    if {kinds["student"], kinds["teacher"]} == {"example", "token"}:
        per_example = "student" if kinds["student"] == "example" else "teacher"
        per_token = "teacher" if per_example == "student" else "student"
        raise ValueError(
            f"The {per_example} gives one output per example ({type(models[per_example]).__name__}), the "
            f"{per_token} one per token ({type(models[per_token]).__name__}): their logits cannot be compared. "
            "Load both with the same kind of head (both sequence classifiers, or both per-token heads)."
        )
    if kinds["student"] == kinds["teacher"] == "token" and is_causal_lm(student) != is_causal_lm(teacher):
        causal = "student" if is_causal_lm(student) else "teacher"
        other = "teacher" if causal == "student" else "student"
        raise ValueError(
            f"The {causal} is a causal LM ({type(models[causal]).__name__}: its logits at position i predict token "
            f"i + 1), the {other} not ({type(models[other]).__name__}: its logits at i are about token i): the KL "
            "would compare predictions of different tokens. Distil a causal LM into a causal LM, and a masked LM or "
            "token classifier into one of those."
        )


def _is_sequence_classifier(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


def _has_label_head(model: nn.Module) -> bool:
    name = type(model).__name__
    return name.endswith("ForSequenceClassification") or name.endswith("ForTokenClassification")


def hidden_size(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "hidden_size", None)


def check_intermediate_for_built_student(layers: list[int], teacher: nn.Module, args: Any) -> None:
    """`check_intermediate` for the student `build_student` will make from these teacher layers, before it exists
    (the scripts build it only after fine-tuning the teacher): its depth and source layers are all that can differ,
    as it keeps the teacher's heads and width."""
    from types import SimpleNamespace

    from .intermediate import num_heads

    planned = SimpleNamespace(
        num_hidden_layers=len(layers),
        num_attention_heads=num_heads(teacher),
        hidden_size=hidden_size(teacher),
        hf_distill_teacher_layers=list(layers),
        hf_distill_teacher_num_layers=teacher.config.num_hidden_layers,
    )
    check_intermediate(SimpleNamespace(config=planned), teacher, args)


def check_intermediate(student: nn.Module, teacher: nn.Module, args: Any) -> None:
    """Refuses intermediate-layer terms the two models cannot support, naming the values and the fix."""
    from .intermediate import _last_attention_block, layer_pairs, num_heads

    if args.alpha_hidden > 0:
        layer_pairs(args.hidden_layer_map, student, teacher)
    if args.alpha_attention > 0 or args.alpha_value_relation > 0:
        for model in (student, teacher):  # the projections the taps hook: now, not at the first step
            if isinstance(model, nn.Module):  # (a student still to be built is the teacher's kind)
                _last_attention_block(model)
    if args.alpha_attention > 0:
        for model, role in ((student, "student"), (teacher, "teacher")):
            _check_plain_attention_scores(model, role)
    if args.alpha_attention > 0 and num_heads(student) != num_heads(teacher):
        raise ValueError(
            f"alpha_attention compares attention heads one to one, but the student has {num_heads(student)} heads "
            f"and the teacher {num_heads(teacher)}. Use alpha_value_relation (any head count), or set "
            "alpha_attention=0."
        )
    if args.alpha_value_relation > 0:
        for model, role in ((student, "student"), (teacher, "teacher")):
            if getattr(getattr(model, "config", None), "rotary_value", False):
                raise ValueError(
                    f"alpha_value_relation compares the last layer's value projections' outputs, but the {role} "
                    f"({type(model).__name__}) turns its values by rotary embeddings inside the layer "
                    "(rotary_value=True): the term would compare values neither model attends with. Set "
                    "alpha_value_relation=0."
                )
        heads = args.value_relation_heads or num_heads(teacher)
        widths = (hidden_size(student), hidden_size(teacher))
        if any(width % heads for width in widths):
            raise ValueError(
                f"value_relation_heads={heads} must divide both widths (student {widths[0]}, teacher {widths[1]}). "
                "Pass --value_relation_heads with a common divisor."
            )


# Models whose attention scores are not softmax(q k^T / sqrt(d)) of the projections' outputs: rotary embeddings turn q
# and k inside the layer (RoFormer; ESM's "rotary"), relative positions add terms (BERT's relative_key, DeBERTa).
_POSITION_SCORES = {"roformer": "rotary position embeddings", "deberta": "relative attention",
                    "deberta-v2": "relative attention"}  # fmt: skip
# the modules a model builds for a position_embedding_type other than "absolute" (relative_key's distance table, ESM's
# rotary embeddings)
_POSITION_MODULES = frozenset({"distance_embedding", "rotary_embeddings"})


def _check_plain_attention_scores(model: nn.Module, role: str) -> None:
    """Refuses alpha_attention for a model whose attention the last-layer tap cannot recompute: the tap takes
    softmax(q k^T / sqrt(d)) from the query and key projections' outputs (`LastLayerTap`), and the scores of these
    models hold more than that, so the term would compare attentions neither model computes."""
    config = getattr(model, "config", None)
    if config is None:
        return
    kind = getattr(config, "position_embedding_type", None)
    why = _POSITION_SCORES.get(getattr(config, "model_type", None))
    # only where the model's code reads it: it built the modules those positions need (BERT in transformers 5 ignores
    # the attribute, and its attention is plain)
    # (a student still to be built is the teacher's kind: the teacher's modules tell)
    modules = model.named_modules() if isinstance(model, nn.Module) else ()
    reads = any(name.rsplit(".", 1)[-1] in _POSITION_MODULES for name, _ in modules)
    if why is None and kind not in (None, "absolute") and reads:
        why = f"position_embedding_type={kind!r}"
    if why is not None:
        raise ValueError(
            f"alpha_attention recomputes the last layer's attention from its query and key projections, but the "
            f"{role} ({type(model).__name__}) has {why}, which change its attention scores: the term would compare "
            "attentions neither model computes. Set alpha_attention=0 (alpha_value_relation, which compares values, "
            "still can)."
        )
