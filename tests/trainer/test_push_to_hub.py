"""`DistillationTrainer.push_to_hub` (the Python API) uploads the student, never the teacher cache (no network: the
Hub client is replaced by one that records what it was asked to upload)."""

from __future__ import annotations

import concurrent.futures
import os
import types

import pytest
import tiny
import transformers.trainer
from huggingface_hub.utils import filter_repo_objects
from trainers import make_trainer


class RecordingHub:
    """Stands for transformers' `hf_api()`: records each upload, contacts nothing."""

    def __init__(self):
        self.uploads: list[dict] = []

    def create_repo(self, repo_id, **kwargs):
        return types.SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, **kwargs):
        self.uploads.append(kwargs)
        done = concurrent.futures.Future()
        done.set_result("recorded")
        return done if kwargs.get("run_as_future") else "recorded"


def pushed_files(upload: dict) -> list[str]:
    """The files of the upload's folder that huggingface_hub would send with its ignore patterns."""
    folder = upload["folder_path"]
    files = [
        os.path.relpath(os.path.join(directory, name), folder)
        for directory, _, names in os.walk(folder)
        for name in names
    ]
    return sorted(filter_repo_objects(files, ignore_patterns=upload["ignore_patterns"]))


@pytest.fixture
def hub(monkeypatch) -> RecordingHub:
    recording = RecordingHub()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: recording)
    return recording


@pytest.mark.parametrize("cache_dir", [None, "out/my_caches"])
def test_push_to_hub_leaves_out_the_teacher_cache_and_crashed_builds(tmp_path, hub, cache_dir):
    # Trainer.push_to_hub uploads output_dir with ignore patterns of its own ("_*", "checkpoint-*"): the default
    # teacher cache (<output_dir>/teacher_cache) went up with the student, and so would a crashed build's folder,
    # whose name holds the machine's hostname.
    teacher, student = tiny.classifier(layers=2, seed=0), tiny.classifier(layers=1, seed=1)
    trainer = make_trainer(
        tmp_path, student, teacher, tiny.class_rows(12, seed=2), cache_teacher_logits=True, max_steps=1,
        teacher_cache_dir=None if cache_dir is None else str(tmp_path / cache_dir),
    )  # fmt: skip
    trainer.train()
    root = trainer.teacher_cache.path.parent
    crashed = root / f".{trainer.teacher_cache.path.name}.partial-somehost-123-0a1b2c3d"
    crashed.mkdir()
    (crashed / "data-00000-of-00001.arrow").write_text("half a cache")
    trainer.hub_model_id = "someone/student"
    trainer.push_to_hub()
    (upload,) = hub.uploads
    assert os.path.abspath(upload["folder_path"]) == os.path.abspath(trainer.args.output_dir)
    pushed = pushed_files(upload)
    assert {"config.json", "model.safetensors"} <= set(pushed)
    cache_prefix = os.path.relpath(root, trainer.args.output_dir) + os.sep
    assert not [name for name in pushed if name.startswith(cache_prefix)], pushed
    assert any(name.startswith(cache_prefix) for name in pushed_files({**upload, "ignore_patterns": []}))


def test_pushes_during_training_leave_out_the_teacher_cache(tmp_path, hub):
    # hub_strategy="every_save" uploads output_dir at each save (_push_from_checkpoint), with the same patterns
    teacher, student = tiny.classifier(layers=2, seed=0), tiny.classifier(layers=1, seed=1)
    trainer = make_trainer(
        tmp_path, student, teacher, tiny.class_rows(12, seed=2), cache_teacher_logits=True, max_steps=2,
        push_to_hub=True, hub_model_id="someone/student", save_strategy="steps", save_steps=1,
    )  # fmt: skip
    trainer.train()
    root_uploads = [upload for upload in hub.uploads if upload["folder_path"] == trainer.args.output_dir]
    assert root_uploads
    for upload in root_uploads:
        pushed = pushed_files(upload)
        assert "model.safetensors" in pushed and not [name for name in pushed if "teacher_cache" in name], pushed
