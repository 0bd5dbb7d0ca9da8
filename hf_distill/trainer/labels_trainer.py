"""`LabelsTrainer`: a model trained on its labels alone, its loss exact under gradient accumulation and DDP.

The scripts train the baselines (labels only, hard pseudo-labels) and fine-tune the teacher with it, not with a plain
`transformers.Trainer`, because transformers 5 gets these models' loss wrong as soon as a step spans more than one
micro-batch. It takes a model whose `forward` accepts `**kwargs` to normalise its loss by `num_items_in_batch`, the
item count of the whole accumulated batch on every rank, so it neither divides the loss by the number of
accumulation steps nor leaves it unscaled under DDP (it multiplies it by the number of processes). BERT's
classification, token-classification and masked-LM heads take `**kwargs` but drop the count and return their
micro-batch mean (huggingface/transformers#47688): with 2 accumulation steps the step's loss and gradient are the
sum, not the mean, of the micro-batches'; on 2 processes, twice the mean (and so is the logged and evaluated loss).
Adam hides most of a constant scale, but not gradient clipping, the logged losses, or unlabelled rows.

`LabelsTrainer.compute_loss` sums the supervised loss (the task term of `DistillationTrainer`, `loss_terms.task_sum`)
and divides it by the labelled rows (token heads: the counted positions) of the whole accumulated batch across the
ranks, as `DistillationTrainer` does, for the heads whose loss it knows: sequence classification (single-label or
regression), token classification and masked LM. With one micro-batch per step on one process this is the model's
own mean, and the updates are a plain Trainer's (tested bit for bit on CPU in float32, so the baselines measured
before it stand). Any other head (multi-label, causal or encoder-decoder LMs, question answering...) keeps the
model's own loss, averaged over the micro-batches of a step; with a `compute_loss_func` it is a plain `Trainer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from .batch_counts import WholeBatchCountsMixin, count_index
from .compatibility import is_regression
from .evaluation_rows import EveryEvaluationRowMixin
from .loss_terms import task_sum
from .secrets import hide_hub_token

__all__ = ["LabelsTrainer"]


class LabelsTrainer(WholeBatchCountsMixin, EveryEvaluationRowMixin, Trainer):
    """[`~transformers.Trainer`] whose training loss is the mean over the labelled rows of the whole accumulated batch.

    Sequence-classification heads: cross-entropy, or MSE for regression (`problem_type == "regression"`, or one
    label); token-classification and masked-LM heads `(B, L, V)`: cross-entropy over the positions whose label is
    not -100. A row marks "no label" as in `DistillationTrainer` (-100 for classification, NaN for regression) and
    never enters the training loss. `label_smoothing_factor` applies to the classification heads only. Evaluation
    reports the model's own loss (a NaN-labelled regression row makes its batch's loss NaN, as a plain Trainer's,
    and Trainer, with `logging_nan_inf_filter` on, its default, then leaves that whole batch, its labelled rows too,
    out of `eval_loss`). Other
    heads keep the model's own loss, averaged over the micro-batches of a step (exact when they are the same size);
    with a `compute_loss_func` this is a plain `Trainer`.

    Takes the arguments of [`~transformers.Trainer`].
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        hide_hub_token(self.args)  # Trainer pickles its arguments to training_args.bin

    def uses_whole_batch_counts(self) -> bool:
        """With a `compute_loss_func` this is a plain `Trainer`, which scales its own counts."""
        return self.compute_loss_func is None

    def get_batch_samples(self, epoch_iterator: Iterator, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """The micro-batches of one step and their counts across the ranks (Trainer's own count when a
        `compute_loss_func`, which expects it, computes the loss)."""
        if self.compute_loss_func is not None:
            return Trainer.get_batch_samples(self, epoch_iterator, num_batches, device)
        return super().get_batch_samples(epoch_iterator, num_batches, device)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        """In training, the supervised loss summed over this micro-batch and divided by the whole batch's count."""
        if self.compute_loss_func is not None:  # Trainer's own path, which normalises by its count
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.get("labels")
        in_training_loop = model.training and num_items_in_batch is not None
        kind = self._summed_kind(model, labels) if in_training_loop else None
        if kind is None:
            # The model's own loss (with Trainer's label smoothing where set, but never for a regression head, whose
            # float targets it cannot index), never rescaled by the number of processes: num_items_in_batch is not
            # passed on.
            if self.label_smoother is not None and is_regression(self._unwrapped(model)):
                outputs = model(**inputs)
                loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
            else:
                loss, outputs = super().compute_loss(model, inputs, return_outputs=True)
            if in_training_loop:  # a micro-batch mean: the step's loss is their mean (loss_is_scaled_for_ga)
                loss = loss / self.current_gradient_accumulation_steps
            return (loss, outputs) if return_outputs else loss
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        total = task_sum(logits, labels, kind, label_smoothing=self.args.label_smoothing_factor)
        counts = self.rank_counts(num_items_in_batch)
        loss = total / counts[count_index("positions" if kind == "token" else "labelled")]
        return (loss, outputs) if return_outputs else loss

    def _unwrapped(self, model: nn.Module) -> nn.Module:
        """The model itself: past DDP and past torch.compile's wrapper, whose class name (``OptimizedModule``) would
        hide the head's and send every batch to the model's own per-micro-batch loss (NaN on a "no label" row)."""
        return self.accelerator.unwrap_model(model, keep_torch_compile=False)

    def _summed_kind(self, model: nn.Module, labels: Any) -> str | None:
        """The kind `task_sum` computes the loss of, as the model would ("class", "regression", "token"), or None.

        A sequence classifier's `problem_type` is set as the model sets it on its first labelled forward (which the
        summed path never makes), so that the saved config says what it trained as.
        """
        if not isinstance(labels, torch.Tensor):
            return None
        unwrapped = self._unwrapped(model)
        name, config = type(unwrapped).__name__, getattr(unwrapped, "config", None)
        if name.endswith(("ForTokenClassification", "ForMaskedLM")):
            return "token" if labels.dim() == 2 and not labels.is_floating_point() else None
        if not name.endswith("ForSequenceClassification") or config is None:
            return None
        problem_type = getattr(config, "problem_type", None)
        if problem_type is None:
            if config.num_labels == 1:
                problem_type = "regression"
            elif not labels.is_floating_point():
                problem_type = "single_label_classification"
            else:
                return None  # multi-label: the model's own loss
            config.problem_type = problem_type
        if problem_type == "regression":
            return "regression"
        if problem_type == "single_label_classification" and not labels.is_floating_point():
            return "class"
        return None
