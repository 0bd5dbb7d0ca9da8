"""hf_distill.publish.export: ONNX fp32 / int8 exports of tiny BERT and DistilBERT classifiers, re-scored."""

from __future__ import annotations

import copy
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
from transformers import DataCollatorWithPadding, DistilBertConfig, DistilBertForSequenceClassification

from hf_distill.publish import export
from hf_distill.publish.export import (
    EXPORT_FORMATS,
    ExportError,
    OnnxClassifier,
    check_export_formats,
    evaluate_onnx,
    export_and_score,
    export_onnx,
    measure_onnx_latency_ms,
    quantize_int8,
)

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]
GLUE_DIR = ROOT.parent / "shared" / "data" / "glue"
needs_glue = pytest.mark.skipif(not (GLUE_DIR / "SST-2").is_dir(), reason=f"real GLUE data not found at {GLUE_DIR}")
N_ROWS = 40


def bert() -> torch.nn.Module:
    return tiny.classifier(layers=2, num_labels=2, seed=0, initializer_range=0.2).eval()


def distilbert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=tiny.VOCAB_SIZE,
        dim=32,
        n_layers=1,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=64,
        num_labels=2,
        initializer_range=0.2,
    )
    return DistilBertForSequenceClassification(config).eval()


BUILDERS = {"bert": bert, "distilbert": distilbert}
INPUTS = {
    "bert": ["input_ids", "attention_mask", "token_type_ids"],
    "distilbert": ["input_ids", "attention_mask"],
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def exported(request, tmp_path_factory):
    """(kind, model, fp32 path), one export per architecture for the module."""
    model = BUILDERS[request.param]()
    return request.param, model, export_onnx(model, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny.tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def sst2_rows(tokenizer):
    if not (GLUE_DIR / "SST-2").is_dir():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    from hf_distill.tasks.glue import load_glue_tsv

    validation = load_glue_tsv("sst2", GLUE_DIR, splits=["validation"])["validation"].select(range(N_ROWS))
    encoded = tokenizer(list(validation["sentence"]), truncation=True, max_length=64)
    rows = [{key: encoded[key][i] for key in encoded} for i in range(N_ROWS)]
    for row, label in zip(rows, list(validation["label"])):
        row["labels"] = label
    return rows


def rows_for(kind: str, rows: list[dict]) -> tiny.ListDataset:
    return tiny.ListDataset([{k: v for k, v in row.items() if k in INPUTS[kind] or k == "labels"} for row in rows])


@torch.no_grad()
def torch_logits(model, dataset, collator, batch_size: int = 16) -> np.ndarray:
    logits = []
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        batch.pop("labels")
        logits.append(model(**batch).logits.numpy())
    return np.concatenate(logits)


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def random_batch(kind: str, batch_size: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, tiny.VOCAB_SIZE, (batch_size, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, max(1, length // 2) :] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, length // 3 :] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    return {key: batch[key] for key in INPUTS[kind]}


def test_export_file_loads_with_named_dynamic_inputs(exported):
    kind, _, path = exported
    assert path.is_file() and path.name == "model.onnx" and path.parent.name == "onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == INPUTS[kind]
    assert [node.name for node in session.get_outputs()] == ["logits"]
    for node in session.get_inputs():
        assert node.shape == ["batch", "sequence"]
    assert session.get_outputs()[0].shape == ["batch", 2]
    assert OnnxClassifier(path).input_names == INPUTS[kind]


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("length", [3, 13])
def test_dynamic_axes_match_pytorch(exported, batch_size, length):
    kind, model, path = exported
    batch = random_batch(kind, batch_size, length)
    with torch.no_grad():
        expected = model(**batch).logits.numpy()
    classifier = OnnxClassifier(path)
    np.testing.assert_allclose(classifier.predict(batch), expected, atol=1e-4, rtol=0)
    # numpy inputs and extra keys (labels) are accepted too
    numpy_batch = {key: value.numpy() for key, value in batch.items()} | {"labels": np.zeros(batch_size)}
    np.testing.assert_allclose(classifier.predict(numpy_batch), expected, atol=1e-4, rtol=0)


def test_bert_missing_token_type_ids_default_to_zeros(exported):
    kind, model, path = exported
    if kind != "bert":
        pytest.skip("DistilBERT takes no token_type_ids")
    batch = random_batch(kind, 3, 7)
    batch.pop("token_type_ids")
    with torch.no_grad():
        expected = model(**batch).logits.numpy()
    np.testing.assert_allclose(OnnxClassifier(path).predict(batch), expected, atol=1e-4, rtol=0)


def test_a_missing_attention_mask_defaults_to_ones(exported):
    kind, model, path = exported
    input_ids = random_batch(kind, 3, 7)["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=input_ids).logits.numpy()
    np.testing.assert_allclose(OnnxClassifier(path).predict({"input_ids": input_ids}), expected, atol=1e-5, rtol=0)


@needs_glue
def test_fp32_logits_match_pytorch_on_sst2(exported, sst2_rows, tokenizer):
    kind, model, path = exported
    dataset = rows_for(kind, sst2_rows)
    assert ("token_type_ids" in dataset[0]) == (kind == "bert")
    collator = DataCollatorWithPadding(tokenizer)
    expected = torch_logits(model, dataset, collator)
    metrics, logits = evaluate_onnx(path, dataset, collator, accuracy, batch_size=32)
    assert logits.shape == (N_ROWS, 2)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    labels = np.array([row["labels"] for row in sst2_rows])
    assert metrics == {"accuracy": pytest.approx(float((expected.argmax(-1) == labels).mean()))}


@needs_glue
def test_export_and_score_keys_and_int8(exported, sst2_rows, tokenizer, tmp_path):
    kind, model, _ = exported
    dataset = rows_for(kind, sst2_rows)
    collator = DataCollatorWithPadding(tokenizer)
    reference = torch_logits(model, dataset, collator)
    latency_batches = {b: collator([dataset[i] for i in range(b)]) for b in (1, 4)}
    results = export_and_score(
        model,
        tmp_path,
        ["int8"],
        dataset=dataset,
        collator=collator,
        compute_metrics=accuracy,
        torch_logits=reference,
        latency_batches=latency_batches,
    )
    per_format = ["eval_accuracy", "size_bytes", "latency_ms_batch1", "latency_ms_batch4", "agreement"]
    per_format.append("max_abs_logit_diff")
    assert set(results) == {f"{prefix}{key}" for prefix in ("onnx_", "onnx_int8_") for key in per_format}
    assert results["onnx_agreement"] == 1.0
    assert results["onnx_max_abs_logit_diff"] < 1e-4
    assert 0.0 <= results["onnx_int8_agreement"] <= 1.0
    assert results["onnx_int8_max_abs_logit_diff"] > 0.0  # int8 weights move the logits, if only a little
    for prefix in ("onnx_", "onnx_int8_"):
        assert 0.0 <= results[f"{prefix}eval_accuracy"] <= 1.0
        assert results[f"{prefix}latency_ms_batch1"] > 0 and results[f"{prefix}latency_ms_batch4"] > 0
    fp32, int8 = tmp_path / "onnx" / "model.onnx", tmp_path / "onnx" / "model_int8.onnx"
    assert fp32.is_file() and int8.is_file()
    assert results["onnx_size_bytes"] == fp32.stat().st_size
    assert results["onnx_int8_size_bytes"] == int8.stat().st_size < fp32.stat().st_size
    int8_logits = OnnxClassifier(int8).predict(latency_batches[4])
    assert int8_logits.shape == (4, 2) and np.isfinite(int8_logits).all()


def test_quantize_int8_explicit_output_path(exported, tmp_path):
    kind, _, path = exported
    target = quantize_int8(path, tmp_path / "small.onnx")
    assert target == tmp_path / "small.onnx" and target.stat().st_size < path.stat().st_size
    assert OnnxClassifier(target).predict(random_batch(kind, 2, 5)).shape == (2, 2)


def test_export_and_score_without_torch_logits_or_latency(tmp_path):
    model = bert()
    dataset = tiny.class_rows(6, num_labels=2)
    results = export_and_score(
        model, tmp_path, ("onnx",), dataset=dataset, collator=tiny.collate, compute_metrics=accuracy
    )
    assert set(results) == {"onnx_eval_accuracy", "onnx_size_bytes"}


def test_callers_model_is_left_untouched(tmp_path):
    model = tiny.classifier(layers=1, num_labels=2, seed=1, hidden_dropout_prob=0.1).train()
    model.bert.encoder.eval()  # a mixed mode, to check every submodule keeps its own
    before = {key: value.clone() for key, value in model.state_dict().items()}
    modes = {name: module.training for name, module in model.named_modules()}
    grads = {name: param.requires_grad for name, param in model.named_parameters()}
    export_onnx(model, tmp_path)
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert {name: param.requires_grad for name, param in model.named_parameters()} == grads
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype and after[key].device == value.device
        assert torch.equal(after[key], value), key


def test_check_export_formats():
    assert EXPORT_FORMATS == ("onnx", "int8")
    assert check_export_formats(["int8"]) == ("onnx", "int8")
    assert check_export_formats(["int8", "onnx", "ONNX"]) == ("onnx", "int8")
    assert check_export_formats(["onnx"]) == ("onnx",)
    assert check_export_formats("int8") == ("onnx", "int8")
    assert check_export_formats([]) == ()
    with pytest.raises(ValueError, match="'tflite'") as raised:
        check_export_formats(["onnx", "tflite"])
    assert "onnx, int8" in str(raised.value)


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_check_export_formats_without_the_runtime(monkeypatch, missing):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    with pytest.raises(ValueError, match=r"install the 'export' extra: pip install 'hf-distill\[export\]'") as raised:
        check_export_formats(["int8"])
    assert missing in str(raised.value)
    assert check_export_formats([]) == ()


def test_export_failure_raises_export_error_naming_the_format(monkeypatch, tmp_path):
    def broken_export(*args, **kwargs):
        raise RuntimeError("tracer exploded")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    dataset = tiny.class_rows(4, num_labels=2)
    with pytest.raises(ExportError, match=r"'onnx'.*tracer exploded") as raised:
        export_and_score(bert(), tmp_path, ["onnx"], dataset=dataset, collator=tiny.collate, compute_metrics=None)
    assert isinstance(raised.value, RuntimeError)


def test_quantization_failure_raises_export_error_naming_int8(monkeypatch, tmp_path):
    import onnxruntime.quantization

    def broken_quantize(*args, **kwargs):
        raise ValueError("no int8 here")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", broken_quantize)
    dataset = tiny.class_rows(4, num_labels=2)
    with pytest.raises(ExportError, match=r"'int8'.*no int8 here") as raised:
        export_and_score(bert(), tmp_path, ["int8"], dataset=dataset, collator=tiny.collate, compute_metrics=None)
    # the fp32 file was scored before int8 failed: kept, its keys on the error; no int8 file is left
    assert sorted(path.name for path in (tmp_path / "onnx").iterdir()) == ["model.onnx"]
    assert raised.value.scores["onnx_size_bytes"] == (tmp_path / "onnx" / "model.onnx").stat().st_size
    assert not any(key.startswith("onnx_int8_") for key in raised.value.scores)


def test_a_file_that_failed_its_scoring_is_removed(tmp_path, monkeypatch):
    # an unscored model.onnx left in the output folder would be pushed as the student's
    dataset = tiny.class_rows(4, num_labels=2)
    with pytest.raises(ExportError, match=r"'onnx' failed while scoring"):
        export_and_score(
            bert(), tmp_path, ["int8"], dataset=dataset, collator=tiny.collate, compute_metrics=None,
            torch_logits=np.zeros((3, 2), dtype=np.float32),
        )  # fmt: skip
    assert not (tmp_path / "onnx").exists()
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "notes.md").write_text("the user's")
    real_score = export._score
    monkeypatch.setattr(export, "_score", lambda path, *args: real_score(path, *args) if path.name == "model.onnx"
                        else 1 / 0)  # fmt: skip
    with pytest.raises(ExportError, match=r"'int8' failed while scoring .*ZeroDivisionError") as raised:
        export_and_score(bert(), tmp_path, ["int8"], dataset=dataset, collator=tiny.collate, compute_metrics=None)
    assert sorted(path.name for path in (tmp_path / "onnx").iterdir()) == ["model.onnx", "notes.md"]
    assert "onnx_size_bytes" in raised.value.scores


def test_onnxruntime_runs_on_torchs_threads_as_the_student_it_is_timed_against(exported, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # what torchrun's OMP_NUM_THREADS=1 gives a process
    options = OnnxClassifier(exported[2]).session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1


def test_measure_onnx_latency_ms(exported):
    kind, _, path = exported
    latency = measure_onnx_latency_ms(path, random_batch(kind, 2, 6), warmup=1, repeats=3, min_seconds=0)
    assert isinstance(latency, float) and latency > 0


def fake_timed_classifier(durations_ms: list[int], monkeypatch) -> tuple[OnnxClassifier, list[int]]:
    """An OnnxClassifier whose session's runs take `durations_ms` (then 1 ms each) of a fake clock, counted in whole
    milliseconds so that elapsed times compare exactly; returns it and the list of runs taken."""
    clock, runs = [0], []
    monkeypatch.setattr(export.time, "perf_counter", lambda: clock[0] / 1000)
    durations = iter(durations_ms)

    class Session:
        def run(self, outputs, feed):
            runs.append(next(durations, 1))
            clock[0] += runs[-1]
            return [np.zeros((1, 2), dtype=np.float32)]

    classifier = OnnxClassifier.__new__(OnnxClassifier)
    classifier.session, classifier.input_names = Session(), ["input_ids"]
    return classifier, runs


def test_onnx_latency_is_the_median_of_the_measured_runs_after_the_warmup(monkeypatch):
    # a 200 ms cold first run (warm-up), then five measured runs, the second a 50 ms burst: the mean would read 10.8
    classifier, runs = fake_timed_classifier([200, 1, 1, 1, 50, 1, 1, 1], monkeypatch)
    value = measure_onnx_latency_ms(classifier, {"input_ids": np.ones((1, 4))}, warmup=3, repeats=5, min_seconds=0)
    assert value == pytest.approx(1.0)
    assert len(runs) == 3 + 5


def test_onnx_latency_keeps_timing_for_min_seconds(monkeypatch):
    classifier, runs = fake_timed_classifier([], monkeypatch)
    measure_onnx_latency_ms(classifier, {"input_ids": np.ones((1, 4))}, warmup=0, repeats=10, min_seconds=0.5)
    assert len(runs) == 500  # 0.5 s of 1 ms runs, not the 10 repeats


def test_agreement_for_a_regression_head():
    reference = np.array([[0.0], [2.0], [1000.0]], dtype=np.float32)
    close = reference + np.array([[5e-4], [1e-3], [1.5]], dtype=np.float32)
    assert export._agreement(close, reference) == pytest.approx(2 / 3)
    assert export._agreement(reference, reference) == 1.0
    with pytest.raises(ValueError, match="shape"):
        export._agreement(reference[:2], reference)


def test_a_bfloat16_model_is_exported_in_float32_and_stays_bfloat16(tmp_path):
    model = bert().to(torch.bfloat16)
    path = export_onnx(model, tmp_path)
    assert all(param.dtype == torch.bfloat16 for param in model.parameters())
    batch = random_batch("bert", 2, 6)
    with torch.no_grad():
        expected = model.float()(**batch).logits.numpy()
    logits = OnnxClassifier(path).predict(batch)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_a_scoring_failure_names_the_file_inside_the_output_folder_not_the_machines_path(tmp_path):
    # export_error goes into all_results.json, which is pushed: torch_logits of the wrong length fail the scoring
    dataset = tiny.class_rows(4, num_labels=2)
    with pytest.raises(ExportError, match=r"'onnx' failed while scoring <output_dir>/onnx/model\.onnx: ") as raised:
        export_and_score(
            bert(), tmp_path, ["onnx"], dataset=dataset, collator=tiny.collate, compute_metrics=None,
            torch_logits=np.zeros((3, 2), dtype=np.float32),
        )  # fmt: skip
    assert str(tmp_path) not in str(raised.value) and str(tmp_path.resolve()) not in str(raised.value)


def test_a_failure_naming_the_resolved_output_folder_keeps_none_of_the_machines_path(tmp_path):
    # /home -> /mnt/nfs/home: the folder as given is the tail of its resolved path, so replacing the given form first
    # left "<machine prefix>/mnt/nfs<output_dir>" in the pushed message
    root = tmp_path.resolve()
    mounted = Path(f"{root}/mnt/nfs{root}/home")
    (mounted / "out").mkdir(parents=True)
    (root / "home").symlink_to(mounted)
    given = root / "home" / "out"
    resolved = given.resolve()
    assert resolved == mounted / "out" and str(resolved).endswith(str(given))
    with pytest.raises(ExportError) as raised:
        with export._failure_names("onnx", "scoring", given):
            raise OSError(f"cannot open {resolved}/onnx/model.onnx")
    said = "Export format 'onnx' failed while scoring: OSError: cannot open <output_dir>/onnx/model.onnx"
    assert str(raised.value) == said
    assert str(resolved) not in str(raised.value) and f"{root}/mnt/nfs" not in str(raised.value)


@pytest.mark.parametrize("settings", [{"repeats": 0, "min_seconds": 0}, {"warmup": -1}, {"min_seconds": -1.0}])
def test_onnx_timing_settings_that_measure_nothing_are_refused(exported, settings):
    kind, _, path = exported
    with pytest.raises(ValueError, match=f"{next(iter(settings))} must be"):
        measure_onnx_latency_ms(path, random_batch(kind, 2, 6), **settings)


# ---- checked against the student, timed in turns, written whole (from a review) ----


def test_an_fp32_file_that_does_not_compute_the_student_fails_and_is_removed(tmp_path, caplog):
    # another model's logits as the reference: agreement 0.1 and a logit difference of 3 were published silently
    model, other = bert(), tiny.classifier(layers=2, num_labels=2, seed=7, initializer_range=0.2).eval()
    dataset = tiny.class_rows(12, num_labels=2)
    wrong = torch_logits(other, dataset, tiny.collate)
    data = {"dataset": dataset, "collator": tiny.collate, "compute_metrics": None}
    with pytest.raises(ExportError, match=r"'onnx' failed while scoring .*differ from the PyTorch student's by up to"):
        export_and_score(model, tmp_path, ("onnx",), **data, torch_logits=wrong)
    assert not (tmp_path / "onnx").exists()
    nan = torch_logits(model, dataset, tiny.collate)
    nan[3] = np.nan  # a diverged student: its own logits hold a NaN, which is not the file's fault
    with pytest.raises(ExportError, match=r"the PyTorch student's own logits hold NaN or infinite values on 1 of"):
        export_and_score(model, tmp_path, ("onnx",), **data, torch_logits=nan)
    diverged = copy.deepcopy(model)
    with torch.no_grad():
        diverged.classifier.weight.fill_(float("nan"))  # its file computes NaN too: the student is still named
    on_cpu = torch_logits(diverged, dataset, tiny.collate)
    with pytest.raises(ExportError, match=r"the PyTorch student's own logits hold NaN or infinite values on 12 of"):
        export_and_score(diverged, tmp_path, ("onnx",), **data, torch_logits=on_cpu)
    right = torch_logits(model, dataset, tiny.collate)
    with caplog.at_level("WARNING", logger="hf_distill.publish.export"):
        scores = export_and_score(model, tmp_path, ("onnx",), **data, torch_logits=right)
    assert scores["onnx_agreement"] == 1.0 and scores["onnx_max_abs_logit_diff"] < 1e-4 and caplog.text == ""


def test_an_fp32_file_is_held_to_a_logit_difference_of_1e_3_below_unit_logits(tmp_path):
    model = bert()
    dataset = tiny.class_rows(12, num_labels=2)
    data = {"dataset": dataset, "collator": tiny.collate, "compute_metrics": None}
    right = torch_logits(model, dataset, tiny.collate)
    assert np.abs(right).max() < 1  # so the bound is FP32_TOLERANCE itself, 1e-3
    off = right.copy()
    off[:, 0] += 5e-3
    with pytest.raises(ExportError, match=r"differ from the PyTorch student's by up to 0\.005, more than the 0\.001"):
        export_and_score(model, tmp_path, ("onnx",), **data, torch_logits=off)
    off = right.copy()
    off[:, 0] += 5e-4
    scores = export_and_score(model, tmp_path, ("onnx",), **data, torch_logits=off)
    assert scores["onnx_max_abs_logit_diff"] == pytest.approx(5e-4, abs=1e-5)


def test_a_file_whose_logits_are_not_finite_fails(tmp_path, monkeypatch):
    model = bert()
    dataset = tiny.class_rows(6, num_labels=2)
    original = export.evaluate_onnx

    def with_nan(*args, **kwargs):
        metrics, logits = original(*args, **kwargs)
        logits[2, 1] = np.inf
        return metrics, logits

    monkeypatch.setattr(export, "evaluate_onnx", with_nan)
    with pytest.raises(ExportError, match=r"its logits hold NaN or infinite values on 1 of the 6 rows"):
        export_and_score(model, tmp_path, ("onnx",), dataset=dataset, collator=tiny.collate, compute_metrics=None)
    assert not (tmp_path / "onnx" / "model.onnx").exists()


def test_an_int8_file_that_predicts_otherwise_is_kept_with_a_warning(tmp_path, monkeypatch, caplog):
    model = bert()
    dataset = tiny.class_rows(10, num_labels=2)
    reference = torch_logits(model, dataset, tiny.collate)
    original = export.evaluate_onnx

    def flipped_when_int8(classifier, *args, **kwargs):
        metrics, logits = original(classifier, *args, **kwargs)
        return metrics, (logits[:, ::-1].copy() if "int8" in classifier.path.name else logits)

    monkeypatch.setattr(export, "evaluate_onnx", flipped_when_int8)
    with caplog.at_level("WARNING", logger="hf_distill.publish.export"):
        scores = export_and_score(
            model, tmp_path, ("int8",), dataset=dataset, collator=tiny.collate, compute_metrics=None,
            torch_logits=reference,
        )  # fmt: skip
    assert scores["onnx_agreement"] == 1.0 and scores["onnx_int8_agreement"] < 0.9
    assert "The int8 file predicts as the PyTorch student on" in caplog.text
    assert (tmp_path / "onnx" / "model_int8.onnx").is_file()


def test_a_regressions_int8_file_is_not_warned_of_for_its_rounding(tmp_path, caplog):
    # agreement for one output is "within 1e-3 relative", which int8 rounding never is: every STS-B export warned
    model = tiny.classifier(layers=2, num_labels=1, seed=0, initializer_range=0.2).eval()
    dataset = tiny.class_rows(10, num_labels=2)
    reference = torch_logits(model, dataset, tiny.collate)
    with caplog.at_level("WARNING", logger="hf_distill.publish.export"):
        scores = export_and_score(
            model, tmp_path, ("int8",), dataset=dataset, collator=tiny.collate, compute_metrics=None,
            torch_logits=reference,
        )  # fmt: skip
    assert scores["onnx_max_abs_logit_diff"] < 1e-4 and "predicts as the PyTorch student" not in caplog.text
    assert scores["onnx_int8_agreement"] < 0.9  # what warned before: int8 rounding is never within 1e-3 relative


def test_each_file_is_timed_in_blocks_in_turns_with_the_pytorch_student(tmp_path, monkeypatch):
    # the files were timed alone and divided by a student latency taken minutes earlier, in other load
    model = bert()
    dataset = tiny.class_rows(6, num_labels=2)
    batches = {b: tiny.collate([dataset[i] for i in range(b)]) for b in (1, 4)}
    order = []
    # each file and batch size times its three blocks at 1, 1 and 10 ms (a burst of load in the last): the median of
    # the block medians reads 1 ms, their mean 4 ms (the PyTorch student's blocks: 2, 20 and 2 ms)
    monkeypatch.setattr(export, "LATENCY_BLOCKS", 3)
    onnx_blocks, torch_blocks = itertools.cycle([1.0, 1.0, 10.0]), itertools.cycle([2.0, 20.0, 2.0])
    monkeypatch.setattr(export, "measure_onnx_latency_ms", lambda *a, **k: order.append("onnx") or next(onnx_blocks))
    monkeypatch.setattr(export, "measure_latency_ms", lambda *a, **k: order.append("pytorch") or next(torch_blocks))
    scores = export_and_score(
        model, tmp_path, ("int8",), dataset=dataset, collator=tiny.collate, compute_metrics=None,
        latency_batches=batches, reference_model=model,
    )  # fmt: skip
    # blocks in turns, each warmed up: pass by pass, each runtime's spinning threads slowed the other
    assert order == ["onnx", "pytorch"] * export.LATENCY_BLOCKS * 4  # two files x two batch sizes
    for prefix in ("onnx_", "onnx_int8_"):
        for b in (1, 4):
            assert scores[f"{prefix}latency_ms_batch{b}"] == 1.0
            assert scores[f"{prefix}reference_latency_ms_batch{b}"] == 2.0


def test_an_export_cut_short_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    # a Ctrl-C or a kill inside the exporter left a truncated model.onnx, loaded and pushed as the student
    def killed(module, args, path, **kwargs):
        Path(path).write_bytes(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", killed)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(bert(), tmp_path)
    assert not (tmp_path / "onnx" / "model.onnx").exists()
    assert (tmp_path / "onnx" / "model.onnx.partial").is_file()
    export.remove_exports(tmp_path)  # the next run's clean-up takes the partial file too
    assert not (tmp_path / "onnx").exists()


def test_a_graph_the_checker_rejects_is_never_renamed_to_model_onnx(tmp_path, monkeypatch):
    import onnx.checker

    def rejected(path, *args, **kwargs):
        raise onnx.checker.ValidationError("invalid graph")

    monkeypatch.setattr(onnx.checker, "check_model", rejected)
    with pytest.raises(onnx.checker.ValidationError, match="invalid graph"):
        export_onnx(bert(), tmp_path)
    assert sorted(path.name for path in (tmp_path / "onnx").iterdir()) == ["model.onnx.partial"]


def test_the_reference_must_be_the_float32_student_on_the_cpu(tmp_path):
    # a student left in bf16 (or on a GPU) crashed in scoring, deleting a good file, or was timed elsewhere
    model = bert()
    dataset = tiny.class_rows(4, num_labels=2)
    half = copy.deepcopy(model).to(torch.bfloat16)
    with pytest.raises(
        ValueError, match=r"reference_model must be the student on the CPU in float32.*cpu torch.bfloat16"
    ):
        export_and_score(model, tmp_path, ("onnx",), dataset=dataset, collator=tiny.collate, compute_metrics=None,
                         reference_model=half)  # fmt: skip
    assert not (tmp_path / "onnx").exists()
    elsewhere = copy.deepcopy(model).to("meta")  # stands in for a GPU: a device other than the CPU
    with pytest.raises(ValueError, match=r"reference_model must be the student on the CPU.*meta torch\.float32"):
        export_and_score(model, tmp_path, ("onnx",), dataset=dataset, collator=tiny.collate, compute_metrics=None,
                         reference_model=elsewhere)  # fmt: skip
    assert not (tmp_path / "onnx").exists()


def test_only_sequence_classifiers_are_exported(tmp_path):
    from transformers import BertForTokenClassification

    tagger = BertForTokenClassification(tiny.bert_config(layers=1)).eval()
    with pytest.raises(ValueError, match=r"exports sequence classifiers .*got BertForTokenClassification"):
        export_onnx(tagger, tmp_path)
    assert not (tmp_path / "onnx").exists()

    class MyClassifier(type(bert())):  # a user's subclass of a sequence classifier is one
        pass

    mine = MyClassifier(tiny.bert_config(layers=1, num_labels=2)).eval()
    assert export_onnx(mine, tmp_path).is_file()
