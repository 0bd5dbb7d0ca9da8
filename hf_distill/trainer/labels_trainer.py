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
ranks, as `DistillationTrainer` does. With one micro-batch per step on one process this is the model's own mean, and
the updates are a plain Trainer's (tested bit for bit, so the baselines measured before it stand).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import Trainer

from .batch_counts import WholeBatchCountsMixin, count_index
from .compatibility import is_regression
from .loss_terms import task_sum

__all__ = ["LabelsTrainer"]


class LabelsTrainer(WholeBatchCountsMixin, Trainer):
    """[`~transformers.Trainer`] whose training loss is the mean over the labelled rows of the whole accumulated batch.

    Class heads `(B, C)`: cross-entropy; regression heads (`problem_type == "regression"`, or one output): MSE;
    token heads `(B, L, V)`: cross-entropy over the positions whose label is not -100. A row marks "no label" as in
    `DistillationTrainer`: -100 for classification, NaN for regression; such a row never enters the loss. Evaluation
    reports the model's own loss. `label_smoothing_factor` applies to class and token heads. A multi-label head, or a
    `compute_loss_func`, falls back to the model's own loss averaged over the micro-batches of a step (exact when
    they are the same size).

    Takes the arguments of [`~transformers.Trainer`].
    """

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        """In training, the supervised loss summed over this micro-batch and divided by the whole batch's count."""
        labels = inputs.get("labels")
        if not model.training or labels is None or num_items_in_batch is None or not self._sums_its_loss(model):
            # The model's own loss (Trainer's label smoothing or compute_loss_func where set), never rescaled by
            # the number of processes: num_items_in_batch is not passed on.
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True)
            if model.training:  # a micro-batch mean: the step's loss is their mean (loss_is_scaled_for_ga is True)
                loss = loss / self.current_gradient_accumulation_steps
            return (loss, outputs) if return_outputs else loss
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        if logits.dim() == 3:
            kind = "token"
        else:
            kind = "regression" if is_regression(self.accelerator.unwrap_model(model)) else "class"
        smoothing = self.args.label_smoothing_factor if kind != "regression" else 0.0
        total = task_sum(logits, labels, kind, label_smoothing=smoothing)
        counts = self.rank_counts(num_items_in_batch)
        loss = total / counts[count_index("positions" if kind == "token" else "labelled")]
        return (loss, outputs) if return_outputs else loss

    def _sums_its_loss(self, model: nn.Module) -> bool:
        """False where the model's own loss is kept: a multi-label head, or a user's `compute_loss_func`."""
        config = getattr(self.accelerator.unwrap_model(model), "config", None)
        multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
        return self.compute_loss_func is None and not multi_label
