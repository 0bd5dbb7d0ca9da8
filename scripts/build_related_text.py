#!/usr/bin/env python
"""Write unlabelled text for a GLUE task from the *other* GLUE tasks' inputs, for `distill_glue.py --unlabeled_file`.

    python scripts/build_related_text.py --task stsb --output outputs/related/stsb.tsv
    python scripts/build_related_text.py --task cola --sources rte mrpc --output outputs/related/cola.tsv

STS-B, MRPC and CoLA hold no unlabelled text of their own, but the other GLUE tasks' inputs are real sentences
of related domains (news, Wikipedia, captions): unlabelled related text in the sense of Turc et al. (2019). For a
sentence-pair task every pair of every pair task is a row, written under the task's own column names; for a
single-sentence task every sentence of every task is a row. Labels are never read.

Any row holding a text that appears in any split of the task itself (train, dev or test: their texts are read,
never their labels) is left out: STS-B's news pairs come partly from MRPC, and a transfer set holding dev inputs
would let the student copy its teacher on the very rows it is scored on. `--match letters` (the default) compares
texts by their lowercased letters and digits alone, so markup such as STS-B's `<.SPX>` against MRPC's `.SPX` still
matches; `--match spaces` compares them lowercased with whitespace collapsed (what docs/results.md's (g) runs used:
8 of the 21,576 STS-B rows it kept share a text with STS-B by letters). Rows are deduplicated,
then shuffled with `--seed` so that `--max_unlabeled_samples N` takes a random N. The script prints what each source
gave.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from hf_distill.tasks.glue import GLUE_TASKS, load_glue_tsv, normalize_task_name

MATCHES = {
    "letters": lambda text: re.sub(r"[^a-z0-9]", "", text.lower()),
    "spaces": lambda text: " ".join(text.lower().split()),
}


def related_rows(
    task: str, data_dir: Path, sources: list[str] | None = None, match: str = "letters"
) -> tuple[list[tuple[str, ...]], dict]:
    """The rows for `task` (tuples of its text columns' width) and, per source task, rows kept and left out."""
    spec = GLUE_TASKS[normalize_task_name(task)]
    width = len(spec.text_columns)
    key = MATCHES[match]
    own = load_glue_tsv(spec.name, data_dir)
    held = {key(row[column]) for split in own.values() for row in split for column in spec.text_columns}
    present = [name for name, other in GLUE_TASKS.items() if (data_dir / other.folder).is_dir()]
    try:
        chosen = [normalize_task_name(name) for name in sources] if sources else [n for n in present if n != spec.name]
    except ValueError as error:
        raise ValueError(f"--sources: {error}") from None
    if spec.name in chosen:
        raise ValueError(f"--sources holds the task itself ({spec.name}): its rows are what the transfer set adds to.")
    missing = [name for name in chosen if name not in present]
    if missing:
        raise ValueError(
            f"--sources {' '.join(missing)}: no folder for them under {data_dir}; present: {', '.join(present)}."
        )
    if width == 2:
        single = [name for name in chosen if len(GLUE_TASKS[name].text_columns) != 2]
        if sources and single:
            pairs = " ".join(name for name in present if len(GLUE_TASKS[name].text_columns) == 2 and name != spec.name)
            raise ValueError(
                f"--sources {' '.join(single)}: single-sentence tasks give no pairs for {spec.name}; pass pair tasks "
                f"({pairs})."
            )
        chosen = [name for name in chosen if name not in single]  # by default, the pair tasks only
    seen: set[tuple[str, ...]] = set()
    rows: list[tuple[str, ...]] = []
    counts: dict[str, dict[str, int]] = {}
    for name in chosen:
        other = GLUE_TASKS[name]
        kept = dropped = 0
        for split in load_glue_tsv(name, data_dir).values():
            for row in split:
                texts = [row[column].strip() for column in other.text_columns]
                candidates = [tuple(texts)] if width == 2 else [(text,) for text in texts]
                for candidate in candidates:
                    if not all(candidate) or any(c in t for t in candidate for c in "\t\r\n"):
                        continue
                    if any(key(text) in held for text in candidate):
                        dropped += 1
                        continue
                    if candidate in seen:
                        continue
                    seen.add(candidate)
                    rows.append(candidate)
                    kept += 1
        counts[name] = {"rows": kept, "left_out_sharing_a_text_with_the_task": dropped}
    return rows, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="the GLUE task the text is for, e.g. stsb")
    parser.add_argument("--data_dir", default="../shared/data/glue", help="the GLUE root (SST-2/, MRPC/, ...)")
    parser.add_argument("--output", required=True, help="the TSV file to write (header: the task's text columns)")
    parser.add_argument("--sources", nargs="+", help="GLUE tasks to take text from (default: every other present)")
    parser.add_argument("--seed", type=int, default=0, help="shuffles the rows (default 0)")
    parser.add_argument(
        "--match",
        choices=list(MATCHES),
        default="letters",
        help="how a row's text is compared with the task's own: lowercased letters and digits (default), or "
        "lowercased with whitespace collapsed",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    options = parser.parse_args()
    output = Path(options.output)
    if output.exists() and not options.overwrite:
        sys.exit(f"build_related_text.py: --output {output} exists; pass --overwrite to replace it, or another path.")
    data_dir = Path(options.data_dir)
    try:
        spec = GLUE_TASKS[normalize_task_name(options.task)]
        rows, counts = related_rows(spec.name, data_dir, options.sources, options.match)
    except ValueError as error:
        sys.exit(f"build_related_text.py: {error}")
    if not rows:
        sys.exit(f"build_related_text.py: no rows for {spec.name} from {', '.join(counts) or 'no source'}.")
    random.Random(options.seed).shuffle(rows)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        # Plain tab-separated lines, as distill_glue.py reads a .tsv (csv.QUOTE_NONE: quotes are text).
        for row in (spec.text_columns, *rows):
            handle.write("\t".join(row) + "\n")
    partial.replace(output)
    for name, count in counts.items():
        print(f"{name}: {count['rows']} rows, {count['left_out_sharing_a_text_with_the_task']} left out")
    print(f"{len(rows)} rows for {spec.name} ({', '.join(spec.text_columns)}) in {output}")


if __name__ == "__main__":
    main()
