"""GLUE metrics against values worked out by hand from each metric's definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_distill.tasks.glue import GLUE_TASKS
from hf_distill.tasks.metrics import compute_metrics_fn, custom_metrics_fn, glue_metric, main_metric

# Binary example shared by accuracy, F1 and Matthews:
#   position:    0  1  2  3  4  5  6
#   prediction:  1  1  1  0  0  0  1
#   reference:   1  1  0  1  0  0  0
# TP = 2 (0, 1), FP = 2 (2, 6), FN = 1 (3), TN = 2 (4, 5).
BINARY_PREDICTIONS = [1, 1, 1, 0, 0, 0, 1]
BINARY_REFERENCES = [1, 1, 0, 1, 0, 0, 0]
# accuracy = (TP + TN) / N = 4 / 7
BINARY_ACCURACY = 4 / 7
# F1 = 2 TP / (2 TP + FP + FN) = 4 / (4 + 2 + 1) = 4 / 7 (precision 2/4, recall 2/3)
BINARY_F1 = 4 / 7
# MCC = (TP TN - FP FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN)) = (4 - 2) / sqrt(4 * 3 * 4 * 3) = 2 / 12
BINARY_MATTHEWS = 1 / 6

# Regression example:
#   predictions p = 1, 2, 3, 4   (mean 2.5, deviations -1.5, -0.5, 0.5, 1.5, sum of squares 5)
#   references  r = 2, 5, 4, 9   (mean 5,   deviations -3,    0,   -1,   4, sum of squares 26)
#   sum of products = 4.5 + 0 + (-0.5) + 6 = 10  ->  Pearson = 10 / sqrt(5 * 26) = 10 / sqrt(130)
#   ranks of p = 1, 2, 3, 4; ranks of r = 1, 3, 2, 4; d = 0, -1, 1, 0; sum d^2 = 2
#   Spearman = 1 - 6 * 2 / (4 * (4^2 - 1)) = 1 - 12 / 60 = 0.8
REGRESSION_PREDICTIONS = [1.0, 2.0, 3.0, 4.0]
REGRESSION_REFERENCES = [2.0, 5.0, 4.0, 9.0]
REGRESSION_PEARSON = 10 / math.sqrt(130)
REGRESSION_SPEARMAN = 0.8


def test_accuracy_matches_hand_count():
    result = glue_metric("sst2").compute(predictions=BINARY_PREDICTIONS, references=BINARY_REFERENCES)
    assert result == pytest.approx({"accuracy": BINARY_ACCURACY}, abs=1e-12)


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_and_accuracy_match_hand_count(task):
    result = glue_metric(task).compute(predictions=BINARY_PREDICTIONS, references=BINARY_REFERENCES)
    assert result == pytest.approx({"accuracy": BINARY_ACCURACY, "f1": BINARY_F1}, abs=1e-12)


def test_matthews_correlation_matches_confusion_matrix_formula():
    result = glue_metric("cola").compute(predictions=BINARY_PREDICTIONS, references=BINARY_REFERENCES)
    assert result == pytest.approx({"matthews_correlation": BINARY_MATTHEWS}, abs=1e-12)


def test_pearson_and_spearman_match_their_formulas():
    result = glue_metric("stsb").compute(predictions=REGRESSION_PREDICTIONS, references=REGRESSION_REFERENCES)
    assert result == pytest.approx({"pearson": REGRESSION_PEARSON, "spearmanr": REGRESSION_SPEARMAN}, abs=1e-12)


def test_three_class_accuracy_for_mnli():
    # 2 of 5 right: positions 0 and 3.
    result = glue_metric("MNLI").compute(predictions=[0, 1, 2, 2, 0], references=[0, 2, 1, 2, 1])
    assert result == pytest.approx({"accuracy": 0.4}, abs=1e-12)


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_every_task_returns_its_hub_keys_as_python_floats(task):
    metric = glue_metric(task)
    if GLUE_TASKS[task].is_regression:
        result = metric.compute(predictions=REGRESSION_PREDICTIONS, references=REGRESSION_REFERENCES)
    else:
        result = metric.compute(predictions=BINARY_PREDICTIONS, references=BINARY_REFERENCES)
    expected_keys = {
        "cola": {"matthews_correlation"},
        "mrpc": {"accuracy", "f1"},
        "qqp": {"accuracy", "f1"},
        "stsb": {"pearson", "spearmanr"},
    }.get(task, {"accuracy"})
    assert set(result) == expected_keys
    assert all(type(value) is float for value in result.values())
    assert main_metric(task) in result


def test_main_metric_per_task():
    assert main_metric("sst2") == "accuracy"
    assert main_metric("MRPC") == "f1"
    assert main_metric("qqp") == "f1"
    assert main_metric("sts-b") == "pearson"
    assert main_metric("CoLA") == "matthews_correlation"
    assert main_metric("mnli") == "accuracy"


def test_compute_metrics_takes_argmax_of_class_logits():
    # Row-wise argmax gives BINARY_PREDICTIONS.
    logits = np.array([[0.1, 0.9], [-1.0, 2.0], [0.0, 0.5], [3.0, -3.0], [0.2, 0.1], [1.0, 0.0], [-0.5, 0.5]])
    compute_metrics = compute_metrics_fn("mrpc", is_regression=False)
    result = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array(BINARY_REFERENCES)))
    assert result == pytest.approx({"accuracy": BINARY_ACCURACY, "f1": BINARY_F1}, abs=1e-12)


def test_compute_metrics_uses_the_logits_of_a_tuple_of_outputs():
    logits = np.array([[0.1, 0.9], [-1.0, 2.0], [0.0, 0.5], [3.0, -3.0], [0.2, 0.1], [1.0, 0.0], [-0.5, 0.5]])
    hidden_states = np.zeros((7, 5, 4))
    compute_metrics = compute_metrics_fn("cola", is_regression=False)
    result = compute_metrics(
        EvalPrediction(predictions=(logits, hidden_states), label_ids=np.array(BINARY_REFERENCES))
    )
    assert result == pytest.approx({"matthews_correlation": BINARY_MATTHEWS}, abs=1e-12)


def test_compute_metrics_squeezes_regression_outputs():
    predictions = np.array(REGRESSION_PREDICTIONS)[:, None]  # (N, 1), as a one-output head returns
    compute_metrics = compute_metrics_fn("stsb", is_regression=True)
    result = compute_metrics(EvalPrediction(predictions=predictions, label_ids=np.array(REGRESSION_REFERENCES)))
    assert result == pytest.approx({"pearson": REGRESSION_PEARSON, "spearmanr": REGRESSION_SPEARMAN}, abs=1e-12)


def test_compute_metrics_defaults_to_the_task_kind():
    predictions = np.array(REGRESSION_PREDICTIONS)[:, None]
    result = compute_metrics_fn("stsb")(EvalPrediction(predictions=predictions, label_ids=REGRESSION_REFERENCES))
    assert result["pearson"] == pytest.approx(REGRESSION_PEARSON, abs=1e-12)


def test_metric_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"same length, got shapes \(3,\) and \(2,\)"):
        glue_metric("sst2").compute(predictions=[0, 1, 1], references=[0, 1])
    with pytest.raises(ValueError, match="argmax of class logits"):
        glue_metric("sst2").compute(predictions=[[0.1, 0.9]], references=[[1]])


def test_metric_refuses_unknown_task():
    with pytest.raises(ValueError, match="Unknown GLUE task 'squad'; valid names: cola, sst2"):
        glue_metric("squad")


def test_a_one_logit_head_scored_as_a_classifier_is_refused():
    # its argmax is always 0: SST-2 scored 0.5 on two rows a one-output head got right
    prediction = EvalPrediction(predictions=np.array([[3.0], [-3.0]]), label_ids=np.array([1, 0]))
    with pytest.raises(ValueError, match=r"sst2 is a classification task, but the model gives one logit per row"):
        compute_metrics_fn("sst2")(prediction)
    with pytest.raises(ValueError, match=r"one logit per row \(logits of shape \(2, 1\)\)"):
        custom_metrics_fn(is_regression=False)(prediction)


def test_a_regression_with_several_outputs_per_row_is_refused():
    # flattened, 2 x 3 scores met 2 labels in a scipy error
    prediction = EvalPrediction(predictions=np.zeros((2, 3)), label_ids=np.array([0.5, 1.0]))
    for compute_metrics in (compute_metrics_fn("stsb"), custom_metrics_fn(is_regression=True)):
        with pytest.raises(ValueError, match=r"one output per row, but the model gives 3"):
            compute_metrics(prediction)


def test_custom_metrics_use_the_logits_of_a_list_of_outputs_as_of_a_tuple():
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 0.5]])
    for outputs in ((logits, np.zeros((3, 4))), [logits, np.zeros((3, 4))]):
        result = custom_metrics_fn(False)(EvalPrediction(predictions=outputs, label_ids=np.array([1, 0, 0])))
        assert result["accuracy"] == pytest.approx(2 / 3)


def test_f1_counts_class_1_as_positive_and_f1_macro_averages_every_class():
    # the shared example scores the same F1 whichever class is positive, and no test read f1_macro's value: class 0
    # as positive, or a weighted average, passed
    assert glue_metric("mrpc").compute(predictions=[1, 1, 1], references=[1, 0, 0])["f1"] == pytest.approx(0.5)
    logits = np.array([[1.0, 0.0]] * 4)  # class 0 everywhere; the references hold one class-1 row
    scored = custom_metrics_fn(False)(EvalPrediction(predictions=logits, label_ids=np.array([0, 0, 0, 1])))
    assert scored["f1_macro"] == pytest.approx((6 / 7 + 0) / 2) and scored["accuracy"] == pytest.approx(0.75)


def test_custom_regression_metrics_are_pearson_and_spearman():
    predictions = np.array(REGRESSION_PREDICTIONS)[:, None]
    references = np.array(REGRESSION_REFERENCES)
    scored = custom_metrics_fn(True)(EvalPrediction(predictions=predictions, label_ids=references))
    assert scored == pytest.approx({"pearson": REGRESSION_PEARSON, "spearmanr": REGRESSION_SPEARMAN}, abs=1e-12)


def test_a_metric_on_no_predictions_is_refused():
    with pytest.raises(ValueError, match="predictions is empty"):
        glue_metric("sst2").compute(predictions=[], references=[])
