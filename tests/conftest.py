"""Puts tests/helpers (tiny models, float64 references, trainer builders, multi-process scripts) on the import path,
and keeps each test's Hub token to itself."""

import os
import sys
from pathlib import Path

import pytest

HELPERS = Path(__file__).parent / "helpers"
sys.path.insert(0, str(HELPERS))


@pytest.fixture(autouse=True)
def _hub_token_restored():
    """The scripts copy --hub_token into HF_TOKEN for huggingface_hub's calls (`take_token_out_of_arguments`): a
    test's token stayed there for every later test (monkeypatch.delenv of an unset variable restores nothing)."""
    before = os.environ.get("HF_TOKEN")
    yield
    if before is None:
        os.environ.pop("HF_TOKEN", None)
    else:
        os.environ["HF_TOKEN"] = before
