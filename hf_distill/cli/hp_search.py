"""`--hp_search_trials N`: optuna trials of the distillation settings, scored on held-out training rows.

Each trial rebuilds the student from the same teacher (`model_init`), trains it with the trial's temperature (not
searched for a regression head, whose MSE has none), loss weights, learning rate and epochs, and is scored on the
rows `--validation_split_size` held out of train, never on the dev set. Every trial is written to
`<output_dir>/hp_search.json`; the best one's settings are returned for the final student.

A search resumes where it stopped: each finished trial is kept in an optuna journal,
`<output_dir>/hp_search_study.journal`. Run the same command again and the trials it holds are not run again,
provided it was made by the same search (the same teacher, student, rows, objective and fixed training arguments:
their fingerprint is stored in it); a larger `--hp_search_trials` extends a finished search. A teacher fine-tuned
by the script is saved in `<output_dir>/teacher` before the first trial: pass it (`--teacher_model_name_or_path
<output_dir>/teacher --finetune_teacher false`) so that a refit that is not bit-identical (GPU kernels) does not
void the trials. A journal of another search is refused, or set aside (`hp_search_study.journal.replaced`) with
`--overwrite_output_dir`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from hf_distill.cache.fingerprint import fingerprint_model, fingerprint_rows
from hf_distill.trainer import DistillationTrainer
from hf_distill.trainer.compatibility import is_regression

__all__ = ["SEARCHED_SETTINGS", "BestSettings", "apply_settings", "hp_space", "run_hp_search", "sampler"]

logger = logging.getLogger(__name__)

SEARCHED_SETTINGS = ("temperature", "alpha_kd", "alpha_task", "learning_rate", "num_train_epochs")
STUDY_FILE = "hp_search_study.journal"
STUDY_NAME = "hf-distill-hp-search"
# Training arguments that change what a trial scores (beside the searched ones and every hf-distill argument).
_FIXED_ARGUMENTS = (
    "per_device_train_batch_size", "gradient_accumulation_steps", "warmup_steps", "weight_decay",
    "lr_scheduler_type", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_epsilon", "optim", "fp16", "bf16",
    "seed", "data_seed", "max_steps", "label_smoothing_factor", "train_sampling_strategy", "world_size",
    "lr_scheduler_kwargs", "optim_args", "dataloader_drop_last", "tf32", "torch_compile", "neftune_noise_alpha",
    "average_tokens_across_devices", "full_determinism", "fp16_full_eval", "bf16_full_eval", "use_cpu",
    "auto_find_batch_size", "use_liger_kernel", "torch_compile_backend", "torch_compile_mode", "fsdp", "fsdp_config",
    "deepspeed",
)  # fmt: skip


def hp_space(trial, *, regression: bool = False) -> dict[str, float]:
    """The search space. alpha_task = 1 - alpha_kd keeps the total weight fixed, so the learning rate keeps its
    meaning across trials. A regression head's KD term is the MSE to the teacher's prediction, in which the
    temperature does not enter: it is not searched there (trials differing only in T would train the same student),
    and each trial keeps the training arguments' temperature."""
    alpha_kd = trial.suggest_float("alpha_kd", 0.1, 1.0)
    space = {} if regression else {"temperature": trial.suggest_categorical("temperature", [1.0, 2.0, 4.0])}
    return {
        **space,
        "alpha_kd": alpha_kd,
        "alpha_task": 1.0 - alpha_kd,
        "learning_rate": trial.suggest_float("learning_rate", 2e-5, 3e-4, log=True),
        "num_train_epochs": float(trial.suggest_int("num_train_epochs", 1, 3)),
    }


def apply_settings(training_args: Any, settings: dict[str, Any]) -> None:
    """Sets a search's chosen settings on the final run's training arguments, and what was derived from them.

    A --deepspeed config's "auto" values (the optimizer's lr, the scheduler's warmup_max_lr and total steps) were
    filled from the command line's settings when the arguments were parsed, and the final Trainer builds DeepSpeed's
    optimizer from that config as it stands: set on the arguments alone, the best trial's learning rate reached the
    card while the student trained at the command line's. The config is refilled as TrainingArguments fills it, and
    Accelerate's state (which keeps the last trial's DeepSpeed plugin) is reset, as between trials."""
    for name, value in settings.items():
        setattr(training_args, name, value)
    if not training_args.deepspeed:
        return
    from accelerate.state import AcceleratorState
    from accelerate.utils import DeepSpeedPlugin
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    config = HfTrainerDeepSpeedConfig(training_args.deepspeed)
    config.trainer_config_process(training_args)
    training_args.hf_deepspeed_config = config
    training_args.deepspeed_plugin = DeepSpeedPlugin(hf_ds_config=config)
    AcceleratorState._reset_state()


def sampler(n_trials: int, seed: int):
    """Optuna's TPE sampler, seeded. Its default 10 random start-up trials would make any search of 10 or fewer
    trials (what a CPU affords over a transfer set) a plain random search: half the trials, at least 2, are random
    and the rest are guided by them."""
    import optuna  # checked at argument parsing; imported here so the library does not need it

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, n_trials // 2)))


