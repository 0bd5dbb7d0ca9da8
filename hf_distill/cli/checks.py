"""Refusals that cost nothing, made by every entry point before any data or model is loaded."""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from transformers import SchedulerType

from hf_distill.publish.export import ONNX_FOLDER_FILES
from hf_distill.publish.hub import check_can_push, check_repo_id, take_token_out_of_arguments
from hf_distill.publish.model_card import CARD_TAG
from hf_distill.tasks.positions import usable_positions
from hf_distill.trainer.arguments import distillation_settings
from hf_distill.trainer.batch_counts import check_planned_data_parallel_only

from .run_record import check_resumed_settings, given_paths, run_settings
from .training import check_recipe_available

logger = logging.getLogger(__name__)

__all__ = [
    "check_before_loading",
    "check_cache_engine",
    "check_model_path",
    "check_output_dir",
    "check_sequence_length",
    "check_teacher_cache_dir",
    "check_teacher_head",
    "check_training_numbers",
    "check_unread_training_options",
]


# What the entry points (and scripts/run_results.py, which runs them) write at the top of --output_dir: the student,
# its tokenizer, Trainer's results and state, the card, checkpoints, the fine-tuned teacher, its logit cache, the
# search's files and the exports. Anything else there is the user's.
OWN_OUTPUTS = (
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "model-*-of-*.safetensors", "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin",
    "pytorch_model_fsdp*", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
    "merges.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    "training_args.bin", "trainer_state.json", "all_results.json", "train_results.json", "eval_results.json",
    "README.md", "checkpoint-*", "teacher", "teacher_cache", "runs", "predict", "teacher_eval", "onnx",
    "hp_search", "hp_search.json", "hp_search.json.partial", "hp_search_study.journal*",
    "run_results.command.json", "related_text.command.json", "search_command.json", "run_results.reproduces.json",
    "emissions.csv", ".*.partial-*",  # codecarbon's; a teacher cache's build folder (a cache root here: library)
    ".DS_Store", "Thumbs.db", ".ipynb_checkpoints",  # what file browsers and notebooks leave: nobody's outputs
)  # fmt: skip


