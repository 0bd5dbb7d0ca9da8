"""The Hub model card (README.md) of a distilled student: metadata, how it was made, teacher vs student."""

from __future__ import annotations

import itertools
import math
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult
from huggingface_hub import ModelCardData as HubCardData

__all__ = [
    "CARD_TAG",
    "ModelCardData",
    "describe_student",
    "format_table",
    "intermediate_terms",
    "is_hub_dataset",
    "public_name",
    "redact_secrets",
    "render_model_card",
    "sanitize_command",
    "scored_lines",
    "search_settings_note",
]

_SECRET_OPTION = "hub_token"
_SAME_AS_TASK = object()  # ModelCardData.dataset_config's default
CARD_TAG = "hf-distill"  # in every card's tags: how a README.md written by this tool is told from the user's
# This project's metric names that are not the Hub's metric ids: the id, and its arguments.
_HUB_METRICS = {"pearson": ("pearsonr", None), "f1_macro": ("f1", {"average": "macro"})}


@dataclass
class ModelCardData:
    """What the card states. Metric dicts map a metric name (``accuracy``) to its value."""

    teacher: str
    student_description: str
    task: str
    dataset: str
    temperature: float
    alpha_kd: float
    alpha_task: float
    metric_names: Sequence[str]
    teacher_metrics: dict[str, float]
    student_metrics: dict[str, float]
    teacher_parameters: int
    student_parameters: int
    teacher_latency_ms: dict[int, float]
    student_latency_ms: dict[int, float]
    command: str
    base_model: str | None = None  # a Hub id; None (omitted) for a local teacher
    resumed: bool = False  # continued from a checkpoint (resume_from_checkpoint, however it was given)
    latency_device: str = "a CPU, float32"
    alpha_cos: float = 0.0
    # intermediate-layer terms: name -> weight (hidden, attention, value_relation), and the hidden layer pairs
    intermediate_terms: dict[str, float] = field(default_factory=dict)
    hidden_layer_map: str = ""
    train_examples: dict[str, int] = field(default_factory=dict)  # labelled / unlabeled / augmented rows
    transfer_description: str = "none"
    # how the student was trained (distill_glue.py's --student_training): a baseline's card states the loss it used
    student_training: str = "distill"
    regression: bool = False  # a one-output head: the copied recipe's softmax KD term is then 0
    # the teacher's weights' dtype when it was scored, where not float32 (a bf16 run casts it): "bfloat16"
    teacher_dtype: str = ""
    settings_note: str = ""  # how the settings were chosen, e.g. by --hp_search_trials (`search_settings_note`)
    # labelled rows held out of train that a search scored its trials on: read to choose the settings, not trained on
    search_held_out_examples: int = 0
    # exported students re-scored with onnxruntime: name, metrics, agreement, size_bytes, latency_ms per batch size
    deployment_rows: Sequence[dict] = field(default_factory=tuple)
    export_error: str = ""  # an asked-for export that failed (all_results.json's export_error)
    language: str | None = "en"  # None: not stated (your own files, a corpus: their language is not known here)
    pipeline_tag: str = "text-classification"
    teacher_role: str = "fine-tuned on"  # "...teacher `X`, fine-tuned on sst2."
    # what KD compares, for the card's loss line
    kd_target: str = "over the class logits"  # a regression card states its MSE instead (_loss_line)
    hardware: str = ""  # the machine the latency was measured on, in words
    library_versions: str = ""  # "torch 2.13.0, transformers 5.24.0, ..."
    extra_tags: Sequence[str] = field(default_factory=tuple)
    # whether `dataset` is a Hub dataset id (GLUE, a --dataset_name) that the metadata may name; False for your own
    # files (--train_file); None: judged from the name (`is_hub_dataset`)
    hub_dataset: bool | None = None
    # the split the student was scored on; None: MNLI's validation_matched, any other task's validation
    dataset_split: str | None = None
    # what both models were scored on, after "Evaluated on the same": "dev.csv evaluation set" (your own
    # --validation_file); "" for the task's: "sst2 evaluation set"
    evaluation_set: str = ""
    # which rows of it, where not all: " (its first 32 rows)"; said after the evaluation set
    evaluation_note: str = ""
    # whether the scores go into the metadata's model-index: not for rows held out of the training split, which the
    # Hub would read as the dataset's own evaluation split
    index_results: bool = True
    # the dataset's config (GLUE's task, a --dataset_config_name); None: the dataset has none. By default the task.
    dataset_config: Any = _SAME_AS_TASK


