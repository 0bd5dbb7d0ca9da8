#!/usr/bin/env python
"""Write a GLUE folder whose dev.tsv is rows held out of the training split, to compare settings without dev.

    python scripts/hold_out_glue.py --task stsb --rows 1000 --output outputs/held_out/glue
    python scripts/distill_glue.py configs/offline/stsb.yaml --data_dir outputs/held_out/glue ...

The task's train.tsv is split line by line (the file's own lines, header kept where the task has one): `--rows`
lines chosen with `--seed` become dev.tsv, the others train.tsv, in their original order. Every distill_glue.py
command then runs unchanged and is scored on training rows it never trained on; the real dev set is never read.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from hf_distill.tasks.glue import GLUE_TASKS, normalize_task_name


def hold_out(task: str, data_dir: Path, rows: int, seed: int) -> tuple[list[str], list[str], str | None]:
    """(training lines kept, held-out lines, header or None) of the task's train.tsv."""
    spec = GLUE_TASKS[normalize_task_name(task)]
    if spec.split_files.get("validation") != "dev.tsv":
        scored_on = ", ".join(file for split, file in spec.split_files.items() if split.startswith("validation"))
        raise ValueError(
            f"{spec.name} is scored on {scored_on}, not one dev.tsv: this script writes held-out rows for the tasks "
            "with one dev.tsv only."
        )
    path = data_dir / spec.folder / spec.split_files["train"]
    if not path.is_file():
        raise ValueError(f"no {spec.name} training file at {path}; pass the GLUE root as --data_dir.")
    lines = path.read_text(encoding="utf-8").split("\n")
    header = None if spec.headerless else lines.pop(0)
    lines = [line for line in lines if line]
    if not 0 < rows < len(lines):
        raise ValueError(
            f"--rows {rows}: {spec.name}'s train.tsv has {len(lines)} rows; hold out between 1 and {len(lines) - 1}."
        )
    chosen = set(random.Random(seed).sample(range(len(lines)), rows))
    kept = [line for index, line in enumerate(lines) if index not in chosen]
    held = [line for index, line in enumerate(lines) if index in chosen]
    return kept, held, header


def repeated_rows(kept: list[str], held: list[str], positions: list[int] | None = None) -> int:
    """How many held-out lines repeat the text of a kept training line (a split that repeats rows puts copies on both
    sides): their text fields (`positions`, 0-based), not whole lines, which hold an index, a genre or a source that
    differs between copies of one text (STS-B, CoLA, RTE); whole lines without `positions`."""

    def text(line: str) -> tuple[str, ...] | str:
        if positions is None:
            return line
        fields = line.split("\t")
        return tuple(fields[i] if i < len(fields) else "" for i in positions)

    training = {text(line) for line in kept}
    return sum(text(line) in training for line in held)


def text_positions(task: str, header: str | None) -> list[int]:
    """The 0-based positions of `task`'s text fields in its train.tsv lines: by the header's names, else (CoLA) by
    its header-less layout."""
    spec = GLUE_TASKS[normalize_task_name(task)]
    if header is None:
        return [spec.headerless[1][column] for column in spec.text_columns]
    names = header.lstrip("\ufeff").split("\t")
    return [names.index(spec.tsv_columns[column]) for column in spec.text_columns]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="the GLUE task, e.g. stsb")
    parser.add_argument("--data_dir", default="../shared/data/glue", help="the GLUE root (SST-2/, MRPC/, ...)")
    parser.add_argument("--rows", type=int, default=1000, help="training rows held out as dev.tsv (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the held-out rows (default 0)")
    parser.add_argument("--output", required=True, help="the GLUE root to write (its <TASK>/ folder is created)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    options = parser.parse_args()
    try:
        spec = GLUE_TASKS[normalize_task_name(options.task)]
        kept, held, header = hold_out(spec.name, Path(options.data_dir), options.rows, options.seed)
    except ValueError as error:
        sys.exit(f"hold_out_glue.py: {error}")
    folder = Path(options.output) / spec.folder
    source = Path(options.data_dir) / spec.folder
    if folder.resolve() == source.resolve():
        sys.exit(
            f"hold_out_glue.py: --output {options.output} would write into the GLUE files it reads ({source}); "
            "pass another folder."
        )
    targets = {"train.tsv": kept, "dev.tsv": held}
    existing = [str(folder / name) for name in targets if (folder / name).exists()]
    if existing and not options.overwrite:
        sys.exit(f"hold_out_glue.py: {', '.join(existing)} exist; pass --overwrite to replace them, or another path.")
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in targets.items():  # each file whole or not at all
        partial = folder / f"{name}.partial"
        partial.write_text("\n".join([header, *lines] if header is not None else lines) + "\n", "utf-8")
        partial.replace(folder / name)
    print(f"{spec.name}: {len(kept)} training rows in {folder / 'train.tsv'}, {len(held)} held out in dev.tsv")
    repeated = repeated_rows(kept, held, text_positions(spec.name, header))
    if repeated:  # the split is kept as it is (recorded searches name it); what it leaks is said
        print(
            f"hold_out_glue.py: note: {repeated} held-out row(s) repeat, word for word, the text of a row in "
            f"train.tsv ({spec.name}'s training split repeats them): their held-out scores are of texts the model "
            "trained on."
        )


if __name__ == "__main__":
    main()
