"""Which teacher layers a student starts from, and the BERT encoder they are read from."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

from transformers import BertModel, PreTrainedModel

__all__ = ["check_bert_teacher", "check_weights_in_memory", "layer_prefix", "select_layers", "validate_layers"]


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
        why = (
            "a student initialised from the teacher cannot have more layers than it"
            if num_student_layers > num_teacher_layers
            else "a student needs a layer"
        )
        raise ValueError(
            f"num_student_layers must be in [1, {num_teacher_layers}] (the teacher's layer count), got "
            f"{num_student_layers}: {why}."
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


def check_bert_teacher(teacher: PreTrainedModel) -> BertModel:
    """The teacher's BERT encoder; refuses anything else (other architectures lay their layers out differently)."""
    base = getattr(teacher, "base_model", None)
    if not isinstance(teacher, PreTrainedModel) or not isinstance(base, BertModel):
        model_type = getattr(getattr(teacher, "config", None), "model_type", None)
        raise ValueError(
            f"The teacher must be a BERT model (transformers BertModel or a BertFor* task model with a `bert` "
            f"encoder), got {type(teacher).__name__} (model_type {model_type!r}). Other architectures name and lay "
            "out their layers differently: give a student of the teacher's kind you built yourself "
            "(--student_model_name_or_path in the scripts, model= in DistillationTrainer), or load a BERT checkpoint "
            "such as bert-base-uncased as the teacher."
        )
    return base


def check_weights_in_memory(teacher: PreTrainedModel) -> None:
    """Refuses a teacher whose weights this process does not hold whole (on the meta device, a DeepSpeed ZeRO-3
    partition, an FSDP shard): a student copied from them failed inside torch (a size mismatch, "Cannot copy out of
    meta tensor")."""
    for name, tensor in [*teacher.named_parameters(), *teacher.named_buffers()]:
        why = None
        if tensor.is_meta:
            why = "on the meta device: loaded without its weights, or offloaded by a device_map"
        elif hasattr(tensor, "ds_id") and tensor.numel() == 0 and getattr(tensor, "ds_numel", 0) > 0:
            why = "a DeepSpeed ZeRO-3 partition (not gathered)"
        elif type(tensor).__name__ == "DTensor" or type(getattr(tensor, "data", None)).__name__ == "DTensor":
            why = "an FSDP shard (DTensor)"
        if why is not None:
            raise ValueError(
                f"build_student copies the teacher's weights, but {name} is {why}. Load the teacher whole in this "
                "process (outside ZeRO-3's zero.Init, without a device_map that offloads it, before FSDP shards it), "
                "build the student, then hand both to the trainer."
            )


def layer_prefix(teacher: PreTrainedModel, bert: BertModel) -> str:
    """State-dict prefix of the encoder layers: "bert.encoder.layer." on task models, "encoder.layer." on BertModel."""
    return "encoder.layer." if bert is teacher else f"{teacher.base_model_prefix}.encoder.layer."


def _check_int(name: str, value) -> int:
    # numbers.Integral admits numpy integers; bool is an int subclass but never a layer count.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__}).")
    return int(value)