def public_name(value: str) -> str:
    """How a card may name a model or file argument: a Hub id or a `package:` spec as given, a local path by its last
    folder or file name only (a machine's folder names are nobody's business and reproduce nothing elsewhere)."""
    if value.startswith("package:"):
        return value
    path = Path(value).expanduser()
    if value.startswith((".", "/", "~")) or path.exists():
        return path.resolve().name or value
    return value


def corpus_card_name(dataset_name: str | None, train_file: str | None) -> tuple[str, bool]:
    """How the masked-LM card names its corpus, and whether that name is a Hub dataset's: a file, or a local folder
    given as --dataset_name (which `datasets.load_dataset` reads), by its last name only and never as a Hub id."""
    if dataset_name is None:
        return public_name(train_file or ""), False
    local = Path(dataset_name).expanduser().exists()
    return public_name(dataset_name), not local and is_hub_dataset(dataset_name)


# How the files the scripts read end (--train_file, a corpus): a name with one of these is a file, not a Hub dataset.
_DATA_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".txt", ".text", ".parquet", ".arrow", ".gz", ".bz2", ".xz",
                       ".zip", ".zst")  # fmt: skip


def is_hub_dataset(name: str) -> bool:
    """Whether `name` can be a Hub dataset id: a valid repo id (never a path) that is not a data file's name
    (`train.csv`). The card's `datasets:` metadata links to the Hub, where a file name would point at another dataset
    or at none. Not whether a local folder of that name exists: GLUE's files often sit in ./glue."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return not name.lower().endswith(_DATA_FILE_SUFFIXES)


def sanitize_command(argv: Sequence[str], root: Path | None = None, *, cwd: Path | None = None) -> str:
    """The command line with secrets (a --hub_token value) replaced and no machine path, safe to publish.

    An absolute path (or a relative one written with a leading ``./`` or ``../``, from `cwd`, the folder the command
    ran in: the working folder by default) under `root` (the repository) becomes relative to it, one beside it
    `../...`, any other the last component alone: the command then reads as run from the repository, and names no
    folder of this machine. Never relative to the filesystem's root or to the home folder or one above it (a
    repository at /app, in ~ or in /home): there, the last component alone.
    """
    cleaned: list[str] = []
    for argument in redact_secrets(argv):
        flag, equals, value = argument.partition("=") if argument.startswith("--") else ("", "", argument)
        # `--data_dir=/home/me/glue` is one argument: its value is a path like any other
        cleaned.append(flag + equals + _relative(value, root, cwd) if equals else _relative(argument, root, cwd))
    return shlex.join(cleaned)


def redact_secrets(argv: Sequence[str]) -> list[str]:
    """The arguments with a Hub token's value replaced by ``<redacted>`` (`--hub_token X`, `--hub_token=X`, and the
    prefixes and dashes argparse takes for it); paths untouched."""
    cleaned: list[str] = []
    skip_next = False
    for argument in argv:
        flag, equals, _ = argument.partition("=") if argument.startswith("--") else ("", "", argument)
        if skip_next:
            cleaned.append("<redacted>")
            skip_next = False
        elif _is_secret(flag):
            cleaned.append(flag + "=<redacted>" if equals else flag)
            skip_next = not equals
        else:
            cleaned.append(argument)
    return cleaned


def _is_secret(flag: str) -> bool:
    """`--hub_token` as the parser takes it: dashes or underscores, or a prefix it expands (`--hub-tok`)."""
    name = flag[2:].replace("-", "_")
    return flag.startswith("--") and name.startswith("hub_t") and _SECRET_OPTION.startswith(name)


def _relative(argument: str, root: Path | None, cwd: Path | None = None) -> str:
    # absolute paths, and relative ones that are surely paths (./x, ../x: no Hub id or other value starts so), which
    # could climb out to any folder of this machine (../../home/me/private)
    if not argument.startswith(("/", "~", "./", "../")):
        return argument
    given = Path(argument).expanduser()
    if not given.is_absolute():
        given = (Path.cwd() if cwd is None else Path(cwd)) / given
    # Both as written and with links resolved: a data folder reached through a link beside the repository (a
    # `../shared` that links elsewhere) is still named relative to it.
    paths = (Path(os.path.abspath(given)), given.resolve())
    roots = () if root is None else (Path(os.path.abspath(root)), root.resolve())
    bases = [(base, "") for base in roots] + [(base.parent, "../") for base in roots]
    for (base, prefix), path in itertools.product(bases, paths):
        if path.is_relative_to(base) and not _names_the_machine(base):
            return prefix + str(path.relative_to(base))
    return paths[0].name


def _names_the_machine(base: Path) -> bool:
    """Whether a path relative to `base` would name this machine's folders: `base` is the filesystem's root (a
    repository at /app: "beside" it is everywhere, ../home/alice/...) or the user's home folder or one above it (a
    repository in ~ or in /home: ../alice/private/...)."""
    if base == Path(base.anchor):
        return True
    try:
        home = Path.home()
    except RuntimeError:  # no home folder can be found: none to name
        return False
    return any(folder.is_relative_to(base) for folder in {Path(os.path.abspath(home)), home.resolve()})


def environment(device: Any = None) -> tuple[str, str]:
    """(the hardware the latency was measured on, in words, the exact versions of the libraries that made the
    student). `device`: where the models were timed (the run's); None: a GPU when there is one."""
    import platform

    import accelerate
    import torch
    import transformers

    import hf_distill

    from .latency import cpu_name

    # the one device the latency ran on, not the machine's GPUs (a --use_cpu run on a GPU machine times the CPU)
    device = torch.device(device) if device is not None else None
    kind = device.type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        hardware = f"one {torch.cuda.get_device_name(device.index if device and device.index is not None else 0)}"
    elif kind == "cpu":
        hardware = f"{cpu_name()}, {torch.get_num_threads()} threads"
    else:
        hardware = f"{kind} ({platform.machine()})"
    versions = ", ".join(
        f"{name} {module.__version__}"
        for name, module in (("hf-distill", hf_distill), ("torch", torch), ("transformers", transformers),
                             ("accelerate", accelerate))
    )  # fmt: skip
    return hardware, versions


def format_table(data: ModelCardData) -> str:
    """Markdown table: one row per model, columns metrics, parameters, latency per batch size and speed-up."""
    batch_sizes = sorted(data.student_latency_ms)
    header = ["model", *data.metric_names, "parameters", *(f"latency b={b} (ms)" for b in batch_sizes)]
    header += [f"speed-up b={b}" for b in batch_sizes]
    rows = []
    for name, metrics, parameters, latency in (
        ("teacher", data.teacher_metrics, data.teacher_parameters, data.teacher_latency_ms),
        ("student", data.student_metrics, data.student_parameters, data.student_latency_ms),
    ):
        speedups = [data.teacher_latency_ms[b] / latency[b] for b in batch_sizes]
        rows.append(
            [
                name,
                *(f"{metrics[m]:.4f}" if m in metrics else "n/a" for m in data.metric_names),
                f"{parameters:,}",
                *(f"{latency[b]:.1f}" for b in batch_sizes),
                *(f"{s:.2f}x" for s in speedups),
            ]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_deployment_table(data: ModelCardData) -> str:
    """Markdown table of the exported students beside the PyTorch one: metric, agreement, size, latency, speed-up."""
    if not data.deployment_rows:
        return ""
    batch_sizes = sorted(data.student_latency_ms)
    # a regression's int8 prediction is never within rounding of PyTorch's: its largest difference says more
    closeness = "largest difference from PyTorch" if data.regression else "agrees with PyTorch"
    header = ["model", *data.metric_names, closeness, "size on disk"]
    header += [f"latency b={b} (ms)" for b in batch_sizes] + [
        f"speed-up b={b} vs PyTorch student (CPU, float32)" for b in batch_sizes
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in data.deployment_rows:
        if data.regression:
            agreement = "n/a" if row.get("max_abs_diff") is None else _difference(row["max_abs_diff"])
        else:
            agreement = "n/a" if row.get("agreement") is None else _agreement(row["agreement"], row.get("rows"))
        cells = [
            row["name"],
            *(f"{row['metrics'][m]:.4f}" if m in row["metrics"] else "n/a" for m in data.metric_names),
        ]
        cells += [agreement, f"{row['size_bytes'] / 1e6:.1f} MB"]
        cells += [f"{row['latency_ms'][b]:.1f}" for b in batch_sizes]
        # against the PyTorch student on the CPU in float32, where onnxruntime ran (a GPU run's own latencies are not)
        reference = row.get("pytorch_cpu_latency_ms") or data.student_latency_ms
        cells += [f"{reference[b] / row['latency_ms'][b]:.2f}x" for b in batch_sizes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _agreement(share: float, rows: int | None) -> str:
    """The share of rows an export predicts as PyTorch does, rounded down (4 of 9,815 rows disagreeing is not
    "100.0%"): `9,811/9,815 (99.95%)` when the number of rows is known, else `99.95%`; 100% only when every row
    agrees."""
    if rows:
        agreed = round(share * rows)  # a mean of `rows` booleans: exact once rounded
        if agreed == rows:
            return f"{agreed:,}/{rows:,} (100%)"
        return f"{agreed:,}/{rows:,} ({agreed * 10_000 // rows / 100:.2f}%)"
    if share >= 1.0:
        return "100%"
    # (a hair above the exact product before flooring: 0.99 is 98.999...% in floats)
    return f"{min(math.floor(share * 10_000 + 1e-6), 9_999) / 100:.2f}%"


def _difference(value: float) -> str:
    """A regression export's largest difference from PyTorch: 4 decimals, or, below what they can show, in
    scientific notation (3.2e-06 is not "0.0000"); exactly 0 as 0."""
    if value == 0:
        return "0"
    return f"{value:.4f}" if abs(value) >= 5e-5 else f"{value:.1e}"


def render_model_card(data: ModelCardData) -> str:
    """The README.md text: YAML metadata for the Hub, then the description and the table.

    The metadata names the dataset (`datasets:` and the evaluation results' `model-index`, which needs a dataset id)
    only when it is a Hub dataset: your own files are described in the text alone.
    """
    pipeline = "fill-mask" if data.pipeline_tag == "fill-mask" else "text-classification"
    hub_dataset = is_hub_dataset(data.dataset) if data.hub_dataset is None else data.hub_dataset
    # the split `eval_*` holds: MNLI is scored on validation_matched (its mismatched scores are `eval_*_mm`)
    split = data.dataset_split or ("validation_matched" if data.task == "mnli" else "validation")
    card_data = HubCardData(
        language=data.language,
        base_model=data.base_model or None,
        datasets=[data.dataset] if hub_dataset else None,
        metrics=list(dict.fromkeys(_hub_metric(name)[0] for name in data.metric_names)),
        # a labels-only baseline learnt nothing from a teacher: no distillation tags
        tags=[*(() if data.student_training == "labels_only" else _KD_TAGS), pipeline, CARD_TAG, *data.extra_tags],
        library_name="transformers",
        pipeline_tag=pipeline,
        model_name="student",
        eval_results=[
            EvalResult(
                task_type=pipeline,
                dataset_type=data.dataset,
                dataset_name=data.dataset,
                dataset_config=data.task if data.dataset_config is _SAME_AS_TASK else data.dataset_config,
                dataset_split=split,
                metric_type=_hub_metric(name)[0],
                metric_name=name,
                metric_args=_hub_metric(name)[1],
                metric_value=round(float(data.student_metrics[name]), 6),
            )
            for name in data.metric_names
            # a NaN or inf score (a collapsed regression student's Pearson, an overflowed perplexity) is no result:
            # the card's table states it, the model-index does not
            if name in data.student_metrics
            and hub_dataset
            and data.index_results
            and math.isfinite(float(data.student_metrics[name]))
        ]
        or None,
    )
    front_matter = card_data.to_yaml()
    cos_term = f" + {data.alpha_cos} * cos" if data.alpha_cos else ""
    cos_text = "; cos is `1 - cos(h_s, h_t)` between the two models' last hidden states" if data.alpha_cos else ""
    for name, weight in data.intermediate_terms.items():
        cos_term += f" + {weight} * {name}"
    cos_text += "".join(_INTERMEDIATE_TEXT[name].format(map=data.hidden_layer_map) for name in data.intermediate_terms)
    scored_on = data.evaluation_set or f"{data.task} evaluation set"
    return f"""---
{front_matter}
---

{_title(data)}

- **Student**: {data.student_description}
{_loss_line(data, cos_term, cos_text)}
{_training_data_lines(data)}
## Teacher vs student

Evaluated on the same {scored_on}{data.evaluation_note}{_precision_note(data)}; latency is the median
forward pass at each batch size on {data.latency_device} (the two models timed in turns), measured on the machine
that trained it.

{format_table(data)}
{_deployment_section(data)}{_export_failure(data)}
## Environment

Latency measured on {data.hardware or data.latency_device}; libraries: {data.library_versions or "not recorded"}.

## Reproduce

```bash
{data.command}
```
{_resumed_note(data)}"""


def _resumed_note(data: ModelCardData) -> str:
    """A resumed run's command continues it from a checkpoint of the machine that trained it, which the push does not
    upload: said, so the command is not read as one that reproduces the student from nothing."""
    if not data.resumed:
        return ""
    return (
        "\nThis run was resumed from a checkpoint of the machine that trained it (`--resume_from_checkpoint`), which "
        "is not uploaded: the command above continues that run, and the run it continued was started by the same "
        "command without `--resume_from_checkpoint` (and with the teacher it names, when the teacher was fine-tuned "
        "then).\n"
    )


_KD_TAGS = ("distillation", "knowledge-distillation")


def _title(data: ModelCardData) -> str:
    """The card's heading and first line, by how the student was trained (a baseline is not called distilled)."""
    teacher = f"the teacher `{data.teacher}`, {data.teacher_role} {data.task}"
    if data.student_training == "labels_only":
        return (
            f"# Baseline student on {data.task}: the labels alone\n\nThis model was trained with hf-distill as the "
            f"baseline for distilling {teacher}: the same student fine-tuned on the labels alone, without the teacher."
        )
    if data.student_training == "pseudo_labels":
        return (
            f"# Baseline student of `{data.teacher}` on {data.task}: hard pseudo-labels\n\nThis model was trained "
            f"with hf-distill as a baseline on the labels and on the hard predictions (no soft targets) of {teacher}."
        )
    if data.student_training == "recipe":
        return (
            f"# Baseline student of `{data.teacher}` on {data.task}: the copied recipe\n\nThis model was distilled "
            f"with hf-distill from {teacher}, with the copied blog recipe as a baseline."
        )
    return (
        f"# Distilled student of `{data.teacher}` on {data.task}\n\nThis model was distilled with hf-distill from "
        f"{teacher}."
    )


def _export_failure(data: ModelCardData) -> str:
    if not data.export_error:
        return ""
    return (
        f"\n## Export\n\nAn export was asked for and failed (no file of the format that failed is in this folder): "
        f"{data.export_error}\n"
    )


def _precision_note(data: ModelCardData) -> str:
    if not data.teacher_dtype or data.teacher_dtype == "float32":
        return ""
    return (
        f" (the teacher with the {data.teacher_dtype} weights it distilled with, the student with its float32 "
        "weights, both under the run's autocast)"
    )


def _loss_line(data: ModelCardData, cos_term: str, cos_text: str) -> str:
    """The card's loss bullet: the loss the student was trained with, a baseline's included (a labels-only card
    stated a KD term and a temperature it never had)."""
    kd = "`T^2 * KL(softmax(t/T) || softmax(s/T))`"
    if data.student_training == "labels_only":
        return "- **Loss**: the student's own loss on the labels alone, no teacher term."
    if data.student_training == "pseudo_labels":
        return (
            "- **Loss**: the student's own loss on the labelled rows and on the transfer rows labelled with the "
            "teacher's hard predictions (its argmax; its value for a regression head), no soft-target term."
        )
    if data.student_training == "recipe":
        weight = round(1.0 - data.alpha_task, 10)
        text = (
            f"- **Loss**: the copied recipe's `{data.alpha_task} * task + {weight} * KD`, where KD is {kd} over the "
            f'class logits (`KLDivLoss(reduction="batchmean")`) with temperature T = {data.temperature}, and task '
            "is the student's own loss on the labels"
        )
        if data.regression:
            return text + ". On this one-output (regression) head both softmaxes are 1, so KD is 0: the labels alone."
        return text + "."
    if data.regression:  # one output: MSE to the teacher's prediction, which has no temperature
        kd_text = "the mean squared error between the student's and the teacher's predictions (no temperature)"
    else:
        kd_text = f"{kd} {data.kd_target} with temperature T = {data.temperature}"
    return (
        f"- **Loss**: `{data.alpha_kd} * KD + {data.alpha_task} * task{cos_term}`, where KD is\n"
        f"  {kd_text}, and task is the\n"
        f"  student's own loss on the labels{cos_text}."
    )


_INTERMEDIATE_TEXT = {
    "hidden": "; hidden is the MSE between mapped hidden states (TinyBERT; layer map `{map}`, embeddings included)",
    "attention": "; attention is the KL between the last layers' self-attention distributions (MiniLM)",
    "value_relation": "; value_relation is the KL between the last layers' value relations (MiniLM)",
}


def _deployment_section(data: ModelCardData) -> str:
    if not data.deployment_rows:
        return ""
    closeness = (
        "the largest difference is the largest absolute difference between its prediction and the PyTorch student's"
        if data.regression
        else "agreement counts the rows whose prediction equals the PyTorch student's (the share rounded down)"
    )
    runtimes = sorted({row["runtime"] for row in data.deployment_rows if row.get("runtime")})
    where = f"run with {' and '.join(runtimes)}" if runtimes else "run with onnxruntime on the CPU"
    return (
        f"\n## Deployment: the exported student, re-scored\n\nThe files in `onnx/` (token ids in, float32 logits "
        f"out; the int8 file's weights are int8), {where}, on the same evaluation set; {closeness}. Each speed-up "
        "divides the float32 PyTorch student's latency on that CPU, timed in blocks in turns with the file's, by the "
        "file's."
        f"\n\n{format_deployment_table(data)}\n"
    )


def _training_data_lines(data: ModelCardData) -> str:
    lines = []
    if data.train_examples:
        counts = ", ".join(f"{count:,} {kind}" for kind, count in data.train_examples.items())
        lines.append(f"- **Training rows**: {counts}")
    if data.transfer_description != "none":
        how = (
            "rows the teacher labels with its hard predictions, trained as labels"
            if data.student_training == "pseudo_labels"
            else "rows the teacher labels, labels dropped; the task loss sees only the labelled rows"
        )
        lines.append(f"- **Transfer set** ({how}): {data.transfer_description}")
    if data.search_held_out_examples:
        lines.append(
            f"- **Search rows**: {data.search_held_out_examples:,} labelled rows held out of the training data, "
            "on top of those above: the search's trials were scored on them, to choose the settings only, not to train"
        )
    if data.settings_note:
        lines.append(f"- **Settings**: {data.settings_note}")
    return "\n".join(lines) + ("\n" if lines else "")


def search_settings_note(settings: dict[str, Any], *, trials: int, rows: int, regression: bool) -> str:
    """The card's account of settings chosen by `--hp_search_trials`: how many trials on how many held-out rows, and
    the settings they chose. A regression head's temperature is left out: the search does not try it (it does not
    enter the head's MSE), so no trial chose it."""
    chosen = {name: value for name, value in settings.items() if not (regression and name == "temperature")}
    return (
        f"chosen by {trials} optuna trials on {rows:,} training rows held out of train (never dev; every trial in "
        f"hp_search.json): {chosen}"
    )


def _hub_metric(name: str) -> tuple[str, dict | None]:
    """The Hub's metric id for one of this project's metric names, and its arguments."""
    return _HUB_METRICS.get(name, (name, None))


def scored_rows(data_args, rows: int, *, chosen_on_it: bool = False, split_rows: int | None = None) -> dict[str, Any]:
    """The card's account of the rows both models were scored on (`rows` of them), where they are not a dataset's
    whole evaluation split: rows held out of train (`--validation_split_size`; then no model-index, which the Hub
    would read as the dataset's evaluation split) or the first N of it (`--max_eval_samples`: a sliced split).
    `chosen_on_it`: the student's checkpoint was the best on those rows (`--load_best_model_at_end`), which the card
    says: its score is then an optimistic one. `split_rows`: the rows the split holds before any cut (a
    `--max_eval_samples` equal to it cuts nothing)."""
    found = _scored_rows(data_args, rows, split_rows)
    if chosen_on_it:
        note = "; the student's checkpoint is the one that scored best on it (--load_best_model_at_end): optimistic"
        found["evaluation_note"] = found.get("evaluation_note", "") + note
    return found


def _scored_rows(data_args, rows: int, split_rows: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if data_args.task_name is not None:
        held_out = data_args.validation_split_size is not None and not getattr(data_args, "hp_search_trials", None)
    elif data_args.validation_file is None:  # your own file's evaluation rows are held out of it, and named so
        train = public_name(data_args.train_file)
        return {"index_results": False, "evaluation_set": f"{rows:,} rows held out of {train} (never trained on)"}
    else:  # your own evaluation file, by its name (the card's task is the training file's)
        held_out, found = False, {"evaluation_set": f"{public_name(data_args.validation_file)} evaluation set"}
    if held_out:
        return {"index_results": False, "evaluation_note": f" ({rows:,} rows held out of the training split)"}
    # fewer: the whole split; as many as the split holds (`split_rows`, when known): the whole split too
    cut = split_rows is None or rows < split_rows
    if data_args.max_eval_samples is not None and rows >= data_args.max_eval_samples and cut:
        split = "validation_matched" if data_args.task_name == "mnli" else "validation"
        found.update(dataset_split=f"{split}[:{rows}]", evaluation_note=f" (its first {rows:,} rows)")
    return found


def scored_lines(held_out_of: str, lines: int, max_eval_samples: int | None) -> dict[str, Any]:
    """distill_mlm's account of the `lines` both models were scored on, as `scored_rows` gives distill_glue's: lines
    held out of the training split (`held_out_of` "train") or the first N non-empty lines of the evaluation split
    (`--max_eval_samples`, cut after the empty lines are dropped: no exact slice) get no model-index, which the Hub
    would read as the whole split's scores, and a note."""
    if held_out_of == "train":
        note = f" ({lines:,} lines held out of the training split, never trained on)"
        return {"dataset_split": "train", "index_results": False, "evaluation_note": note}
    if max_eval_samples is not None and lines >= max_eval_samples:
        note = f" (its first {lines:,} non-empty lines)"
        return {"dataset_split": held_out_of, "index_results": False, "evaluation_note": note}
    return {"dataset_split": held_out_of}


def intermediate_terms(training_args, *, distilled: bool = True) -> dict[str, float]:
    """The intermediate-layer terms a run trained with (`alpha_<name>` > 0), by name, for the card's loss line."""
    return {
        name: getattr(training_args, f"alpha_{name}")
        for name in ("hidden", "attention", "value_relation")
        if distilled and getattr(training_args, f"alpha_{name}") > 0
    }


def describe_student(student, model_args, layers, training: str) -> str:
    """The card's line on what the student is, how it was initialised, and (for a baseline) how it was trained."""
    name = type(student).__name__
    how = {"labels_only": " Trained on the labels alone (no teacher): a baseline.", "recipe": " Trained with the "
           "copied blog recipe (benchmarks/recipe.py): a baseline.", "pseudo_labels": " Trained on the labelled rows "
           "and the transfer rows labelled with the teacher's argmax (hard pseudo-labels): a baseline."
           }.get(training, "")  # fmt: skip
    return _describe_init(name, student, model_args, layers) + how


def _describe_init(name, student, model_args, layers) -> str:
    depth = getattr(student.config, "num_hidden_layers", None) or getattr(student.config, "n_layers", None)
    if model_args.student_model_name_or_path:
        return f"`{name}` ({depth} layers) loaded from `{public_name(model_args.student_model_name_or_path)}`."
    text = f"`{name}`, {depth} layers initialised from teacher layers {list(layers)}"
    if model_args.student_architecture == "distilbert":
        return text + " mapped into DistilBERT (token-type embedding 0 folded into the position embeddings)."
    return text + f"; {_copied_parts(student)} copied from the teacher."


def _copied_parts(student) -> str:
    """What a `bert` student took from its teacher beside the layers: the parts it has."""
    parts = ["embeddings"]
    if getattr(getattr(student, "base_model", None), "pooler", None) is not None:
        parts.append("pooler")
    head = next((h for suffix, h in _HEADS.items() if type(student).__name__.endswith(suffix)), None)
    if head:
        parts.append(head)
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


_HEADS = {
    "ForSequenceClassification": "classification head",
    "ForTokenClassification": "token-classification head",
    "ForQuestionAnswering": "span head",
    "ForMaskedLM": "masked-LM head",
}
