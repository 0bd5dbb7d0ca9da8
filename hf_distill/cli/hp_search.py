"""`--hp_search_trials N`: optuna trials of the distillation settings, scored on held-out training rows.

Each trial rebuilds the student from the same teacher (`model_init`), trains it with the trial's temperature,
loss weights, learning rate and epochs, and is scored on the rows `--validation_split_size` held out of train, never
on the dev set. Every trial is written to `<output_dir>/hp_search.json`; the best one's settings are returned for the
final student.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from hf_distill.trainer import DistillationTrainer

__all__ = ["SEARCHED_SETTINGS", "hp_space", "run_hp_search", "sampler"]

logger = logging.getLogger(__name__)

SEARCHED_SETTINGS = ("temperature", "alpha_kd", "alpha_task", "learning_rate", "num_train_epochs")


def hp_space(trial) -> dict[str, float]:
    """The search space. alpha_task = 1 - alpha_kd keeps the total weight fixed, so the learning rate keeps its
    meaning across trials."""
    alpha_kd = trial.suggest_float("alpha_kd", 0.1, 1.0)
    return {
        "temperature": trial.suggest_categorical("temperature", [1.0, 2.0, 4.0]),
        "alpha_kd": alpha_kd,
        "alpha_task": 1.0 - alpha_kd,
        "learning_rate": trial.suggest_float("learning_rate", 2e-5, 3e-4, log=True),
        "num_train_epochs": float(trial.suggest_int("num_train_epochs", 1, 3)),
    }


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
    **trainer_kwargs: Any,
) -> dict[str, float]:
    """Runs `n_trials` trials and returns the best trial's settings (keys of `SEARCHED_SETTINGS`).

    Args:
        student: the initial student; each trial trains a fresh deep copy of it.
        objective_metric: the metric maximised, e.g. ``"eval_accuracy"``.
    """
    output_dir = Path(training_args.output_dir)
    args = dataclasses.replace(
        training_args,
        output_dir=str(output_dir / "hp_search"),
        save_strategy="no",
        eval_strategy="no",
        load_best_model_at_end=False,
        report_to="none",
        # One cache for the trials and the final student: the same teacher over the same rows.
        teacher_cache_dir=training_args.teacher_cache_dir or str(output_dir / "teacher_cache"),
    )
    trials: list[dict[str, Any]] = []
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
        trials.append({"trial": len(trials), **settings, objective_metric: metrics[objective_metric]})
        return metrics[objective_metric]

    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=objective,
        n_trials=n_trials,
        direction="maximize",
        backend="optuna",
        sampler=sampler(n_trials, training_args.seed),
    )
    best_trial = max(trials, key=lambda row: row[objective_metric])
    report = {"objective": objective_metric, "scored_on": "rows held out of train (never dev)", "trials": trials}
    report["best"] = best_trial
    (output_dir / "hp_search.json").write_text(json.dumps(report, indent=2))
    logger.info("Best of %d trials (%s = %.4f): %s", n_trials, objective_metric, best.objective, best.hyperparameters)
    return {name: best_trial[name] for name in SEARCHED_SETTINGS}
