"""hf_distill.cli.entry.run_entry_point: bad input is one line and exit 2; a failure while training keeps its
traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny
import torch
from trainers import make_args
from transformers import Trainer

from hf_distill.cli import entry


class FailsOnStep(torch.nn.Module):
    """Raises a ValueError on the forward of optimizer step `step` (0: the first batch), trains before it."""

    def __init__(self, step: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.step, self.calls = step, 0

    def forward(self, input_ids=None, attention_mask=None, labels=None):
        self.calls += 1
        if self.calls > self.step:
            raise ValueError("a failure inside the training loop")
        return {"loss": (self.weight - 1.0).pow(2).sum()}


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


def train_failing_on(step: int, tmp_path):
    args = make_args(tmp_path, per_device_train_batch_size=2, max_steps=4)
    Trainer(model=FailsOnStep(step), args=args, train_dataset=tiny.class_rows(8), data_collator=tiny.collate).train()


def test_a_value_error_raised_while_training_keeps_its_traceback(tmp_path, teardowns, capsys):
    # it was printed as one "bad input" line and exit 2, its traceback lost, and the group torn down mid-collective
    def main():
        train_failing_on(2, tmp_path)

    with pytest.raises(ValueError, match="a failure inside the training loop") as raised:
        entry.run_entry_point(main, "distill_glue.py")
    assert entry._raised_while_training(raised.value) and teardowns == []
    assert "error:" not in capsys.readouterr().err


def test_a_refusal_on_the_first_batch_before_any_step_is_still_one_line(tmp_path, teardowns, capsys):
    # compute_loss refuses a stale cache or logits of other shapes on the first batch: bad input, nothing trained
    with pytest.raises(SystemExit) as exited:
        entry.run_entry_point(lambda: train_failing_on(0, tmp_path), "distill_glue.py")
    assert exited.value.code == 2 and teardowns == ["end"]
    assert capsys.readouterr().err.endswith("distill_glue.py: error: a failure inside the training loop\n")


def test_a_value_error_once_the_student_is_trained_keeps_its_traceback(tmp_path, teardowns, capsys):
    # raised while scoring or publishing, after the student was saved: it was printed as bad input, exit 2
    from hf_distill.cli.training import train_and_save

    def main():
        model = FailsOnStep(step=10**6)
        trainer = Trainer(model=model, args=make_args(tmp_path, max_steps=1), train_dataset=tiny.class_rows(4),
                          data_collator=tiny.collate)  # fmt: skip
        train_and_save(trainer)
        raise ValueError("a failure after training")

    with pytest.raises(ValueError, match="a failure after training"):
        entry.run_entry_point(main, "distill_glue.py")
    assert "error:" not in capsys.readouterr().err and teardowns == []
    with pytest.raises(SystemExit):  # the next run starts afresh: its bad input is one line again
        entry.run_entry_point(lambda: (_ for _ in ()).throw(ValueError("bad input")), "distill_glue.py")


def test_an_os_error_once_the_student_is_trained_keeps_its_traceback(tmp_path, teardowns, capsys):
    # reading a saved model back (to export or score it) failed: it was printed as a misspelled model name, exit 2
    from transformers import AutoConfig

    from hf_distill.cli.training import train_and_save

    def main():
        trainer = Trainer(model=FailsOnStep(step=10**6), args=make_args(tmp_path, max_steps=1),
                          train_dataset=tiny.class_rows(4), data_collator=tiny.collate)  # fmt: skip
        train_and_save(trainer)
        AutoConfig.from_pretrained(str(tmp_path / "missing"), local_files_only=True)

    with pytest.raises(OSError, match="missing"):
        entry.run_entry_point(main, "distill_glue.py")
    assert "error:" not in capsys.readouterr().err and teardowns == []


def test_a_model_that_cannot_be_loaded_is_one_line_naming_it(teardowns, capsys):
    # a misspelled Hub id (or no network) was a traceback ending in transformers' OSError, naming no model
    from transformers import AutoConfig

    def main():
        AutoConfig.from_pretrained("no-such-org/no-such-model", local_files_only=True)

    with pytest.raises(SystemExit) as exited:
        entry.run_entry_point(main, "distill_glue.py")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and teardowns == ["end"] and err.count("\n") == 1
    assert err.startswith("distill_glue.py: error: cannot load 'no-such-org/no-such-model': ")
    assert "Pass an existing model folder or a Hub id" in err


def test_an_os_error_from_anywhere_else_keeps_its_traceback(teardowns):
    def main():
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        entry.run_entry_point(main, "distill_glue.py")
    assert teardowns == []


@pytest.mark.parametrize(("script", "config"), [("distill_glue.py", "offline/demo.yaml"),
                                                ("distill_mlm.py", "mlm/tiny_demo.yaml")])  # fmt: skip
def test_the_default_demo_writes_into_the_repositorys_outputs_from_any_folder(tmp_path, monkeypatch, script, config):
    # the demo config's output_dir (outputs/demo) with its overwrite_output_dir was read against the working folder:
    # run from another project, the demo replaced that project's outputs/demo without asking
    import yaml

    from hf_distill.cli.arguments import parse_arguments
    from hf_distill.cli.entry import script_argv
    from hf_distill.cli.mlm_arguments import MlmDataArguments

    repository = Path(__file__).resolve().parents[2]
    default = repository / "configs" / config
    monkeypatch.chdir(repository)
    assert script_argv(script, [], default)[0] == [str(default)]  # from the repository: the README's command as it is
    monkeypatch.chdir(tmp_path)
    argv, command = script_argv(script, [], default)
    data_class = MlmDataArguments if script == "distill_mlm.py" else None
    _, data_args, training_args, _ = parse_arguments(argv, **({"data_class": data_class} if data_class else {}))
    expected = repository / yaml.safe_load(default.read_text())["output_dir"]
    assert Path(training_args.output_dir) == expected and data_args.overwrite_output_dir
    assert str(repository) not in command and f"--output_dir {expected.relative_to(repository)}" in command
    assert script_argv(script, ["--help"], default)[0] == ["--help"]  # given arguments: as they are