def run_hp_search(
    *,
    student: Any,
    teacher: Any,
    training_args: Any,
    train_dataset: Any,
    search_dataset: Any,
    objective_metric: str,
    n_trials: int,
    restart: bool = False,
    train_rows: dict[str, int] | None = None,
    **trainer_kwargs: Any,
) -> BestSettings:
    """Runs `n_trials` trials and returns the best trial's settings (keys of `SEARCHED_SETTINGS`), with the report
    written to ``<output_dir>/hp_search.json`` as their `report`. A trial scored NaN or infinite is listed there with
    ``"failed"`` and never chosen; if every trial failed, `ValueError` (after the report is written).

    Args:
        student: the initial student; each trial trains a fresh deep copy of it.
        objective_metric: the metric maximised, e.g. ``"eval_accuracy"``.
        n_trials: the trials the search holds when it ends, those of a resumed journal included.
        restart: replace a journal of another search instead of refusing it.
        train_rows: what the trials train on (e.g. labelled and augmented row counts), kept in hp_search.json.
    """
    output_dir = Path(training_args.output_dir)
    storage, done = None, []
    if training_args.process_index == 0:  # one process keeps the journal; the others learn how many trials are done
        try:
            fingerprint = _search_fingerprint(
                student, teacher, training_args, train_dataset, search_dataset, objective_metric
            )
            storage, finished = _open_study(output_dir / STUDY_FILE, fingerprint, restart=restart)
            done = [
                _settings_of(index, trial, objective_metric, training_args, regression=is_regression(student))
                for index, trial in enumerate(finished)
            ]
        except Exception as error:  # noqa: BLE001 - raised on every process below: the others must not wait
            done = error
    done = _shared_from_first_process(done, training_args)
    if isinstance(done, Exception):
        raise done
    args = dataclasses.replace(
        training_args,
        output_dir=str(output_dir / "hp_search"),
        save_strategy="no",
        eval_strategy="no",
        # an evaluation before the first step would hand the untrained student's score to the search as the
        # trial's objective, and transformers' optuna loop then skips the one after training: every trial tied
        eval_on_start=False,
        load_best_model_at_end=False,
        report_to="none",
        # One cache for the trials and the final student: the same teacher over the same rows.
        teacher_cache_dir=training_args.teacher_cache_dir or str(output_dir / "teacher_cache"),
    )
    trials: list[dict[str, Any]] = list(done)
    if done:
        logger.info("Resuming the search in %s: %d of %d trials already done.", output_dir / STUDY_FILE, len(done),
                    n_trials)  # fmt: skip
    trainer = DistillationTrainer(
        model_init=lambda: copy.deepcopy(student),
        teacher_model=teacher,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=search_dataset,
        **trainer_kwargs,
    )

    def objective(metrics: dict[str, float]) -> float:
        if objective_metric not in metrics:
            raise ValueError(f"the search objective {objective_metric!r} is not among the metrics {sorted(metrics)}.")
        settings = {name: getattr(trainer.args, name) for name in SEARCHED_SETTINGS}
        value = metrics[objective_metric]
        trials.append(_scored({"trial": len(trials), **settings}, objective_metric, value))
        # A trial scored NaN (a diverged regression: Pearson of a constant) is a finished trial never chosen. Given
        # as NaN, optuna would fail it (a resumed search would drop it and renumber the rest) and, were every trial
        # NaN, leave transformers' search no best trial to return after all of them ran.
        return value if math.isfinite(value) else -math.inf

    trainer.hyperparameter_search(
        hp_space=functools.partial(hp_space, regression=is_regression(student)),
        compute_objective=objective,
        n_trials=max(n_trials - len(done), 0),
        direction="maximize",
        backend="optuna",
        # Seeded past the finished trials: a resumed sampler seeded as at the start would propose trial 0 again.
        sampler=sampler(n_trials, training_args.seed + len(done)),
        storage=storage,
        study_name=STUDY_NAME,
        load_if_exists=True,
    )
    scored = [row for row in trials if "failed" not in row]
    best_trial = max(scored, key=lambda row: row[objective_metric]) if scored else None
    report = {
        "objective": objective_metric,
        "scored_on": "rows held out of train (never dev)",
        "scored_on_rows": len(search_dataset),
        "trials": trials,
    }
    if train_rows is not None:
        report["train_rows"] = train_rows
    if done:
        report["resumed_after_trials"] = len(done)
    report["best"] = best_trial
    if training_args.process_index == 0:  # one writer; the others have the same report in hand
        written = output_dir / "hp_search.json.partial"
        written.write_text(json.dumps(report, indent=2, allow_nan=False))
        written.replace(output_dir / "hp_search.json")
    if best_trial is None:
        _shared_from_first_process(None, training_args)  # every process raises after the report is written
        raise ValueError(
            f"Every one of the {len(trials)} search trials scored a non-number {objective_metric} (all in "
            f"{output_dir.name}/hp_search.json), so none can be chosen: the student diverged or predicted one value "
            "for every held-out row. Check the held-out rows (--validation_split_size) and the training arguments "
            f"kept fixed (fp16, batch size); the same search would resume these trials, so move {STUDY_FILE} out of "
            "the output folder to search afresh."
        )
    logger.info("Best of %d trials (%s = %.4f): %s", len(trials), objective_metric, best_trial[objective_metric],
                {name: best_trial[name] for name in SEARCHED_SETTINGS})  # fmt: skip
    return BestSettings({name: best_trial[name] for name in SEARCHED_SETTINGS}, report=report)


