"""hf_distill.cli.hp_search: the sampler that --hp_search_trials uses."""

from __future__ import annotations

import json

import pytest

from hf_distill.cli.hp_search import sampler

optuna = pytest.importorskip("optuna")


@pytest.mark.parametrize(("n_trials", "random_trials"), [(1, 2), (8, 4), (12, 6), (40, 10)])
def test_a_short_search_is_not_all_random_start_up_trials(n_trials, random_trials):
    # optuna's default of 10 random start-up trials would make an 8-trial search a plain random search
    assert sampler(n_trials, seed=0)._n_startup_trials == random_trials


def test_the_same_seed_proposes_the_same_trials():
    def proposals(seed):
        study = optuna.create_study(sampler=sampler(6, seed), direction="maximize")
        study.optimize(lambda trial: -((trial.suggest_float("x", -1.0, 1.0) - 0.3) ** 2), n_trials=6)
        return [trial.params["x"] for trial in study.trials]

    assert proposals(7) == proposals(7) != proposals(8)


# ---- a search resumes where it stopped --------------------------------------------------------------------------


def class_dataset(n: int, seed: int):
    import datasets
    import tiny

    rows = tiny.class_rows(n, seed=seed).rows
    return datasets.Dataset.from_dict(
        {"input_ids": [row["input_ids"] for row in rows], "labels": [row["labels"] for row in rows]}
    )


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def search(
    tmp_path,
    n_trials: int,
    *,
    teacher_seed: int = 0,
    restart: bool = False,
    monkeypatch=None,
    compute_metrics=accuracy,
    **arguments,
) -> list:
    """Runs run_hp_search on tiny models; returns one entry per trial that trained in this call."""
    import tiny

    from hf_distill import DistillationTrainingArguments, build_student
    from hf_distill.cli import hp_search

    teacher = tiny.classifier(layers=2, seed=teacher_seed).eval()
    student = build_student(teacher, layers=[0])
    args = DistillationTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, use_cpu=True, report_to="none",
        disable_tqdm=True, save_strategy="no", seed=3, cache_teacher_logits=True, **arguments,
    )  # fmt: skip
    trained = []
    original = hp_search.DistillationTrainer.train

    def counting_train(self, *a, **k):
        trained.append(k.get("trial"))  # (the trial's settings are applied inside train)
        return original(self, *a, **k)

    monkeypatch.setattr(hp_search.DistillationTrainer, "train", counting_train)
    hp_search.run_hp_search(
        student=student, teacher=teacher, training_args=args, train_dataset=class_dataset(24, 1),
        search_dataset=class_dataset(8, 2), objective_metric="eval_accuracy", n_trials=n_trials, restart=restart,
        data_collator=tiny.collate, compute_metrics=compute_metrics,
    )  # fmt: skip
    return trained


def test_a_search_run_again_resumes_and_a_larger_trial_count_extends_it(tmp_path, monkeypatch):
    import json

    first = search(tmp_path, 2, monkeypatch=monkeypatch)
    report = json.loads((tmp_path / "out" / "hp_search.json").read_text())
    assert len(first) == 2 and len(report["trials"]) == 2 and "resumed_after_trials" not in report
    assert search(tmp_path, 2, monkeypatch=monkeypatch) == []  # finished: nothing trains again
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "out" / "hp_search_study.journal"))
    )
    killed = optuna.load_study(study_name="hf-distill-hp-search", storage=storage).ask()  # a process killed mid-trial
    extended = search(tmp_path, 3, monkeypatch=monkeypatch)
    states = {t.number: t.state for t in optuna.load_study(study_name="hf-distill-hp-search", storage=storage).trials}
    assert states[killed.number] == optuna.trial.TrialState.FAIL  # not counted, not left running
    resumed = json.loads((tmp_path / "out" / "hp_search.json").read_text())
    assert len(extended) == 1 and resumed["resumed_after_trials"] == 2
    assert resumed["trials"][:2] == report["trials"]  # the finished trials, as the first run wrote them
    assert [row["trial"] for row in resumed["trials"]] == [0, 1, 2]


