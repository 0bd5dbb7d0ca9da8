"""`scripts/distill_glue.py`'s data arguments: the task or your files, the transfer set, the search, the export."""

from __future__ import annotations

import codecs
import importlib.util
from dataclasses import dataclass, field, fields
from pathlib import Path

from hf_distill.publish.export import check_export_formats
from hf_distill.tasks.augment import AUGMENTATIONS, EMBEDDING_TOP_K
from hf_distill.tasks.glue import GLUE_TASKS, normalize_task_name

from .paths import resolve_package_path
from .training import STUDENT_TRAININGS

__all__ = ["DataArguments"]


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
    file_encoding: str = field(
        default="utf-8", metadata={"help": "Text encoding of train_file, validation_file and unlabeled_file."}
    )
    validation_split_size: int | None = field(
        default=None,
        metadata={
            "help": "Hold out this many training rows (a fixed, seeded, stratified split) and evaluate on them: "
            "with train_file and no validation_file, or with a GLUE task to tune settings without touching dev. "
            "With --hp_search_trials the trials are scored on them: their labels are read to choose the settings, "
            "never to train, on top of --max_train_samples' N (all_results.json's search_held_out_examples)."
        },
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longest tokenized input; longer ones are cut."})
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "Use only the first N training rows; after a held-out split (--validation_split_size) the rows "
            "left come in the split's fixed shuffled order, so these are N of them drawn with its fixed seed. The "
            "held-out rows are not among the N: a --hp_search_trials search reads the labels of N + "
            "validation_split_size rows (search_held_out_examples in all_results.json and the card)."
        },
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
        default=None,
        metadata={"help": "Use only the first N rows of unlabeled_file that hold text (blank ones skipped)."},
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
            "Tang et al., 2019), 'mlm' (words replaced by a masked LM's sampled predictions; TinyBERT), or "
            f"'embedding' (words replaced by one of their {EMBEDDING_TOP_K} nearest words in the teacher's input word "
            "embeddings; TinyBERT's word-vector path, no extra model). Sentence pairs augment each side."
        },
    )
    augment_copies: int = field(
        default=4, metadata={"help": "Copies K per labelled row with --augment (each costs a teacher pass)."}
    )
    augment_probability: float = field(
        default=0.2,
        metadata={
            "help": "Per-word probability of masking/replacing (mask, mlm, embedding), or of n-gram sampling (ngram)."
        },
    )
    augment_keep_duplicates: bool = field(
        default=False,
        metadata={
            "help": "Keep augmented copies identical to their labelled row (nothing masked or cut) or to another "
            "copy of it; by default they are dropped, as Tang et al. (2019) discard duplicates, and "
            "train_augmented_examples counts the copies kept."
        },
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
            "help": "Search temperature (not for a regression head: T does not enter its MSE), alpha_kd, alpha_task, "
            "learning rate and epochs with N optuna trials, each scored on the rows held out by "
            "validation_split_size (never the dev set); every trial goes to "
            "<output_dir>/hp_search.json, and the final student is trained with the best settings. A stopped "
            "search resumes: the same command again (if it fine-tuned the teacher, with --teacher_model_name_or_path "
            "<output_dir>/teacher --finetune_teacher false: the teacher its trials were scored with) skips the trials "
            "<output_dir>/hp_search_study.journal holds; a larger N extends a finished search (with "
            "--overwrite_output_dir once its final student is saved, which it replaces); a journal of another search "
            "is refused, or set aside with --overwrite_output_dir. Needs the 'search' extra (optuna)."
        },
    )
    hp_search_only: bool = field(
        default=False,
        metadata={
            "help": "With --hp_search_trials: stop when the search ends, with every trial and the best settings in "
            "<output_dir>/hp_search.json, instead of also training the final student. Nothing is pushed or exported."
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
        default=False,
        metadata={
            "help": "Allow writing into an output_dir that already holds a model or files hf-distill did not write "
            "(never over a README.md that is not an hf-distill model card)."
        },
    )

    def __post_init__(self):
        for name in ("text_column", "unlabeled_text_column"):  # from Python, "text" is one column, not four
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        if (self.task_name is None) == (self.train_file is None):
            raise ValueError(
                "Give either --task_name (a GLUE task) or --train_file (your own data), not "
                f"{'both' if self.task_name else 'neither'}."
            )
        if self.task_name is not None:
            self.task_name = normalize_task_name(self.task_name)
            self._check_glue_options()
        else:
            if self.data_dir is not None:
                raise ValueError(
                    f"--data_dir {self.data_dir!r} goes with --task_name (a GLUE task's TSV folder); --train_file is "
                    "read from its own path: drop --data_dir."
                )
            if not self.text_column:
                raise ValueError("--train_file needs --text_column naming one or two text columns.")
            self.train_file = resolve_package_path(self.train_file)
            if self.validation_file is not None:
                self.validation_file = resolve_package_path(self.validation_file)
                if self.validation_split_size is not None and self.hp_search_trials is None:
                    raise ValueError(
                        f"--validation_split_size {self.validation_split_size} would hold rows out of train for "
                        f"evaluation, but --validation_file {Path(self.validation_file).name!r} is the evaluation "
                        "split: drop one of them (--validation_split_size is for --hp_search_trials here)."
                    )
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
        for name in (  # first: a 0 is out of range, whatever the option's other checks would make of it
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
        self._check_transfer_options()
        if self.export:
            items = self.export if isinstance(self.export, list) else str(self.export).split(",")
            self.export = ",".join(check_export_formats([item.strip() for item in items if item.strip()]))
        if self.task_name is not None and GLUE_TASKS[self.task_name].is_regression:
            self._check_regression_rows()
        try:
            codecs.lookup(self.file_encoding)
        except LookupError:
            raise ValueError(
                f"--file_encoding {self.file_encoding!r} is not an encoding Python knows: pass one such as utf-8 or "
                "latin-1."
            ) from None

    def transfer_flags(self) -> list[str]:
        """The options that ask for transfer rows, as the user gave them (empty: no transfer set)."""
        flags = []
        if self.unlabeled_train_rows:
            flags.append(f"--unlabeled_train_rows {self.unlabeled_train_rows}")
        if self.unlabeled_file:
            flags.append(f"--unlabeled_file {Path(self.unlabeled_file).name}")
        if self.augment != "none" and self.augment_copies > 0:
            flags.append(f"--augment {self.augment} --augment_copies {self.augment_copies}")
        return flags

    def ignored_augment_flags(self) -> list[str]:
        """--augment_copies / --augment_probability set away from their defaults (by flag or config) while --augment
        is 'none', which reads neither: the user asked for copies that are not made."""
        if self.augment != "none":
            return []
        defaults = {f.name: f.default for f in fields(self)}
        return [
            f"--{name} {getattr(self, name)}"
            for name in ("augment_copies", "augment_probability", "augment_keep_duplicates")
            if getattr(self, name) != defaults[name]
        ]

    def _check_glue_options(self) -> None:
        """Your own files' options, which a GLUE task ignores: scores on its dev set would pass for your file's."""
        task = GLUE_TASKS[self.task_name]
        if self.validation_file is not None:
            raise ValueError(
                f"--validation_file {self.validation_file!r} goes with --train_file (your own data), but --task_name "
                f"{task.name} evaluates on the task's own dev set: drop --validation_file, or pass your files with "
                "--train_file instead of --task_name."
            )
        if self.text_column:
            raise ValueError(
                f"--text_column {' '.join(_as_list(self.text_column))} goes with --train_file (your own data); "
                f"--task_name {task.name} reads the task's own column(s) ({', '.join(task.text_columns)}): drop "
                "--text_column."
            )
        if self.label_column != "label":
            raise ValueError(
                f"--label_column {self.label_column!r} goes with --train_file (your own data); --task_name "
                f"{task.name} reads the task's own label: drop --label_column."
            )
        if _encoding_name(self.file_encoding) != "utf-8" and self.unlabeled_file is None:
            raise ValueError(
                f"--file_encoding {self.file_encoding!r} is the encoding of your own files (--train_file, "
                f"--validation_file, --unlabeled_file), but --task_name {task.name} reads the task's UTF-8 files: "
                "drop --file_encoding."
            )

    def _check_regression_rows(self) -> None:
        """Pearson and Spearman fail on one row, at the first evaluation: after a teacher fine-tune or an epoch."""
        task = GLUE_TASKS[self.task_name].folder
        for option in ("max_eval_samples", "validation_split_size"):
            value = getattr(self, option)
            if value is not None and value < 2:
                raise ValueError(
                    f"--{option} {value} leaves {task}'s evaluation {value} row, but Pearson and Spearman need at "
                    f"least 2: pass --{option} 2 or more."
                )

    def _check_transfer_options(self) -> None:
        """The transfer-set and search options, refused before anything is loaded."""
        if self.augment_mlm_model:
            self.augment_mlm_model = resolve_package_path(self.augment_mlm_model)
        if self.unlabeled_train_rows is not None and self.train_file is not None:
            raise ValueError(
                f"--unlabeled_train_rows {self.unlabeled_train_rows} takes rows of a GLUE task's training split, but "
                "--train_file was given. Put your unlabelled text in --unlabeled_file instead."
            )
        if self.unlabeled_train_rows is not None and self.max_train_samples is None:
            # build_transfer_set would refuse it too, but only once the models (and a masked LM) are loaded
            raise ValueError(
                f"--unlabeled_train_rows {self.unlabeled_train_rows} takes the training rows after the labelled ones, "
                "but without --max_train_samples every training row is labelled and none is left: pass "
                "--max_train_samples N below the training split's size: the first N rows stay labelled and the rows "
                "after them can be used."
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
        if self.augment_mlm_model and self.augment != "mlm":
            raise ValueError(
                f"--augment_mlm_model {self.augment_mlm_model!r} is used only by --augment mlm, but --augment is "
                f"{self.augment!r}: add --augment mlm, or drop --augment_mlm_model."
            )
        if self.unlabeled_file is None:
            for name in ("unlabeled_text_column", "max_unlabeled_samples"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"--{name} {getattr(self, name)!r} applies to the rows of --unlabeled_file, which was not "
                        f"given: add --unlabeled_file PATH, or drop --{name}."
                    )
        if self.augment == "mlm" and not self.augment_mlm_model:
            raise ValueError(
                "--augment mlm needs --augment_mlm_model: a masked LM (folder or Hub id) with the teacher's "
                "vocabulary, e.g. bert-base-uncased."
            )
        if self.student_training == "pseudo_labels" and not self.transfer_flags():
            raise ValueError(
                "--student_training pseudo_labels labels the transfer rows with the teacher's argmax, but no transfer "
                "set was asked for, so it would train on the labels alone: add --unlabeled_file, "
                "--unlabeled_train_rows or --augment, or use --student_training labels_only."
            )
        if self.hp_search_only and self.hp_search_trials is None:
            raise ValueError(
                "--hp_search_only stops after the search, but --hp_search_trials was not given: add "
                "--hp_search_trials N (and --validation_split_size M), or drop --hp_search_only."
            )
        if self.hp_search_only and self.export:
            raise ValueError(
                f"--hp_search_only trains no student, so --export {self.export} would export nothing: drop one of "
                "them."
            )
        if self.hp_search_trials is not None:
            if self.student_training != "distill":
                raise ValueError(
                    f"--hp_search_trials {self.hp_search_trials} searches DistillationTrainer's settings (T, "
                    f"alpha_kd, learning rate, epochs), but --student_training {self.student_training!r} trains "
                    "another way, so the search would tune a run that never happens: drop --hp_search_trials, or "
                    "use --student_training distill."
                )
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


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _encoding_name(encoding: str) -> str:
    """An encoding's canonical name (`UTF-8`, `utf8` and `U8` are all "utf-8"); an unknown one as given."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return encoding
