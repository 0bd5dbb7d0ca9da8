from __future__ import annotations

import pytest
import tiny
import torch

from hf_distill.publish import latency
from hf_distill.publish.latency import measure_latency_ms


def student() -> torch.nn.Module:
    return tiny.classifier(num_labels=2)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"repeats": 0, "min_seconds": 0}, "repeats"),
        ({"repeats": 2.5}, "repeats"),
        ({"warmup": -1}, "warmup"),
        ({"min_seconds": -0.5}, "min_seconds"),
        ({"min_seconds": float("nan")}, "min_seconds"),
    ],
)
def test_timing_settings_that_measure_nothing_are_refused_with_the_value(settings, named):
    model = student()
    batch = {"input_ids": torch.ones(1, 4, dtype=torch.long)}
    with pytest.raises(ValueError, match=f"{named} must be .*got {next(iter(settings.values()))!r}"):
        measure_latency_ms(model, batch, **settings)


@pytest.mark.parametrize("training", [True, False])
def test_latency_is_a_positive_median_and_the_models_mode_is_restored(training):
    model = student().train(training)
    batch = {"input_ids": torch.ones(2, 5, dtype=torch.long)}
    value = measure_latency_ms(model, batch, warmup=0, repeats=3, min_seconds=0)
    assert isinstance(value, float) and value > 0 and model.training is training


@pytest.mark.parametrize("device", ["cuda:1", "mps", "xpu:0"])
def test_an_asynchronous_device_is_waited_for_by_name(device, monkeypatch):
    waited = []
    monkeypatch.setattr(torch.accelerator, "synchronize", lambda named=None: waited.append(named))
    latency._synchronizer(torch.device(device))()
    assert waited == [torch.device(device)]


def test_a_cpu_model_is_not_synchronised(monkeypatch):
    monkeypatch.setattr(torch.accelerator, "synchronize", lambda named=None: pytest.fail("synchronised a CPU"))
    latency._synchronizer(torch.device("cpu"))()


class Slept(torch.nn.Module):
    """A model whose forward takes `seconds` of a fake clock (`clock[0]`), and writes its name into `order`."""

    def __init__(self, name: str, seconds: float, order: list[str], clock: list[float]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.name, self.seconds, self.order, self.clock = name, seconds, order, clock

    def forward(self, input_ids=None):
        self.clock[0] += self.seconds
        self.order.append(self.name)
        return input_ids


def teacher_and_student_on_a_fake_clock(monkeypatch) -> tuple[list[str], list[float], dict]:
    """A 4 ms teacher and a 1 ms student on a fake clock: the order they ran in, the clock, and `runs` to time."""
    order: list[str] = []
    clock = [0.0]
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])
    batch = {"input_ids": torch.ones(1, 2)}
    runs = {
        "teacher": (Slept("teacher", 0.004, order, clock), batch),
        "student": (Slept("student", 0.001, order, clock), batch),
    }
    return order, clock, runs


def test_models_are_timed_in_turns_so_a_busy_spell_falls_on_both(monkeypatch):
    # timed one after the other, a student timed while the machine was busy measured slower than its teacher; a fake
    # clock: what each forward took, not what a busy machine's sleep overshot
    order, clock, runs = teacher_and_student_on_a_fake_clock(monkeypatch)
    timed = latency.measure_latencies_ms(runs, warmup=1, repeats=4, min_seconds=0)
    assert order == ["teacher", "student"] + ["teacher", "student"] * 4  # warm-up each, then in turns
    assert timed == {"teacher": pytest.approx(4.0), "student": pytest.approx(1.0)}  # medians in ms


def test_one_slow_pass_does_not_move_the_latency(monkeypatch):
    # the second measured pass of five takes 50 ms of the fake clock (another process's burst), the others 1 ms
    order: list[str] = []
    clock = [0.0]
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])
    model = Slept("model", 0.001, order, clock)
    seconds = iter([0.001, 0.050, 0.001, 0.001, 0.001])
    model.register_forward_pre_hook(lambda module, inputs: setattr(module, "seconds", next(seconds)))
    value = measure_latency_ms(model, {"input_ids": torch.ones(1, 2)}, warmup=0, repeats=5, min_seconds=0)
    assert order == ["model"] * 5
    assert value == pytest.approx(1.0)  # the median; the mean would be 10.8


def test_models_are_timed_for_min_seconds_each(monkeypatch):
    # with two models in turns, min_seconds of the clock between them gave each half of it
    order, clock, runs = teacher_and_student_on_a_fake_clock(monkeypatch)
    latency.measure_latencies_ms(runs, warmup=0, repeats=10, min_seconds=0.5)
    assert 2 * 0.5 <= clock[0] < 2 * 0.5 + 0.005  # stopped after the first turn (5 ms) that reached 1 s
    assert order.count("teacher") == order.count("student")


