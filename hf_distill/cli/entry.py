"""Running an entry point: one clear line on bad input, logging set up once, the distributed exit on every rank."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import transformers
import yaml

from hf_distill.publish.model_card import sanitize_command

from .distributed import end_distributed
from .training import TRAINED

__all__ = ["run_entry_point", "script_argv", "setup_logging"]


def script_argv(script: str, argv: Sequence[str] | None, default_config: Path) -> tuple[list[str], str]:
    """The arguments to parse (the default config when none were given) and the command to state on the card."""
    argv = list(sys.argv[1:] if argv is None else argv)
    repository = Path(default_config).resolve().parents[2]  # configs/<kind>/<file>.yaml
    if not argv:
        argv = [str(default_config), *_demo_output_in(repository, default_config)]
    return argv, sanitize_command(["python", f"scripts/{script}", *argv], root=repository)


def _demo_output_in(repository: Path, default_config: Path) -> list[str]:
    """The default (demo) config's relative output_dir is the repository's, wherever the script is run from: it also
    sets overwrite_output_dir, and from another folder it replaced whatever that folder's outputs/demo held."""
    values = yaml.safe_load(Path(default_config).read_text()) or {}
    output_dir = values.get("output_dir")
    if not output_dir or Path(output_dir).is_absolute() or Path.cwd().resolve() == repository:
        return []
    overwrite = ["--overwrite_output_dir", "true"] if values.get("overwrite_output_dir") else []
    return ["--output_dir", str(repository / output_dir), *overwrite]


def setup_logging() -> None:
    """Progress and real warnings for the user; transformers' own info chatter stays quiet."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()


def run_entry_point(main: Callable[[], object], program: str) -> None:
    """Runs `main()`; a `ValueError` (bad input, raised before any training) becomes one line on stderr and exit 2, and
    so does an `OSError` from a `from_pretrained` before any training (a model that cannot be loaded, named).

    A `ValueError` raised once the student is trained (`train_and_save` returned from training: scoring, exporting,
    pushing) is a failure too: the student is saved, and the traceback says where it stopped. One raised inside a
    training loop (a teacher fine-tune, a search trial, the distillation) once an
    optimizer step has been taken is not bad input but a failure: it keeps its traceback, and the group is not torn
    down (see below). Raised on the first batch, before any step (`compute_loss`'s refusals of a stale cache or of
    logits that differ in shape), it is still bad input.

    `end_distributed()` runs after a normal end and after bad input, not in a `finally`: after an unexpected error a
    collective may still be pending, and tearing the group down then can block; the launcher ends the other ranks.
    """
    TRAINED.clear()
    try:
        main()
    except ValueError as error:
        # after a training loop's first step, or once the student is trained (evaluation, export, push): a failure
        if _raised_while_training(error) or TRAINED:
            raise
        print(f"{program}: error: {error}", file=sys.stderr)  # bad input: one clear line, nothing half-written
        end_distributed()
        sys.exit(2)
    except OSError as error:
        # a model or tokenizer that cannot be loaded (a misspelled Hub id, no network) is bad input too
        name = _loading(error)
        if name is None or TRAINED or _raised_while_training(error):
            raise
        message = " ".join(str(error).split())  # transformers' message spans lines
        print(
            f"{program}: error: cannot load {name!r}: {message} Pass an existing model folder or a Hub id (check "
            "its spelling), with the network up or the files in the Hugging Face cache.",
            file=sys.stderr,
        )
        end_distributed()
        sys.exit(2)
    end_distributed()


def _loading(error: BaseException) -> str | None:
    """The name a `from_pretrained` the error came from was given, or None when it came from anywhere else."""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_name == "from_pretrained":
            name = frame.f_locals.get("pretrained_model_name_or_path")
            return str(name) if name is not None else None
    return None


def _raised_while_training(error: BaseException) -> bool:
    """Whether `error` came from inside `Trainer`'s training loop (its frames' code, not a message's words) after
    the loop's trainer had taken an optimizer step."""
    loop = transformers.Trainer._inner_training_loop.__code__
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_code is loop:
            state = getattr(frame.f_locals.get("self"), "state", None)
            return getattr(state, "global_step", 1) > 0
    return False
