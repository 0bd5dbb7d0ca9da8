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


def test_latency_is_a_positive_median_and_the_models_mode_is_restored():
    model = student().train()
    batch = {"input_ids": torch.ones(2, 5, dtype=torch.long)}
    value = measure_latency_ms(model, batch, warmup=0, repeats=3, min_seconds=0)
    assert isinstance(value, float) and value > 0 and model.training


@pytest.mark.parametrize("device", ["cuda:1", "mps", "xpu:0"])
def test_an_asynchronous_device_is_waited_for_by_name(device, monkeypatch):
    waited = []
    monkeypatch.setattr(torch.accelerator, "synchronize", lambda named=None: waited.append(named))
    latency._synchronizer(torch.device(device))()
    assert waited == [torch.device(device)]


def test_a_cpu_model_is_not_synchronised(monkeypatch):
    monkeypatch.setattr(torch.accelerator, "synchronize", lambda named=None: pytest.fail("synchronised a CPU"))
    latency._synchronizer(torch.device("cpu"))()
