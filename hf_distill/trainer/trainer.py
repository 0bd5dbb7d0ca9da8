"""`DistillationTrainer`: a `transformers.Trainer` whose loss mixes the student's task loss with a frozen teacher's.

Trainer and Accelerate own the loop, devices, mixed precision and checkpoints; this file owns only the teacher and
`compute_loss`. Losses are computed as sums and divided by the number of items in the whole accumulated batch on
every rank, so gradient accumulation and multi-process training give the update of one large batch.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.utils import is_torch_xla_available

from hf_distill.cache.collator import TeacherCacheCollator
from hf_distill.cache.store import (
    CACHE_COLUMNS,
    LOGITS_COLUMN,
    TOPK_INDICES_COLUMN,
    TOPK_LOG_PROBS_COLUMN,
    TeacherCache,
)
from hf_distill.cache.trainer_mixin import TeacherCacheMixin

from .arguments import DistillationTrainingArguments, distillation_settings
from .batch_counts import WholeBatchCountsMixin, count_index, count_items
from .columns import TeacherColumnsMixin
from .compatibility import check_hooks_under_data_parallel, check_tokenizers, is_causal_lm, is_regression
from .evaluation_rows import EveryEvaluationRowMixin
from .loss_terms import LossContext, task_sum
from .model_inputs import accepted_inputs, select_inputs, unwrap
from .model_internals import NOT_SELECTING, ModelInternalsMixin
from .secrets import hide_hub_token
from .student_setup import StudentSetupMixin
from .teacher import prepare_teacher
from .token_heads import CountedPositions, output_head

logger = logging.getLogger(__name__)


__all__ = ["DistillationTrainer"]


class DistillationTrainer(
    StudentSetupMixin,
    ModelInternalsMixin,
    TeacherColumnsMixin,
    TeacherCacheMixin,
    WholeBatchCountsMixin,
    EveryEvaluationRowMixin,
    Trainer,
):
    """[`~transformers.Trainer`] that distils a frozen `teacher_model` into `model` (the student).

    The training loss is ``alpha_kd * KD + alpha_task * TASK`` (+ ``alpha_cos * COS``, and the intermediate-layer
    terms ``alpha_hidden``, ``alpha_attention``, ``alpha_value_relation``, when > 0; see
    [`DistillationTrainingArguments`]), the table of terms in `loss_terms.py`; a term of weight 0 is not computed
    (the teacher itself runs whatever the weights: with no term reading it, a warning says so):

    - class logits `(B, C)`: KD = T**2 * mean over the batch of KL(softmax(t / T) || softmax(s / T));
    - regression heads (one output, or `problem_type == "regression"`): KD = MSE to the teacher's predictions;
    - token logits `(B, L, V)`: KD = T**2 * mean over the counted positions of the per-position KL; a position
      counts when its label is not -100 if the batch has labels, else when its attention mask is 1;
    - TASK = the student's supervised loss on `labels` (cross-entropy, MSE, token cross-entropy ignoring -100),
      averaged over the labelled rows only: a row labelled -100 (NaN for regression) is a transfer-set row that
      only the teacher's terms see; absent when the batch has no labels; `label_smoothing_factor` smooths its
      cross-entropy (class and token heads, never regression; the teacher's terms are never smoothed);
    - COS = mean over the attended tokens (attention mask 1, whatever positions the token KL counts) of
      1 - cos(student, teacher) between the last hidden states, DistilBERT's L_cos (Sanh et al., 2019); the
      hidden-state, attention and value-relation terms also match every attended token.

    Evaluation runs the student alone: `eval_loss` is its own task loss, as in ordinary fine-tuning.

    With `args.cache_teacher_logits`, `train()` first runs the teacher once over the training set (or loads the
    matching cache from disk) and `compute_loss` reads the stored outputs instead of running it
    (see `hf_distill.cache`).

    Args:
        model (`PreTrainedModel`): the student; trained, saved and checkpointed like any Trainer model.
        teacher_model (`PreTrainedModel`): the teacher; frozen, never in the optimizer or a checkpoint. Prepared in
            place, with no second copy of its weights: frozen (`requires_grad` off, eval mode), moved to the
            training device and, under bf16, cast to bfloat16 (half-precision weights to float32 without bf16); a
            quantized teacher is moved, never cast, and one spread by a `device_map` stays where it is.
            Pass a copy (`copy.deepcopy`) to keep the object you hold as it was.
        args (`DistillationTrainingArguments`): training arguments with `temperature`, `alpha_kd`, `alpha_task`,
            `alpha_cos`.
        teacher_processing_class (*optional*): the teacher's tokenizer. When both it and `processing_class` are
            given they must encode the same text identically, or the teacher would read garbage.
        **kwargs: any other [`~transformers.Trainer`] argument.
    """

    def __init__(
        self,
        model: PreTrainedModel | nn.Module | None = None,
        teacher_model: PreTrainedModel | nn.Module | None = None,
        args: DistillationTrainingArguments | None = None,
        *,
        teacher_processing_class: Any = None,
        **kwargs: Any,
    ):
        model_init = kwargs.get("model_init")
        if model is None and model_init is None:
            raise ValueError(
                "DistillationTrainer needs the student as `model=`, or a `model_init=` function that builds it "
                "(for hyperparameter_search); got neither."
            )
        if teacher_model is None:
            raise ValueError("DistillationTrainer needs the frozen teacher as `teacher_model=`; got None.")
        if teacher_model is model:
            raise ValueError("teacher_model is the same object as model: pass a separate student to distil into.")
        if args is not None and not isinstance(args, DistillationTrainingArguments):
            raise TypeError(
                f"args must be DistillationTrainingArguments (it adds temperature, alpha_kd and alpha_task), "
                f"got {type(args).__name__}. Build it with DistillationTrainingArguments(output_dir=..., ...)."
            )
        if kwargs.get("compute_loss_func") is not None:  # accepted by Trainer, never called by compute_loss below
            raise ValueError(
                "DistillationTrainer computes its loss from its table of terms (alpha_task, alpha_kd...), so "
                "compute_loss_func would never be called. Drop it, or subclass DistillationTrainer and override "
                "compute_loss; LabelsTrainer takes it for labels-only training."
            )
        check_tokenizers(kwargs.get("processing_class"), teacher_processing_class)
        if args is None:
            args = DistillationTrainingArguments(output_dir="trainer_output")
        args.validate_distillation()  # again: fields set after the arguments were made were never checked
        # Read by call_model_init, which Trainer.__init__ already calls when only model_init is given.
        self._unplaced_teacher = teacher_model
        if model is not None:
            self._check_student(model, args)
        check_hooks_under_data_parallel(teacher_model, args)
        super().__init__(model=model, args=args, **kwargs)
        hide_hub_token(self.args)
        if model is not None and self.optimizer is not None:
            self._check_given_optimizer(model)
        if self.args.fsdp and self.accelerator.distributed_type != DistributedType.FSDP:
            # Accelerate drops an FSDP plugin on CPU (MULTI_CPU runs DDP) without a word; say what happens instead.
            logger.warning(
                "FSDP was asked for (fsdp=%r) but Accelerate runs %s: the student is not sharded and the teacher is "
                "replicated on every process. FSDP needs GPUs (or another accelerator); on CPU this is DDP.",
                self.args.fsdp,
                self.accelerator.distributed_type.value,
            )
        self.teacher_model = prepare_teacher(
            teacher_model,
            self.accelerator,
            micro_batch_size=self.args.per_device_train_batch_size,
            keep_root_gathered=self.args.token_kd_chunk_size is not None,
        )
        # The placed teacher, never compiled: hashed for the cache fingerprint and run to build the cache.
        self._teacher_module = self.teacher_model
        if self.args.torch_compile and self.accelerator.distributed_type not in (
            DistributedType.DEEPSPEED,
            DistributedType.FSDP,
        ):
            # Trainer compiles only the student (through Accelerate); the teacher's forward is as much work.
            # Compilation is lazy: a teacher that only builds the cache is never compiled.
            self.teacher_model = torch.compile(
                self.teacher_model, backend=self.args.torch_compile_backend, mode=self.args.torch_compile_mode
            )
        self.student_is_regression = is_regression(self.model)
        self._student_input_names = accepted_inputs(self.model)
        self._teacher_input_names = accepted_inputs(teacher_model)
        self._rebuild_loss_terms()
        self._logged_terms_since_step: int | None = None  # the logging window's first step, taken at the first step
        self._student_tap = self._student_tap_owner = self._teacher_tap = None
        self._counted_positions = CountedPositions()
        self._counted_student_head: nn.Module | None = None  # the student head whose hook `_counted_positions` holds
        self.teacher_cache: TeacherCache | None = None
        self._cached_train_dataset = None  # that dataset with the cache columns attached
        self._cache_source_dataset = None  # the training set it was attached to
        self._cached_settings = None  # (cache folder, sampling strategy, length column) it was attached under
        self._cache_length_column: str | None = None
        self._refuse_cache_columns()
        if self.args.cache_teacher_logits:
            self._check_cacheable()
            self.data_collator = TeacherCacheCollator(self.data_collator)

    # ---- training, with the teacher cache when asked (hf_distill/cache/trainer_mixin.py) -----------------------

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None, **kwargs: Any):
        """[`~transformers.Trainer.train`], after attaching the teacher cache when `cache_teacher_logits` is on."""
        self._refuse_cache_columns()  # the training set may have been replaced since __init__
        if trial is None or self.hp_search_backend is None:
            # The arguments may have changed since __init__ (a search's best run applied with setattr(args, ...)):
            # checked again and the loss terms rebuilt from them, as a search trial's are (_hp_search_setup).
            self._apply_distillation_args()
            if self.args.cache_teacher_logits:
                self.prepare_teacher_cache()  # a trial's cache is prepared at its own settings (_hp_search_setup)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)

    def _inner_training_loop(self, *args: Any, **kwargs: Any):
        """[`~transformers.Trainer._inner_training_loop`], with a fresh logging window for the loss terms.

        Each run of the loop logs from its first step: a resumed run's checkpoint step (not 0, which averaged that
        window over every step since), 0 again for a second `train()`, a search trial (not the last call's end,
        which dropped that window's terms) or the retry `auto_find_batch_size` makes at a smaller batch after an
        out-of-memory error (which logged the failed attempt's terms)."""
        self._logged_terms_since_step = None
        self._logged_term_sums.zero_()
        return super()._inner_training_loop(*args, **kwargs)

    def _apply_distillation_args(self) -> None:
        """Checks the distillation arguments again and rebuilds the table of loss terms from them, when they changed
        since they were last applied (`__init__`, or a search trial)."""
        if distillation_settings(self.args) == self._applied_settings:
            return
        self._check_distillation_args()
        if self.args.cache_teacher_logits and not isinstance(self.data_collator, TeacherCacheCollator):
            self._check_cacheable()  # turned on since __init__: the collator that reads the cache, as __init__ gives
            self.data_collator = TeacherCacheCollator(self.data_collator)
        if self.model is not None and self.model_init is None:  # a model_init student is checked as it is built
            student = unwrap(self.model)
            held = len(list(student.parameters()))
            self._check_student(student, self.args)
            if len(list(student.parameters())) != held:  # a projection, for alpha_hidden turned on since
                self._restart_optimizer_for_new_parameters()
        self._rebuild_loss_terms()

    def _restart_optimizer_for_new_parameters(self) -> None:
        """The student gained parameters (the hidden-state projection) after a first `train()`: the optimizer and
        scheduler it kept do not hold them, so they are built again by the next; an engine that already wrapped the
        student (DDP, FSDP, DeepSpeed) would leave them out of its gradient sync and shards, so that is refused."""
        if self.model_wrapped is not self.model:
            raise ValueError(
                f"The arguments now need the student's hidden-state projection (alpha_hidden="
                f"{self.args.alpha_hidden}), but {type(self.model_wrapped).__name__} already wraps the student from "
                "an earlier train(), without it. Build a new DistillationTrainer with these arguments."
            )
        if self.optimizer is not None:
            logger.warning("The student gained the hidden-state projection since the last train(): its optimizer and "
                           "learning-rate schedule start afresh, holding it.")  # fmt: skip
        self.optimizer, self.lr_scheduler = None, None

    # ---- the loss: a table of weighted terms (loss_terms.py) -----------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Returns the weighted sum of the active loss terms in training, the student's own loss in evaluation.

        In training, `num_items_in_batch` is the `(4,)` tensor built by `get_batch_samples`: the examples, labelled
        examples, counted token positions and attended tokens of the whole accumulated batch across ranks
        (`batch_counts.py`). Each
        term's sum over this micro-batch is divided by its count. Without it (a direct call), each term is this
        batch's mean.
        """
        cached = {key: inputs[key] for key in CACHE_COLUMNS if key in inputs}
        if cached and model.training and not self.args.cache_teacher_logits:
            raise ValueError(
                f"The training batch holds cached teacher outputs {sorted(cached)} but cache_teacher_logits=False, "
                "so they may be another teacher's: remove those columns from the train_dataset (or the collator's "
                "output)."
            )
        if cached:  # the teacher's cached outputs: never passed to either model
            inputs = {key: value for key, value in inputs.items() if key not in cached}
        labels = inputs.get("labels")
        # Always call `model`, never a stored reference: it is the DDP/FSDP/DeepSpeed-wrapped student.
        if not model.training:
            outputs = model(**select_inputs(inputs, self._student_input_names, keep_labels=True))
            loss = outputs.loss if labels is not None else None
            if loss is not None and self.args.label_smoothing_factor > 0:
                loss = self._smoothed_eval_loss(model, outputs.logits, labels, loss)
            return (loss, outputs) if return_outputs else loss

        if self._logged_terms_since_step is None:
            self._logged_terms_since_step = self.state.global_step  # where this train() started (or resumed)
        intermediate = self._intermediate_context(model)  # before the forwards: the taps record during them
        with_hidden = any(term.needs_hidden_states for term, _ in self._loss_terms)
        student_inputs = select_inputs(inputs, self._student_input_names, keep_labels=False)
        selecting = self._position_selector(model, inputs, cached)
        selected = selecting is not NOT_SELECTING
        with selecting:  # LM heads on the counted positions only, for both models (token_heads.py)
            outputs = model(**student_inputs, **({"output_hidden_states": True} if with_hidden else {}))
            if selected:  # a model that computed its full logits without calling its head: gathered here
                head = output_head(unwrap(model))
                outputs.logits = self._counted_positions.gathered(head, outputs.logits, "student")
            teacher, teacher_outputs = self._teacher_targets(inputs, cached, outputs.logits, with_hidden, selected)
        if with_hidden:
            self._check_hidden_states(outputs, teacher_outputs)
        context = LossContext(
            student_outputs=outputs,
            teacher=teacher,
            teacher_outputs=teacher_outputs,
            inputs=inputs,
            kind="token_selected" if selected else self._output_kind(outputs.logits),
            chunked=self._chunked_heads(model, outputs.logits, teacher) if self._counted_positions.kept else None,
            temperature=self.args.temperature,
            label_smoothing=self.args.label_smoothing_factor,
            next_token=self.counts_next_token(),
            **intermediate,
        )
        # clamp: an accumulated batch with nothing to count (no labelled row) gives 0, never 0 / 0.
        if num_items_in_batch is None:
            counts = count_items(inputs, next_token=self.counts_next_token()).to(outputs.logits.device).clamp(min=1)
        else:
            # Normalised over the whole accumulated batch: transformers 5 leaves the division by the accumulation
            # steps to a compute_loss taking num_items_in_batch (for a model whose forward takes **kwargs, as BERT's),
            # so a micro-batch mean stepped N times too far at N steps. DDP averages the ranks' gradients, so
            # each rank's share is scaled back up by the number of ranks.
            counts = self.rank_counts(num_items_in_batch)
        # float32 at least (half-precision logits), float64 for a float64 student: its terms are float64 and a float32
        # sum would round them
        loss = outputs.logits.new_zeros((), dtype=torch.promote_types(outputs.logits.dtype, torch.float32))
        values = []
        for term, weight in self._loss_terms:
            total = term.compute(context)
            if total is None:  # e.g. the task term on a batch without labels
                values.append(loss.new_zeros(()))
                continue
            value = total / counts[count_index(term.count(context.kind))]
            loss = loss + weight * value
            values.append(value.detach().float())
        step_values = torch.stack(values)
        if self.args.logging_nan_inf_filter and not is_torch_xla_available():
            # Trainer leaves a NaN or inf step out of the logged loss, adding the window's sum so far over (1 + its
            # steps) instead: the terms do the same (no sync: a where), so the logged loss stays their weighted sum
            window = 1 + self.state.global_step - self._logged_terms_since_step
            step_values = torch.where(torch.isfinite(loss.detach()), step_values, self._logged_term_sums / window)
        self._logged_term_sums += step_values
        return (loss, outputs) if return_outputs else loss

    def _smoothed_eval_loss(self, model: nn.Module, logits: torch.Tensor, labels: Any, loss: torch.Tensor):
        """The evaluation loss with `label_smoothing_factor`, as training's task term and `LabelsTrainer`'s evaluation
        (Trainer's label smoother) take it: the mean over this batch's labelled rows or counted positions, for class
        ids of a sequence classifier, token ids scored at their own position, or, for a causal LM, at the position
        before (its logits at i predict token i + 1; the label smoother shifts them alike). Other heads keep the
        model's own `loss`."""
        kind = self._output_kind(logits)
        if labels.is_floating_point() or kind == "regression":
            return loss
        if kind == "token" and is_causal_lm(unwrap(model)):
            logits, labels = logits[:, :-1], labels[:, 1:]  # the model's own loss (unsmoothed) shifts them too
        total = task_sum(logits, labels, kind, label_smoothing=self.args.label_smoothing_factor)
        # 0 / 0 = NaN for a batch with no labelled row, as the model's own loss and LabelsTrainer's give (Trainer,
        # with logging_nan_inf_filter on, its default, leaves such a batch out of eval_loss, which is NaN only when
        # every batch is); a clamp made it 0, weighed in by the batch's rows
        return total / (labels != -100).sum()

    def counts_next_token(self) -> bool:
        """A causal-LM student: its token KD counts the positions that predict a counted token (`token_mask`), in the
        loss, the whole batch's counts and the teacher cache alike."""
        return self.model is not None and is_causal_lm(unwrap(self.model))

    def _output_kind(self, student_logits: torch.Tensor) -> str:
        if student_logits.dim() == 3:
            return "token"
        if self.student_is_regression or student_logits.shape[-1] == 1:
            return "regression"
        return "class"

    def _teacher_targets(self, inputs, cached, student_logits, with_hidden, selected=False):
        """The teacher's side of the loss: (logits, or the cached top-k pair; the online outputs or None); with
        `selected` (inside `CountedPositions.selecting`), the logits at the counted positions."""
        if TOPK_INDICES_COLUMN in cached:
            teacher = (cached[TOPK_LOG_PROBS_COLUMN], cached[TOPK_INDICES_COLUMN])  # (B, L, k) each
            # selected: the student's head ran on the counted positions, (N, V), the same mask gathers the cache's
            positions = inputs["input_ids"].shape if selected else student_logits.shape[:2]
            if student_logits.dim() != (2 if selected else 3) or teacher[1].shape[:2] != positions:
                raise ValueError(
                    f"The teacher cache holds token-level top-k outputs of shape {tuple(teacher[1].shape)} but the "
                    f"student's logits have shape {tuple(student_logits.shape)}: the cache was built for another "
                    "kind of model. Delete teacher_cache_dir or set cache_teacher_logits=False."
                )
            if selected:
                teacher = tuple(self._counted_positions.at_counted(values) for values in teacher)  # (N, k) each
            return teacher, None
        teacher_outputs = None
        if LOGITS_COLUMN in cached:
            teacher = cached[LOGITS_COLUMN]
        else:
            teacher_outputs = self._teacher_forward(inputs, output_hidden_states=with_hidden)
            teacher = teacher_outputs.logits
            if selected:
                head = output_head(unwrap(self._teacher_module))
                teacher = self._counted_positions.gathered(head, teacher, "teacher")
        if teacher.shape != student_logits.shape:
            raise ValueError(
                f"student logits have shape {tuple(student_logits.shape)} but teacher logits "
                f"{tuple(teacher.shape)}: the two models must have the same head and output size."
            )
        return teacher, teacher_outputs

    def _check_hidden_states(self, outputs: Any, teacher_outputs: Any) -> None:
        for role, result in (("student", outputs), ("teacher", teacher_outputs)):
            if getattr(result, "hidden_states", None) is None:
                needing = ", ".join(
                    f"{term.weight_field}={weight}" for term, weight in self._loss_terms if term.needs_hidden_states
                )
                raise ValueError(
                    f"{needing} needs the {role}'s hidden states, but its forward returned none for "
                    "output_hidden_states=True. Use a transformers model that returns them, or set that weight to 0."
                )

    def teacher_logits(self, inputs: dict[str, torch.Tensor | Any]) -> torch.Tensor:
        """Runs the frozen teacher on `inputs` (labels removed) in the training's compute dtype.

        Returns:
            `torch.Tensor`: the teacher's logits, `(B, C)` or `(B, L, V)`.
        """
        return self._teacher_forward(inputs).logits

    # no_grad, not inference_mode: the teacher's logits are saved by the KL's autograd graph for the student's
    # backward, and autograd refuses to save inference tensors ("Inference tensors cannot be saved for backward").
    # The cache build, whose outputs leave autograd entirely, does use inference_mode.
    @torch.no_grad()
    def _teacher_forward(self, inputs: dict[str, torch.Tensor | Any], output_hidden_states: bool = False) -> Any:
        # Accelerate autocasts only the prepared student; a teacher left outside runs in fp32 under fp16/bf16
        # and costs twice what it should (docs/benchmarks.md).
        teacher_inputs = select_inputs(inputs, self._teacher_input_names, keep_labels=False)
        with self.accelerator.autocast():
            if output_hidden_states:
                return self.teacher_model(**teacher_inputs, output_hidden_states=True)
            return self.teacher_model(**teacher_inputs)

    # ---- logging ---------------------------------------------------------------------------------------------

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds ``loss_<name>`` for each active loss term, unweighted and averaged over the logging window, beside
        `loss`."""
        if "loss" in logs:
            steps = self.state.global_step - (self._logged_terms_since_step or 0)
            if steps > 0:
                sums = self._logged_term_sums
                if self.accelerator.num_processes > 1:
                    sums = self.accelerator.reduce(sums.clone(), reduction="mean")
                for (term, _), value in zip(self._loss_terms, sums.tolist()):
                    logs[f"loss_{term.name}"] = value / steps
            self._logged_term_sums.zero_()
            self._logged_terms_since_step = self.state.global_step
        super().log(logs, start_time)