def test_eval_on_start_leaves_every_trial_scored_after_its_training(tmp_path, monkeypatch):
    # eval_on_start handed the untrained student's score to the search as each trial's objective, and transformers'
    # optuna loop then skipped the evaluation after training: every trial tied, and trial 0 was "best"
    def scores(folder, **arguments):
        search(folder, 3, monkeypatch=monkeypatch, **arguments)
        report = json.loads((folder / "out" / "hp_search.json").read_text())
        return [row["eval_accuracy"] for row in report["trials"]]

    plain = scores(tmp_path / "plain")
    assert len(set(plain)) > 1  # the trials' settings do change their held-out score here
    assert scores(tmp_path / "on_start", eval_on_start=True) == plain


def test_the_search_fingerprint_tells_apart_devices_and_settings_that_change_a_trials_score(tmp_path, monkeypatch):
    # a search stopped on a GPU and resumed on a CPU kept the GPU's trials beside the CPU's
    import tiny
    import torch

    from hf_distill import DistillationTrainingArguments, build_student
    from hf_distill.cli.hp_search import _search_fingerprint

    teacher = tiny.classifier(layers=2, seed=0).eval()
    student = build_student(teacher, layers=[0])
    train, held = class_dataset(8, 1), class_dataset(4, 2)

    def args_of(**arguments):
        return DistillationTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **arguments)

    def fingerprint(**arguments):
        return _search_fingerprint(student, teacher, args_of(**arguments), train, held, "eval_accuracy")

    cpu = fingerprint()
    assert fingerprint() == cpu
    assert fingerprint(auto_find_batch_size=True) != cpu
    # the fixed arguments a trial trains under, and the rows it trains on: a journal of other ones is not resumed
    for other in (dict(seed=4), dict(per_device_train_batch_size=16), dict(warmup_steps=3)):
        assert fingerprint(**other) != cpu, other
    assert _search_fingerprint(student, teacher, args_of(), class_dataset(16, 5), held, "eval_accuracy") != cpu
    # nor the held-out rows its score is taken on
    assert _search_fingerprint(student, teacher, args_of(), train, class_dataset(4, 7), "eval_accuracy") != cpu
    assert fingerprint(learning_rate=1e-3, alpha_kd=0.2) == cpu  # the searched settings are each trial's own
    monkeypatch.setattr(DistillationTrainingArguments, "device", property(lambda self: torch.device("cuda", 0)))
    assert fingerprint() != cpu


def test_the_search_space_ties_alpha_task_to_alpha_kd_and_draws_the_learning_rate_on_a_log_scale():
    from hf_distill.cli.hp_search import hp_space

    params = {"temperature": 2.0, "alpha_kd": 0.3, "learning_rate": 1e-4, "num_train_epochs": 2}
    settings = hp_space(optuna.trial.FixedTrial(params))
    assert settings["alpha_task"] == pytest.approx(0.7)  # the weights sum to 1: the learning rate keeps its meaning
    assert settings == {
        "temperature": 2.0, "alpha_kd": 0.3, "alpha_task": pytest.approx(0.7), "learning_rate": 1e-4,
        "num_train_epochs": 2.0,
    }  # fmt: skip
    # the learning rate spans an order of magnitude: drawn uniformly, 3 trials in 4 would fall above 1e-4
    trial = optuna.create_study(direction="maximize").ask()
    hp_space(trial)
    assert trial.distributions["learning_rate"] == optuna.distributions.FloatDistribution(2e-5, 3e-4, log=True)


def test_every_trial_is_scored_on_the_held_out_rows_only(tmp_path, monkeypatch):
    scored_rows = []

    def counting(prediction):
        scored_rows.append(len(prediction.label_ids))
        return accuracy(prediction)

    search(tmp_path, 2, monkeypatch=monkeypatch, compute_metrics=counting)  # 24 training rows, 8 held out
    report = json.loads((tmp_path / "out" / "hp_search.json").read_text())
    assert scored_rows == [8, 8] and report["scored_on_rows"] == 8
    assert all(row["alpha_task"] == pytest.approx(1 - row["alpha_kd"]) for row in report["trials"])