def check_output_dir(
    output_dir: Path, overwrite: bool, resume_from_checkpoint, *, push: bool = False, cache_root=None
) -> None:
    """Refuses an output_dir that is a file, or that already holds a model, an interrupted run's checkpoints or
    files this tool did not write, unless --overwrite_output_dir (or --resume_from_checkpoint, for the checkpoints);
    and, even then, one whose README.md is not an hf-distill model card (the run's card would replace it), or, with
    `push` (--push_to_hub), one holding files this tool did not write: the push uploads the folder (less its working
    files), so they would be published with the student. `cache_root`: the run's `--teacher_cache_dir`, whose folder
    inside `output_dir` (under any name) is the run's own and never pushed."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {output_dir} is a file, not a folder. Choose another --output_dir.")
    if not output_dir.is_dir():
        return
    readme = output_dir / "README.md"
    if readme.is_file() and not _is_our_card(readme):
        raise ValueError(
            f"{readme} is not an hf-distill model card, and this run would overwrite it with one (even with "
            "--overwrite_output_dir). Move that README.md elsewhere, or choose another --output_dir."
        )
    # once, for both refusals below: the folder listing (and its search for cache folders) is not cheap
    others = _not_written_by_us(output_dir, cache_root) if push or not overwrite else []
    if push and others:
        # Refused rather than left out of the push, --overwrite_output_dir or not (which lets a run write among
        # them, never publish them): a file left out is a push that differs from the folder, silently.
        raise ValueError(
            f"Output directory {output_dir} holds files hf-distill did not write ({_named(others)}), and "
            "--push_to_hub would upload them with the student, --overwrite_output_dir or not. Nothing was trained; "
            "move them out of the folder, or choose another --output_dir."
        )
    if overwrite:
        return
    # by step, not as text: checkpoint-1000 is later than checkpoint-500 (name[11:] follows "checkpoint-")
    found = [path.name for path in output_dir.glob("checkpoint-*") if path.is_dir()]
    checkpoints = sorted(found, key=lambda name: (int(name[11:]) if name[11:].isdigit() else -1, name))
    if checkpoints and not resume_from_checkpoint and not (output_dir / "all_results.json").exists():
        # the one written last: an --overwrite_output_dir rerun leaves an earlier run's (higher) steps beside its own
        latest = max(checkpoints, key=lambda name: (_written_at(output_dir / name), checkpoints.index(name)))
        raise ValueError(
            f"Output directory {output_dir} holds {', '.join(checkpoints)} of a run that did not finish; refusing to "
            f"start over on top of them. Pass --resume_from_checkpoint {output_dir / latest} to continue it "
            f"(and, if it fine-tuned its teacher, --teacher_model_name_or_path {output_dir / 'teacher'} "
            "--finetune_teacher false), --overwrite_output_dir to start afresh, or choose another --output_dir."
        )
    found = [
        name for name in ("config.json", "model.safetensors", "pytorch_model.bin") if (output_dir / name).exists()
    ]
    if found:
        raise ValueError(
            f"Output directory {output_dir} already holds a model ({', '.join(found)}); refusing to overwrite it. "
            "Pass --overwrite_output_dir to replace it, or choose another --output_dir."
        )
    if others:
        raise ValueError(
            f"Output directory {output_dir} holds files hf-distill did not write ({_named(others)}): the run would "
            "write its outputs among them, and --push_to_hub would upload them as part of the student. Choose an "
            "empty or new --output_dir, or pass --overwrite_output_dir to write into this one anyway."
        )


def _not_written_by_us(output_dir: Path, cache_root=None) -> list[str]:
    """The names at the top of `output_dir` (and in its onnx/ folder) that are not hf-distill's outputs: neither
    named in `OWN_OUTPUTS`, nor the top of the teacher cache folder `cache_root` (inside it under another name),
    nor a folder holding a teacher cache (an earlier run's `--teacher_cache_dir`), all of which a push leaves out."""
    from hf_distill.publish.hub import cache_root_inside, teacher_cache_folders

    inner = cache_root_inside(output_dir, cache_root)
    own = {*OWN_OUTPUTS, *({inner.split("/")[0]} if inner else set())}
    own |= {pattern.split("/")[0] for pattern in teacher_cache_folders(output_dir)}
    others = sorted(
        path.name for path in output_dir.iterdir() if not any(fnmatch.fnmatchcase(path.name, p) for p in own)
    )
    # onnx/ is ours only as far as it holds our exports: a file of the user's there would be pushed with the student
    # (and a user's model.onnx beside it replaced)
    exports = output_dir / "onnx"
    if exports.exists() and not exports.is_dir():
        others.append("onnx (a file where the exports' folder goes)")
    elif exports.is_dir():
        others += sorted(f"onnx/{path.name}" for path in exports.iterdir() if path.name not in ONNX_FOLDER_FILES)
    return others


def _named(others: list[str]) -> str:
    return ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")


def check_teacher_cache_dir(training_args) -> None:
    """A --teacher_cache_dir that is --output_dir puts each cache in <output_dir>/<fingerprint>/, among the student's
    outputs, where --push_to_hub would upload every training row's teacher outputs with it. Compared resolved (a
    trailing slash, ./, a link)."""
    given = getattr(training_args, "teacher_cache_dir", None)
    if given is None or not getattr(training_args, "cache_teacher_logits", False):  # no cache is built
        return
    output_dir = Path(training_args.output_dir).expanduser()
    if Path(given).expanduser().resolve() == output_dir.resolve():
        raise ValueError(
            f"--teacher_cache_dir {given} is --output_dir {training_args.output_dir}: its caches would lie among the "
            "student's outputs and be pushed with it. Give the cache a folder of its own, e.g. --teacher_cache_dir "
            f"{output_dir / 'teacher_cache'}, or leave it unset (that same default)."
        )


def _written_at(checkpoint: Path) -> float:
    """When a checkpoint's trainer_state.json (written last of its files) was written; 0 for none."""
    try:
        return (checkpoint / "trainer_state.json").stat().st_mtime
    except OSError:
        return 0.0


def _is_our_card(readme: Path) -> bool:
    """Whether `readme` is a model card this tool wrote: YAML front matter whose tags hold `CARD_TAG`."""
    from huggingface_hub.repocard import metadata_load

    try:
        tags = (metadata_load(readme) or {}).get("tags") or []
    except Exception:  # unreadable, or front matter that is not YAML (or not a mapping): not our card
        return False
    return isinstance(tags, list) and CARD_TAG in tags


def check_checkpoint(checkpoint, output_dir: Path) -> None:
    """A --resume_from_checkpoint folder must hold a Trainer checkpoint: Trainer finds out only after the data, the
    models and a teacher fine-tune (whose saved teacher then blocks the same command's rerun)."""
    if not checkpoint or isinstance(checkpoint, bool):
        return
    path = Path(checkpoint)
    if (path / "trainer_state.json").is_file():
        return
    found = sorted(p.name for p in output_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file())
    held = f"{output_dir} holds {', '.join(found)}" if found else f"{output_dir} holds no checkpoint"
    raise ValueError(
        f"--resume_from_checkpoint {checkpoint} is not a Trainer checkpoint (a folder with trainer_state.json); "
        f"{held}. Pass one of its checkpoint folders, or drop --resume_from_checkpoint to start afresh."
    )


def check_model_path(name_or_path: str, role: str) -> None:
    """A name that looks like a local path must exist; anything else is taken for a Hub id.

    Local-looking: starts with ".", "/" or "~", has more than one "/", ends with "/", or its first part is a folder
    here (`outputs/teacher` when ./outputs exists, a typo of a local folder, not the Hub's `outputs` namespace).
    """
    path = Path(name_or_path).expanduser()
    first_part = name_or_path.split("/", 1)[0]
    looks_local = (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or name_or_path.endswith("/")
        or ("/" in name_or_path and Path(first_part).is_dir())
    )
    if looks_local and not path.exists():
        raise ValueError(
            f"The {role} path {name_or_path!r} does not exist (looked in {path.absolute().parent}). Pass an "
            "existing model folder or a Hub id such as 'bert-base-uncased'."
        )
    if path.exists() and not (path / "config.json").exists():
        raise ValueError(f"The {role} folder {name_or_path!r} has no config.json: it is not a saved model.")
    weights = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
    if path.is_dir() and not any(any(path.glob(pattern)) for pattern in weights):
        raise ValueError(
            f"The {role} folder {name_or_path!r} holds a config.json but no weights (model.safetensors or "
            "pytorch_model.bin): save the model there with save_pretrained(), or pass another folder."
        )
    for weights_file in sorted(path.glob("*.safetensors")) if path.is_dir() else ():
        try:  # reads the header only, and checks that it covers the whole file
            with safe_open(str(weights_file), framework="pt"):
                pass
        except SafetensorError as error:
            raise ValueError(
                f"The {role} folder {name_or_path!r}: {weights_file.name} is not a whole safetensors file ({error}), "
                "probably cut off while it was saved. Save the model there again; a teacher this script fine-tuned "
                "is refit with --overwrite_output_dir."
            ) from None


def check_teacher_head(config, num_labels: int, model_args, label_names=None) -> None:
    """A teacher used as it is must already be a classifier for this task's labels, in the task's order."""
    if model_args.finetune_teacher:
        return
    architectures = config.architectures or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise ValueError(
            f"The teacher {model_args.teacher_model_name_or_path!r} is not fine-tuned for classification "
            f"(architectures={architectures}): its head would be random. Pass --finetune_teacher to fine-tune it on "
            "the task first, or give a teacher fine-tuned on this task."
        )
    if config.num_labels != num_labels:
        raise ValueError(
            f"The teacher has num_labels={config.num_labels} but the task has {num_labels} labels: it was fine-tuned "
            "on another task. Give a teacher fine-tuned on this task, or pass --finetune_teacher."
        )
    if label_names is not None:
        _check_label_order(config, list(label_names), model_args)


def _check_label_order(config, label_names: list[str], model_args) -> None:
    """The teacher's class i must be the task's class i: an MNLI teacher ordered contradiction, neutral,
    entailment would teach every entailment as a contradiction. Named the same but ordered otherwise: refused;
    named otherwise (not LABEL_i): said, as the names alone cannot tell."""
    id2label = config.id2label or {}
    theirs = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(len(label_names))]
    if all(re.fullmatch(r"LABEL_\d+", name) for name in theirs):
        return  # unnamed: nothing to compare
    ours = [str(name) for name in label_names]
    if [name.lower() for name in theirs] == [name.lower() for name in ours]:
        return
    teacher_order, task_order = dict(enumerate(theirs)), dict(enumerate(ours))
    if sorted(name.lower() for name in theirs) == sorted(name.lower() for name in ours):
        raise ValueError(
            f"The teacher {model_args.teacher_model_name_or_path!r} orders its labels {teacher_order}, the task "
            f"{task_order}: its logits would teach the student the wrong classes. Give a teacher fine-tuned with "
            "the task's label order, or pass --finetune_teacher to fit a new head on the task."
        )
    logger.warning(
        "The teacher names its labels %s and the task %s: they are taken to be the same classes in this order.",
        teacher_order,
        task_order,
    )


