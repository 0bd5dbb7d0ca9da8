"""Parameter counts and measured inference latency, for the teacher-vs-student table."""

from __future__ import annotations

import copy
import inspect
import logging
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ..trainer.intermediate import PROJECTION_NAME
from ..trainer.model_inputs import unwrap

__all__ = [
    "LATENCY_BATCH_SIZES",
    "check_timing",
    "count_parameters",
    "cpu_model",
    "cpu_name",
    "latency_device",
    "latency_dtype",
    "measure_latencies_ms",
    "measure_latency_ms",
    "measure_models",
]

LATENCY_BATCH_SIZES = (1, 32)

logger = logging.getLogger(__name__)


def cpu_model() -> str:
    """This machine's CPU model name (Linux's /proc/cpuinfo; `platform.processor()` is empty there), else what
    `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_name() -> str:
    """The CPU model for a sentence: "AMD EPYC CPU", "Intel(R) Xeon(R) CPU @ 2.20GHz", "AMD EPYC 7B13 64-Core
    Processor" (no second "CPU")."""
    name = cpu_model()
    return name if {"CPU", "Processor"} & set(name.split()) else f"{name} CPU"


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of the model as saved, each tied tensor counted once.

    A student distilled with `alpha_hidden` carries a training-only hidden-state projection (`PROJECTION_NAME`) that
    `DistillationTrainer.save_model` leaves out: it is not counted, or the card would state more parameters than the
    published student has.
    """
    projection = getattr(unwrap(model), PROJECTION_NAME, None)
    left_out = set() if projection is None else {id(p) for p in projection.parameters()}
    unique = {id(p): p for p in model.parameters() if id(p) not in left_out}
    return sum(p.numel() for p in unique.values())


def check_timing(warmup: int, repeats: int, min_seconds: float) -> None:
    """Refuse timing settings that are not counts and durations: `warmup` >= 0, `repeats` >= 1 (always: with
    `min_seconds` 0, fewer left no timing to take the median of, a `StatisticsError` far from the cause) and
    `min_seconds` >= 0."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0 (unmeasured passes), got {warmup!r}.")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1 (measured passes), got {repeats!r}.")
    if not min_seconds >= 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds!r}.")


def _synchronizer(device: torch.device):
    """A call that waits for `device`'s queued work: CUDA, MPS and XPU run kernels asynchronously, so a timer that
    does not wait measures how long the launches took. The device is named, so a model on `cuda:1` is waited for
    whichever device is current."""
    if device.type == "cpu":
        return lambda: None
    return lambda: torch.accelerator.synchronize(device)


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
    timed = measure_latencies_ms({"model": (model, batch)}, warmup=warmup, repeats=repeats, min_seconds=min_seconds)
    return timed["model"]


@torch.inference_mode()
def measure_latencies_ms(
    runs: dict[str, tuple[nn.Module, dict[str, torch.Tensor]]],
    *,
    warmup: int = 3,
    repeats: int = 10,
    min_seconds: float = 0.5,
) -> dict[str, float]:
    """Median wall-clock milliseconds of one forward pass of each model on its batch, the passes taken in turns.

    Each model runs `warmup` unmeasured passes; then one measured pass of each in turn, until each has at least
    `repeats` and they have run for at least `min_seconds` per model (at most 1000 each). Taken in turns, a burst of
    another process's load falls on every model alike: timed one after the other, a 3-layer student timed while the
    machine was busy measured slower than its 6-layer teacher (a 0.14x "speed-up" on a card).

    Args:
        runs: name -> (model, its inputs without labels, already on the model's device); each model's training mode
            is restored afterwards.
    """
    check_timing(warmup, repeats, min_seconds)
    modes = {name: model.training for name, (model, _) in runs.items()}
    synchronize = {name: _synchronizer(next(model.parameters()).device) for name, (model, _) in runs.items()}
    try:
        for name, (model, batch) in runs.items():
            model.eval()
            for _ in range(warmup):
                model(**batch)
            synchronize[name]()
        timings: dict[str, list[float]] = {name: [] for name in runs}
        started = time.perf_counter()
        while min(map(len, timings.values())) < repeats or time.perf_counter() - started < min_seconds * len(runs):
            for name, (model, batch) in runs.items():
                tick = time.perf_counter()
                model(**batch)
                synchronize[name]()
                timings[name].append((time.perf_counter() - tick) * 1000.0)
            if min(map(len, timings.values())) >= 1000:
                break
        return {name: statistics.median(values) for name, values in timings.items()}
    finally:
        for name, (model, _) in runs.items():
            model.train(modes[name])


def latency_dtype(training_args) -> torch.dtype:
    """The dtype measure_models times both models in: the run's half precision on a GPU, else float32."""
    if training_args.device.type == "cuda" and (training_args.bf16 or training_args.fp16):
        return torch.bfloat16 if training_args.bf16 else torch.float16
    return torch.float32


def latency_device(training_args) -> str:
    """Where measure_models timed the models, in words, for the model card."""
    device = training_args.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type.upper()
    dtype = str(latency_dtype(training_args)).removeprefix("torch.")
    return f"{'a' if device.type == 'cpu' else 'one'} {name}, {dtype}"


@torch.inference_mode()
def measure_models(teacher, student, dataset, collator, training_args) -> dict[str, float]:
    """Parameter counts and median forward latency of both models on real examples, same device and dtype."""
    device = training_args.device
    dtype = latency_dtype(training_args)
    models = {"teacher": teacher, "student": student}
    results: dict[str, float] = {f"{role}_parameters": count_parameters(model) for role, model in models.items()}
    # both held at once (timed in turns): a model already on the device in the dtype is timed as it is (its mode is
    # restored), only the others are copied there, so that no model is held twice
    measured = {role: _on(model, device, dtype) for role, model in models.items()}
    names = {role: _forward_names(model) for role, model in measured.items()}
    for batch_size in LATENCY_BATCH_SIZES:
        rows = [dataset[i % len(dataset)] for i in range(batch_size)]
        features = collator([{k: v for k, v in row.items() if k != "labels"} for row in rows])
        runs = {
            role: (model, {k: v.to(device) for k, v in features.items() if k in names[role]})
            for role, model in measured.items()
        }
        for role, value in measure_latencies_ms(runs).items():  # in turns: a busy machine slows both alike
            results[f"{role}_latency_ms_batch{batch_size}"] = value
        results[f"speedup_batch{batch_size}"] = (
            results[f"teacher_latency_ms_batch{batch_size}"] / results[f"student_latency_ms_batch{batch_size}"]
        )
        if results[f"speedup_batch{batch_size}"] < 1 and results["student_parameters"] < results["teacher_parameters"]:
            logger.warning(
                "The student (%d parameters) measured slower than its teacher (%d) at batch size %d (%.2fx): with "
                "the machine busy the latency figures are noisy; rerun on an idle machine to publish them.",
                results["student_parameters"],
                results["teacher_parameters"],
                batch_size,
                results[f"speedup_batch{batch_size}"],
            )
    del measured
    return results


def _on(model, device: torch.device, dtype: torch.dtype):
    """`model` itself when every floating-point weight is on `device` in `dtype`, else a copy moved and cast there
    (the original, the trained student or the teacher, is never cast in place)."""
    weights = [p for p in model.parameters() if p.is_floating_point()]
    if weights and all(p.device == torch.device(device) and p.dtype == dtype for p in weights):
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def _forward_names(model) -> set[str]:
    return set(inspect.signature(model.forward).parameters)
