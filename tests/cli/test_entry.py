"""hf_distill.cli.entry.run_entry_point: bad input is one line and exit 2; a failure while training keeps its
traceback."""

from __future__ import annotations

import pytest
import tiny
import torch
from trainers import make_args
from transformers import Trainer

from hf_distill.cli import entry


class FailsOnItsFirstStep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids=None, attention_mask=None, labels=None):
        raise ValueError("a failure inside the training loop")


@pytest.fixture
def teardowns(monkeypatch) -> list[str]:
    calls = []
    monkeypatch.setattr(entry, "end_distributed", lambda: calls.append("end"))
    return calls


def test_bad_input_is_one_line_on_stderr_and_exit_2(teardowns, capsys):
    def main():
        raise ValueError("--max_seq_length 4096 is longer than the teacher's 512 position embeddings")

    with pytest.raises(SystemExit) as exited:
        entry.run_entry_point(main, "distill_glue.py")
    assert exited.value.code == 2 and teardowns == ["end"]
    assert (
        capsys.readouterr().err
        == "distill_glue.py: error: --max_seq_length 4096 is longer than the teacher's 512 position embeddings\n"
    )


def test_a_value_error_raised_while_training_keeps_its_traceback(tmp_path, teardowns, capsys):
    # it was printed as one "bad input" line and exit 2, its traceback lost, and the group torn down mid-collective
    def main():
        Trainer(model=FailsOnItsFirstStep(), args=make_args(tmp_path), train_dataset=tiny.class_rows(4),
                data_collator=tiny.collate).train()  # fmt: skip

    with pytest.raises(ValueError, match="a failure inside the training loop") as raised:
        entry.run_entry_point(main, "distill_glue.py")
    assert entry._raised_while_training(raised.value) and teardowns == []
    assert "error:" not in capsys.readouterr().err
