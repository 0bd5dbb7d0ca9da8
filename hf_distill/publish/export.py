"""The trained student exported for deployment: ONNX fp32 and an int8 dynamically-quantised copy, re-scored."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .latency import check_timing, cpu_name, measure_latency_ms

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "OnnxClassifier",
    "check_export_formats",
    "evaluate_onnx",
    "export_and_score",
    "export_onnx",
    "measure_onnx_latency_ms",
    "quantize_int8",
    "remove_exports",
]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "int8")
# what each format writes in <output_dir>/onnx (export_onnx, quantize_int8's default), and its results' key prefix
_FILES = {"onnx": "model.onnx", "int8": "model_int8.onnx"}
# where each lands in the output folder (and in a pushed repo)
EXPORTED_FILES = tuple(f"onnx/{name}" for name in _FILES.values())
# every name this tool writes in the onnx/ folder, an interrupted export's included: anything else there is the user's
ONNX_FOLDER_FILES = (*_FILES.values(), *(f"{name}.partial" for name in _FILES.values()))
_PREFIXES = {"onnx": "onnx_", "int8": "onnx_int8_"}
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
_LABEL_KEYS = ("labels", "label", "label_ids")


class ExportError(RuntimeError):
    """An export (or the scoring of an exported file) failed; the trained student itself is unaffected.

    `scores`: the keys of the formats `export_and_score` scored before the one that failed (their files are kept).
    """

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.scores: dict[str, float] = {}


def check_export_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Validates the requested export formats before training.

    Args:
        formats (`Sequence[str]`): among [`EXPORT_FORMATS`]; ``"int8"`` implies ``"onnx"`` (it quantises that file).

    Returns:
        `tuple[str, ...]`: the formats to run, deduplicated, in [`EXPORT_FORMATS`] order.

    Raises:
        `ValueError`: for an unknown format, or when onnx / onnxruntime is not installed.
    """
    requested = [formats] if isinstance(formats, str) else list(formats)
    normalized = {str(name).strip().lower() for name in requested}
    unknown = sorted(normalized - set(EXPORT_FORMATS))
    if unknown:
        raise ValueError(
            f"Unknown export format(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(EXPORT_FORMATS)}."
        )
    if "int8" in normalized:
        normalized.add("onnx")
    missing = [name for name in ("onnx", "onnxruntime") if normalized and importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"Exporting to {', '.join(sorted(normalized))} needs {' and '.join(missing)}, which is not installed: "
            "install the 'export' extra: pip install 'hf-distill[export]'."
        )
    return tuple(name for name in EXPORT_FORMATS if name in normalized)


