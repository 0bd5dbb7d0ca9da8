"""hf_distill.cli.run_record: which settings a resume must share with the run its checkpoint came from."""

from __future__ import annotations

import json

import pytest

from hf_distill.cli.arguments import parse_arguments
from hf_distill.cli.run_record import RUN_RECORD, check_resumed_settings, run_settings


def _settings(tmp_path, *flags):
    """The recorded settings of a GLUE run (SST-2, a one-layer student, CPU) given `flags`."""
    argv = ["--teacher_model_name_or_path", "bert-base-uncased", "--task_name", "sst2", "--student_num_layers", "1",
            "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", *flags]  # fmt: skip
    return run_settings(*parse_arguments(argv)[:3])


def _resumed(tmp_path, then, now):
    """Resumes, with the settings `now`, a checkpoint whose record holds the settings `then`."""
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / RUN_RECORD).write_text(json.dumps(then))
    check_resumed_settings(str(checkpoint), now, tmp_path)


def test_a_resume_with_another_seed_is_refused_naming_it(tmp_path):
    # the seed draws the student's initial head and the data order: another seed continues another run
    recorded = _settings(tmp_path, "--seed", "1")
    with pytest.raises(ValueError, match=r"other settings than this run's \(seed: 1 then, 2 now\): resumed"):
        _resumed(tmp_path, recorded, _settings(tmp_path, "--seed", "2"))


def test_a_resume_may_change_what_is_scored_or_exported_after_training(tmp_path):
    recorded = _settings(tmp_path, "--max_eval_samples", "100")
    _resumed(tmp_path, recorded, _settings(tmp_path, "--max_eval_samples", "500"))
    _resumed(tmp_path, recorded, _settings(tmp_path, "--max_eval_samples", "500", "--export", "onnx"))