# Learning-rate schedules that step on evaluations during training: transformers refuses them without an eval strategy.
EVALUATION_SCHEDULES = frozenset({SchedulerType.REDUCE_ON_PLATEAU, SchedulerType.GREEDY})


def check_search_plan(model_args, data_args, training_args) -> None:
    """Refusals of `--hp_search_trials` that need no data: settings a trial cannot change, and a journal of an earlier
    search that this run could only find out, after fitting a teacher, it cannot resume."""
    if training_args.max_steps > 0:
        raise ValueError(
            f"--hp_search_trials searches num_train_epochs (1 to 3), which --max_steps {training_args.max_steps} "
            "overrides: the trials would train alike and report epochs they did not run. Drop --max_steps."
        )
    if training_args.lr_scheduler_type in EVALUATION_SCHEDULES:
        name = training_args.lr_scheduler_type.value
        raise ValueError(
            f"--lr_scheduler_type {name} steps on evaluations during training, but the trials of --hp_search_trials "
            "are scored once, after training, with no evaluation to step on. Search with a schedule that needs none "
            "(--lr_scheduler_type linear or cosine)."
        )
    from .hp_search import STUDY_FILE  # optuna's module, imported only when searching

    journal = Path(training_args.output_dir) / STUDY_FILE
    # (a saved teacher beside it is refused before this, by check_before_loading: its refit would replace it)
    if model_args.finetune_teacher and journal.exists() and not data_args.overwrite_output_dir:
        raise ValueError(
            f"{journal} holds the trials of an earlier search scored with another teacher than the one "
            "--finetune_teacher would fit now, so they cannot be resumed. Nothing was trained; pass "
            "--overwrite_output_dir to start afresh (the journal is kept beside it), or choose another --output_dir."
        )


