"""The scripts under test, imported by path (scripts/ is not a package), and the latency setting that keeps their
publishing step fast in tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module, run from the top (its `main` is not called)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a script's dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def fast_latency(monkeypatch) -> None:
    """The publishing step times each model for >= 0.5 s per batch size; tests need the numbers, not their
    precision: one warm-up and two timed calls."""
    from hf_distill.publish import latency

    original = latency.measure_latencies_ms
    monkeypatch.setattr(
        latency,
        "measure_latencies_ms",
        lambda runs, **settings: original(runs, warmup=1, repeats=2, min_seconds=0),
    )
