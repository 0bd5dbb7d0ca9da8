"""Command-line checks the benchmark scripts share: a size that must be positive, and --smoke's own sizes."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "refuse_sizes_with_smoke"]


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (0 rounds printed no table, 0 examples crashed inside the run)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def refuse_sizes_with_smoke(parser: argparse.ArgumentParser, options: argparse.Namespace, *names: str) -> None:
    """--smoke sets its own sizes: a size also given (not None) would be silently replaced, so it is refused."""
    if not options.smoke:
        return
    for name in names:
        if getattr(options, name) is not None:
            parser.error(f"--smoke sets its own sizes and would ignore --{name} {getattr(options, name)}: drop one")