# --report_to names and the package each needs, for those transformers' get_available_reporting_integrations lists
_INTEGRATION_PACKAGES = {"comet_ml": "comet_ml", "dagshub": "dagshub", "dvclive": "dvclive", "mlflow": "mlflow",
                         "neptune": "neptune", "tensorboard": "tensorboard", "wandb": "wandb",
                         "codecarbon": "codecarbon", "clearml": "clearml", "swanlab": "swanlab", "trackio": "trackio",
                         "kubeflow": "kubeflow"}  # fmt: skip


def check_report_to(training_args) -> None:
    """--report_to's integrations must exist and be installed: transformers finds out when the student's Trainer is
    built, after the data, the models and a teacher fine-tune (whose saved teacher then blocks the same command's
    rerun). A comma-separated list (`tensorboard,codecarbon`, a YAML list) is taken as its names."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    given = training_args.report_to or []
    names = [name.strip() for item in ([given] if isinstance(given, str) else given) for name in str(item).split(",")]
    names = [name for name in names if name and name != "none"]
    unknown = [name for name in names if name not in INTEGRATION_TO_CALLBACK and name != "all"]
    if unknown:
        raise ValueError(
            f"--report_to {','.join(unknown)}: no such integration. Pass one or more (comma-separated) of "
            f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}, or none."
        )
    installed = set(get_available_reporting_integrations())
    # the integrations that list says installed, by the package each needs (azure_ml is listed only without mlflow,
    # flyte never: those are left to transformers)
    missing = [name for name in names if name in _INTEGRATION_PACKAGES and name not in installed]
    if missing:
        packages = " ".join(_INTEGRATION_PACKAGES[name] for name in missing)
        raise ValueError(
            f"--report_to {','.join(missing)}: not installed here (pip install {packages}), or pass --report_to none."
        )
    if names != list(training_args.report_to or []) and "all" not in names:
        training_args.report_to = names


# What each --student_training reads of the distillation settings (None: all of them). The copied recipe weighs its
# KL by 1 - alpha_task and knows nothing else of hf-distill's; the labels-only trainings have no teacher term.
_READ_BY_TRAINING = {"distill": None, "recipe": {"temperature", "alpha_task"}, "labels_only": set(),
                     "pseudo_labels": set()}  # fmt: skip


def warn_of_unread_options(model_args, data_args, training_args) -> None:
    """Says which options given on the command line (away from their defaults) the run never reads: the card's command
    would list them as if they had trained the student. A config's values are not said: one config serves several
    runs (run_results.py runs every variant from one)."""
    given = getattr(training_args, "hf_distill_command_line_options", None)  # set by parse_arguments
    training = getattr(data_args, "student_training", "distill")
    unread: dict[str, Any] = {}
    read = _READ_BY_TRAINING.get(training)
    if read is not None:
        unread.update(
            (name, value)
            for name, value in distillation_settings(training_args).items()
            if name not in read and not name.startswith(("teacher_cache", "cache_"))
        )
    if not model_args.finetune_teacher:
        teacher_fit = ("teacher_num_train_epochs", "teacher_learning_rate")
        unread.update((name, getattr(model_args, name)) for name in teacher_fit)
    if training == "recipe" and not model_args.finetune_teacher:  # the model's own loss; a teacher's fit smooths
        unread["label_smoothing_factor"] = training_args.label_smoothing_factor
    defaults = {f.name: f.default for arguments in (model_args, training_args) for f in dataclasses.fields(arguments)}
    named = [
        f"--{name} {value}"
        for name, value in unread.items()
        if value != defaults.get(name) and (given is None or name in given)
    ]
    if named:
        logger.warning(
            "This run never reads %s (--student_training %s%s): drop them, or change the run that should read them.",
            ", ".join(named),
            training,
            "" if model_args.finetune_teacher else ", no --finetune_teacher",
        )


def check_unread_training_options(training_args, *, scores_with_trainer: bool = True) -> None:
    """Refuses the `TrainingArguments` the scripts never read, or read otherwise, where a run would do other than they
    ask: the scripts always train and push once, at the end; distill_glue (`scores_with_trainer`) scores each
    evaluation split whole, from its predictions, through Trainer (distill_mlm scores its held-out lines itself, and
    those options change nothing there)."""
    given = getattr(training_args, "hf_distill_set_options", None) or set()
    if "do_train" in given and not training_args.do_train:
        raise ValueError(
            "--do_train false: this script always trains a student (it has no evaluation-only mode; with "
            "--overwrite_output_dir it would replace the model in --output_dir). Drop --do_train, and score a saved "
            "student with transformers' Trainer.evaluate."
        )
    if training_args.do_predict:
        raise ValueError(
            "--do_predict: this script writes no predictions on a test split. Drop --do_predict, and predict with the "
            "saved student."
        )
    strategy = str(getattr(training_args.hub_strategy, "value", training_args.hub_strategy))
    if training_args.push_to_hub and strategy in ("checkpoint", "all_checkpoints"):
        raise ValueError(
            f"--hub_strategy {strategy}: the script pushes the student once, at the end, with its card, and no "
            "checkpoint. Drop --hub_strategy (to resume elsewhere, copy the checkpoint folder)."
        )
    if not scores_with_trainer:
        return
    if training_args.prediction_loss_only:
        raise ValueError(
            "--prediction_loss_only: the scores on the card, in all_results.json and of a search's trials come from "
            "the predictions, which it drops (the card read n/a, a search failed after its first trial). Drop "
            "--prediction_loss_only."
        )
    if training_args.batch_eval_metrics:
        raise ValueError(
            "--batch_eval_metrics: the scripts score each evaluation split whole, with metrics that take no "
            "compute_result argument (transformers refused it only once the models were loaded, after a teacher "
            "fine-tune). Drop --batch_eval_metrics."
        )
    if not training_args.eval_do_concat_batches:
        raise ValueError(
            "--eval_do_concat_batches false: the metrics are taken over the whole evaluation split, from the "
            "predictions of every batch together. Drop --eval_do_concat_batches."
        )


def check_launched_processes(training_args) -> None:
    """Refuses a launch of several processes (torchrun, WORLD_SIZE > 1) that the training arguments run as one each:
    on a machine without a GPU, transformers leaves distributed training off unless --use_cpu is given, and every
    process trained alone on every row into the same output folder, its card and table written once per process."""
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched > 1 and training_args.world_size == 1:
        raise ValueError(
            f"WORLD_SIZE={launched}: a launcher started {launched} processes, but the training arguments run each "
            "alone (on a CPU, distributed training needs --use_cpu true): every process would train on every row "
            "into the same --output_dir. Pass --use_cpu true on a machine without a GPU, or launch one process."
        )


def check_output_is_no_model_read(model_args, training_args) -> None:
    """Refuses an --output_dir that is the teacher's own folder: the run writes its student there, and
    --overwrite_output_dir (the fix the output-folder refusal gives) replaced the teacher with it. (A given student's
    folder may be written over on purpose, with --overwrite_output_dir: training it further in place.)"""
    output = Path(training_args.output_dir).expanduser().resolve()
    name = model_args.teacher_model_name_or_path
    if name and Path(name).expanduser().is_dir() and Path(name).expanduser().resolve() == output:
        raise ValueError(
            f"--output_dir {training_args.output_dir} is the teacher's own folder (--teacher_model_name_or_path "
            f"{name}): the student written there would replace the teacher. Pass another --output_dir."
        )


def check_before_loading(model_args, data_args, training_args) -> str | None:
    """The refusals that cost nothing: the output folder, the Hub push (its repo id included), the model paths.

    Turns `training_args.push_to_hub` off (the script pushes once, at the end, with the card) and takes any
    `--hub_token` out of the arguments. Returns the token to push with, or None when nothing is to be pushed.
    """
    check_launched_processes(training_args)
    # distill_mlm (no GLUE task, no search) scores its held-out lines itself, not through Trainer.evaluate
    check_unread_training_options(training_args, scores_with_trainer=hasattr(data_args, "task_name"))
    check_output_is_no_model_read(model_args, training_args)
    check_output_dir(
        Path(training_args.output_dir),
        data_args.overwrite_output_dir,
        training_args.resume_from_checkpoint,
        push=training_args.push_to_hub,
        cache_root=getattr(training_args, "teacher_cache_dir", None),
    )
    check_teacher_cache_dir(training_args)
    check_checkpoint(training_args.resume_from_checkpoint, Path(training_args.output_dir))
    # as the command gave them, before a search replaces any: what each checkpoint records (train_and_save)
    training_args.hf_distill_run_settings = run_settings(model_args, data_args, training_args)
    check_resumed_settings(
        training_args.resume_from_checkpoint,
        training_args.hf_distill_run_settings,
        Path(training_args.output_dir),
        given_paths(model_args, data_args),
    )
    teacher_dir = Path(training_args.output_dir) / "teacher"
    if model_args.finetune_teacher and not data_args.overwrite_output_dir and (teacher_dir / "config.json").exists():
        # an --hp_search_only run leaves its teacher and no student: a refit would replace the teacher its trials
        # were scored with (and an interrupted run's, which resuming needs)
        raise ValueError(
            f"--finetune_teacher would replace the teacher already fine-tuned in {teacher_dir}. Pass "
            f"--teacher_model_name_or_path {teacher_dir} --finetune_teacher false to reuse it (to resume its search "
            "or run), --overwrite_output_dir to refit it, or choose another --output_dir."
        )
    if getattr(data_args, "hp_search_trials", None):  # distill_mlm has no search
        check_search_plan(model_args, data_args, training_args)
    check_training_numbers(training_args)
    check_report_to(training_args)
    check_recipe_available(getattr(data_args, "student_training", "distill"))
    warn_of_unread_options(model_args, data_args, training_args)
    check_cache_engine(training_args)
    check_fsdp_wrap(model_args, training_args)
    check_planned_data_parallel_only(training_args)  # the trainers refuse it too, but only once built
    # distill_mlm shares these checks and has no search, so no --hp_search_only
    if getattr(data_args, "hp_search_only", False) and training_args.push_to_hub:
        raise ValueError(
            "--hp_search_only trains no student, so --push_to_hub would push nothing: drop one of them (push the "
            "student you train afterwards with the best settings)."
        )
    push, training_args.push_to_hub = training_args.push_to_hub, False
    token = take_token_out_of_arguments(training_args)
    if push:
        # the repo id the push after training will use, before the Hub is asked
        token = check_can_push(token, repo_id=check_repo_id(training_args))
    check_model_path(model_args.teacher_model_name_or_path, "teacher")
    if model_args.student_model_name_or_path:
        check_model_path(model_args.student_model_name_or_path, "student")
    return token if push else None


def sharding_engine(training_args) -> str | None:
    """The engine that will shard the teacher, as `accelerate launch` or the arguments ask for it: "FSDP",
    "DeepSpeed ZeRO-3", or None. Read from the arguments and the launcher's environment, before any model exists."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true") or getattr(training_args, "fsdp", None):
        return "FSDP"
    # TrainingArguments builds this plugin for --deepspeed CONFIG and under accelerate launch; its zero_stage follows
    # the config (a deepspeed_config_file included).
    plugin = getattr(training_args, "deepspeed_plugin", None)
    if plugin is not None and getattr(plugin, "zero_stage", None) == 3:
        return "DeepSpeed ZeRO-3"
    launched = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true")
    if launched and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        return "DeepSpeed ZeRO-3"
    return None