class _LogitsOnly(nn.Module):
    """Positional inputs in `names` order to the model's logits, so the graph has exactly one output."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model, self.names = model, tuple(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs)), return_dict=True).logits


def _input_names(model: nn.Module) -> list[str]:
    accepted = inspect.signature(model.forward).parameters
    return [name for name in _INPUT_NAMES if name in accepted]


def _example_inputs(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    # Two rows of 8 tokens, the second half-padded, so the traced graph keeps the padding-mask path.
    vocab_size = getattr(model.config, "vocab_size", 100)
    input_ids = torch.randint(min(5, vocab_size - 1), vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 4:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    if getattr(model.config, "type_vocab_size", 1) > 1:
        token_type_ids[:, 5:] = 1
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    return {name: inputs[name] for name in names}


def export_onnx(
    model: nn.Module, output_dir: str | Path, *, opset: int = 17, example_inputs: dict[str, torch.Tensor] | None = None
) -> Path:
    """Exports a `*ForSequenceClassification` model to ``<output_dir>/onnx/model.onnx``.

    Inputs are ``input_ids``, ``attention_mask`` and, when the model's forward accepts it (BERT, not DistilBERT),
    ``token_type_ids``, all with dynamic ``batch`` and ``sequence`` axes; the output is ``logits`` (dynamic
    ``batch``). A deep copy is exported in float32 eval mode on CPU: the caller's model keeps its device, dtype and
    training mode.

    Uses the legacy TorchScript exporter (``dynamo=False``): the dynamo exporter needs ``onnxscript``, which is not a
    dependency here, whereas the traced graphs of BERT and DistilBERT under transformers 5 reproduce PyTorch's logits
    (to about 1e-6, float32 rounding) for any batch size and sequence length, padded rows included (transformers
    keeps the padding mask in the graph while tracing). Only sequence classifiers are exported.

    Args:
        model (`nn.Module`): the classifier.
        output_dir (`str` or `Path`): the file goes to its ``onnx/`` folder.
        opset (`int`, *optional*, defaults to 17): the ONNX opset.
        example_inputs (`dict[str, torch.Tensor]`, *optional*): tracing inputs; defaults to two padded rows.

    Returns:
        `Path`: the written file, checked with ``onnx.checker``.
    """
    import onnx

    kind = type(model).__name__
    if not any(cls.__name__.endswith("ForSequenceClassification") for cls in type(model).__mro__):
        # a token classifier traced too, but its logits' sequence axis was left unnamed and its agreement would be
        # counted per token: what is not checked is not exported
        raise ValueError(
            f"export_onnx exports sequence classifiers (*ForSequenceClassification, one row of logits per text); got "
            f"{kind}. Export it with torch.onnx.export directly."
        )
    exported = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    names = _input_names(exported)
    if example_inputs is None:
        example_inputs = _example_inputs(exported, names)
    args = tuple(torch.as_tensor(example_inputs[name]).to(device="cpu", dtype=torch.long) for name in names)
    path = Path(output_dir) / "onnx" / _FILES["onnx"]
    path.parent.mkdir(parents=True, exist_ok=True)
    # written under another name and renamed once checked: a run killed mid-export leaves no model.onnx
    partial = _partial(path)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in names}
    dynamic_axes["logits"] = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # Expected with this exporter: its deprecation notices, and the advanced-indexing caveat about negative
        # indices (transformers' mask building uses none; the tests compare padded batches with PyTorch).
        warnings.filterwarnings(
            "ignore", message="(.*legacy TorchScript|The feature will be removed|Exporting aten::index)"
        )
        torch.onnx.export(
            _LogitsOnly(exported, names),
            args,
            str(partial),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(partial))
    os.replace(partial, path)
    logger.info("Exported ONNX model (inputs %s, opset %d) to %s", ", ".join(names), opset, path)
    return path


def quantize_int8(onnx_path: str | Path, output_path: str | Path | None = None) -> Path:
    """Dynamically quantises an ONNX model's weights to int8 (``QInt8``) with onnxruntime.

    Args:
        onnx_path (`str` or `Path`): the fp32 model.
        output_path (`str` or `Path`, *optional*): defaults to ``model_int8.onnx`` next to `onnx_path`.

    Returns:
        `Path`: the quantised file.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path = Path(onnx_path)
    output_path = Path(output_path) if output_path is not None else onnx_path.with_name(_FILES["int8"])
    partial = _partial(output_path)
    quantize_dynamic(str(onnx_path), str(partial), weight_type=QuantType.QInt8)
    os.replace(partial, output_path)  # whole or absent: a run killed mid-quantisation leaves no model_int8.onnx
    logger.info("Quantised %s to int8: %s", onnx_path, output_path)
    return output_path


class OnnxClassifier:
    """An exported classifier run by an onnxruntime ``InferenceSession`` on the CPU.

    Args:
        path (`str` or `Path`): the ``.onnx`` file.
    """

    def __init__(self, path: str | Path):
        import onnxruntime

        self.path = Path(path)
        options = onnxruntime.SessionOptions()
        # torch's threads (1 a process under torchrun), not onnxruntime's default of every core: the PyTorch student
        # it is timed against runs on those
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [node.name for node in self.session.get_inputs()]

    def feed(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """The session's inputs as int64 arrays; other keys (labels) are dropped, a missing ``token_type_ids``
        becomes zeros and a missing ``attention_mask`` ones, as in the PyTorch model."""
        arrays = {
            key: (value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)).astype(
                np.int64, copy=False
            )
            for key, value in batch.items()
            if key in self.input_names
        }
        if "input_ids" not in arrays:
            raise ValueError(f"The batch has no input_ids (keys: {', '.join(batch)}).")
        for name, fill in (("token_type_ids", 0), ("attention_mask", 1)):
            if name in self.input_names and name not in arrays:
                arrays[name] = np.full_like(arrays["input_ids"], fill)
        return arrays

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        """Logits ``(batch, num_labels)`` for a batch of numpy or torch integer arrays."""
        return self.session.run(["logits"], self.feed(batch))[0]


