"""Running the multi-process helper scripts (torchrun, gloo on CPU) from the tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HELPERS = Path(__file__).resolve().parent
DDP_SCRIPT = HELPERS / "ddp_distill.py"


def run_checked(command: list[str], cwd: Path, timeout: int = 600, env: dict[str, str] | None = None) -> None:
    """Runs `command` with one thread per process and the Hub offline; fails the test with its output if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
