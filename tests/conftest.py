"""Puts tests/helpers (tiny models, float64 references, trainer builders, multi-process scripts) on the import path."""

import sys
from pathlib import Path

HELPERS = Path(__file__).parent / "helpers"
sys.path.insert(0, str(HELPERS))