def test_each_model_is_timed_at_most_1000_passes(monkeypatch):
    order: list[str] = []
    clock = [0.0]
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])
    batch = {"input_ids": torch.ones(1, 2)}
    runs = {name: (Slept(name, 0.0001, order, clock), batch) for name in ("teacher", "student")}
    latency.measure_latencies_ms(runs, warmup=0, repeats=10, min_seconds=60)
    assert order.count("teacher") == order.count("student") == 1000


def test_a_student_that_measures_slower_than_its_teacher_is_warned_of(monkeypatch, caplog):
    teacher, small = tiny.classifier(layers=2, num_labels=2), tiny.classifier(layers=1, num_labels=2)
    monkeypatch.setattr(latency, "measure_latencies_ms", lambda runs: {"teacher": 2.0, "student": 5.0})

    class Args:
        device = torch.device("cpu")
        bf16 = fp16 = False

    with caplog.at_level("WARNING", logger="hf_distill.publish.latency"):
        results = latency.measure_models(teacher, small, tiny.class_rows(4), tiny.collate, Args())
    assert results["speedup_batch1"] == pytest.approx(0.4)
    assert "measured slower than its teacher" in caplog.text and "rerun on an idle machine" in caplog.text


def test_models_are_timed_without_labels_on_distinct_rows_padded_to_the_longest(monkeypatch):
    # 5 rows of 4..16 tokens: the batch of 32 cycles through them all, padded to the longest of the five
    teacher, small = tiny.classifier(layers=2, num_labels=2), tiny.classifier(layers=1, num_labels=2)
    dataset = tiny.class_rows(5, num_labels=2)
    timed = []
    medians = {"teacher": 2.0, "student": 1.0}
    monkeypatch.setattr(latency, "measure_latencies_ms", lambda runs: timed.append(runs) or medians)

    class Args:
        device = torch.device("cpu")
        bf16 = fp16 = False

    latency.measure_models(teacher, small, dataset, tiny.collate, Args())
    assert [list(runs) for runs in timed] == [["teacher", "student"]] * len(latency.LATENCY_BATCH_SIZES)
    for batch_size, runs in zip(latency.LATENCY_BATCH_SIZES, timed):
        expected = tiny.collate([{"input_ids": dataset[i % len(dataset)]["input_ids"]} for i in range(batch_size)])
        for _, batch in runs.values():
            assert sorted(batch) == ["attention_mask", "input_ids"]  # no labels: the loss is not timed
            for key, value in expected.items():
                assert torch.equal(batch[key], value), (batch_size, key)
    assert len({tuple(row.tolist()) for row in timed[-1]["student"][1]["input_ids"]}) == len(dataset)


@pytest.mark.parametrize(
    ("device", "bf16", "fp16", "dtype", "said"),
    [
        ("cuda", True, False, torch.bfloat16, "one NVIDIA H100, bfloat16"),
        ("cuda", False, True, torch.float16, "one NVIDIA H100, float16"),
        ("cuda", False, False, torch.float32, "one NVIDIA H100, float32"),
        ("cpu", True, False, torch.float32, "a CPU, float32"),
        ("cpu", False, True, torch.float32, "a CPU, float32"),
    ],
)
def test_latency_is_timed_in_the_runs_half_precision_on_a_gpu_only(monkeypatch, device, bf16, fp16, dtype, said):
    # torch.device("cuda") is built without a GPU; only its name is asked of CUDA
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100")

    class Args:
        pass

    Args.device, Args.bf16, Args.fp16 = torch.device(device), bf16, fp16
    assert latency.latency_dtype(Args()) == dtype
    assert latency.latency_device(Args()) == said


def test_a_model_already_on_the_device_in_the_dtype_is_timed_as_it_is_and_never_cast_in_place():
    # both models are held at once (timed in turns): copying one already in place held it twice
    model = student()
    assert latency._on(model, torch.device("cpu"), torch.float32) is model
    half = latency._on(model, torch.device("cpu"), torch.bfloat16)
    assert half is not model and next(half.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32


def test_the_cpu_is_named_once_by_its_model(monkeypatch):
    # platform.processor() is empty on Linux: the card read "x86_64 CPU"; Intel's names hold "CPU" already
    from hf_distill.publish import latency

    assert latency.cpu_model().strip() not in ("", "unknown", "x86_64")
    intel, amd = "Intel(R) Xeon(R) CPU @ 2.20GHz", "AMD EPYC 7B13 64-Core Processor"
    for model, said in [("AMD EPYC", "AMD EPYC CPU"), (intel, intel), (amd, amd)]:
        monkeypatch.setattr(latency, "cpu_model", lambda model=model: model)
        assert latency.cpu_name() == said