def _as_classifier(model: str | Path | OnnxClassifier) -> OnnxClassifier:
    return model if isinstance(model, OnnxClassifier) else OnnxClassifier(model)


def evaluate_onnx(
    path: str | Path | OnnxClassifier,
    dataset: Any,
    collator: Callable,
    compute_metrics: Callable | None,
    *,
    batch_size: int = 32,
) -> tuple[dict[str, float], np.ndarray]:
    """Scores an exported model on a tokenised dataset, as [`~transformers.Trainer.evaluate`] would (no loss).

    Args:
        path (`str`, `Path` or [`OnnxClassifier`]): the model.
        dataset: rows with ``input_ids``, ``attention_mask``, [``token_type_ids``] and ``labels`` (or ``label``).
        collator (`Callable`): batches rows, e.g. [`~transformers.DataCollatorWithPadding`].
        compute_metrics (`Callable`): takes an [`~transformers.EvalPrediction`]; `None` gives no metrics.
        batch_size (`int`, *optional*, defaults to 32): rows per forward pass.

    Returns:
        `tuple[dict[str, float], np.ndarray]`: metrics without prefix (e.g. ``{"accuracy": ...}``) and the logits
        ``(N, C)`` in dataset order.
    """
    from transformers import EvalPrediction

    classifier = _as_classifier(path)
    keep = set(classifier.input_names) | set(_LABEL_KEYS)
    logits, labels = [], []
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collator([{key: value for key, value in row.items() if key in keep} for row in rows])
        logits.append(classifier.predict(batch))
        label = next((batch[key] for key in _LABEL_KEYS if key in batch), None)
        if label is not None:
            labels.append(label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label))
    all_logits = np.concatenate(logits) if logits else np.zeros((0, 0), dtype=np.float32)
    if compute_metrics is None:
        return {}, all_logits
    label_ids = np.concatenate(labels) if labels else None
    metrics = compute_metrics(EvalPrediction(predictions=all_logits, label_ids=label_ids))
    return {key: float(value) if np.isscalar(value) else value for key, value in metrics.items()}, all_logits


def measure_onnx_latency_ms(
    path: str | Path | OnnxClassifier,
    batch: dict[str, Any],
    *,
    warmup: int = 3,
    repeats: int = 10,
    min_seconds: float = 0.5,
) -> float:
    """Median wall-clock milliseconds of one onnxruntime forward pass on `batch`, like
    [`~hf_distill.publish.latency.measure_latency_ms`]: `warmup` unmeasured runs, then at least `repeats` measured
    ones and for at least `min_seconds` (at most 1000). Inputs are converted to numpy before timing."""
    check_timing(warmup, repeats, min_seconds)
    classifier = _as_classifier(path)
    feed = classifier.feed(batch)
    for _ in range(warmup):
        classifier.session.run(["logits"], feed)
    timings: list[float] = []
    started = time.perf_counter()
    while len(timings) < repeats or time.perf_counter() - started < min_seconds:
        tick = time.perf_counter()
        classifier.session.run(["logits"], feed)
        timings.append((time.perf_counter() - tick) * 1000.0)
        if len(timings) >= 1000:
            break
    return statistics.median(timings)