def check_cache_engine(training_args) -> None:
    """The teacher cache with a sharded teacher: DistillationTrainer refuses it when training starts, which in the
    scripts comes after the teacher's fine-tune (a GPU run of the FSDP config would have lost it so); refused here,
    before anything is loaded."""
    engine = sharding_engine(training_args)
    if engine is not None and getattr(training_args, "cache_teacher_logits", False):
        raise ValueError(
            f"--cache_teacher_logits true with {engine}: the cache is built by one process, but a sharded teacher "
            "needs every process in each forward. Pass --cache_teacher_logits false (the teacher then runs online), "
            "or launch with DDP or DeepSpeed ZeRO-1/2."
        )


def check_fsdp_wrap(model_args, training_args) -> None:
    """A DistilBERT student built under FSDP with a transformer-based wrap policy naming other layer classes
    (configs/accelerate/fsdp.yaml's BertLayer): Accelerate finds them missing from it and fails when it prepares the
    student, after the teacher's fine-tune. Refused here. The teacher is wrapped by its own layer classes
    (trainer/teacher.py); size-based and no wrapping name no classes."""
    built = getattr(model_args, "student_model_name_or_path", None) is None
    if sharding_engine(training_args) != "FSDP" or not built or model_args.student_architecture != "distilbert":
        return
    fsdp_config = getattr(training_args, "fsdp_config", None) or {}
    names = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP") or ",".join(
        fsdp_config.get("transformer_layer_cls_to_wrap") or []
    )
    classes = [name.strip() for name in names.split(",") if name.strip()]
    # the launcher's policy (Accelerate's default: none); else, with --fsdp, the arguments' (transformers' default:
    # transformer-based)
    policy = os.environ.get("FSDP_AUTO_WRAP_POLICY") or (
        fsdp_config.get("auto_wrap_policy") or "TRANSFORMER_BASED_WRAP" if getattr(training_args, "fsdp", None)
        else "NO_WRAP"
    )  # fmt: skip
    missing = [name for name in classes if name != "TransformerBlock"]
    if policy.upper() == "TRANSFORMER_BASED_WRAP" and missing:
        raise ValueError(
            f"--student_architecture distilbert under FSDP: the wrap policy names {', '.join(missing)}, which a "
            "DistilBERT student lacks (its layers are TransformerBlock), so Accelerate would fail when it prepares "
            "the student. Launch with --fsdp_transformer_layer_cls_to_wrap TransformerBlock (the teacher is "
            "wrapped by its own layers), or use --student_architecture bert."
        )


