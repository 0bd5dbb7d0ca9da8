"""Parameter counts and measured inference latency, for the teacher-vs-student table."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

__all__ = ["count_parameters", "measure_latency_ms"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters, each tied tensor counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@torch.inference_mode()
def measure_latency_ms(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    *,
    warmup: int = 3,
    repeats: int = 10,
    min_seconds: float = 0.5,
) -> float:
    """Median wall-clock milliseconds of one forward pass of `model` on `batch`, in eval mode.

    Runs `warmup` unmeasured passes, then at least `repeats` measured ones and for at least `min_seconds`. The
    median resists the other processes of a shared machine better than the mean.

    Args:
        model (`nn.Module`): the model; its training mode is restored afterwards.
        batch (`dict[str, torch.Tensor]`): model inputs (no labels), already on the model's device.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    try:
        for _ in range(warmup):
            model(**batch)
        synchronize()
        timings = []
        started = time.perf_counter()
        while len(timings) < repeats or time.perf_counter() - started < min_seconds:
            tick = time.perf_counter()
            model(**batch)
            synchronize()
            timings.append((time.perf_counter() - tick) * 1000.0)
            if len(timings) >= 1000:
                break
        return statistics.median(timings)
    finally:
        model.train(was_training)