def _agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of rows predicted as PyTorch does: same argmax, or for one regression output within 1e-3 relative
    (absolute below 1)."""
    if logits.shape != reference.shape:
        raise ValueError(f"ONNX logits have shape {logits.shape}, the PyTorch ones {reference.shape}.")
    if len(reference) == 0:
        return 1.0
    if reference.ndim == 1 or reference.shape[-1] == 1:
        same = np.abs(logits - reference) < 1e-3 * np.maximum(np.abs(reference), 1.0)
    else:
        same = logits.argmax(-1) == reference.argmax(-1)
    return float(np.mean(same))


@contextlib.contextmanager
def _failure_names(export_format: str, stage: str, output_dir: str | Path) -> Iterator[None]:
    """Raises any failure as an `ExportError` naming the format and the stage. The message goes into
    all_results.json (`export_error`) and may be pushed: the output folder, as given or resolved, reads
    `<output_dir>` there (onnxruntime's own errors name the whole path)."""
    try:
        yield
    except Exception as error:
        message = f"Export format {export_format!r} failed while {stage}: {type(error).__name__}: {error}"
        folder = Path(output_dir)
        forms = (str(folder), os.path.abspath(folder), str(folder.resolve()))
        absolute = {name for name in forms if os.path.isabs(name)}  # never a relative "." or "out"
        for name in sorted(absolute, key=len, reverse=True):
            message = message.replace(name, "<output_dir>")
        raise ExportError(message) from error


def export_and_score(
    model: nn.Module,
    output_dir: str | Path,
    formats: Sequence[str],
    *,
    dataset: Any,
    collator: Callable,
    compute_metrics: Callable | None,
    torch_logits: np.ndarray | None = None,
    latency_batches: dict[int, dict] | None = None,
    reference_model: nn.Module | None = None,
) -> dict[str, float]:
    """Runs the requested exports and scores each file on `dataset`, fp32 first (int8 quantises its file).

    Returns flat keys, prefixed ``onnx_`` (fp32) and ``onnx_int8_``: ``{prefix}eval_{metric}``,
    ``{prefix}size_bytes``, ``{prefix}latency_ms_batch{b}`` for each batch size of `latency_batches` and, given
    `torch_logits` (the PyTorch student's ``(N, C)`` logits on `dataset`), ``{prefix}agreement`` and
    ``{prefix}max_abs_logit_diff``. Given `reference_model` (the student on the CPU in float32, `latency_batches`
    fitting its forward), each file is timed with it in alternating blocks, each block warmed up (`LATENCY_BLOCKS`
    of each, their medians), whose latency is ``{prefix}reference_latency_ms_batch{b}``: a burst of load on a shared
    machine then slows both alike, and neither runtime's idle threads, still spinning, take the other's cores.

    Checked against `torch_logits`: logits that are not all finite fail a file, and the fp32 file fails when any
    logit differs from the PyTorch student's by more than `FP32_TOLERANCE` x max(1, the largest |logit|) (it does not
    compute the student); an int8 file that predicts as the student on fewer than `INT8_AGREEMENT_WARNING` of the
    rows is kept, with a warning (quantisation rounds the weights; classifiers only: a regression's int8 prediction is
    never within rounding of PyTorch's, and its card shows the largest difference instead).

    Raises:
        [`ExportError`]: naming the format and the cause, when exporting, scoring or checking a file fails. That
            format's file is removed (an unscored file would be published as the student's); the formats scored
            before it keep theirs, and their keys are the error's `scores`.
    """
    formats = check_export_formats(formats)
    if reference_model is not None:
        placed = {(p.device.type, p.dtype) for p in reference_model.parameters()}
        if placed - {("cpu", torch.float32)}:
            raise ValueError(
                f"reference_model must be the student on the CPU in float32, where onnxruntime runs, and has weights "
                f"on/in {sorted(f'{d} {t}' for d, t in placed)}: pass copy.deepcopy(student).to('cpu', torch.float32)."
            )
    results: dict[str, float] = {}
    onnx_path = None
    for export_format in formats:  # EXPORT_FORMATS order: "onnx" first
        prefix = _PREFIXES[export_format]
        try:
            if export_format == "onnx":
                with _failure_names("onnx", "exporting", output_dir):
                    path = export_onnx(model, output_dir)
            else:
                with _failure_names(export_format, "quantizing", output_dir):
                    path = quantize_int8(onnx_path)
            with _failure_names(export_format, f"scoring {path}", output_dir):
                scores = _score(
                    path, export_format, dataset, collator, compute_metrics, torch_logits, latency_batches,
                    reference_model,
                )  # fmt: skip
        except ExportError as error:
            remove_exports(output_dir, [export_format])
            error.scores = dict(results)
            raise
        results.update({f"{prefix}{key}": value for key, value in scores.items()})
        onnx_path = onnx_path or path
    return results


LATENCY_BLOCKS = 3  # blocks of the file and of the PyTorch student, in turns: the medians of each's block medians
FP32_TOLERANCE = 1e-3  # the fp32 file's largest logit difference from PyTorch, over max(1, the largest |logit|)
INT8_AGREEMENT_WARNING = 0.9  # an int8 file agreeing with the student on fewer rows than this is warned of


def _score(
    path, export_format, dataset, collator, compute_metrics, torch_logits, latency_batches, reference_model
) -> dict[str, float]:
    """One exported file's keys, without the format's prefix; raises where its logits do not stand (see
    `export_and_score`), before any timing."""
    classifier = OnnxClassifier(path)
    metrics, logits = evaluate_onnx(classifier, dataset, collator, compute_metrics)
    reference = None if torch_logits is None else np.asarray(torch_logits, dtype=np.float32)
    # the student's own logits first: a diverged student's file is NaN too, and the student is the cause
    diverged = _rows_not_finite(reference) if reference is not None else 0
    if diverged:
        raise ValueError(
            f"the PyTorch student's own logits hold NaN or infinite values on {diverged} of the {len(reference)} "
            "rows (its training diverged): there is no student to check the file against"
        )
    bad = _rows_not_finite(logits)
    if bad:
        raise ValueError(f"its logits hold NaN or infinite values on {bad} of the {len(logits)} rows")
    results = {f"eval_{key}": value for key, value in metrics.items()}
    results["size_bytes"] = path.stat().st_size
    if reference is not None:
        results["agreement"] = _agreement(logits, reference)
        largest = float(np.max(np.abs(logits - reference), initial=0.0))
        results["max_abs_logit_diff"] = largest
        bound = FP32_TOLERANCE * max(1.0, float(np.max(np.abs(reference), initial=0.0)))
        if export_format == "onnx" and not largest <= bound:
            raise ValueError(
                f"its logits differ from the PyTorch student's by up to {largest:.3g}, more than the {bound:.3g} a "
                "float32 export allows: the file does not compute the student"
            )
        # a classifier's: a regression's int8 prediction is never within rounding of PyTorch's (its card shows the
        # largest difference instead)
        classes = reference.ndim > 1 and reference.shape[-1] > 1
        if export_format != "onnx" and classes and results["agreement"] < INT8_AGREEMENT_WARNING:
            logger.warning(
                "The %s file predicts as the PyTorch student on %.1f%% of the evaluation rows (largest logit "
                "difference %.3g): quantisation changed its predictions; check its scores before deploying it.",
                export_format,
                100 * results["agreement"],
                largest,
            )
    for batch_size, batch in (latency_batches or {}).items():
        if reference_model is None:
            results[f"latency_ms_batch{batch_size}"] = measure_onnx_latency_ms(classifier, batch)
            continue
        # In blocks taken in turns, each with its own warm-up, not pass by pass: after each pass onnxruntime's and
        # torch's idle threads keep spinning and take the cores from the other runtime (seen once on 2 cores with a
        # scratch script the project does not keep: pass by pass, the speed-up read far too high). Blocks in turns
        # still spread a burst of load over both.
        onnx_ms, torch_ms = [], []
        for _ in range(LATENCY_BLOCKS):
            onnx_ms.append(measure_onnx_latency_ms(classifier, batch, min_seconds=0.2))
            torch_ms.append(measure_latency_ms(reference_model, batch, min_seconds=0.2))
        results[f"latency_ms_batch{batch_size}"] = statistics.median(onnx_ms)
        results[f"reference_latency_ms_batch{batch_size}"] = statistics.median(torch_ms)
    return results


def _rows_not_finite(logits: np.ndarray) -> int:
    """How many rows of `logits` hold a NaN or an infinite value."""
    return int(np.sum(~np.isfinite(logits).reshape(len(logits), -1).all(axis=-1))) if len(logits) else 0


def onnx_runtime() -> str:
    """Where the exported files were scored and timed, in words, for the card: onnxruntime's version and the CPU
    (int8 kernels, and so the int8 file's scores and speed, vary with both)."""
    import onnxruntime

    # the sessions run on torch's thread count (OnnxClassifier), which the timings depend on
    return f"onnxruntime {onnxruntime.__version__} on {cpu_name()}, {torch.get_num_threads()} threads"


def _partial(path: Path) -> Path:
    """Where `path` is written before it is whole (an ``.onnx.partial`` file is never loaded or pushed as a model)."""
    return path.with_name(path.name + ".partial")


def remove_exports(output_dir: str | Path, formats: Sequence[str] = EXPORT_FORMATS) -> None:
    """Removes the files `export_and_score` writes for `formats` from ``<output_dir>/onnx`` (and what an interrupted
    export left under its `.partial` name), and the folder once nothing else is in it: an earlier run's (or a failed
    format's) file left there would be published beside a student it was not exported from. Any other file there is
    the user's and is kept."""
    folder = Path(output_dir) / "onnx"
    for export_format in formats:
        (folder / _FILES[export_format]).unlink(missing_ok=True)
        _partial(folder / _FILES[export_format]).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # absent, or holding files this tool did not write
        folder.rmdir()