def check_training_numbers(training_args) -> None:
    """Values Trainer would accept and then fail on, or silently train nothing with."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(training_args, name)
        if value < 1:
            raise ValueError(f"--{name} must be >= 1, got {value}. Pass a positive number such as 8.")
    if training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
        raise ValueError(
            f"--num_train_epochs must be > 0 (or --max_steps > 0), got {training_args.num_train_epochs}: the student "
            "would not train at all. Pass e.g. --num_train_epochs 3."
        )
    if not training_args.learning_rate > 0:
        raise ValueError(f"--learning_rate must be > 0, got {training_args.learning_rate}. Pass e.g. 5e-5.")


def check_metric_for_best_model(training_args, metric_names) -> None:
    """A `--metric_for_best_model` the evaluation does not compute fails at the first evaluation, after training (and
    a teacher fine-tune whose saved teacher then refuses the rerun): refused once the task's metrics are known."""
    name = training_args.metric_for_best_model
    if name is None:
        return
    known = ["loss", *metric_names]
    if name.removeprefix("eval_") not in known:
        raise ValueError(
            f"--metric_for_best_model {name!r} is not a metric this run's evaluation computes ({', '.join(known)}): "
            f"pass one of them, e.g. --metric_for_best_model {metric_names[0]}."
        )


def check_sequence_length(max_seq_length: int, config, role: str) -> None:
    """A --max_seq_length longer than a model's position embeddings crashes at the first long input: refuse it."""
    positions = usable_positions(config)
    if positions is not None and max_seq_length > positions:
        raise ValueError(
            f"--max_seq_length {max_seq_length} is longer than the {role}'s {positions} position embeddings: the "
            f"first input longer than {positions} tokens would crash. Pass --max_seq_length {positions} or less."
        )