def test_the_trials_teacher_cache_goes_to_the_given_teacher_cache_dir(tmp_path, monkeypatch):
    search(tmp_path, 1, monkeypatch=monkeypatch, teacher_cache_dir=str(tmp_path / "c"))  # cache_teacher_logits on
    assert (tmp_path / "c").is_dir() and any((tmp_path / "c").iterdir())
    assert not (tmp_path / "out" / "teacher_cache").exists()


def test_every_trial_starts_from_the_given_students_weights_and_leaves_them_untouched(tmp_path, monkeypatch):
    # a model_init handing out the student itself would let each trial start from the last one's training
    import torch

    from hf_distill.cli import hp_search

    built = []
    original = hp_search.DistillationTrainer.call_model_init

    def recording(self, trial=None):
        student = original(self, trial)
        built.append((id(student), {k: v.detach().clone() for k, v in student.state_dict().items()}))
        return student

    monkeypatch.setattr(hp_search.DistillationTrainer, "call_model_init", recording)
    given = {}
    real_run = hp_search.run_hp_search

    def keeping(*, student, **kwargs):
        given["student"], given["before"] = student, {k: v.clone() for k, v in student.state_dict().items()}
        return real_run(student=student, **kwargs)

    monkeypatch.setattr(hp_search, "run_hp_search", keeping)
    search(tmp_path, 2, monkeypatch=monkeypatch)
    student, before = given["student"], given["before"]
    trials = [state for _, state in built]
    assert len(trials) >= 2 and all(object_id != id(student) for object_id, _ in built)
    for state in [*trials, student.state_dict()]:
        assert all(torch.equal(state[key], value) for key, value in before.items())


def test_an_interrupted_trial_runs_again_and_another_searchs_journal_is_refused(tmp_path, monkeypatch):
    import json

    from transformers import Trainer

    calls = []
    real_evaluate = Trainer.evaluate

    def evaluate_then_stop(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the machine went away in the second trial
        return real_evaluate(self, *a, **k)

    monkeypatch.setattr(Trainer, "evaluate", evaluate_then_stop)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, 3, monkeypatch=monkeypatch)
    monkeypatch.setattr(Trainer, "evaluate", real_evaluate)
    assert len(search(tmp_path, 3, monkeypatch=monkeypatch)) == 2  # the interrupted trial counts for nothing
    rows = json.loads((tmp_path / "out" / "hp_search.json").read_text())["trials"]
    settings = [(row["temperature"], row["alpha_kd"], row["learning_rate"]) for row in rows]
    assert len(set(settings)) == 3  # the random start-up trial after the resume is not trial 0 again
    journal = tmp_path / "out" / "hp_search_study.journal"
    before = journal.read_bytes()
    with pytest.raises(ValueError, match=r"hp_search_study\.journal holds the trials of another search .*"
                                         r"--overwrite_output_dir"):  # fmt: skip
        search(tmp_path, 3, teacher_seed=1, monkeypatch=monkeypatch)
    assert journal.read_bytes() == before  # refused: nothing lost
    assert len(search(tmp_path, 2, teacher_seed=1, restart=True, monkeypatch=monkeypatch)) == 2  # afresh
    assert (tmp_path / "out" / "hp_search_study.journal.replaced").read_bytes() == before  # the old one kept
    second = journal.read_bytes()
    assert len(search(tmp_path, 1, teacher_seed=2, restart=True, monkeypatch=monkeypatch)) == 1  # afresh again
    # a second set-aside keeps both (it overwrote the first)
    assert (tmp_path / "out" / "hp_search_study.journal.replaced").read_bytes() == before
    assert (tmp_path / "out" / "hp_search_study.journal.replaced-2").read_bytes() == second
    journal.write_bytes(b"")  # killed before its study was written
    with pytest.raises(ValueError, match=r"holds the trials of another search"):
        search(tmp_path, 1, teacher_seed=1, monkeypatch=monkeypatch)


