"""hf_distill.cli.hp_search: the sampler that --hp_search_trials uses."""

from __future__ import annotations

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
