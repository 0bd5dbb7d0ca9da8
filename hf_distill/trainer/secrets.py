"""The Hub token in the training arguments, usable but never pickled.

Trainer writes its arguments with `torch.save` (a pickle) to `training_args.bin` in the output folder and in every
checkpoint, and `Trainer.push_to_hub` uploads that file: a `hub_token` given in the arguments would reach the disk and
the Hub repository in clear. Both trainers of this package replace the token with `HiddenToken`, a `str` that works as
the token everywhere Trainer and huggingface_hub use it (and survives `copy` and `deepcopy`) but pickles as None.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HiddenToken", "hide_hub_token"]


class HiddenToken(str):
    """A secret `str` that pickles as None (so `training_args.bin` never holds it) and whose `repr` is redacted
    (TrainingArguments' own repr and logs show that). It is still the token as a `str`: `str()`, an f-string or
    `json.dumps` give the secret itself, so never format it into a message or a file."""

    def __reduce__(self) -> tuple:
        return (type(None), ())

    def __reduce_ex__(self, protocol: Any) -> tuple:
        return self.__reduce__()

    def __copy__(self) -> HiddenToken:
        return self

    def __deepcopy__(self, memo: dict) -> HiddenToken:
        return self

    def __repr__(self) -> str:
        return "'<hidden Hub token>'"


def hide_hub_token(args: Any) -> None:
    """Wraps `args.hub_token` (when set) in `HiddenToken`, in place."""
    token = getattr(args, "hub_token", None)
    if isinstance(token, str) and token and not isinstance(token, HiddenToken):
        args.hub_token = HiddenToken(token)