def test_a_regression_search_does_not_search_the_temperature_it_never_uses(tmp_path):
    # A regression head's KD term is an MSE to the teacher's prediction: T does not enter it, so trials that differ
    # only in T would train the same student. The classification space still searches it.
    import datasets
    import tiny

    from hf_distill import DistillationTrainingArguments, build_student
    from hf_distill.cli.hp_search import hp_space, run_hp_search

    fixed = optuna.trial.FixedTrial({"alpha_kd": 0.5, "learning_rate": 1e-4, "num_train_epochs": 1})
    assert "temperature" not in hp_space(fixed, regression=True)
    with pytest.raises(ValueError, match="temperature"):  # FixedTrial refuses a parameter it was not given
        hp_space(fixed)

    def rows(n, seed):
        found = tiny.class_rows(n, seed=seed, regression=True).rows
        return datasets.Dataset.from_dict(
            {"input_ids": [r["input_ids"] for r in found], "labels": [float(r["labels"]) for r in found]}
        )

    def negative_mse(prediction) -> dict[str, float]:
        return {"neg_mse": -float(((prediction.predictions.reshape(-1) - prediction.label_ids) ** 2).mean())}

    teacher = tiny.classifier(layers=2, num_labels=1, problem_type="regression").eval()
    args = DistillationTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, use_cpu=True, report_to="none",
        disable_tqdm=True, save_strategy="no", seed=3, temperature=2.5,
    )  # fmt: skip
    best = run_hp_search(
        student=build_student(teacher, layers=[0]), teacher=teacher, training_args=args, train_dataset=rows(16, 1),
        search_dataset=rows(8, 2), objective_metric="eval_neg_mse", n_trials=3, data_collator=tiny.collate,
        compute_metrics=negative_mse,
    )  # fmt: skip
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "out" / "hp_search_study.journal"))
    )
    trials = optuna.load_study(study_name="hf-distill-hp-search", storage=journal).trials
    assert len(trials) == 3 and all(set(t.params) == {"alpha_kd", "learning_rate", "num_train_epochs"} for t in trials)
    assert best["temperature"] == 2.5  # every trial kept the arguments' temperature
    assert len({round(t.params["alpha_kd"], 9) for t in trials}) == 3
    # resumed (a fourth trial), its finished trials are read back without the temperature they never searched
    again = run_hp_search(
        student=build_student(teacher, layers=[0]), teacher=teacher, training_args=args, train_dataset=rows(16, 1),
        search_dataset=rows(8, 2), objective_metric="eval_neg_mse", n_trials=4, data_collator=tiny.collate,
        compute_metrics=negative_mse,
    )  # fmt: skip
    report = json.loads((tmp_path / "out" / "hp_search.json").read_text())
    assert report["resumed_after_trials"] == 3 and len(report["trials"]) == 4 and again["temperature"] == 2.5
    assert all(row["temperature"] == 2.5 for row in report["trials"])


def test_a_trial_scored_nan_is_listed_as_failed_never_chosen_and_kept_on_resume(tmp_path):
    # A diverged regression trial scores a NaN Pearson. max() over the scores kept a NaN first trial as the "best"
    # (NaN compares False), optuna failed it (a resume dropped it and renumbered the rest) and hp_search.json held
    # a bare NaN, which strict JSON readers refuse.
    import tiny

    from hf_distill import DistillationTrainingArguments, build_student
    from hf_distill.cli.hp_search import run_hp_search

    scores = iter([float("nan"), 0.5, 0.25, 0.75])

    def metrics(prediction) -> dict[str, float]:
        return {"score": next(scores)}

    teacher = tiny.classifier(layers=2, seed=0).eval()
    args = DistillationTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, use_cpu=True, report_to="none",
        disable_tqdm=True, save_strategy="no", seed=3,
    )  # fmt: skip

    def run(n_trials):
        return run_hp_search(
            student=build_student(teacher, layers=[0]), teacher=teacher, training_args=args,
            train_dataset=class_dataset(16, 1), search_dataset=class_dataset(8, 2), objective_metric="eval_score",
            n_trials=n_trials, data_collator=tiny.collate, compute_metrics=metrics,
        )  # fmt: skip

    best = run(3)
    text = (tmp_path / "out" / "hp_search.json").read_text()
    report = json.loads(text, parse_constant=lambda name: pytest.fail(f"hp_search.json holds {name}"))
    assert (
        report["trials"][0]["eval_score"] is None
        and report["trials"][0]["failed"] == "eval_score was not a finite number"
    )
    assert report["best"]["trial"] == 1 and best.report == report
    assert {name: best[name] for name in best} == {name: report["trials"][1][name] for name in best}
    again = run(4)  # resumed: the failed trial is read back as failed, with its number, and one more trial runs
    resumed = json.loads((tmp_path / "out" / "hp_search.json").read_text())
    assert resumed["resumed_after_trials"] == 3 and resumed["trials"][:3] == report["trials"]
    assert resumed["best"]["trial"] == 3 and again["alpha_kd"] == resumed["trials"][3]["alpha_kd"]


