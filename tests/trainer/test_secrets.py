"""The Hub token given in the training arguments never reaches a pickle: Trainer writes its arguments to
training_args.bin (output folder and every checkpoint) and `Trainer.push_to_hub` uploads that file."""

from __future__ import annotations

import copy
import pickle

import pytest
import tiny
from trainers import make_args
from transformers import TrainingArguments

from hf_distill import DistillationTrainer, LabelsTrainer

TOKEN = "hf_notARealTokenButSecret123"


def _trainer(tmp_path, which: str):
    teacher = tiny.classifier(layers=2, seed=0)
    student = tiny.classifier(layers=1, seed=1)
    settings = dict(hub_token=TOKEN, save_strategy="steps", save_steps=2, num_train_epochs=1)
    if which == "distillation":
        args = make_args(tmp_path, **settings)
        return DistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=args,
            train_dataset=tiny.class_rows(8),
            data_collator=tiny.collate,
        )
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, report_to="none", use_cpu=True, **settings
    )
    return LabelsTrainer(model=student, args=args, train_dataset=tiny.class_rows(8), data_collator=tiny.collate)


@pytest.mark.parametrize("which", ["distillation", "labels"])
def test_the_hub_token_is_used_but_never_written(tmp_path, which):
    trainer = _trainer(tmp_path, which)
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    written = sorted(tmp_path.rglob("training_args.bin"))
    assert len(written) == 2, written  # checkpoint-2 and the saved folder
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), f"{path.name} holds the Hub token"
    assert trainer.args.hub_token == TOKEN  # still there for Trainer's own pushes
    assert copy.deepcopy(trainer.args).hub_token == TOKEN
    assert pickle.loads(pickle.dumps(trainer.args)).hub_token is None
    assert TOKEN not in repr(trainer.args.hub_token)


def test_a_copied_token_is_still_hidden_and_never_pickled(tmp_path):
    # wandb's log_model deep-copies the arguments into a Trainer that saves training_args.bin: a copy holding the
    # plain token would write it in clear
    from hf_distill.trainer.secrets import HiddenToken, hide_hub_token

    args = make_args(tmp_path, hub_token=TOKEN)
    hide_hub_token(args)
    token = args.hub_token
    for copied in (copy.copy(token), copy.deepcopy(token), copy.copy(args).hub_token, copy.deepcopy(args).hub_token):
        assert type(copied) is HiddenToken and copied == TOKEN
        assert TOKEN.encode() not in pickle.dumps(copied)
    assert TOKEN.encode() not in pickle.dumps(copy.deepcopy(args))
