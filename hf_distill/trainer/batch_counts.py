"""The item counts that every loss term is averaged over: one definition for a micro-batch, summed over the whole
accumulated batch on every rank by `WholeBatchCountsMixin.get_batch_samples` (`DistillationTrainer`, `LabelsTrainer`).

Losses are sums divided by these counts, never per-micro-batch means, so that 2 x 4 micro-batches (or 2 ranks x 4)
give the update of one batch of 8 even when micro-batches differ in how many rows carry labels or how many token
positions count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch

from hf_distill.losses.masks import token_mask

__all__ = [
    "COUNT_NAMES",
    "WholeBatchCountsMixin",
    "check_data_parallel_only",
    "check_planned_data_parallel_only",
    "count_index",
    "count_items",
    "labelled_rows",
    "planned_batch_splits",
]

# examples: every row (the KD term's denominator for class and regression heads);
# labelled: rows with a label (the task term's denominator), see `labelled_rows`;
# positions: token positions that count (the token-level KD and task terms);
# tokens: every attended token (the hidden-state, cosine, attention and value-relation terms: DistilBERT, TinyBERT
# and MiniLM match every token, not only a masked LM's ~15% of masked positions; for a class head, = positions).
COUNT_NAMES = ("examples", "labelled", "positions", "tokens")


def count_index(name: str) -> int:
    """Index of count `name` in the `(4,)` tensor of `count_items`."""
    return COUNT_NAMES.index(name)


def labelled_rows(labels: torch.Tensor) -> torch.Tensor:
    """`(B,)` bool: the rows whose label enters the task loss.

    A row marks "no label" with -100 for classification (as token heads already do with their positions), and with
    NaN for regression (float) labels, where -100 is a valid target. A token-labelled row `(B, L)` counts as
    labelled when any of its positions is not -100.
    """
    if labels.is_floating_point():
        return torch.isfinite(labels.view(labels.shape[0], -1)).all(dim=1)
    if labels.dim() >= 2:
        return labels.ne(-100).view(labels.shape[0], -1).any(dim=1)
    return labels.ne(-100)


def sequence_input(batch: dict[str, Any]) -> torch.Tensor | None:
    """The batch's per-position input, `(B, L)` ids or `(B, L, D)` embeddings, whose first two dimensions are the
    positions when no attention mask says which count; None without either."""
    return next((batch[k] for k in ("input_ids", "inputs_embeds") if isinstance(batch.get(k), torch.Tensor)), None)


def count_items(batch: dict[str, Any], *, next_token: bool = False) -> torch.Tensor:
    """`(4,)` float tensor for one micro-batch: examples, labelled examples, counted token positions and tokens.

    Counted positions are labels != -100 when the batch has token labels `(B, L)` (integer), else attention mask 1,
    else every input position (of `input_ids`, else `inputs_embeds`): the losses' `token_mask`, which this calls
    (`next_token`: a causal LM's positions, those predicting a counted token). Tokens are attention mask 1, else every
    input position (`attended_mask`).
    """
    labels = batch.get("labels")
    reference = next(value for value in batch.values() if isinstance(value, torch.Tensor))
    num_examples = reference.new_tensor(reference.shape[0], dtype=torch.float32)
    has_labels = isinstance(labels, torch.Tensor)
    labelled = labelled_rows(labels).sum().float() if has_labels else torch.zeros_like(num_examples)
    sequence = sequence_input(batch)
    if isinstance(batch.get("attention_mask"), torch.Tensor):
        tokens = batch["attention_mask"].sum()
    elif sequence is not None:  # every position of (B, L) ids or (B, L, D) embeddings
        tokens = reference.new_tensor(sequence.shape[0] * sequence.shape[1])
    else:
        tokens = num_examples
    token_labels = has_labels and labels.dim() >= 2 and not labels.is_floating_point()
    shaped = sequence if sequence is not None else labels if token_labels else None
    if shaped is not None:
        mask = token_mask(labels, batch.get("attention_mask"), shaped.shape, shaped.device, next_token=next_token)
        positions = mask.sum()
    else:  # no token sequence: its attended tokens, else one per example
        positions = tokens
    return torch.stack([num_examples, labelled, positions.float(), tokens.float()])


def check_data_parallel_only(trainer: Any) -> None:
    """Raises `ValueError` when `trainer` splits one batch over several ranks (tensor, context or sequence parallel).

    The counts are summed over every rank and each rank's sum is divided by the number of processes, which is exact
    when every rank holds different rows (DDP, FSDP, DeepSpeed ZeRO). Ranks that share a batch would count its rows
    once per rank; `Trainer` divides its own count by those sizes, but a per-row KL over a sequence split across
    ranks is not a sum of per-rank parts, so these trainers refuse such runs instead of averaging them wrongly.
    """
    sizes = {
        "tp_size": (trainer.get_tp_size(), "the model or the DeepSpeed/accelerate config"),
        "cp_size": (trainer.get_cp_size(), "the accelerate parallelism config"),
        "sp_size": (trainer.get_sp_size(), "the accelerate parallelism config"),
    }
    # Trainer.get_tp_size reads DeepSpeed's autotp_size only from --deepspeed, not from a config accelerate launch
    # handed over (the plugin's), which deepspeed_init applies all the same
    autotp = _deepspeed_autotp(trainer.args)
    if autotp[0] > (sizes["tp_size"][0] or 1):
        sizes["tp_size"] = autotp
    _refuse_shared_batches(type(trainer).__name__ + ":", sizes)


def planned_batch_splits(args: Any) -> dict[str, tuple[int, str]]:
    """The tensor, context and sequence parallel sizes a run will have, each with where it was read, from its
    `TrainingArguments` and the launcher's environment before any model or `Accelerator` exists (what
    `Trainer.get_tp_size` and friends read once built): `args.parallelism_config` (library use), else the
    `PARALLELISM_CONFIG_*` variables `accelerate launch` sets when its config turns the parallelism config on, and a
    DeepSpeed config's `tensor_parallel.autotp_size` (from `--deepspeed` or accelerate's DeepSpeed plugin)."""
    sizes = {name: (1, "") for name in ("tp_size", "cp_size", "sp_size")}
    config = getattr(args, "parallelism_config", None)
    if config is not None:
        sizes = {name: (getattr(config, name, None) or 1, "TrainingArguments.parallelism_config") for name in sizes}
    elif os.environ.get("ACCELERATE_USE_PARALLELISM_CONFIG", "false").lower() == "true":  # as Accelerator reads it
        for name in sizes:
            variable = f"PARALLELISM_CONFIG_{name.upper()}"
            size = os.environ.get(variable, "1")
            if not size.strip().isdigit():
                raise ValueError(
                    f"{variable}={size!r} is not a whole number: set parallelism_config_{name} in the accelerate "
                    "config to a whole number (1 for data parallelism only)."
                )
            sizes[name] = (int(size), f"{variable}, from the accelerate config's parallelism_config_{name}")
    autotp = _deepspeed_autotp(args)
    if autotp[0] > sizes["tp_size"][0]:
        sizes["tp_size"] = autotp
    return sizes


def _deepspeed_autotp(args: Any) -> tuple[int, str]:
    """DeepSpeed's tensor-parallel size, from `--deepspeed` (`args.hf_deepspeed_config`) or the config of the plugin
    `accelerate launch` handed over; 1 without one."""
    deepspeed = getattr(args, "hf_deepspeed_config", None)
    if deepspeed is None:
        deepspeed = getattr(getattr(args, "deepspeed_plugin", None), "hf_ds_config", None)
    config = getattr(deepspeed, "config", None)
    if not isinstance(config, dict):
        return 1, ""
    size = (config.get("tensor_parallel") or {}).get("autotp_size", 1)
    if not isinstance(size, int) or isinstance(size, bool):
        raise ValueError(
            f"DeepSpeed config tensor_parallel.autotp_size={size!r} is not a whole number: give 1 (data parallel "
            "only) or drop the tensor_parallel section."
        )
    return size, "the DeepSpeed config's tensor_parallel.autotp_size"


def check_planned_data_parallel_only(args: Any) -> None:
    """`check_data_parallel_only` for a run not built yet: the scripts call it with their arguments before any
    model is loaded or trained, so that a split batch is refused before a teacher is fine-tuned, not after."""
    _refuse_shared_batches("This run's trainers (DistillationTrainer, LabelsTrainer):", planned_batch_splits(args))


def _refuse_shared_batches(who: str, sizes: dict[str, tuple[int | None, str]]) -> None:
    shared = {name: found for name, found in sizes.items() if found[0] and found[0] > 1}
    if shared:
        described = "; ".join(
            f"{name}={size}" + (f" from {source}" if source else "") for name, (size, source) in shared.items()
        )
        raise ValueError(
            f"{who} losses are averaged over rows that each rank holds alone, but this run splits every batch over "
            f"ranks ({described}): each row would be counted once per rank. Use data parallelism only (DDP, FSDP "
            "or DeepSpeed ZeRO): set those sizes to 1."
        )


class WholeBatchCountsMixin:
    """For a `Trainer` whose `compute_loss` divides sums by the counts of the whole accumulated batch on every rank.

    `get_batch_samples` hands `compute_loss` those counts as `num_items_in_batch` (a `(4,)` tensor, `count_items`
    summed over the micro-batches and the ranks), and `loss_is_scaled_for_ga` tells `Trainer.training_step` not to
    divide the loss again by the number of accumulation steps.
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.uses_whole_batch_counts():
            check_data_parallel_only(self)
            # transformers 5.0-5.18 have no `loss_is_scaled_for_ga`: their `training_step` divides the loss by the
            # accumulation steps again unless `model_accepts_loss_kwargs` (read from the model's forward). Our
            # compute_loss passes no loss kwargs to the model, so this only says the loss is already scaled.
            self.model_accepts_loss_kwargs = True

    def counts_next_token(self) -> bool:
        """Whether the counted positions are a causal LM's (those predicting a counted token, `token_mask`)."""
        return False

    def uses_whole_batch_counts(self) -> bool:
        """Whether `compute_loss` divides by this mixin's counts (a subclass may hand some runs to `Trainer`)."""
        return True

    def get_batch_samples(
        self, epoch_iterator: Iterator, num_batches: int, device: torch.device
    ) -> tuple[list, torch.Tensor | None]:
        """Fetches the micro-batches of one optimizer step and counts their items across every rank.

        Returns the batches and a `(4,)` float tensor: examples, labelled examples, counted positions, tokens
        (`count_items`), summed over the micro-batches and the ranks.
        """
        batch_samples = []
        for _ in range(num_batches):
            try:
                batch_samples.append(next(epoch_iterator))
            except StopIteration:
                break
        if not batch_samples:
            return batch_samples, None
        next_token = self.counts_next_token()
        counts = torch.stack([count_items(batch, next_token=next_token) for batch in batch_samples])
        counts = counts.sum(dim=0).to(device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        return batch_samples, counts

    def rank_counts(self, num_items_in_batch: torch.Tensor) -> torch.Tensor:
        """This rank's divisors: the whole batch's counts (at least 1: an accumulated batch with nothing to count
        gives a zero term, never 0 / 0) over the number of ranks, as DDP averages the ranks' gradients."""
        return num_items_in_batch.clamp(min=1) / self.accelerator.num_processes
