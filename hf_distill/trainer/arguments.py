"""`DistillationTrainingArguments`: `TrainingArguments` plus the distillation knobs, validated at the boundary."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from transformers.utils import is_torch_bf16_gpu_available

from ..losses._common import MAX_TEMPERATURE
from .loss_terms import LOSS_TERMS

__all__ = ["DistillationTrainingArguments", "distillation_settings"]

HALF_PRECISIONS = ("fp16", "bf16")


@dataclass
class DistillationTrainingArguments(TrainingArguments):
    """[`~transformers.TrainingArguments`] for [`DistillationTrainer`].

    The training loss is ``alpha_kd * KD + alpha_task * TASK + alpha_cos * COS``, where KD is the
    temperature-squared KL divergence from the teacher's softened distribution to the student's (mean squared error
    to the teacher's predictions for regression heads), TASK is the student's ordinary supervised loss on the
    batch's labels, and COS (off by default) is the cosine distance between the two models' last hidden states;
    ``alpha_hidden``, ``alpha_attention`` and ``alpha_value_relation`` (off by default) add the intermediate-layer
    terms (hidden-state MSE, last-layer attention KL, value-relation KL; the table of terms in `loss_terms.py`).
    """

    temperature: float = field(
        default=2.0,
        metadata={
            "help": "Softmax temperature T > 0 for the soft targets softmax(teacher_logits / T). Higher T exposes "
            "more of how the teacher ranks the wrong classes; the KD term is multiplied by T**2 so its weight does "
            "not change with T (Hinton et al., 2015). Ignored for regression heads."
        },
    )
    alpha_kd: float = field(
        default=0.5,
        metadata={"help": "Weight (>= 0) of the distillation term KD in the training loss."},
    )
    alpha_task: float = field(
        default=0.5,
        metadata={
            "help": "Weight (>= 0) of the student's own supervised loss on the labels. Batches without labels "
            "use the distillation term alone."
        },
    )
    alpha_cos: float = field(
        default=0.0,
        metadata={
            "help": "Weight (>= 0) of DistilBERT's cosine loss: 1 - cos(student, teacher) between the two models' "
            "last hidden states, averaged over every attended token (Sanh et al., 2019). Needs equal hidden sizes "
            "and the teacher run online (not with cache_teacher_logits). 0 (default) leaves it out and costs nothing."
        },
    )
    alpha_hidden: float = field(
        default=0.0,
        metadata={
            "help": "Weight (>= 0) of TinyBERT's hidden-state MSE between the layers hidden_layer_map pairs (the "
            "embedding outputs included), averaged over the pairs. A student narrower than the teacher gets a learned "
            "projection to the teacher's width (trained, checkpointed, left out of the saved student). Needs the "
            "teacher online. 0 (default) costs nothing."
        },
    )
    hidden_layer_map: str = field(
        default="uniform",
        metadata={
            "help": "Which teacher layer each student layer matches for alpha_hidden: 'uniform' (student layer i -> "
            "teacher layer (i + 1) * Lt / Ls - 1, TinyBERT), 'init' (the teacher layer it was built from), or pairs "
            "'student:teacher' such as '0:1,1:3,2:5' (0-based). Every map also pairs the two models' embedding "
            "outputs."
        },
    )
    alpha_attention: float = field(
        default=0.0,
        metadata={
            "help": "Weight (>= 0) of MiniLM's KL between the last layers' self-attention distributions (same head "
            "count needed), recomputed from their query/key projections so SDPA stays on. Needs the teacher online."
        },
    )
    alpha_value_relation: float = field(
        default=0.0,
        metadata={
            "help": "Weight (>= 0) of MiniLM's value-relation KL of the last layers: softmax(V V^T / sqrt(d)) per "
            "relation head, for any widths and head counts. Needs the teacher online."
        },
    )
    value_relation_heads: int | None = field(
        default=None,
        metadata={
            "help": "Relation heads R for alpha_value_relation (must divide both widths); default: the "
            "teacher's attention heads."
        },  # fmt: skip
    )
    token_kd_gather_positions: bool = field(
        default=True,
        metadata={
            "help": "Language-model heads (models with output embeddings, e.g. *ForMaskedLM): run both models' "
            "vocabulary heads on the counted positions only (labels != -100), so no (B, L, V) logits are ever built "
            "(with cache_teacher_logits, the student's head; the teacher's top-k are read at the same positions). "
            "Exact (the same loss and gradients); False computes full logits, for comparison."
        },
    )
    token_kd_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "With token_kd_gather_positions: run the vocabulary heads this many counted positions at a "
            "time, under activation checkpointing, so at most one chunk's (chunk, V) logits exist even when every "
            "position counts. Exact; costs one more head forward per chunk in the backward. None: all counted "
            "positions at once. Not with cache_teacher_logits (refused: the cache runs no teacher head)."
        },
    )
    cache_teacher_logits: bool = field(
        default=False,
        metadata={
            "help": "Run the teacher once over the training set before training, store its outputs beside each "
            "example (Arrow, under teacher_cache_dir) and read them instead of running the teacher every step. "
            "Costs one inference pass and the disk space of the outputs; saves the teacher's forward on every later "
            "epoch. A cache whose teacher, data, tokenisation or settings changed is never reused (but a custom "
            "teacher module's plain Python attributes and code are not seen: keep such settings in buffers, or "
            "delete the cache). Refused with collators that mask at random (MLM), where the teacher's outputs would "
            "change every epoch."
        },
    )
    teacher_cache_top_k: int = field(
        default=64,
        metadata={
            "help": "Token-level outputs only: the number k of the teacher's most likely classes stored per counted "
            "token (2k numbers: int32 indices, float32 log-probabilities at the temperature). The KL is then taken "
            "on those k classes plus one bucket holding the rest of the mass: exact when k >= the vocabulary size, "
            "a lower bound of the full KL otherwise. Class and regression outputs are stored whole."
        },
    )
    teacher_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of teacher caches, one subfolder per fingerprint. Defaults to <output_dir>/teacher_cache. "
            "Must be visible to every process that reads it (a shared filesystem across nodes, or "
            "save_on_each_node=True to build one per node)."
        },
    )
    teacher_cache_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Batch size of the teacher's pass that builds the cache (inference only, examples sorted by "
            "length, so larger batches than training fit). Defaults to 4 x per_device_eval_batch_size."
        },
    )

    def __post_init__(self):
        self.validate_distillation()
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
        _check_launcher_precision(launcher, self.fp16, self.bf16)
        # A half precision asked by the launcher alone (`accelerate launch` with a bf16/fp16 config) would reach only
        # `mixed_precision`: set its flag, before transformers validates the flags and fills a DeepSpeed config's
        # "auto" precision from them, so that what is chosen from the flags (the teacher's stored dtype, padding to
        # multiples of 8, the latency's dtype, the pseudo-label pass's autocast) follows the training. Not where
        # transformers would refuse the flag (bf16 without --use_cpu and without a bf16 GPU: a CPU launch).
        if not (self.fp16 or self.bf16) and launcher in HALF_PRECISIONS:
            if launcher == "fp16" or self.use_cpu or is_torch_bf16_gpu_available():
                setattr(self, launcher, True)
        super().__post_init__()

    def validate_distillation(self) -> None:
        """Checks the distillation fields; `__post_init__` calls it, and so does each hyperparameter-search trial
        after it sets new values."""
        _check_finite("temperature", self.temperature, fix="pass a positive temperature such as 2.0")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature!r}: the soft targets are softmax(logits / "
                "temperature). Pass a positive value such as 2.0."
            )
        if self.temperature > MAX_TEMPERATURE:
            raise ValueError(
                f"temperature={self.temperature!r} is past {MAX_TEMPERATURE:.3g}: the loss's temperature**2 factor "
                "overflows float32 (a NaN loss). Pass a temperature such as 2.0."
            )
        # Floats, even when given as ints: a search trial's value is cast to the type of the one it replaces
        # (Trainer._hp_search_setup), and int(2.9) would train at T = 2.
        self.temperature = float(self.temperature)
        weights = [term.weight_field for term in LOSS_TERMS]
        for name in weights:
            value = getattr(self, name)
            _check_finite(name, value, fix=f"pass a weight >= 0 for {name}")
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}: it weighs a loss term. Pass 0 to drop it.")
            setattr(self, name, float(value))
        if all(getattr(self, name) == 0 for name in weights):
            raise ValueError(
                f"every loss weight ({', '.join(weights)}) is 0, so the loss would be identically 0 and nothing would "
                "train. Set alpha_kd > 0 to distil, alpha_task > 0 to learn from the labels, or both."
            )
        if not isinstance(self.cache_teacher_logits, bool):
            raise ValueError(
                f"cache_teacher_logits must be true or false, got {self.cache_teacher_logits!r}: pass true to run the "
                "teacher once before training, false to run it every step."
            )
        for term in LOSS_TERMS:
            weight = getattr(self, term.weight_field)
            if term.needs_online_teacher and weight > 0 and self.cache_teacher_logits:
                raise ValueError(
                    f"{term.weight_field}={weight!r} needs the teacher's internals every step, but "
                    "cache_teacher_logits=True stores only its logits. Set cache_teacher_logits=False to run the "
                    f"teacher online, or {term.weight_field}=0."
                )
        _check_positive_int("teacher_cache_top_k", self.teacher_cache_top_k, fix="pass a k such as 64")
        if self.token_kd_chunk_size is not None:
            _check_positive_int(
                "token_kd_chunk_size", self.token_kd_chunk_size, fix="pass e.g. 1024, or leave it unset"
            )
            if not self.token_kd_gather_positions:  # the chunks are of the counted positions the heads' hooks keep
                raise ValueError(
                    f"token_kd_chunk_size={self.token_kd_chunk_size} chunks the counted positions that "
                    "token_kd_gather_positions keeps, but token_kd_gather_positions=False runs the heads on every "
                    "position: set token_kd_gather_positions=True, or leave token_kd_chunk_size unset."
                )
            if self.cache_teacher_logits:  # a cached batch runs no head in chunks (`_position_selector`)
                raise ValueError(
                    f"token_kd_chunk_size={self.token_kd_chunk_size} chunks the heads of an online teacher and its "
                    "student, but cache_teacher_logits=True runs no teacher head (the student's runs on all the "
                    "counted positions at once), so the chunk size would be ignored: unset token_kd_chunk_size, or "
                    "set cache_teacher_logits=False."
                )
        smoothing = self.label_smoothing_factor
        _check_finite("label_smoothing_factor", smoothing, fix="pass a value in [0, 1], e.g. 0.1, or 0 for none")
        if not 0 <= smoothing <= 1:
            raise ValueError(
                f"label_smoothing_factor must be in [0, 1], got {smoothing!r}: it is the share of each label's mass "
                "spread over the classes. Pass e.g. 0.1, or 0 for none."
            )
        if self.value_relation_heads is not None:
            _check_positive_int("value_relation_heads", self.value_relation_heads, fix="pass R such as 12")
        from .intermediate import parse_layer_map  # validates the syntax now; the depths are checked at construction

        parse_layer_map(self.hidden_layer_map)
        if self.teacher_cache_batch_size is not None:
            _check_positive_int(
                "teacher_cache_batch_size",
                self.teacher_cache_batch_size,
                fix="pass a batch size such as 128, or leave it unset for 4 x per_device_eval_batch_size",
            )
        if self.teacher_cache_dir is not None and not str(self.teacher_cache_dir).strip():
            raise ValueError(
                f"teacher_cache_dir must be a folder, got {self.teacher_cache_dir!r}: pass a path, or leave it unset "
                "for <output_dir>/teacher_cache."
            )

    @property
    def pad_to_multiple_of(self) -> int | None:
        """8 under fp16/bf16, else None: pass it to the data collator.

        Tensor cores run half-precision matmuls whose dimensions are multiples of 8; padding each batch up to the next
        multiple costs at most 7 positions. In float32 there is no such gain, so nothing is added.
        """
        return 8 if (self.fp16 or self.bf16) else None

    @property
    def resolved_teacher_cache_batch_size(self) -> int:
        """`teacher_cache_batch_size`, or 4 x `per_device_eval_batch_size` when it is unset."""
        if self.teacher_cache_batch_size is not None:
            return self.teacher_cache_batch_size
        return 4 * self.per_device_eval_batch_size


def distillation_settings(args: DistillationTrainingArguments) -> dict[str, Any]:
    """The values of the fields DistillationTrainingArguments adds to TrainingArguments."""
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.name not in inherited}


def _check_finite(name: str, value: float, *, fix: str) -> None:
    # numbers.Real: numpy's float32 and int64 too (not subclasses of float or int)
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}: {fix}.")


def _check_positive_int(name: str, value, *, fix: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}: {fix}.")


def _check_launcher_precision(launcher: str, fp16: bool, bf16: bool) -> None:
    """Refuses a half precision that would silently replace the launcher's: `accelerate launch` passes its config's
    `mixed_precision` as ACCELERATE_MIXED_PRECISION, and `TrainingArguments` lets `fp16`/`bf16` override it without a
    word (a fp16 launch config with a GLUE config's `bf16: true` would train in bf16, emulated on older GPUs)."""
    for flag, asked in (("bf16", bf16), ("fp16", fp16)):
        if asked and launcher in HALF_PRECISIONS and launcher != flag:
            raise ValueError(
                f"the launcher asks for {launcher} (ACCELERATE_MIXED_PRECISION={launcher}, from `accelerate launch` "
                f"or its config) but {flag} is true here, which would train in {flag} instead: pass --{flag} false "
                f"--{launcher} true, or launch with a {flag} config."
            )
