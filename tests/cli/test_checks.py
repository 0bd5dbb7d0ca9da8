"""hf_distill.cli.checks.check_output_dir: what an existing output folder lets a run do (no model loaded)."""

from __future__ import annotations

import pytest

from hf_distill.cli.checks import check_output_dir


def test_an_interrupted_run_is_resumed_from_its_latest_checkpoint_by_step(tmp_path):
    for step in (500, 1000, 90):
        (tmp_path / f"checkpoint-{step}").mkdir()
    with pytest.raises(ValueError, match=r"checkpoint-90, checkpoint-500, checkpoint-1000 of a run") as refused:
        check_output_dir(tmp_path, False, None)
    assert str(refused.value).count("--resume_from_checkpoint") == 1
    assert f"--resume_from_checkpoint {tmp_path / 'checkpoint-1000'} to continue" in str(refused.value)
    check_output_dir(tmp_path, False, str(tmp_path / "checkpoint-1000"))  # resuming it is what the message asks
    check_output_dir(tmp_path, True, None)


def test_resuming_never_excuses_overwriting_a_finished_model(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    for name in ("config.json", "model.safetensors", "all_results.json"):
        (tmp_path / name).write_text("{}")
    for resume in (None, True, "elsewhere/checkpoint-5"):
        with pytest.raises(ValueError, match=r"already holds a model \(config\.json, model\.safetensors\)"):
            check_output_dir(tmp_path, False, resume)
    check_output_dir(tmp_path, True, "elsewhere/checkpoint-5")