class BestSettings(dict):
    """The best trial's settings (the keys of `SEARCHED_SETTINGS`), and in `report` what hp_search.json holds."""

    def __init__(self, settings: dict[str, float], *, report: dict[str, Any]):
        super().__init__(settings)
        self.report = report


def _scored(row: dict[str, Any], objective_metric: str, value: float) -> dict[str, Any]:
    """A trial's row of hp_search.json: its score, or null and why it failed (JSON holds no NaN)."""
    if math.isfinite(value):
        return {**row, objective_metric: value}
    # (read back from the journal, where it was told -inf, it says the same as when it ran)
    return {**row, objective_metric: None, "failed": f"{objective_metric} was not a finite number"}


def _search_fingerprint(student, teacher, args, train_dataset, search_dataset, objective_metric: str) -> str:
    """sha256 of what a trial's score depends on, the searched settings and the number of trials aside."""
    ours = {f.name for f in dataclasses.fields(args)} - {f.name for f in dataclasses.fields(TrainingArguments)}
    fixed = {name: getattr(args, name, None) for name in (*_FIXED_ARGUMENTS, *sorted(ours))}
    fixed = {k: v for k, v in fixed.items() if k not in (*SEARCHED_SETTINGS, "teacher_cache_dir")}
    parts = {
        "objective": objective_metric,
        "device": args.device.type,  # trials scored on a GPU are not resumed beside a CPU's
        "arguments": json.dumps(fixed, sort_keys=True, default=str),
        "student": fingerprint_model(student),
        "teacher": fingerprint_model(teacher),
        "train": fingerprint_rows(train_dataset),
        "search": fingerprint_rows(search_dataset),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _open_study(path: Path, fingerprint: str, *, restart: bool):
    """The search's journal and its finished trials; interrupted trials are marked failed (never counted)."""
    import optuna

    def storage():
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            stored = optuna.load_study(study_name=STUDY_NAME, storage=storage()).user_attrs.get("fingerprint")
        except KeyError:  # killed before the study was written: a journal with no search in it
            stored = None
        if stored != fingerprint:
            if not restart:
                raise ValueError(
                    f"{path} holds the trials of another search (another teacher, student, rows, device or fixed "
                    f"training arguments, or one an older hf-distill fingerprinted otherwise), so they cannot be "
                    f"resumed. To resume it with the teacher its trials were scored "
                    f"with, pass --teacher_model_name_or_path {path.parent / 'teacher'} --finetune_teacher false; "
                    f"pass --overwrite_output_dir to start afresh (that file is kept as {path.name}.replaced); "
                    "or choose another --output_dir."
                )
            kept = _free_name(path.with_name(path.name + ".replaced"))  # an earlier set-aside journal stays too
            logger.warning("Starting the search afresh: %s held another search's trials (kept as %s).", path, kept)
            path.replace(kept)
    journal = storage()
    study = optuna.create_study(study_name=STUDY_NAME, storage=journal, direction="maximize", load_if_exists=True)
    study.set_user_attr("fingerprint", fingerprint)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # stopped mid-trial: run again, not counted
    return journal, study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def _free_name(path: Path) -> Path:
    """`path`, or `path`-2, -3... the first that does not exist."""
    candidate, number = path, 2
    while candidate.exists():
        candidate, number = path.with_name(f"{path.name}-{number}"), number + 1
    return candidate


def _settings_of(index: int, trial, objective_metric: str, training_args: Any, *, regression: bool) -> dict[str, Any]:
    """A finished trial's row of hp_search.json, its settings recomputed from its parameters by `hp_space` (a
    regression search's trials kept the arguments' temperature, which it does not search)."""
    import optuna

    settings = hp_space(optuna.trial.FixedTrial(trial.params), regression=regression)
    row = {"trial": index, "temperature": training_args.temperature, **settings}
    return _scored(row, objective_metric, trial.value)  # a failed trial was told -inf: never chosen, still counted


def _shared_from_first_process(value: Any, args: Any) -> Any:
    """`value` as process 0 has it, on every process (DDP); itself on one process."""
    import torch.distributed as dist

    if args.world_size > 1 and dist.is_available() and dist.is_initialized():
        shared = [value]
        dist.broadcast_object_list(shared, src=0)
        return shared[0]
    return value