def test_a_search_whose_every_trial_scored_nan_says_so_after_writing_them_all(tmp_path):
    import tiny

    from hf_distill import DistillationTrainingArguments, build_student
    from hf_distill.cli.hp_search import run_hp_search

    teacher = tiny.classifier(layers=2, seed=0).eval()
    args = DistillationTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, use_cpu=True, report_to="none",
        disable_tqdm=True, save_strategy="no", seed=3,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"Every one of the 2 search trials scored a non-number eval_score"):
        run_hp_search(
            student=build_student(teacher, layers=[0]), teacher=teacher, training_args=args,
            train_dataset=class_dataset(16, 1), search_dataset=class_dataset(8, 2), objective_metric="eval_score",
            n_trials=2, data_collator=tiny.collate, compute_metrics=lambda prediction: {"score": float("nan")},
        )  # fmt: skip
    report = json.loads((tmp_path / "out" / "hp_search.json").read_text())
    assert (
        report["best"] is None
        and [row["failed"] for row in report["trials"]] == ["eval_score was not a finite number"] * 2
    )


def test_the_best_settings_reach_a_deepspeed_configs_auto_learning_rate(tmp_path):
    # distill_glue.py set the best trial's learning rate on the arguments alone: the DeepSpeed config's "auto" lr had
    # been filled from the command line's at parsing, and the final Trainer builds DeepSpeed's optimizer from it
    pytest.importorskip("deepspeed")
    from accelerate.state import AcceleratorState

    from hf_distill import DistillationTrainingArguments
    from hf_distill.cli.hp_search import apply_settings

    deepspeed = {
        "train_micro_batch_size_per_gpu": "auto",
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}},
        "scheduler": {"type": "WarmupDecayLR", "params": {"warmup_max_lr": "auto", "total_num_steps": "auto"}},
        "zero_optimization": {"stage": 2},
    }
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(deepspeed))
    args = DistillationTrainingArguments(
        output_dir=str(tmp_path / "out"), learning_rate=1e-3, use_cpu=True, report_to="none", deepspeed=str(path)
    )
    assert args.hf_deepspeed_config.config["optimizer"]["params"]["lr"] == 1e-3
    AcceleratorState._shared_state["stale"] = True  # a trial's state, with that trial's DeepSpeed plugin
    apply_settings(args, {"learning_rate": 3e-5, "alpha_kd": 0.7, "alpha_task": 0.3})
    assert (args.learning_rate, args.alpha_kd) == (3e-5, 0.7)
    for config in (args.hf_deepspeed_config.config, args.deepspeed_plugin.hf_ds_config.config):
        assert config["optimizer"]["params"]["lr"] == 3e-5
        assert config["scheduler"]["params"]["warmup_max_lr"] == 3e-5
    assert "stale" not in AcceleratorState._shared_state  # the final Trainer's Accelerator takes the new plugin
    apply_settings(args, {"learning_rate": 5e-5})  # without DeepSpeed the arguments are all there is to set
    plain = DistillationTrainingArguments(output_dir=str(tmp_path / "plain"), use_cpu=True, report_to="none")
    apply_settings(plain, {"learning_rate": 5e-5})
    assert plain.learning_rate == 5e-5 and plain.deepspeed_plugin is None
